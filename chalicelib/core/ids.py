"""Identifiers: random, URL-safe, never derived from PHI, and free of the key separator ``#``."""

from __future__ import annotations

import re
import secrets

from chalicelib.core.errors import InvalidInput

_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


def new_id(prefix: str) -> str:
    """Return ``<prefix>_<16 hex chars>`` (64 random bits), e.g. ``g_3f2a9c0d1b7e4a55``."""
    return f"{prefix}_{secrets.token_hex(8)}"


def require_id(value: object, *, field: str) -> str:
    """Return ``value`` if it is a safe identifier (letters, digits, ``.``, ``_``, ``-``; ≤ 64).

    Keys are built from ids, so an id with ``#`` could reach another item's key: refused
    with InvalidInput naming the field (R16).
    """
    if not isinstance(value, str) or not _ID.match(value):
        raise InvalidInput(f"{field} must be 1-64 letters, digits, '.', '_' or '-'")
    return value
