"""Payment reads: attempts, receipts (per guarantor, per batch), batches, stored cards.

Selectors return frozen dataclasses; none of them carries a card number (there is none to
carry) or PHI beyond ids. Receipts of a batch come from one Query of gsi3; a batch's totals
are those computed at close (``batch_close``), or computed here by the same Query while open.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass

from chalicelib.core import clock
from chalicelib.core.ids import require_id
from chalicelib.payments.errors import UnknownAttempt, UnknownBatch, UnknownReceipt
from chalicelib.store import keys
from chalicelib.store.db import clinic_scoped
from chalicelib.store.models_payments import (
    AttemptItem,
    BatchItem,
    CardItem,
    ReceiptItem,
    RefundItem,
    StaffOpenBatchItem,
)

PAYMENT = "patient_payment"
REFUND = "patient_refund"


@dataclass(frozen=True)
class AttemptView:
    """What the guarantor's browser learns about an attempt: status, amount (cents), where to go
    next (``redirect_url`` to the processor's page), the receipt when posted, and a message safe
    to show. ``card_last4`` is at most the last 4 digits (R2)."""

    attempt_key: str
    status: str
    amount_cents: int
    method: str
    redirect_url: str | None
    client_secret: str | None
    receipt_id: str | None
    processor_reference: str | None
    card_brand: str | None
    card_last4: str | None
    decline_code: str | None
    message: str


@dataclass(frozen=True)
class ReceiptView:
    """A receipt (REFERENCE-PORTAL.md E5/E6): type, status, cents, method, batch, dates."""

    receipt_id: str
    guarantor_id: str
    receipt_type: str
    status: str
    amount_cents: int
    method: str
    channel: str
    batch_id: str
    business_date: str
    original_date: str | None
    posted_at: str
    processor_reference: str | None
    card_brand: str | None
    card_last4: str | None
    applied: dict[str, int]
    escrow_cents: int
    refunded_cents: int
    original_receipt_id: str | None
    user_id: str


@dataclass(frozen=True)
class BatchTotals:
    """Members of a batch by Query: counts, cents received and refunded, and a checksum."""

    receipt_count: int
    unsuccessful_count: int
    payments_cents: int
    refunds_cents: int
    checksum: str


@dataclass(frozen=True)
class BatchView:
    batch_id: str
    batch_kind: str
    business_date: str
    description: str
    user_id: str
    status: str
    archived: bool
    opened_at: str
    closed_at: str | None
    totals: BatchTotals | None


@dataclass(frozen=True)
class CardView:
    """A stored card as shown: brand, last 4, expiry, active (expired cards are inactive)."""

    card_id: str
    brand: str
    last4: str
    exp_month: int
    exp_year: int
    active: bool


@dataclass(frozen=True)
class RefundView:
    refund_key: str
    receipt_id: str
    status: str
    amount_cents: int
    void: bool
    refund_receipt_id: str | None
    message: str


def attempt_view(item: AttemptItem) -> AttemptView:
    return AttemptView(
        attempt_key=item.attempt_key, status=item.status, amount_cents=int(item.amount_cents),
        method=item.method, redirect_url=item.redirect_url, client_secret=item.client_secret,
        receipt_id=item.receipt_id, processor_reference=item.processor_reference,
        card_brand=item.card_brand, card_last4=item.card_last4, decline_code=item.decline_code,
        message=item.message or "",
    )


def receipt_view(item: ReceiptItem) -> ReceiptView:
    return ReceiptView(
        receipt_id=item.receipt_id, guarantor_id=item.guarantor_id, receipt_type=item.receipt_type,
        status=item.status, amount_cents=int(item.amount_cents), method=item.method,
        channel=item.channel, batch_id=item.batch_id, business_date=item.business_date,
        original_date=item.original_date, posted_at=item.posted_at.isoformat(),
        processor_reference=item.processor_reference, card_brand=item.card_brand,
        card_last4=item.card_last4, applied=dict(item.applied), escrow_cents=int(item.escrow_cents),
        refunded_cents=int(item.refunded_cents), original_receipt_id=item.original_receipt_id,
        user_id=item.user_id,
    )


def batch_view(item: BatchItem, totals: BatchTotals | None = None) -> BatchView:
    if totals is None and item.checksum is not None:
        totals = BatchTotals(int(item.receipt_count or 0), int(item.unsuccessful_count or 0),
                             int(item.payments_cents or 0), int(item.refunds_cents or 0), item.checksum)
    return BatchView(
        batch_id=item.batch_id, batch_kind=item.batch_kind, business_date=item.business_date,
        description=item.description, user_id=item.user_id, status=item.status,
        archived=bool(item.archived), opened_at=item.opened_at.isoformat(),
        closed_at=item.closed_at.isoformat() if item.closed_at else None, totals=totals,
    )


def card_view(item: CardItem) -> CardView:
    now = clock.now()
    expired = (int(item.exp_year), int(item.exp_month)) < (now.year, now.month)
    return CardView(item.card_id, item.brand, item.last4, int(item.exp_month), int(item.exp_year),
                    bool(item.active) and not expired)


def refund_view(item: RefundItem) -> RefundView:
    return RefundView(item.refund_key, item.receipt_id, item.status, int(item.amount_cents),
                      bool(item.void), item.refund_receipt_id, item.message or "")


def totals_of(receipts: Iterable[ReceiptItem]) -> BatchTotals:
    """Count, sums and a checksum (SHA-256 of sorted ``id:type:cents``) of batch members (R36)."""
    members = sorted(receipts, key=lambda r: r.receipt_id)
    paid = [r for r in members if r.receipt_type == PAYMENT and r.status != "unsuccessful"]
    digest = hashlib.sha256("\n".join(f"{r.receipt_id}:{r.receipt_type}:{int(r.amount_cents)}"
                                      for r in members).encode()).hexdigest()
    return BatchTotals(
        receipt_count=len(members),
        unsuccessful_count=sum(1 for r in members if r.status == "unsuccessful"),
        payments_cents=sum(int(r.amount_cents) for r in paid),
        refunds_cents=sum(int(r.amount_cents) for r in members if r.receipt_type == REFUND),
        checksum=digest,
    )


@clinic_scoped
def attempt_get(*, clinic_id: str, guarantor_id: str, attempt_key: str) -> AttemptView:
    """One attempt (consistent read). Raises UnknownAttempt."""
    pk = keys.guarantor_pk(clinic_id, require_id(guarantor_id, field="guarantor_id"))
    try:
        item = AttemptItem.get(pk, keys.attempt_sk(require_id(attempt_key, field="attempt_key")),
                               consistent_read=True)
    except AttemptItem.DoesNotExist:
        raise UnknownAttempt(f"payment attempt {attempt_key} not found") from None
    return attempt_view(item)


@clinic_scoped
def receipts_list(*, clinic_id: str, guarantor_id: str) -> list[ReceiptView]:
    """The guarantor's receipts, newest first (REFERENCE-PORTAL.md E5): one Query."""
    pk = keys.guarantor_pk(clinic_id, require_id(guarantor_id, field="guarantor_id"))
    items = ReceiptItem.query(pk, ReceiptItem.sk.startswith(keys.RECEIPT_PREFIX))
    return sorted((receipt_view(r) for r in items if isinstance(r, ReceiptItem)),
                  key=lambda r: r.posted_at, reverse=True)


@clinic_scoped
def receipt_get(*, clinic_id: str, guarantor_id: str, receipt_id: str) -> ReceiptView:
    """One receipt. Raises UnknownReceipt."""
    pk = keys.guarantor_pk(clinic_id, require_id(guarantor_id, field="guarantor_id"))
    try:
        item = ReceiptItem.get(pk, keys.receipt_sk(require_id(receipt_id, field="receipt_id")),
                               consistent_read=True)
    except ReceiptItem.DoesNotExist:
        raise UnknownReceipt(f"receipt {receipt_id} not found") from None
    return receipt_view(item)


def batch_members(clinic_id: str, batch_id: str) -> list[ReceiptItem]:
    """Every receipt of a batch: one paginated Query of gsi3 (eventually consistent)."""
    return [r for r in ReceiptItem.gsi3.query(keys.batch_receipts_gsi3pk(clinic_id, batch_id))
            if isinstance(r, ReceiptItem)]


@clinic_scoped
def batch_receipts(*, clinic_id: str, batch_id: str) -> list[ReceiptView]:
    """The receipts of one batch, in posting order."""
    require_id(batch_id, field="batch_id")
    return [receipt_view(r) for r in batch_members(clinic_id, batch_id)]


@clinic_scoped
def batch_get(*, clinic_id: str, batch_id: str) -> BatchView:
    """A batch with its totals: stored at close, computed by Query while open. Raises UnknownBatch."""
    try:
        item = BatchItem.get(keys.clinic_pk(clinic_id), keys.batch_sk(require_id(batch_id, field="batch_id")),
                             consistent_read=True)
    except BatchItem.DoesNotExist:
        raise UnknownBatch(f"batch {batch_id} not found") from None
    if item.checksum is not None and item.status != "open":
        return batch_view(item)
    return batch_view(item, totals_of(batch_members(clinic_id, batch_id)))


@clinic_scoped
def batches_list(*, clinic_id: str, include_archived: bool = False) -> list[BatchView]:
    """The clinic's batches, newest business date first; archived ones only when asked."""
    items = BatchItem.query(keys.clinic_pk(clinic_id), BatchItem.sk.startswith(keys.BATCH_PREFIX))
    out = [batch_view(b) for b in items if isinstance(b, BatchItem) and (include_archived or not b.archived)]
    return sorted(out, key=lambda b: (b.business_date, b.opened_at), reverse=True)


@clinic_scoped
def staff_open_batch_id(*, clinic_id: str, user_id: str) -> str | None:
    """The id of the batch ``user_id`` has open, if any."""
    try:
        return StaffOpenBatchItem.get(keys.clinic_pk(clinic_id), keys.staff_open_batch_sk(user_id),
                                      consistent_read=True).batch_id
    except StaffOpenBatchItem.DoesNotExist:
        return None


@clinic_scoped
def stored_cards_list(*, clinic_id: str, guarantor_id: str, active_only: bool = True) -> list[CardView]:
    """The guarantor's stored cards (REFERENCE-PORTAL.md E1): only active, unexpired ones unless
    asked; shown as brand and last 4."""
    pk = keys.guarantor_pk(clinic_id, require_id(guarantor_id, field="guarantor_id"))
    views = [card_view(c) for c in CardItem.query(pk, CardItem.sk.startswith(keys.CARD_PREFIX))
             if isinstance(c, CardItem)]
    return [v for v in views if v.active or not active_only]


@clinic_scoped
def refund_get(*, clinic_id: str, guarantor_id: str, refund_key: str) -> RefundView:
    pk = keys.guarantor_pk(clinic_id, require_id(guarantor_id, field="guarantor_id"))
    try:
        return refund_view(RefundItem.get(pk, keys.refund_sk(refund_key), consistent_read=True))
    except RefundItem.DoesNotExist:
        raise UnknownReceipt(f"refund {refund_key} not found") from None
