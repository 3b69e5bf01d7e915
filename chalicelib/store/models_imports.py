"""Models of imports (``chalicelib.imports``): import records, claim markers, the claim and
remittance indexes used for matching, external-id references, and the balance-notice marker.

Discriminator values are permanent. No attribute is named ``kind`` or ``count`` (the base item
and PynamoDB use them). Money is integer cents; times are aware UTC datetimes. Keys are built in
:mod:`chalicelib.store.keys` (``# --- imports ---``); every one starts with ``C#<clinic>``.

| item | pk | sk | gsi1 |
|---|---|---|---|
| ImportItem | ``C#<c>`` | ``IMP#<sha256>`` | ``C#<c>#IMPORTS`` / ``<created_at>#<sha256>`` |
| ImportClaimItem | ``C#<c>#IMP#<sha256>`` | ``CLM#<ordinal>`` | ``C#<c>#IMPORTS#REVIEW`` when flagged |
| ClaimRefItem | ``C#<c>#CLAIMS`` | ``<claim id>#<patient>#<g>#<encounter>`` | ``C#<c>#VISIT#<patient+day>`` |
| RemitRefItem | ``C#<c>#REMITS`` | ``<CLP07>#<CLP01>#<remit key>`` | |
| ExternalRefItem | ``C#<c>`` | ``UQ#GREF#<digest>`` / ``UQ#PREF#<digest>`` | |
| BalanceNoticeItem | ``C#<c>#G#<g>`` | ``NOTICE#BALANCE`` | ``C#<c>#NOTICE#DUE`` / ``<due_at>#<g>`` |
| CoverageItem | ``C#<c>#G#<g>`` | ``COV#<digest of patient, payer, member id>`` | |
"""

from __future__ import annotations

from typing import Any

from pynamodb.attributes import (
    BooleanAttribute,
    ListAttribute,
    MapAttribute,
    NumberAttribute,
    UnicodeAttribute,
    UTCDateTimeAttribute,
)

from chalicelib.store.attributes import CentsAttribute, CentsMapAttribute
from chalicelib.store.models import Item


class ImportItem(Item, discriminator="import"):
    """One imported file, claimed by its SHA-256 with a conditional put (DESIGN.md rule 3).

    ``status``: ``in_progress`` (claimed; claims being written), ``imported``, ``rejected``
    (``error`` holds segment, segment id and message; nothing else was written) or ``failed``
    (an unexpected error; the S3 handler re-raises so Lambda retries, R8). ``next_ordinal`` is
    the resume point: claims before it are done (R3). ``outcomes`` counts claims by outcome
    (posted, held, parked, not_posted, already_posted, reversed). ``source`` is the file name or
    S3 key, shown to staff only (it may name a patient: never log it).
    """

    sha256 = UnicodeAttribute()
    source = UnicodeAttribute()
    file_format = UnicodeAttribute()
    status = UnicodeAttribute()
    strict = BooleanAttribute(default=False)
    created_at = UTCDateTimeAttribute()
    updated_at = UTCDateTimeAttribute()
    completed_at = UTCDateTimeAttribute(null=True)
    attempts = NumberAttribute(default=1)
    transactions = NumberAttribute(default=0)
    claims = NumberAttribute(default=0)
    service_lines = NumberAttribute(default=0)
    insurance_paid_cents = CentsAttribute(default=0)
    patient_responsibility_cents = CentsAttribute(default=0)
    plb_cents = CentsAttribute(default=0)
    charge_cents = CentsAttribute(default=0)
    next_ordinal = NumberAttribute(default=1)
    outcomes = CentsMapAttribute(default=dict)
    warnings = ListAttribute[str](of=UnicodeAttribute, default=list)  # type: ignore[arg-type]
    warnings_total = NumberAttribute(default=0)
    error = MapAttribute[str, Any](null=True)
    payments = ListAttribute[MapAttribute[str, Any]](of=MapAttribute, default=list)
    plbs = ListAttribute[MapAttribute[str, Any]](of=MapAttribute, default=list)


class ImportClaimItem(Item, discriminator="import_claim"):
    """What happened to one claim (or unit) of an imported file; written once, in the same
    transaction as its ledger entry when it posts one. ``outcome`` as in ImportItem.outcomes;
    ``review`` names why staff should look (unmatched, fuzzy match, denied, unbalanced, ...);
    ``amounts`` in cents (charge, paid, patient)."""

    ordinal = NumberAttribute()
    outcome = UnicodeAttribute()
    review = UnicodeAttribute(null=True)
    reason = UnicodeAttribute(null=True)
    guarantor_id = UnicodeAttribute(null=True)
    entry_seq = NumberAttribute(null=True)
    encounter = UnicodeAttribute(null=True)
    matched_by = UnicodeAttribute(null=True)
    amounts = CentsMapAttribute(default=dict)
    created_at = UTCDateTimeAttribute()


class ClaimRefItem(Item, discriminator="claim_ref"):
    """A claim whose charges are on the ledger (from an 837, a FHIR Claim, or an unmatched
    835 claim), indexed for matching remittances: by claim id (sk) and by patient and day (gsi1).

    ``lines``: ``{line_id, number, control, code, revenue_code, modifiers, dos, charge_cents}``
    (``dropped``: true for a line an 837 replacement or void no longer bills; its charge is 0).
    ``charge_seqs``: the guarantor's ledger entries that charged this claim (the original and
    each 837 replacement, CLM05-3 = 7), so a void (CLM05-3 = 8) can reverse them all.
    """

    claim_id = UnicodeAttribute()
    guarantor_id = UnicodeAttribute()
    patient_id = UnicodeAttribute()
    encounter = UnicodeAttribute()
    charge_cents = CentsAttribute()
    date_from = UnicodeAttribute(null=True)
    patient_digest = UnicodeAttribute()
    origin = UnicodeAttribute()
    lines = ListAttribute[MapAttribute[str, Any]](of=MapAttribute, default=list)
    charge_seqs = ListAttribute[int](of=NumberAttribute, null=True)  # type: ignore[arg-type]


class RemitRefItem(Item, discriminator="remit_ref"):
    """A posted remittance claim: which entry of which guarantor posted it, for a later
    reversal (CLP02=22) to find and take back exactly that entry. ``reversed_by`` is set, by a
    conditional update, to the remit key of the reversal that claims it."""

    guarantor_id = UnicodeAttribute()
    entry_seq = NumberAttribute()
    status = UnicodeAttribute()
    charge_cents = CentsAttribute()
    paid_cents = CentsAttribute()
    patient_cents = CentsAttribute()
    reversed_by = UnicodeAttribute(null=True)
    import_sha256 = UnicodeAttribute()
    ordinal = NumberAttribute()


class ExternalRefItem(Item, discriminator="external_ref"):
    """A person known by an external key (member id and name, FHIR id, CSV id), keyed by its
    digest so the same person from an 837, an 835, FHIR or CSV is one guarantor (and patient).

    Put with attribute_not_exists before the guarantor or patient is created; ``ready`` turns
    true once they exist, so a crash in between converges on the same ids."""

    guarantor_id = UnicodeAttribute()
    patient_id = UnicodeAttribute(null=True)
    ready = BooleanAttribute(default=False)


class BalanceNoticeItem(Item, discriminator="balance_notice"):
    """A guarantor whose patient balance grew and who is due a balance notification.

    Written in the posting transaction that grew the balance (entry_post's ``also=``); the
    notifications sender finds due ones with a Query on gsi1 ``C#<c>#NOTICE#DUE`` (no Scan),
    sends, and removes the gsi1 keys. ``increase_cents``: the growth of the entry ``entry_seq``.
    """

    guarantor_id = UnicodeAttribute()
    due_at = UTCDateTimeAttribute()
    entry_seq = NumberAttribute()
    increase_cents = CentsAttribute()
    source = UnicodeAttribute()


class CoverageItem(Item, discriminator="coverage"):
    """A patient's insurance coverage (FHIR R4 Coverage, DATA-FORMATS.md §4), in the collection
    of the guarantor of the patient it covers (``beneficiary``), so one Query lists a family's.

    ``payer_name``: the payor Organization's name (else the reference's display); ``payer_ref``:
    the payor reference (``Organization/2``), ``""`` when it only has a display. ``member_id``:
    Coverage.subscriberId, else the identifier typed MB, else the first identifier: PHI-adjacent,
    shown to staff only, never logged nor put in a key. ``relationship``: the patient's
    relationship to the subscriber (subscriber-relationship code: self, child, spouse, parent,
    common, other, injured). ``period_start``/``period_end``: ISO dates or None; ``order``:
    Coverage.order (1 primary) or None; ``status``: active, cancelled, draft, entered-in-error.
    ``coverage_id``: the FHIR resource id; ``import_sha256``: the file that wrote it last (a
    later import of the same coverage overwrites it; the sort key makes it one item).
    """

    patient_id = UnicodeAttribute()
    payer_name = UnicodeAttribute()
    payer_ref = UnicodeAttribute(default="")
    member_id = UnicodeAttribute(default="")
    relationship = UnicodeAttribute(null=True)
    period_start = UnicodeAttribute(null=True)
    period_end = UnicodeAttribute(null=True)
    order = NumberAttribute(null=True)
    status = UnicodeAttribute()
    coverage_id = UnicodeAttribute(default="")
    import_sha256 = UnicodeAttribute()
    updated_at = UTCDateTimeAttribute()
