"""Verification codes printed on statements (PRODUCT.md §11): short, unambiguous, derived from a
keyed HMAC over (clinic, statement id) with the pepper of ``core.config``; a public check answers
"a real bill from this practice, dated ..." and nothing else."""

from __future__ import annotations

import hashlib
import hmac

from chalicelib.core import config

#: Verification codes: 8 characters of an alphabet without 0/O and 1/I (40 bits).
VERIFY_ALPHABET = "23456789ABCDEFGHJKLMNPQRSTUVWXYZ"
VERIFY_LENGTH = 8


def verification_code(clinic_id: str, statement_id: str) -> str:
    """The code printed on a statement: HMAC-SHA256(pepper, clinic | statement id) in 8 characters
    of :data:`VERIFY_ALPHABET`, shown as ``ABCD-EFGH`` (PRODUCT.md §11)."""
    key = config.settings().code_pepper.encode()
    digest = hmac.new(key, f"verify|{clinic_id}|{statement_id}".encode(), hashlib.sha256).digest()
    number = int.from_bytes(digest[:5], "big")
    chars = []
    for _ in range(VERIFY_LENGTH):
        number, i = divmod(number, len(VERIFY_ALPHABET))
        chars.append(VERIFY_ALPHABET[i])
    return "".join(chars)


def code_display(code: str) -> str:
    """``ABCDEFGH`` -> ``ABCD-EFGH``."""
    return f"{code[:4]}-{code[4:]}"


def code_normalize(text: str) -> str | None:
    """What a person typed, as a stored code (case, spaces and dashes forgiven), or None."""
    code = "".join(c for c in text.upper() if c not in " -")
    if len(code) != VERIFY_LENGTH or any(c not in VERIFY_ALPHABET for c in code):
        return None
    return code
