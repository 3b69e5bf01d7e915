"""Import reads: import records, claims flagged for staff review, balance notices due, and
the insurance coverages imported for a guarantor's patients.

Every read is a GetItem or a Query on the clinic's keys (no Scan): records by clinic on gsi1
``C#<c>#IMPORTS``, flagged claims on gsi1 ``C#<c>#IMPORTS#REVIEW``, notices due on gsi1
``C#<c>#NOTICE#DUE``, coverages in the guarantor's collection (``COV#``); what an index
returns is re-read by key where it must be current (SERVERLESS.md 2.9). Results are frozen
dataclasses; file names and review notes carry no values from the files but may name a file:
show them to staff only, never log them. A coverage's member id is PHI-adjacent: the same.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from chalicelib.core.errors import NotFound
from chalicelib.core.ids import require_id
from chalicelib.store import keys
from chalicelib.store.db import clinic_scoped
from chalicelib.store.models_imports import BalanceNoticeItem, CoverageItem, ImportClaimItem, ImportItem


@dataclass(frozen=True)
class ImportRecord:
    """One imported file: status (in_progress, imported, rejected, failed), counts, totals in
    cents, warnings, the error of a rejection, claim outcomes and the resume point."""

    sha256: str
    source: str
    file_format: str
    status: str
    created_at: str
    completed_at: str | None
    transactions: int
    claims: int
    service_lines: int
    insurance_paid_cents: int
    patient_responsibility_cents: int
    plb_cents: int
    charge_cents: int
    warnings: tuple[str, ...]
    error: dict[str, Any] | None
    outcomes: dict[str, int]
    next_ordinal: int
    payments: tuple[dict[str, Any], ...]
    plbs: tuple[dict[str, Any], ...]


def _plain(value: Any) -> dict[str, Any]:
    """A stored map (a PynamoDB MapAttribute or a plain dict) as a plain dict."""
    as_dict = getattr(value, "as_dict", None)
    return dict(as_dict()) if callable(as_dict) else dict(value)


def _record(item: ImportItem) -> ImportRecord:
    return ImportRecord(
        sha256=item.sha256, source=item.source, file_format=item.file_format, status=item.status,
        created_at=item.created_at.isoformat(),
        completed_at=item.completed_at.isoformat() if item.completed_at else None,
        transactions=int(item.transactions), claims=int(item.claims), service_lines=int(item.service_lines),
        insurance_paid_cents=int(item.insurance_paid_cents),
        patient_responsibility_cents=int(item.patient_responsibility_cents), plb_cents=int(item.plb_cents),
        charge_cents=int(item.charge_cents), warnings=tuple(item.warnings or ()),
        error=_plain(item.error) if item.error else None, outcomes=dict(item.outcomes or {}),
        next_ordinal=int(item.next_ordinal), payments=tuple(_plain(p) for p in item.payments or ()),
        plbs=tuple(_plain(p) for p in item.plbs or ()),
    )


@clinic_scoped
def import_get(*, clinic_id: str, sha256: str) -> ImportRecord:
    """The import record of the file with this SHA-256 (one consistent GetItem). Raises NotFound."""
    try:
        item = ImportItem.get(keys.clinic_pk(clinic_id), keys.import_sk(sha256), consistent_read=True)
    except ImportItem.DoesNotExist:
        raise NotFound("no import of this file") from None
    return _record(item)


@clinic_scoped
def imports_list(*, clinic_id: str, limit: int = 50) -> list[ImportRecord]:
    """The clinic's latest imports, newest first (one Query on gsi1)."""
    items = ImportItem.gsi1.query(keys.imports_gsi1pk(clinic_id), scan_index_forward=False, limit=limit)
    return [_record(it) for it in items if isinstance(it, ImportItem)]


@dataclass(frozen=True)
class ReviewClaim:
    """An imported claim staff should look at: which file and claim, what happened, why."""

    sha256_prefix: str
    ordinal: int
    outcome: str
    review: str
    guarantor_id: str | None
    encounter: str | None
    matched_by: str | None
    amounts: dict[str, int]


@clinic_scoped
def review_list(*, clinic_id: str, limit: int = 100) -> list[ReviewClaim]:
    """Claims flagged for review (unmatched, fuzzy match, denied, parked reversal, ...), newest
    import first (one Query on gsi1)."""
    out = []
    for item in ImportClaimItem.gsi1.query(keys.import_review_gsi1pk(clinic_id), scan_index_forward=False,
                                           limit=limit):
        if isinstance(item, ImportClaimItem) and item.review:
            out.append(ReviewClaim(sha256_prefix=item.pk.rsplit("#", 1)[-1][:16], ordinal=int(item.ordinal),
                                   outcome=item.outcome, review=item.review, guarantor_id=item.guarantor_id,
                                   encounter=item.encounter, matched_by=item.matched_by,
                                   amounts=dict(item.amounts)))
    return out


@dataclass(frozen=True)
class NoticeDue:
    """A guarantor whose patient balance grew: due since (UTC ISO), by how much, which entry."""

    guarantor_id: str
    due_at: str
    increase_cents: int
    entry_seq: int


@clinic_scoped
def notices_due(*, clinic_id: str, before: str | None = None, limit: int = 500) -> list[NoticeDue]:
    """Guarantors due a balance notice, oldest first, optionally only those due before the UTC
    ISO time ``before`` (one Query on gsi1; the sender re-reads each item by key before sending)."""
    condition = BalanceNoticeItem.gsi1sk < before if before else None
    return [
        NoticeDue(guarantor_id=item.guarantor_id, due_at=item.due_at.isoformat(),
                  increase_cents=int(item.increase_cents), entry_seq=int(item.entry_seq))
        for item in BalanceNoticeItem.gsi1.query(keys.notices_due_gsi1pk(clinic_id), condition, limit=limit)
        if isinstance(item, BalanceNoticeItem)
    ]


@dataclass(frozen=True)
class Coverage:
    """A patient's insurance coverage (from a FHIR Coverage; see ``CoverageItem``): payer name
    and reference, member id (PHI-adjacent: staff only, never logged; left out of ``repr``), the
    patient's relationship to the subscriber, ISO period dates, order (1 primary), status, the
    FHIR Coverage id and when it was last imported (UTC ISO)."""

    patient_id: str
    payer_name: str
    payer_ref: str
    member_id: str = field(repr=False)
    relationship: str | None
    period_start: str | None
    period_end: str | None
    order: int | None
    status: str
    coverage_id: str
    updated_at: str


@clinic_scoped
def coverages_list(*, clinic_id: str, guarantor_id: str) -> list[Coverage]:
    """The coverages of a guarantor's patients, by patient, then order (primary first, unordered
    last), then period start (one consistent Query on the guarantor's ``COV#`` items; no Scan).
    An unknown guarantor has none. Raises InvalidInput for a malformed guarantor id."""
    pk = keys.guarantor_pk(clinic_id, require_id(guarantor_id, field="guarantor_id"))
    found = [
        Coverage(patient_id=it.patient_id, payer_name=it.payer_name, payer_ref=it.payer_ref or "",
                 member_id=it.member_id or "", relationship=it.relationship, period_start=it.period_start,
                 period_end=it.period_end, order=int(it.order) if it.order is not None else None,
                 status=it.status, coverage_id=it.coverage_id or "", updated_at=it.updated_at.isoformat())
        for it in CoverageItem.query(pk, CoverageItem.sk.startswith(keys.COVERAGE_PREFIX), consistent_read=True)
    ]
    return sorted(found, key=lambda c: (c.patient_id, c.order is None, c.order or 0, c.period_start or ""))
