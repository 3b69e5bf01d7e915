"""Payment errors. Each ``str()`` is a clear message safe to show the guarantor or staff (no
card data, no PHI); presentation maps Conflict -> 409, TryAgainLater -> 503, the rest -> 400."""

from __future__ import annotations

from chalicelib.core.errors import Conflict, DomainError, InvalidInput, NotFound, TryAgainLater


class IdempotencyConflict(Conflict):
    """The attempt (or refund) key was used before with different parameters (R30, HTTP 409)."""


class PaymentInProgress(Conflict):
    """Another request is completing this payment, or a payment of this balance is under way
    (R31); poll the attempt or wait a minute."""


class PaymentNotAllowed(InvalidInput):
    """The amount or method is not allowed (minimum, above the balance without prepayment,
    wallet not enabled, split with a wallet...). The message says which."""


class UnknownAttempt(NotFound):
    """No such payment attempt for this guarantor."""


class UnknownReceipt(NotFound):
    """No such receipt for this guarantor."""


class UnknownBatch(NotFound):
    """No such reference batch in this clinic."""


class UnknownCard(NotFound):
    """No such stored card for this guarantor (or it was removed)."""


class BatchClosed(Conflict):
    """The reference batch is not open (closed, locked or archived), or the user has none."""


class InvalidTransition(DomainError):
    """A state change not in the transition table."""


class RefundNotAllowed(InvalidInput):
    """The refund exceeds what is left to refund, or the receipt cannot be refunded."""


class ProcessorUnavailable(TryAgainLater):
    """The processor failed transiently (5xx, 429, connection reset); nothing is known to have
    happened. ``retry_after`` in seconds when the processor said so."""

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class ProcessorTimeout(ProcessorUnavailable):
    """No answer in time: the processor may or may not have acted (the ambiguous case)."""


class ProcessorRejected(InvalidInput):
    """The processor refused the request itself (bad parameters, idempotency misuse)."""


class WebhookRejected(InvalidInput):
    """A webhook whose signature, timestamp, mode or type is not acceptable (R32): HTTP 400,
    nothing written."""
