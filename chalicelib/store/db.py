"""Binding the models to a table, one shared botocore client, tenant scope, transactions.

Why our own helpers: PynamoDB gives each model class its own connection and reports a failed
transaction's reasons in request order (condition checks, deletes, puts, updates). ``bind``
makes every model share one connection (one botocore client: the service model is loaded once,
B3 rule 4, and one place for request hooks, B2), and :class:`Tx` maps reasons back to the
sort keys of the items that failed.
"""

from __future__ import annotations

import contextvars
import functools
import importlib
import os
import pkgutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, ParamSpec, TypeVar

from pynamodb.connection import Connection
from pynamodb.exceptions import PutError, TransactWriteError
from pynamodb.expressions.condition import Condition
from pynamodb.expressions.update import Action
from pynamodb.transactions import TransactWrite

from chalicelib.core import config
from chalicelib.core.errors import TryAgainLater
from chalicelib.store.models import SHARED, Item, all_models

Hook = Callable[[str, dict[str, Any]], None]

_connection: Connection | None = None
_hooks: list[Hook] = []
_clinic: contextvars.ContextVar[str | None] = contextvars.ContextVar("clinic", default=None)

RETRYABLE_REASONS = frozenset(
    {"TransactionConflict", "ThrottlingError", "ProvisionedThroughputExceeded", "InternalServerError"}
)
RETRYABLE_ERRORS = RETRYABLE_REASONS | {
    "ThrottlingException",
    "ProvisionedThroughputExceededException",
    "RequestLimitExceeded",
    "InternalServerError",
    "TransactionInProgressException",
}


def bind(*, table_name: str | None = None, host: str | None = None) -> None:
    """Point every model at ``table_name`` on ``host`` (defaults from core.config).

    Creates the one shared connection with the timeouts of R6 (connect 1 s, read 2 s, 2
    retries by default) and re-registers request hooks. Safe to call again (tests, CLI).
    """
    global _connection
    register_model_modules()
    cfg = config.settings()
    table = table_name or cfg.table_name
    endpoint = host if host is not None else cfg.dynamodb_endpoint
    if endpoint and endpoint.startswith("http://"):  # an emulator: DynamoDB itself is https only
        # DynamoDB Local accepts any credentials; never look for real ones on a laptop.
        os.environ.setdefault("AWS_ACCESS_KEY_ID", "local")
        os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "local")
    for model in all_models():
        meta: Any = model.Meta
        meta.table_name = table
        meta.host = endpoint
        meta.region = cfg.region
        meta.connect_timeout_seconds = cfg.ddb_connect_timeout
        meta.read_timeout_seconds = cfg.ddb_read_timeout
        meta.max_retry_attempts = cfg.ddb_max_retries
        model._connection = None
    _connection = Connection(
        region=cfg.region,
        host=endpoint,
        connect_timeout_seconds=cfg.ddb_connect_timeout,
        read_timeout_seconds=cfg.ddb_read_timeout,
        max_retry_attempts=cfg.ddb_max_retries,
        max_pool_connections=64,
    )
    SHARED.connection = None
    _connection.add_meta_table(Item._get_connection().get_meta_table())
    SHARED.connection = _connection
    client = _connection.client
    for hook in _hooks:
        _register(client, hook)


def register_model_modules() -> None:
    """Import every ``chalicelib.store.models_*`` module, so that any item a Query returns can be
    deserialized by its discriminator (a guarantor's collection holds items of several packages;
    PynamoDB refuses an unknown discriminator value). Called by :func:`bind`."""
    package = importlib.import_module("chalicelib.store")
    for info in pkgutil.iter_modules(package.__path__):
        if info.name.startswith("models_"):
            importlib.import_module(f"chalicelib.store.{info.name}")


def connection() -> Connection:
    """The shared connection (binds from the environment on first use)."""
    if _connection is None:
        bind()
    assert _connection is not None
    return _connection


def add_request_hook(hook: Hook) -> None:
    """Call ``hook(operation, params)`` before every DynamoDB request (B2 counting, R16 checks)."""
    _hooks.append(hook)
    if _connection is not None:
        _register(_connection.client, hook)


def remove_request_hook(hook: Hook) -> None:
    """Undo :func:`add_request_hook`."""
    _hooks.remove(hook)
    if _connection is not None:
        _connection.client.meta.events.unregister(
            "before-parameter-build.dynamodb", unique_id=f"fd-{id(hook)}"
        )


def _register(client: Any, hook: Hook) -> None:
    def handler(params: dict[str, Any], model: Any, **_: Any) -> None:
        hook(model.name, params)

    client.meta.events.register(
        "before-parameter-build.dynamodb", handler, unique_id=f"fd-{id(hook)}"
    )


# --- tenant scope ---------------------------------------------------------------------------

P = ParamSpec("P")
R = TypeVar("R")


def current_clinic() -> str | None:
    """The clinic whose service or selector is running in this context, if any (R16)."""
    return _clinic.get()


@contextmanager
def clinic_scope(clinic_id: str) -> Iterator[None]:
    """Mark the requests made inside as made for ``clinic_id`` (checked by the test hook)."""
    token = _clinic.set(clinic_id)
    try:
        yield
    finally:
        _clinic.reset(token)


def clinic_scoped(fn: Callable[P, R]) -> Callable[P, R]:
    """Decorate a service or selector whose keyword argument ``clinic_id`` names the tenant."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        clinic_id = kwargs.get("clinic_id")
        if not isinstance(clinic_id, str):
            return fn(*args, **kwargs)
        with clinic_scope(clinic_id):
            return fn(*args, **kwargs)

    return wrapper


# --- reads -----------------------------------------------------------------------------------
#
# The two raw reads below use the one shared botocore client (same retries, timeouts and request
# hooks) rather than PynamoDB's Connection, which asks every request for ReturnConsumedCapacity
# (it only logs it) and makes DynamoDB Local answer ~0.15 ms later; their answers are left as
# DynamoDB JSON for :func:`stored_values`. For the portal's hot reads (SERVERLESS-PERF-REL.md B1).


def raw_get(pk: str, sk: str, *, consistent: bool = False) -> dict[str, dict[str, Any]] | None:
    """The stored item under ``(pk, sk)`` as DynamoDB JSON, or None."""
    client: Any = connection().client  # PynamoDB types it without the operation methods
    key = {Item.pk.attr_name: {"S": pk}, Item.sk.attr_name: {"S": sk}}
    found: dict[str, dict[str, Any]] | None = client.get_item(
        TableName=Item.Meta.table_name, Key=key, ConsistentRead=consistent).get("Item")
    return found


def raw_batch_get(keys_: list[tuple[str, str]]) -> list[dict[str, dict[str, Any]]]:
    """The stored items under ``keys_`` (eventually consistent) as DynamoDB JSON, in
    BatchGetItem requests of ≤ 100 keys, asking again for unprocessed keys as PynamoDB's
    batch_get does."""
    table = Item.Meta.table_name
    pk_name, sk_name = Item.pk.attr_name, Item.sk.attr_name
    pending = [{pk_name: {"S": pk}, sk_name: {"S": sk}} for pk, sk in keys_]
    found: list[dict[str, dict[str, Any]]] = []
    client: Any = connection().client
    while pending:
        request, pending = pending[:100], pending[100:]
        data = client.batch_get_item(RequestItems={table: {"Keys": request}})
        found.extend(data["Responses"].get(table, []))
        pending.extend(data.get("UnprocessedKeys", {}).get(table, {}).get("Keys", []))
    return found


def stored_values(model: type[Item], raw: dict[str, dict[str, Any]], names: tuple[str, ...]) -> list[Any]:
    """The named attributes of a stored item as DynamoDB returned it (``{"name": {"S": ...}}``),
    deserialised by ``model``'s own attribute types, with the default PynamoDB gives a loaded
    item that lacks one. For a hot read that shows a few attributes (a portal page,
    SERVERLESS-PERF-REL.md B1): building the whole model costs more than the request's own
    parsing. The caller checks the item's kind. Raises KeyError for a name ``model`` lacks."""
    attributes = model.get_attributes()
    out = []
    for name in names:
        attr = attributes[name]
        value = raw.get(attr.attr_name)
        if value and "NULL" not in value:
            out.append(attr.deserialize(attr.get_value(value)))
        else:
            default = attr.default
            out.append(default() if callable(default) else default)
    return out


# --- creates ---------------------------------------------------------------------------------


def put_new(item: Item) -> bool:
    """Put ``item`` only where nothing is stored under its key; True when this call wrote it.

    A conditional PutItem whose answer is lost (read timeout) is retried by the SDK and then
    fails its condition against its own write. So on ConditionalCheckFailed the stored item is
    read (consistently) and compared with ours: identical attributes mean it was our write
    (True); anything else means the key was taken (False). So an identical item written before
    also reads as True: use it where a repeated create is the same create. Other errors propagate.
    """
    try:
        item.save(condition=type(item).pk.does_not_exist())
        return True
    except PutError as exc:
        if exc.cause_response_code != "ConditionalCheckFailedException":
            raise
    try:
        stored = type(item).get(item.pk, item.sk, consistent_read=True)
    except type(item).DoesNotExist:
        return False
    return bool(stored.serialize() == item.serialize())


# --- transactions ---------------------------------------------------------------------------


class TxFailed(Exception):
    """A transaction was cancelled. ``failed`` maps the failed items' ``(pk, sk)`` keys to
    codes; ``reasons`` maps their sort keys alone (enough within one partition)."""

    def __init__(self, failed: dict[tuple[str, str], str], cause: Exception) -> None:
        super().__init__(f"transaction cancelled: {failed or cause}")
        self.failed = failed
        self.cause = cause

    @property
    def reasons(self) -> dict[str, str]:
        """The failed items' sort keys to codes."""
        return {sk: code for (_, sk), code in self.failed.items()}

    @property
    def retryable(self) -> bool:
        """True when nothing failed a condition (conflict, throttle, transient)."""
        codes = set(self.reasons.values())
        return not codes or codes <= RETRYABLE_REASONS


class Tx:
    """Collects up to 100 item actions and commits them as one TransactWriteItems.

    Usage: ``tx = Tx(); tx.put(item, condition=...); tx.update(item, actions); tx.commit()``.
    Raises :class:`TxFailed` with reasons keyed by sort key; other botocore errors that are
    throttles become :class:`TryAgainLater`.
    """

    def __init__(self) -> None:
        self._checks: list[tuple[type[Item], str, str, Condition]] = []
        self._puts: list[tuple[Item, Condition | None]] = []
        self._updates: list[tuple[Item, list[Action], Condition | None, bool]] = []

    def put(self, item: Item, *, condition: Condition | None = None) -> None:
        self._puts.append((item, condition))

    def update(
        self,
        item: Item,
        actions: list[Action],
        *,
        condition: Condition | None = None,
        versioned: bool = True,
    ) -> None:
        self._updates.append((item, actions, condition, versioned))

    def check(self, model: type[Item], pk: str, sk: str, condition: Condition) -> None:
        self._checks.append((model, pk, sk, condition))

    def __len__(self) -> int:
        return len(self._checks) + len(self._puts) + len(self._updates)

    def commit(self) -> None:
        order = (
            [(pk, sk) for _, pk, sk, _ in self._checks]
            + [(item.pk, item.sk) for item, _ in self._puts]
            + [(item.pk, item.sk) for item, _, _, _ in self._updates]
        )
        try:
            # botocore fills TransactWriteItems' ClientRequestToken (an idempotency token), so its
            # retry of a commit whose answer was lost succeeds (tests/test_store_retries.py).
            with TransactWrite(connection=connection()) as tx:
                for model, pk, sk, check in self._checks:
                    tx.condition_check(model, pk, sk, condition=check)
                for item, put_condition in self._puts:
                    tx.save(item, condition=put_condition)
                for item, actions, update_condition, versioned in self._updates:
                    tx.update(item, actions, condition=update_condition, add_version_condition=versioned)
        except TransactWriteError as exc:
            # No answer at all (a read timeout after the commit, R4) has no error code; PynamoDB's
            # cause_response_code fails on such a cause, so read the code here.
            response = getattr(exc.cause, "response", None)
            code = (response.get("Error", {}).get("Code") if isinstance(response, dict) else None) or ""
            if code != "TransactionCanceledException":
                if code in RETRYABLE_ERRORS:
                    raise TryAgainLater("the database is busy; try again") from exc
                raise
            failed = {
                key: reason.code
                for key, reason in zip(order, exc.cancellation_reasons, strict=False)
                if reason is not None and reason.code not in (None, "None")
            }
            raise TxFailed(failed, exc) from exc
