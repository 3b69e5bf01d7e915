"""Models of card payments (``chalicelib.payments``): attempts and their history, receipts,
reference batches, refunds, stored cards, the webhook inbox, payment holds and the clinic's
processor set-up. Discriminator values are permanent (never rename).

Card data never reaches these items (SECURITY.md R2): a card is a processor token (``tok_``,
``pm_``), brand, last 4 and expiry. Money is integer cents; times are aware UTC datetimes;
business dates are the clinic's local ``YYYY-MM-DD``.
"""

from __future__ import annotations

from typing import Any

from pynamodb.attributes import (
    BooleanAttribute,
    MapAttribute,
    NumberAttribute,
    UnicodeAttribute,
    UTCDateTimeAttribute,
)

from chalicelib.store import schema
from chalicelib.store.attributes import CentsAttribute, CentsMapAttribute
from chalicelib.store.models import Item


class PaymentsConfigItem(Item, discriminator="payments_config"):
    """A clinic's processor set-up: ``pk=C#<c>``, ``sk=PAYCFG``.

    ``account_id`` is the clinic's merchant account at the processor (a Stripe connected
    account ``acct_...``); ``facility_accounts`` / ``provider_accounts`` map a facility or
    provider id to its own merchant account for split payments (PRODUCT.md §5).
    """

    processor = UnicodeAttribute()
    account_id = UnicodeAttribute()
    facility_accounts = MapAttribute[str, Any](default=dict)
    provider_accounts = MapAttribute[str, Any](default=dict)
    updated_at = UTCDateTimeAttribute()


class AttemptItem(Item, discriminator="payment_attempt"):
    """A payment attempt: ``pk=C#<c>#G#<g>``, ``sk=PA#<attempt key>`` (DESIGN.md rule 4).

    Written by a conditional put (phase 1), claimed by the created -> processing transition
    (``lease_until`` bounds a crashed driver), finished by one posting transaction (phase 3).
    While not terminal it is in gsi1 ``C#<c>#ATTEMPTS#PENDING`` for the completer.
    """

    attempt_key = UnicodeAttribute()
    guarantor_id = UnicodeAttribute()
    status = UnicodeAttribute()
    fingerprint = UnicodeAttribute()
    amount_cents = CentsAttribute()
    amount_choice = UnicodeAttribute()
    amount_due_cents = CentsAttribute(default=0)
    method = UnicodeAttribute(default="card")
    channel = UnicodeAttribute(default="online")
    flow = UnicodeAttribute(default="hosted")  # hosted page, or a token charged by us
    processor = UnicodeAttribute()
    account_id = UnicodeAttribute()
    group_id = UnicodeAttribute(null=True)
    processor_reference = UnicodeAttribute(null=True)
    redirect_url = UnicodeAttribute(null=True)
    client_secret = UnicodeAttribute(null=True)
    payment_token = UnicodeAttribute(null=True)
    card_id = UnicodeAttribute(null=True)
    store_card = BooleanAttribute(default=False)
    dunning_reset = BooleanAttribute(default=False)
    held = BooleanAttribute(default=False)
    batch_id = UnicodeAttribute(null=True)
    user_id = UnicodeAttribute(null=True)
    split_group = UnicodeAttribute(null=True)
    part_key = UnicodeAttribute(null=True)
    receipt_id = UnicodeAttribute(null=True)
    card_brand = UnicodeAttribute(null=True)
    card_last4 = UnicodeAttribute(null=True)
    decline_code = UnicodeAttribute(null=True)
    message = UnicodeAttribute(null=True)
    business_date = UnicodeAttribute()
    lease_until = UTCDateTimeAttribute(null=True)
    drives = NumberAttribute(default=0)
    created_at = UTCDateTimeAttribute()
    updated_at = UTCDateTimeAttribute()


class AttemptHistoryItem(Item, discriminator="payment_attempt_history"):
    """One transition of an attempt (old -> new, why), put in the transition's transaction."""

    attempt_key = UnicodeAttribute()
    old = UnicodeAttribute()
    new = UnicodeAttribute()
    reason = UnicodeAttribute()
    at = UTCDateTimeAttribute()


class PaymentHoldItem(Item, discriminator="payment_holds"):
    """Amounts held by in-flight attempts of one guarantor: ``sk=PAYHOLD``.

    ``holds`` maps attempt key -> ``{"c": cents, "u": epoch seconds until}``. A claim adds its
    key under ``rev`` (compare-and-set); the attempt's result transaction removes it and bumps
    ``rev``. Available to pay = Current Balance − live holds, so two tabs cannot both pay the
    same balance (SECURITY.md R31, T2) while distinct partial payments still can.
    """

    holds = MapAttribute[str, Any](default=dict)
    rev = NumberAttribute(default=0)


class ReceiptItem(Item, discriminator="receipt"):
    """Money received or refunded: ``pk=C#<c>#G#<g>``, ``sk=R#<receipt id>``.

    ``receipt_type`` is ``patient_payment`` or ``patient_refund`` (REFERENCE-PORTAL.md E2);
    ``status`` paid / unsuccessful (a declined attempt, amount 0, E5) / refunded /
    partially_refunded / voided. In gsi3 ``C#<c>#B#<batch>`` / ``<posted_at>#<id>`` (E3).
    ``applied`` maps service line -> cents applied by this receipt; ``escrow_cents`` is the
    rest. ``refund_reserved_cents`` and ``refunded_cents`` move under ``rev`` (R38).
    """

    receipt_id = UnicodeAttribute()
    guarantor_id = UnicodeAttribute()
    receipt_type = UnicodeAttribute()
    status = UnicodeAttribute()
    amount_cents = CentsAttribute()
    method = UnicodeAttribute()
    channel = UnicodeAttribute()
    batch_id = UnicodeAttribute()
    business_date = UnicodeAttribute()
    original_date = UnicodeAttribute(null=True)
    posted_at = UTCDateTimeAttribute()
    user_id = UnicodeAttribute()
    attempt_key = UnicodeAttribute(null=True)
    processor = UnicodeAttribute(null=True)
    processor_reference = UnicodeAttribute(null=True)
    card_brand = UnicodeAttribute(null=True)
    card_last4 = UnicodeAttribute(null=True)
    check_number = UnicodeAttribute(null=True)
    entry_seq = NumberAttribute(null=True)
    applied = CentsMapAttribute(default=dict)
    escrow_cents = CentsAttribute(default=0)
    copay_cents = CentsAttribute(default=0)
    original_receipt_id = UnicodeAttribute(null=True)
    refund_key = UnicodeAttribute(null=True)
    refund_reserved_cents = CentsAttribute(default=0)
    refunded_cents = CentsAttribute(default=0)
    email_requested = BooleanAttribute(default=False)
    part_key = UnicodeAttribute(null=True)
    rev = NumberAttribute(default=0)


class RefundItem(Item, discriminator="refund"):
    """A refund request: ``sk=RF#<refund key>`` (its own idempotency key, R38), three phases
    like a payment: reserved on the receipt, processor call, one posting transaction."""

    refund_key = UnicodeAttribute()
    receipt_id = UnicodeAttribute()
    status = UnicodeAttribute()
    fingerprint = UnicodeAttribute()
    amount_cents = CentsAttribute()
    void = BooleanAttribute(default=False)
    reason = UnicodeAttribute()
    user_id = UnicodeAttribute()
    processor_reference = UnicodeAttribute(null=True)
    refund_receipt_id = UnicodeAttribute(null=True)
    message = UnicodeAttribute(null=True)
    created_at = UTCDateTimeAttribute()
    updated_at = UTCDateTimeAttribute()


class CardItem(Item, discriminator="stored_card"):
    """A stored card (REFERENCE-PORTAL.md E1): the processor's token, brand, last 4, expiry and
    an active flag. Never a card number or CVV (SECURITY.md R2). Cards cannot be edited."""

    card_id = UnicodeAttribute()
    processor = UnicodeAttribute()
    account_id = UnicodeAttribute()
    token = UnicodeAttribute()
    customer = UnicodeAttribute(null=True)
    brand = UnicodeAttribute()
    last4 = UnicodeAttribute()
    exp_month = NumberAttribute()
    exp_year = NumberAttribute()
    active = BooleanAttribute(default=True)
    created_at = UTCDateTimeAttribute()
    removed_at = UTCDateTimeAttribute(null=True)


class ProcessorCustomerItem(Item, discriminator="processor_customer"):
    """The guarantor's customer id at one processor account (cards attach to it)."""

    customer = UnicodeAttribute()


class BatchItem(Item, discriminator="reference_batch"):
    """A reference batch (REFERENCE-PORTAL.md E3, J4) in the clinic collection.

    The day's online batch is ``B#<date>#online`` (opened once by conditional put); a staff
    batch is ``B#<id>``. Totals are computed at close by one Query of gsi3 and stored with a
    checksum of the member receipts (R36); nothing is added to the item per payment.
    """

    batch_id = UnicodeAttribute()
    batch_kind = UnicodeAttribute()  # online | staff
    business_date = UnicodeAttribute()
    description = UnicodeAttribute()
    user_id = UnicodeAttribute()
    status = UnicodeAttribute()
    archived = BooleanAttribute(default=False)
    opened_at = UTCDateTimeAttribute()
    closed_at = UTCDateTimeAttribute(null=True)
    closed_by = UnicodeAttribute(null=True)
    receipt_count = NumberAttribute(null=True)
    unsuccessful_count = NumberAttribute(null=True)
    payments_cents = CentsAttribute(null=True)
    refunds_cents = CentsAttribute(null=True)
    checksum = UnicodeAttribute(null=True)
    rev = NumberAttribute(default=0)


class StaffOpenBatchItem(Item, discriminator="staff_open_batch"):
    """``sk=UB#<user>``: the batch this staff user has open (one at a time); ``is_open`` turns
    false when that batch closes, and the user may then open another."""

    batch_id = UnicodeAttribute()
    is_open = BooleanAttribute(default=True)


class ProcessorEventItem(Item, discriminator="processor_event"):
    """The webhook inbox: ``pk=C#<c>#EVT#<processor>#<event id>``, ``sk=EVT`` (SERVERLESS.md 2.7).

    Put with attribute_not_exists once per event id; ``status`` received -> handling ->
    handled | ignored | unmatched | failed. Holds ids and statuses only (no card data, no PHI).
    """

    processor = UnicodeAttribute()
    event_id = UnicodeAttribute()
    event_type = UnicodeAttribute()
    account_id = UnicodeAttribute(null=True)
    reference = UnicodeAttribute(null=True)
    object_kind = UnicodeAttribute()
    metadata = MapAttribute[str, Any](default=dict)
    status = UnicodeAttribute()
    error = UnicodeAttribute(null=True)
    received_at = UTCDateTimeAttribute()
    lease_until = UTCDateTimeAttribute(null=True)
    handled_at = UTCDateTimeAttribute(null=True)
    expires_at_epoch = NumberAttribute(attr_name=schema.TTL)
