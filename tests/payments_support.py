"""Helpers for the payment tests: clinics with groups, balances owed, the sandbox processor,
webhook delivery through the app, and the exactly-once counts every payment test ends with."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from chalice.test import Client

from chalicelib.accounts import services as accounts
from chalicelib.ledger import selectors as ledger_selectors
from chalicelib.ledger.verify import ledger_verify
from chalicelib.payments import faults
from chalicelib.payments.processors import registry
from chalicelib.payments.processors.sandbox import SandboxProcessor
from chalicelib.store import keys
from chalicelib.store.db import clinic_scope
from chalicelib.store.models import EntryItem
from chalicelib.tenants import services as tenants
from tests import factories


@dataclass(frozen=True)
class Payer:
    """A guarantor who owes money, in a clinic with a default group."""

    clinic_id: str
    guarantor_id: str
    patient_id: str
    facility_id: str
    provider_id: str
    group_id: str
    lines: tuple[str, ...]

    @property
    def family(self) -> factories.Family:
        return factories.Family(self.clinic_id, self.guarantor_id, self.patient_id, self.facility_id,
                                self.provider_id)


def payer(*, owes: tuple[int, ...] = (6_000,), settings: dict[str, Any] | None = None,
          clinic_id: str | None = None, statement: bool = False) -> Payer:
    """A clinic (or ``clinic_id``) with a default group and a guarantor owing ``owes`` (one line
    each, oldest first)."""
    f = factories.family(clinic_id)
    group_id = (tenants.group_create(clinic_id=f.clinic_id, name="Default", settings=settings or {},
                                     is_default=True) if clinic_id is None else _default_group(f.clinic_id))
    lines = tuple(factories.patient_owes(f, cents, dos=f"2026-0{1 + i % 9}-15") for i, cents in enumerate(owes))
    if statement:
        accounts.statement_create(clinic_id=f.clinic_id, guarantor_id=f.guarantor_id,
                                  statement_date="2026-11-01", due_date="2026-11-30")
    return Payer(f.clinic_id, f.guarantor_id, f.patient_id, f.facility_id, f.provider_id, group_id, lines)


def _default_group(clinic_id: str) -> str:
    from chalicelib.tenants import selectors as tenant_selectors

    return next(g.group_id for g in tenant_selectors.groups_list(clinic_id=clinic_id) if g.is_default)


def key() -> str:
    return str(uuid.uuid4())


def sandbox() -> SandboxProcessor:
    return registry.sandbox()


def fresh_sandbox() -> Iterator[SandboxProcessor]:
    """Fixture body: a clean sandbox and no armed crash point, before and after the test."""
    sbx = registry.sandbox()
    sbx.reset()
    faults.disarm_all()
    yield sbx
    sbx.reset()
    faults.disarm_all()


def path_of(url: str) -> str:
    """The path and query of an absolute URL (the test client takes paths)."""
    parts = urlsplit(url)
    return parts.path + (f"?{parts.query}" if parts.query else "")


def deliver_webhooks(client: Client, **kwargs: Any) -> list[int]:
    """Deliver the sandbox's pending webhooks to ``POST /webhooks/sandbox``; return statuses."""
    statuses: list[int] = []

    def send(payload: bytes, headers: dict[str, str]) -> None:
        statuses.append(client.http.post("/webhooks/sandbox", headers=headers, body=payload).status_code)

    sandbox().deliver(send, **kwargs)
    return statuses


def payment_entries(p: Payer) -> list[EntryItem]:
    """The guarantor's payment entries (one per posted attempt)."""
    with clinic_scope(p.clinic_id):
        return [e for e in EntryItem.query(keys.guarantor_pk(p.clinic_id, p.guarantor_id),
                                           EntryItem.sk.startswith(keys.ENTRY_PREFIX), consistent_read=True)
                if e.source_key.startswith("attempt:")]


def balances(p: Payer):
    return ledger_selectors.guarantor_figures(clinic_id=p.clinic_id, guarantor_id=p.guarantor_id).balances


def verified(clinic_id: str) -> None:
    report = ledger_verify(clinic_id=clinic_id)
    assert report.ok, report.mismatches


# --- DynamoDB fault injection on the shared client (SERVERLESS-PERF-REL.md R4, R5) ----------


class _FakeHttp:
    def __init__(self, status_code: int) -> None:
        self.status_code = status_code
        self.headers: dict[str, str] = {}
        self.content = b""
        self.text = ""


class DynamoFaults:
    """Inject DynamoDB faults through botocore events on the shared client.

    ``timeout_after(op)``: the request reaches DynamoDB and commits, then the answer is lost
    (``after-call`` raises a read timeout) once. ``errors(rate, codes)``: a ``before-call``
    handler answers a share of requests with a throttling / conflict / server error, without
    reaching DynamoDB (seeded).
    """

    def __init__(self, seed: int = 0) -> None:
        import random

        from chalicelib.store import db

        self.events = db.connection().client.meta.events
        self.rng = random.Random(seed)
        self._registered: list[tuple[str, Any, str]] = []
        self.injected = 0

    def timeout_after(self, operation: str, *, times: int = 1, skip: int = 0) -> None:
        """Lose the answer of the ``skip + 1``-th .. ``skip + times``-th ``operation`` calls."""
        from botocore.exceptions import ReadTimeoutError

        state = {"skip": skip, "left": times}

        def handler(**_: Any) -> None:
            if state["skip"] > 0:
                state["skip"] -= 1
                return
            if state["left"] > 0:
                state["left"] -= 1
                self.injected += 1
                raise ReadTimeoutError(endpoint_url="http://dynamodb.injected")

        self._register(f"after-call.dynamodb.{operation}", handler)

    def errors(self, rate: float, codes: tuple[str, ...] = ("TransactionConflict", "ThrottlingException",
                                                            "ProvisionedThroughputExceededException",
                                                            "InternalServerError")) -> None:
        def handler(model: Any, params: dict[str, Any], **_: Any) -> Any:
            if self.rng.random() >= rate:
                return None
            self.injected += 1
            code = self.rng.choice(codes)
            if code == "TransactionConflict":
                if model.name != "TransactWriteItems":
                    code = "ThrottlingException"
                else:
                    body = json.loads(params.get("body") or b"{}")
                    reasons = [{"Code": "None"} for _ in body.get("TransactItems", [])] or [{"Code": "None"}]
                    reasons[0] = {"Code": "TransactionConflict", "Message": "injected"}
                    return (_FakeHttp(400), {"Error": {"Code": "TransactionCanceledException", "Message": "injected"},
                                             "CancellationReasons": reasons, "ResponseMetadata": {}})
            status = 500 if code == "InternalServerError" else 400
            return (_FakeHttp(status), {"Error": {"Code": code, "Message": "injected"}, "ResponseMetadata": {}})

        self._register("before-call.dynamodb", handler)

    def _register(self, event: str, handler: Any) -> None:
        uid = f"fault-{id(handler)}"
        self.events.register(event, handler, unique_id=uid)
        self._registered.append((event, handler, uid))

    def clear(self) -> None:
        for event, _, uid in self._registered:
            self.events.unregister(event, unique_id=uid)
        self._registered.clear()
