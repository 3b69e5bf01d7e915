"""Clinic API keys for practice-management integrations (the JSON API under ``/v1``).

A key looks like ``<clinic id>.<43 url-safe characters>`` (256 bits from ``secrets``): the clinic
part routes the lookup to the clinic's own collection (R16); only the SHA-256 of the whole key
is stored (pk ``C#<clinic>``, sk ``APIKEY#<sha256>``), so a database read never yields a usable
key. The key is shown once, at creation. Sent as ``Authorization: Bearer <key>``.

Staff authentication for the API does not exist yet; until it does, these keys are the API's
only credential, one or more per clinic, each revocable.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

from pynamodb.exceptions import PutError, UpdateError

from chalicelib.core import clock
from chalicelib.core.errors import DomainError, InvalidInput, NotFound
from chalicelib.core.ids import new_id, require_id
from chalicelib.store import keys
from chalicelib.store.db import clinic_scope, clinic_scoped
from chalicelib.store.models import ClinicItem
from chalicelib.store.models_statements import ApiKeyItem


class ApiKeyRefused(DomainError):
    """The key is missing, malformed, unknown, revoked or for no clinic: one neutral refusal (401)."""


@dataclass(frozen=True)
class IssuedApiKey:
    """A new key: ``key`` is shown once (never logged, never stored); ``key_id`` names it later."""

    clinic_id: str
    key_id: str
    key: str


def _hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


@clinic_scoped
def api_key_create(*, clinic_id: str, label: str = "practice management") -> IssuedApiKey:
    """Create an API key for ``clinic_id``. Raises UnknownClinic-like NotFound, InvalidInput (label)."""
    require_id(clinic_id, field="clinic_id")
    if not label.strip() or len(label) > 80:
        raise InvalidInput("label must be 1-80 characters")
    try:
        ClinicItem.get(keys.clinic_pk(clinic_id), keys.CLINIC)
    except ClinicItem.DoesNotExist:
        raise NotFound(f"clinic {clinic_id} not found") from None
    key = f"{clinic_id}.{secrets.token_urlsafe(32)}"
    key_id = new_id("key")
    item = ApiKeyItem(keys.clinic_pk(clinic_id), keys.api_key_sk(_hash(key)), key_id=key_id, label=label.strip(),
                      created_at=clock.now())
    try:
        item.save(condition=ApiKeyItem.pk.does_not_exist())
    except PutError as exc:  # pragma: no cover - a 256-bit collision
        raise InvalidInput("try again") from exc
    return IssuedApiKey(clinic_id, key_id, key)


def api_key_check(*, authorization: str | None) -> str:
    """The clinic id an ``Authorization: Bearer <key>`` header authenticates (one GetItem).

    Raises ApiKeyRefused for every failure alike (no header, wrong scheme, malformed, unknown,
    revoked), so a response never tells which.
    """
    refused = ApiKeyRefused("a valid API key is required")
    scheme, _, key = (authorization or "").strip().partition(" ")
    key = key.strip()
    if scheme.lower() != "bearer" or not key:
        raise refused
    clinic_id, dot, secret = key.partition(".")
    if not dot or not 40 <= len(secret) <= 64:
        raise refused
    try:
        require_id(clinic_id, field="clinic")
    except InvalidInput:
        raise refused from None
    with clinic_scope(clinic_id):
        try:
            item = ApiKeyItem.get(keys.clinic_pk(clinic_id), keys.api_key_sk(_hash(key)))
        except ApiKeyItem.DoesNotExist:
            raise refused from None
    if item.revoked_at is not None:
        raise refused
    return clinic_id


@clinic_scoped
def api_key_revoke(*, clinic_id: str, key: str) -> None:
    """Revoke a key (given in full). Raises NotFound."""
    try:
        ApiKeyItem(keys.clinic_pk(clinic_id), keys.api_key_sk(_hash(key))).update(
            actions=[ApiKeyItem.revoked_at.set(clock.now())], condition=ApiKeyItem.pk.exists())
    except UpdateError as exc:
        if exc.cause_response_code == "ConditionalCheckFailedException":
            raise NotFound("no such API key") from exc
        raise
