"""Domain errors. Each names what is wrong in words staff can read; none carries PHI.

Presentation layers map them to responses: NotFound -> 404, Conflict kinds -> 409,
TryAgainLater -> 503, the rest of DomainError -> 400.
"""

from __future__ import annotations


class DomainError(Exception):
    """Base of every error Frontdesk raises on purpose. ``str(error)`` is safe to show staff."""


class InvalidInput(DomainError):
    """A value is malformed or out of range (says which field and why)."""


class InvalidAmount(InvalidInput):
    """An amount is not integer cents, or is zero/negative where it must be positive."""


class NotFound(DomainError):
    """The item does not exist for this clinic. A foreign clinic's id is the same miss (R16)."""


class UnknownClinic(NotFound):
    """No such clinic."""


class UnknownGuarantor(NotFound):
    """No such guarantor in this clinic."""


class UnknownServiceLine(NotFound):
    """No such service line for this guarantor in this clinic."""


class UnknownEntry(NotFound):
    """No such ledger entry for this guarantor."""


class Conflict(DomainError):
    """The write collides with what is already stored."""


class AlreadyExists(Conflict):
    """An item with this identity was created before."""


class AlreadyPosted(Conflict):
    """This source key was posted before; ``entry_seq`` names the entry that posted it."""

    def __init__(self, source_key: str, entry_seq: int | None) -> None:
        super().__init__(f"source {source_key!r} was already posted (entry {entry_seq})")
        self.source_key = source_key
        self.entry_seq = entry_seq


class AlreadyReversed(Conflict):
    """The entry was reversed before; an entry can be reversed once."""


class ConditionFailed(Conflict):
    """A caller's own item in a posting transaction failed its condition; ``keys`` maps the
    failed items' sort keys to DynamoDB's reason codes. Nothing was written."""

    def __init__(self, keys: dict[str, str]) -> None:
        super().__init__(f"a condition failed on {sorted(keys)}")
        self.keys = keys


class ConcurrentPosting(Conflict):
    """Lost the race for a guarantor's balance after the bounded retries; try again later."""


class LineInCollections(DomainError):
    """Money cannot be applied to a service line that is in collections (REFERENCE-PORTAL E4)."""


class Unbalanced(DomainError):
    """A ledger entry's lines do not sum to zero (double entry)."""


class InsufficientBalance(DomainError):
    """The movement would take an account below zero (e.g. refund more than escrow)."""


class LinkInvalid(NotFound):
    """A payment link or session that is unknown, expired, revoked or tampered: one neutral
    error for all, so a response never tells which (SECURITY.md R25)."""


class CodeRefused(DomainError):
    """A one-time code that is wrong, expired, used or over its attempts: one neutral error
    ("code invalid or expired", R17-R19)."""


class TooManyRequests(DomainError):
    """A send or lookup limit was reached (R20, R28); HTTP 429."""


class TryAgainLater(DomainError):
    """DynamoDB throttled or failed transiently; the caller may retry (HTTP 503)."""
