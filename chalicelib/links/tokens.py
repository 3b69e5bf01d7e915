"""Tokens and their hashes. Clinic-scoped bearer tokens look like ``<clinic id>.<secret>``:
the clinic part only routes the lookup to the clinic's keys; the secret is 256 bits from
``secrets`` (R25) and only its SHA-256 is stored."""

from __future__ import annotations

import hashlib
import hmac
import secrets

from chalicelib.core import config
from chalicelib.core.errors import InvalidInput, LinkInvalid
from chalicelib.core.ids import require_id


def new_token(clinic_id: str) -> str:
    """A fresh bearer token for ``clinic_id``."""
    return f"{clinic_id}.{secrets.token_urlsafe(32)}"


def split_token(token: str) -> tuple[str, str]:
    """Return ``(clinic_id, sha256 hex of the whole token)``; raise LinkInvalid if malformed."""
    clinic_id, dot, secret = token.partition(".")
    if not dot or not 40 <= len(secret) <= 64:
        raise LinkInvalid("link not valid")
    try:
        require_id(clinic_id, field="clinic")
    except InvalidInput:
        raise LinkInvalid("link not valid") from None
    return clinic_id, hashlib.sha256(token.encode()).hexdigest()


def subject_hash(value: str) -> str:
    """Keyed hash of a contact point or address for rate keys: never stored in the clear."""
    key = config.settings().code_pepper.encode()
    return hmac.new(key, value.strip().casefold().encode(), hashlib.sha256).hexdigest()[:32]


def code_hash(code: str, request_id: str) -> str:
    """HMAC-SHA256(pepper, code ‖ request id) (R16)."""
    key = config.settings().code_pepper.encode()
    return hmac.new(key, f"{code}|{request_id}".encode(), hashlib.sha256).hexdigest()


def new_code() -> str:
    """Six digits from the CSPRNG, leading zeros kept (R16)."""
    return f"{secrets.randbelow(1_000_000):06d}"
