"""Transition tables (STYLE.md 3.5, SERVERLESS.md 2.6): plain mappings walked by a table test.

A transition is applied as a conditional update (``status = <old>``) with a history item in the
same transaction; a failed condition means someone else moved the state first.
"""

from __future__ import annotations

from enum import StrEnum


class AttemptStatus(StrEnum):
    CREATED = "created"
    PROCESSING = "processing"
    REQUIRES_ACTION = "requires_action"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELED = "canceled"
    PARTIALLY_REFUNDED = "partially_refunded"
    REFUNDED = "refunded"


ATTEMPT_TRANSITIONS: dict[AttemptStatus, frozenset[AttemptStatus]] = {
    AttemptStatus.CREATED: frozenset({AttemptStatus.PROCESSING, AttemptStatus.CANCELED}),
    AttemptStatus.PROCESSING: frozenset({AttemptStatus.SUCCEEDED, AttemptStatus.FAILED,
                                         AttemptStatus.REQUIRES_ACTION, AttemptStatus.CANCELED}),
    AttemptStatus.REQUIRES_ACTION: frozenset({AttemptStatus.PROCESSING, AttemptStatus.SUCCEEDED,
                                              AttemptStatus.FAILED, AttemptStatus.CANCELED}),
    AttemptStatus.SUCCEEDED: frozenset({AttemptStatus.PARTIALLY_REFUNDED, AttemptStatus.REFUNDED}),
    AttemptStatus.PARTIALLY_REFUNDED: frozenset({AttemptStatus.PARTIALLY_REFUNDED, AttemptStatus.REFUNDED}),
    AttemptStatus.FAILED: frozenset(),
    AttemptStatus.CANCELED: frozenset(),
    AttemptStatus.REFUNDED: frozenset(),
}

#: Not yet decided: the completer looks at these (gsi1 ``ATTEMPTS#PENDING``).
PENDING = frozenset({AttemptStatus.CREATED, AttemptStatus.PROCESSING, AttemptStatus.REQUIRES_ACTION})
#: A result may be applied from these (phase 3).
AWAITING_RESULT = frozenset({AttemptStatus.PROCESSING, AttemptStatus.REQUIRES_ACTION})


class RefundStatus(StrEnum):
    PROCESSING = "processing"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


REFUND_TRANSITIONS: dict[RefundStatus, frozenset[RefundStatus]] = {
    RefundStatus.PROCESSING: frozenset({RefundStatus.SUCCEEDED, RefundStatus.FAILED}),
    RefundStatus.SUCCEEDED: frozenset(),
    RefundStatus.FAILED: frozenset(),
}


class BatchStatus(StrEnum):
    OPEN = "open"
    CLOSING = "closing"
    CLOSED = "closed"
    LOCKED = "locked"


#: Staff reconcile and close; a closed batch can be reopened unless locked (PRODUCT.md §2, E3).
BATCH_TRANSITIONS: dict[BatchStatus, frozenset[BatchStatus]] = {
    BatchStatus.OPEN: frozenset({BatchStatus.CLOSING}),
    BatchStatus.CLOSING: frozenset({BatchStatus.CLOSED, BatchStatus.OPEN}),
    BatchStatus.CLOSED: frozenset({BatchStatus.OPEN, BatchStatus.LOCKED}),
    BatchStatus.LOCKED: frozenset(),
}


class EventStatus(StrEnum):
    RECEIVED = "received"
    HANDLING = "handling"
    HANDLED = "handled"
    IGNORED = "ignored"
    UNMATCHED = "unmatched"
    FAILED = "failed"


def allowed(table: dict[StrEnum, frozenset[StrEnum]] | dict, old: StrEnum, new: StrEnum) -> bool:
    """True when ``old -> new`` is in ``table``."""
    return new in table.get(old, frozenset())
