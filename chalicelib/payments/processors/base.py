"""The processor interface (STYLE.md 1.18, 3.7): a small backend behind frozen request and
result dataclasses, with capability flags, a configuration check and webhook parsing.

Amounts are integer cents (USD). Card data never passes through here: the browser gives the
card to the processor's own page or iframe, and we see only tokens (``tok_``/``pm_``), brand,
last 4 and expiry (SECURITY.md R1, R2). Metadata sent to a processor holds opaque ids only
(R6). Every call that moves money takes an idempotency key, so a retry cannot charge twice.

Errors: ProcessorUnavailable (transient: retry with the same key), ProcessorTimeout (no answer:
the outcome is unknown until retrieved), ProcessorRejected (the request is wrong),
WebhookRejected (bad signature, stale, wrong mode).
"""

from __future__ import annotations

import abc
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, ClassVar

from chalicelib.payments.errors import ProcessorRejected

#: Metadata keys a processor may receive (R6: opaque ids only, never names, codes or dates).
METADATA_KEYS = frozenset({"clinic_id", "guarantor_id", "attempt_key", "refund_key", "receipt_id",
                           "split_group"})
_CPT_OR_ICD = re.compile(r"\b(\d{5}|[A-TV-Z]\d{2}(\.\d{1,4})?)\b")


class Outcome(StrEnum):
    SUCCEEDED = "succeeded"
    DECLINED = "declined"
    REQUIRES_ACTION = "requires_action"
    PENDING = "pending"  # created and waiting for the customer, or still processing
    CANCELED = "canceled"
    NOT_FOUND = "not_found"


@dataclass(frozen=True)
class Capabilities:
    """What a processor can do: wallets (Apple Pay, Google Pay), stored cards, refunds, and one
    transaction per merchant account for split payments."""

    wallets: bool = False
    stored_cards: bool = False
    refunds: bool = True
    split: bool = False


@dataclass(frozen=True)
class CardDetails:
    """What we may keep about a card: brand, last 4, expiry (R2)."""

    brand: str
    last4: str
    exp_month: int
    exp_year: int


@dataclass(frozen=True)
class PaymentRequest:
    """One payment at one merchant account.

    ``token``: a processor token to charge server-side (stored card, Payment Element); None for
    a processor-hosted page, which then needs ``return_url``. ``idempotency_key`` ≤ 255 chars,
    unique per attempt. ``wallet``: ``apple_pay`` / ``google_pay`` to offer only that wallet.
    """

    idempotency_key: str
    amount_cents: int
    account_id: str
    metadata: Mapping[str, str]
    token: str | None = None
    customer: str | None = None
    return_url: str | None = None
    save_card: bool = False
    require_cvc: bool = False
    wallet: str | None = None
    description: str = ""
    currency: str = "USD"


@dataclass(frozen=True)
class PaymentResult:
    """The processor's view of one payment. ``reference`` is its transaction id (shown to staff
    and on receipts as the transaction number). ``message`` is safe to show the guarantor."""

    outcome: Outcome
    reference: str | None = None
    amount_cents: int = 0
    card: CardDetails | None = None
    reusable_token: str | None = None
    redirect_url: str | None = None
    client_secret: str | None = None
    decline_code: str | None = None
    message: str = ""


@dataclass(frozen=True)
class RefundRequest:
    """Refund (or void, before settlement) ``amount_cents`` of payment ``reference``."""

    idempotency_key: str
    reference: str
    amount_cents: int
    account_id: str
    metadata: Mapping[str, str]
    void: bool = False


@dataclass(frozen=True)
class RefundResult:
    outcome: Outcome
    reference: str | None = None
    amount_cents: int = 0
    message: str = ""


@dataclass(frozen=True)
class ProcessorEvent:
    """A verified webhook event: ids and statuses only. ``object_kind`` is ``payment`` or
    ``refund``; ``reference`` the payment (or refund) id; ``metadata`` our opaque ids."""

    processor: str
    event_id: str
    event_type: str
    account_id: str | None
    livemode: bool
    created: int
    object_kind: str
    reference: str | None
    metadata: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class SettlementLine:
    """One money movement in a processor's daily settlement report (batch reconciliation)."""

    reference: str
    kind: str  # charge | refund
    amount_cents: int
    account_id: str
    settled_on: str


class Processor(abc.ABC):
    """A payment processor adapter. Subclasses set ``alias`` and ``capabilities``."""

    alias: ClassVar[str] = ""
    capabilities: ClassVar[Capabilities] = Capabilities()

    @abc.abstractmethod
    def checkout_create(self, request: PaymentRequest) -> PaymentResult:
        """Create a processor-hosted payment page for ``request``; returns PENDING with
        ``redirect_url`` (or ``client_secret`` for an embedded iframe). Nothing is charged."""

    @abc.abstractmethod
    def charge(self, request: PaymentRequest, *, reference: str | None = None,
               on_reference: Callable[[str], None] | None = None) -> PaymentResult:
        """Charge ``request.token``. ``reference``: a payment created by an earlier call for the
        same attempt, to resume instead of creating another. ``on_reference(ref)`` is called as
        soon as the processor has named the payment, before any money moves (a recovery point
        for processors without reliable idempotency)."""

    @abc.abstractmethod
    def payment_retrieve(self, *, reference: str, account_id: str) -> PaymentResult:
        """The payment's current state, from the processor (never from an event payload, R34)."""

    @abc.abstractmethod
    def payment_find(self, *, idempotency_key: str, account_id: str) -> PaymentResult:
        """The payment created with ``idempotency_key``, or NOT_FOUND (crash recovery)."""

    @abc.abstractmethod
    def payment_cancel(self, *, reference: str, account_id: str) -> PaymentResult:
        """Cancel a payment nobody paid yet; returns its state (SUCCEEDED if it was paid)."""

    @abc.abstractmethod
    def refund(self, request: RefundRequest) -> RefundResult:
        """Refund or void part or all of a payment, once per idempotency key."""

    @abc.abstractmethod
    def parse_webhook(self, *, payload: bytes, headers: Mapping[str, str]) -> ProcessorEvent:
        """Verify the signature over the raw ``payload`` and return the event, or raise
        WebhookRejected (R32). Never trusts a re-serialized body."""

    def customer_create(self, *, account_id: str, metadata: Mapping[str, str]) -> str:
        """Create a customer to keep cards on; returns its id."""
        raise ProcessorRejected(f"{self.alias} does not store cards")

    def card_save(self, *, token: str, customer: str, account_id: str) -> tuple[str, CardDetails]:
        """Make ``token`` reusable for ``customer``; returns (reusable token, card details)."""
        raise ProcessorRejected(f"{self.alias} does not store cards")

    def card_remove(self, *, token: str, account_id: str) -> None:
        """Detach a stored card at the processor."""
        raise ProcessorRejected(f"{self.alias} does not store cards")

    def settlement_report(self, *, account_id: str, start: datetime, end: datetime) -> list[SettlementLine]:
        """Charges and refunds the processor recorded for ``account_id`` in ``[start, end)`` (UTC
        instants; batch reconciliation passes the batch's business day in the clinic's zone, so
        an evening payment is not reported on the next UTC day)."""
        return []

    def check(self) -> list[str]:
        """Configuration problems, in words for an operator (empty when ready)."""
        return []


def check_metadata(metadata: Mapping[str, Any]) -> dict[str, str]:
    """Return ``metadata`` if it holds only allowed opaque ids (R6); raise ProcessorRejected."""
    unknown = set(metadata) - METADATA_KEYS
    if unknown:
        raise ProcessorRejected(f"metadata keys not allowed for a processor: {sorted(unknown)}")
    out = {}
    for k, v in metadata.items():
        if not isinstance(v, str) or len(v) > 100 or _CPT_OR_ICD.search(v):
            raise ProcessorRejected(f"metadata {k} must be an opaque id")
        out[k] = v
    return out


def luhn_ok(digits: str) -> bool:
    """True for a Luhn-valid digit string (card numbers; used to scan for PANs, R1/R2)."""
    if not digits.isdigit():
        return False
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


_DIGIT_RUN = re.compile(r"(?<![0-9A-Za-z])\d{13,19}(?![0-9A-Za-z])")  # not inside a hex token


def find_pans(text: str) -> list[str]:
    """Luhn-valid 13-19 digit runs in ``text`` (R1 threshold: 0 in requests to our origin)."""
    return [m for m in _DIGIT_RUN.findall(text) if luhn_ok(m)]
