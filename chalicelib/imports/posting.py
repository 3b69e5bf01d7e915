"""Posting one imported claim (writes): exactly one ledger entry per claim, or none, and always
exactly one claim marker.

Charges (837 CLM, FHIR Claim): one ``CHARGE`` entry per claim creating its service lines
(``new_lines=``): per line ``ins_ar`` debit / ``revenue`` credit. The encounter number is CLM01
with the first date of service (CLM01 is often the patient's account number, the same on every
claim); source key ``claim:<encounter>:<total cents>`` in the guarantor's collection: the same
claim charged again (another file, a re-run) is AlreadyPosted and posts nothing, another claim
with the same CLM01 and day is held for review (its lines exist).

Corrections (837 CLM05-3, DATA-FORMATS.md §3): a replacement (7) of a charged claim posts one
``CHARGE`` entry of the per-line differences (lines re-billed at another amount, new lines,
lines no longer billed charged back to 0 and kept) and updates the claim index item in the
same transaction (:func:`_replace`); a void (8) reverses every entry that charged the claim
(``ledger.entry_reverse``, once each; :func:`_void`). The claim index item keeps those entries'
sequence numbers (``charge_seqs``).

Remittances (835 CLP, FHIR ExplanationOfBenefit): one ``REMITTANCE`` entry per claim: per
service line ``ins_cash`` (the payer's payment), ``ins_adj`` with kind ``<group>-<reason>``
(``CO-45``), ``pat_ar`` with kind deductible / coinsurance / copay / other (CAS group PR
reasons 1, 2, 3, others) and the balancing ``ins_ar`` credit; for a claim that matches no
submitted claim, also the charge lines (``ins_ar`` / ``revenue``) creating its visit from the
835 itself. CLP04 is spread over the lines in proportion to SVC03 and claim-level CAS in
proportion to SVC02 (``core.money.allocate``: exact cents, deterministic), so the entry
carries exactly ΣCLP04, every CAS amount and nothing else (DATA-FORMATS.md §2.4). Source key
``835:<digest>`` of the payment's trace (TRN03, TRN02, BPR02, BPR16) and the claim (its number in
the transaction, CLP01, CLP07, CLP02, CLP03, CLP04): the same remittance in another file
posts nothing twice. By CLP02 (§2.3):

- 1/2/3: posted; 19/20/21 (forwarded): posted except the PR amounts, which stay with insurance
  as pending secondary; 2/3/20/21 on a charged visit are netted against what the prior payer
  left (:func:`_secondary_lines`: OA*23 is not posted again, the patient ends owing the
  secondary's PR, a surplus goes to unapplied funds); 4 (denied) and unknown codes: no adjudication, flagged for review
  (an unmatched one still creates its visit); 22 (reversal): finds the original posting by
  CLP07 + CLP01 and equal negated CLP03/CLP04, claims it by a conditional update and calls
  ``ledger.entry_reverse``, which takes back exactly what the original posted; without an
  original it is parked (§2.5); 23 and 25: never posted.

Matching (PRODUCT.md §3): CLP01 to the submitted claim id (then a claim id CLP01 truncates),
narrowed by patient name and charge; REF*6R to the submitted line, then procedure +
modifiers + date, then procedure; else patient name + date of service + procedure through
the visit index (flagged "fuzzy match" for staff to confirm). No match: the visit is created
from the claim itself and flagged "unmatched".

The entry's transaction also writes (``entry_post``'s ``also=``) the claim marker, the
remittance index item (so a later reversal finds the entry), the claim index item of a
new visit, and, when the patient balance grows, the guarantor's balance-notice item.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from decimal import ROUND_CEILING, Decimal, InvalidOperation
from typing import Any

from pynamodb.exceptions import PutError, UpdateError

from chalicelib.core import clock
from chalicelib.core.errors import (
    AlreadyExists,
    AlreadyPosted,
    AlreadyReversed,
    ConditionFailed,
    InsufficientBalance,
    InvalidInput,
    LineInCollections,
    Unbalanced,
    UnknownEntry,
    UnknownServiceLine,
)
from chalicelib.core.money import allocate
from chalicelib.imports.errors import Warnings
from chalicelib.imports.fhir import CoverageUnit
from chalicelib.imports.model import (
    DENIED,
    FORWARDED,
    NOT_OUR_CLAIM,
    PATIENT_GROUP,
    PREDETERMINATION,
    PROCESSED,
    REVERSAL,
    Adjustment,
    NoteUnit,
    Person,
    PersonUnit,
    Provider,
    RemitClaim,
    RemitLine,
    Visit,
    VisitLine,
)
from chalicelib.imports.people import People, digest, has_name, name_key, normalize_id, person_key
from chalicelib.ledger import services as ledger
from chalicelib.ledger.accounts import Account, EntryCode, Line, ResponsibilityKind, part_key
from chalicelib.store import keys
from chalicelib.store.db import Tx, TxFailed
from chalicelib.store.models import PostingKeyItem, ServiceLineItem
from chalicelib.store.models_imports import (
    BalanceNoticeItem,
    ClaimRefItem,
    CoverageItem,
    ImportClaimItem,
    RemitRefItem,
)

MAX_LINES = 90  # a posting transaction holds up to 100 items; 7 are the entry's own and ours
MAX_CANDIDATES = 10  # submitted claims read per remitted claim id (or patient and day)
PR_KINDS = {"1": ResponsibilityKind.DEDUCTIBLE, "2": ResponsibilityKind.COINSURANCE, "3": ResponsibilityKind.COPAY}
_ENCOUNTER_CHARS = re.compile(r"[^A-Za-z0-9._-]")
REPLACEMENT, VOID = "7", "8"  # CLM05-3 claim frequency (DATA-FORMATS.md §3)
SECONDARY = frozenset({"2", "3", "20", "21"})  # CLP02: processed as secondary / tertiary (DATA-FORMATS.md §2.3)


@dataclass
class Outcome:
    """What happened to one claim: ``outcome`` (posted, held, parked, not_posted,
    already_posted, reversed), ``review`` (why staff should look, or None), the guarantor and
    entry it touched, how it was matched, and its amounts in cents."""

    outcome: str
    review: str | None = None
    reason: str | None = None
    guarantor_id: str | None = None
    entry_seq: int | None = None
    encounter: str | None = None
    matched_by: str | None = None
    amounts: dict[str, int] = field(default_factory=dict)


@dataclass
class Context:
    """One import run: clinic, the file's SHA-256, when the import started, the people
    resolver and the warnings of the write phase."""

    clinic_id: str
    sha256: str
    started_at: datetime
    people: People
    warnings: Warnings


@dataclass
class _Target:
    line_id: str
    svc: RemitLine | None
    weight_charge: int
    weight_paid: int
    charge_needed: int = 0
    new_item: ServiceLineItem | None = None


# --- keys and small helpers -------------------------------------------------------------------


def claim_key(claim_id: str) -> str:
    """The normalized claim id used as index key (upper-case letters and digits, ≤ 60)."""
    return normalize_id(claim_id)[:60] or "-"


def encounter_for(claim_id: str, suffix: str = "") -> str:
    """An encounter number from a claim id: safe id characters, ≤ 50, plus an optional suffix."""
    base = _ENCOUNTER_CHARS.sub("", claim_id).lstrip("._-")[:40] or "C"
    return f"{base}.{suffix}" if suffix else base


def remit_key(claim: RemitClaim) -> str:
    """The business key of a remittance claim (see the module docstring)."""
    if claim.source == "fhir":
        return f"eob:{digest(claim.patient_control)[:32]}"
    tx = claim.transaction
    fields = (tx.payer_trn_id, tx.trace, str(tx.amount_cents), tx.payment_date or "", str(claim.ordinal_in_transaction),
              claim.patient_control, claim.payer_claim_id, claim.status, str(claim.charge_cents), str(claim.paid_cents))
    return "835:" + hashlib.sha256("\x1f".join(fields).encode("utf-8")).hexdigest()[:32]


def _units(raw: str) -> int:
    try:
        value = Decimal(raw)
    except (InvalidOperation, ValueError):
        return 1
    if not value.is_finite() or value <= 0:
        return 1
    return max(1, int(value.to_integral_value(rounding=ROUND_CEILING)))


def _plain(value: object) -> dict[str, object]:
    """A stored map (PynamoDB MapAttribute or a plain dict) as a plain dict."""
    as_dict = getattr(value, "as_dict", None)
    return dict(as_dict()) if callable(as_dict) else dict(value)  # type: ignore[call-overload]


def _weights(values: list[int]) -> list[int]:
    return values if sum(values) > 0 else [1] * len(values)


def _split(total: int, weights: list[int]) -> list[int]:
    return allocate(total, _weights(weights)) if total else [0] * len(weights)


# --- markers ----------------------------------------------------------------------------------


def _marker(ctx: Context, ordinal: int, outcome: Outcome) -> ImportClaimItem:
    item = ImportClaimItem(
        keys.import_pk(ctx.clinic_id, ctx.sha256), keys.import_claim_sk(ordinal), ordinal=ordinal,
        outcome=outcome.outcome, review=outcome.review, reason=(outcome.reason or None) and outcome.reason[:300],
        guarantor_id=outcome.guarantor_id, entry_seq=outcome.entry_seq, encounter=outcome.encounter,
        matched_by=outcome.matched_by, amounts={k: v for k, v in outcome.amounts.items() if v},
        created_at=clock.now(),
    )
    if outcome.review:
        item.gsi1pk = keys.import_review_gsi1pk(ctx.clinic_id)
        item.gsi1sk = f"{ctx.started_at.isoformat()}#{ctx.sha256[:16]}#{ordinal:08d}"
    return item


def existing_outcome(ctx: Context, ordinal: int) -> Outcome | None:
    """The outcome recorded for claim ``ordinal`` of this file by an earlier run, or None."""
    try:
        item = ImportClaimItem.get(keys.import_pk(ctx.clinic_id, ctx.sha256), keys.import_claim_sk(ordinal),
                                   consistent_read=True)
    except ImportClaimItem.DoesNotExist:
        return None
    return Outcome(outcome=item.outcome, review=item.review, reason=item.reason, guarantor_id=item.guarantor_id,
                   entry_seq=int(item.entry_seq) if item.entry_seq is not None else None,
                   encounter=item.encounter, matched_by=item.matched_by, amounts=dict(item.amounts))


def record(ctx: Context, ordinal: int, outcome: Outcome) -> Outcome:
    """Write the marker of a claim that posts no entry; an earlier run's marker wins."""
    try:
        _marker(ctx, ordinal, outcome).save(condition=ImportClaimItem.pk.does_not_exist())
    except PutError as exc:
        if exc.cause_response_code != "ConditionalCheckFailedException":
            raise
        return existing_outcome(ctx, ordinal) or outcome
    return outcome


def _notice(ctx: Context, guarantor_id: str, seq: int, increase: int) -> BalanceNoticeItem:
    now = clock.now()
    return BalanceNoticeItem(
        keys.guarantor_pk(ctx.clinic_id, guarantor_id), keys.BALANCE_NOTICE, guarantor_id=guarantor_id,
        due_at=now, entry_seq=seq, increase_cents=increase, source="import",
        gsi1pk=keys.notices_due_gsi1pk(ctx.clinic_id), gsi1sk=f"{now.isoformat()}#{guarantor_id}",
    )


def _post(ctx: Context, ordinal: int, outcome: Outcome, *, code: EntryCode, lines: list[Line], source_key: str,
          meta: dict[str, str], new_lines: list[ServiceLineItem],
          extra: Callable[[Tx, int], None] | None) -> Outcome:
    """entry_post with the marker (and ``extra`` items) in its transaction; maps every
    business refusal to a held claim, and a repeat to the earlier run's outcome."""
    assert outcome.guarantor_id is not None

    def also(tx: Tx, seq: int) -> None:
        outcome.entry_seq = seq
        tx.put(_marker(ctx, ordinal, outcome), condition=ImportClaimItem.pk.does_not_exist())
        if extra is not None:
            extra(tx, seq)

    try:
        ledger.entry_post(clinic_id=ctx.clinic_id, guarantor_id=outcome.guarantor_id, code=code, lines=lines,
                          source_key=source_key, meta=meta, new_lines=new_lines, also=also)
    except AlreadyPosted:
        earlier = existing_outcome(ctx, ordinal)
        if earlier is not None:
            return earlier
        outcome.entry_seq = None
        return record(ctx, ordinal, Outcome("already_posted", review="already posted by an earlier import",
                                            guarantor_id=outcome.guarantor_id, encounter=outcome.encounter,
                                            matched_by=outcome.matched_by, amounts=outcome.amounts))
    except ConditionFailed as exc:
        earlier = existing_outcome(ctx, ordinal)
        if earlier is not None:
            return earlier
        outcome.entry_seq = None
        if any("#835:" in k or "#eob:" in k for k in exc.keys):  # its remittance index item exists
            return record(ctx, ordinal, Outcome("already_posted", review="already posted by an earlier import",
                                                guarantor_id=outcome.guarantor_id, amounts=outcome.amounts))
        return record(ctx, ordinal, Outcome("held", review="the visit was created by another import",
                                            guarantor_id=outcome.guarantor_id, amounts=outcome.amounts))
    except (InsufficientBalance, LineInCollections, AlreadyExists, UnknownServiceLine, InvalidInput,
            Unbalanced) as exc:
        outcome.entry_seq = None
        return record(ctx, ordinal, Outcome("held", review=f"not posted: {type(exc).__name__}", reason=str(exc),
                                            guarantor_id=outcome.guarantor_id, encounter=outcome.encounter,
                                            matched_by=outcome.matched_by, amounts=outcome.amounts))
    return outcome


def _service_line(ctx: Context, guarantor_id: str, encounter: str, number: int, patient_id: str, *, code: str,
                  modifiers: tuple[str, ...], units: int, dos: str, facility_id: str | None,
                  billing_id: str | None, rendering_id: str | None, referring_id: str | None,
                  description: str | None, responsibility_date: str | None = None) -> ServiceLineItem:
    line_id = keys.service_line_id(encounter, number)
    return ServiceLineItem(
        keys.guarantor_pk(ctx.clinic_id, guarantor_id), keys.line_sk(line_id), line_id=line_id,
        encounter_number=encounter, line_number=number, patient_id=patient_id, facility_id=facility_id,
        billing_provider_id=billing_id, rendering_provider_id=rendering_id, referring_provider_id=referring_id,
        date_of_service=dos, responsibility_date=responsibility_date, procedure_code=(code or "-")[:20].upper(),
        modifiers=[m[:4].upper() for m in modifiers[:4]], units=units, description=description,
        part=part_key(facility_id, rendering_id or billing_id, patient_id),
    )


def _ref_item(ctx: Context, claim_id: str, guarantor_id: str, patient_id: str, patient: Person, encounter: str,
              charge: int, date_from: str | None, origin: str, lines: list[dict[str, object]]) -> ClaimRefItem:
    patient_digest = digest(name_key(patient) if has_name(patient) else patient.external_key)
    day = date_from or next((str(ln["dos"]) for ln in lines if ln.get("dos")), None)
    return ClaimRefItem(
        keys.claim_refs_pk(ctx.clinic_id),
        keys.claim_ref_sk(claim_key(claim_id), patient_digest[:16], guarantor_id, encounter),
        claim_id=claim_id[:80], guarantor_id=guarantor_id, patient_id=patient_id, encounter=encounter,
        charge_cents=charge, date_from=day, patient_digest=patient_digest, origin=origin, lines=lines,
        gsi1pk=keys.visit_gsi1pk(ctx.clinic_id, digest(f"{name_key(patient)}|{day}")) if day else None,
        gsi1sk=encounter if day else None,
    )


# --- charges (837, FHIR Claim) ------------------------------------------------------------------


def post_visit(ctx: Context, visit: Visit) -> Outcome:
    """Charge one claim: create guarantor, patient, providers as needed, its service lines and
    one CHARGE entry; returns the outcome (posted, held, already_posted)."""
    amounts = {"charge": visit.charge_cents}
    reviews: list[str] = []
    if visit.source == "837" and visit.frequency in (REPLACEMENT, VOID):
        found = _original_visit(ctx, visit)
        if isinstance(found, str):
            return record(ctx, visit.ordinal, Outcome("held", review=found, amounts=amounts))
        if visit.frequency == VOID:
            return _void(ctx, visit, found)
        if found is not None:
            return _replace(ctx, visit, found)
        reviews.append("replacement (CLM05-3 = 7) of a claim never imported: posted as a new claim")
    people = ctx.people
    if visit.subscriber is None:
        known = people.known_patient(visit.patient_ref) if visit.patient_ref else None
        if known is None:
            return record(ctx, visit.ordinal, Outcome("held", review="the patient is in no imported file",
                                                      amounts=amounts))
        gid, pid = known
        patient = Person(last="", first="", external_key=visit.patient_ref)
    else:
        if not has_name(visit.subscriber) or (visit.patient is not None and not has_name(visit.patient)):
            return record(ctx, visit.ordinal, Outcome("held", review="no subscriber or patient name",
                                                      amounts=amounts))
        g_key = person_key(visit.subscriber)
        gid = people.guarantor(visit.subscriber, g_key)
        patient = visit.patient or visit.subscriber
        pid = people.patient(gid, g_key, patient, visit.relationship if visit.patient is not None else "self")
        if patient.external_key.startswith("fhir:"):
            people.alias_patient(patient.external_key, gid, pid)
    encounter = _encounter_of(visit)
    billing = people.provider(visit.billing, ("billing", "rendering"))
    rendering = people.provider(visit.rendering, ("rendering",))
    referring = people.provider(visit.referring, ("referring",))
    facility = people.facility(visit.facility or visit.billing)
    lines = visit.lines
    if len(lines) > MAX_LINES:
        return record(ctx, visit.ordinal, Outcome("held", review=f"{len(lines)} service lines: too many for one "
                                                  "posting", guarantor_id=gid, amounts=amounts))
    fallback = visit.date_from or ctx.started_at.date().isoformat()
    items: list[ServiceLineItem] = []
    entry: list[Line] = []
    ref_lines: list[dict[str, object]] = []
    for ln in lines:
        dos = ln.date_of_service or fallback
        item = _service_line(ctx, gid, encounter, ln.number, pid, code=ln.code, modifiers=ln.modifiers,
                             units=ln.units, dos=dos, facility_id=facility, billing_id=billing,
                             rendering_id=rendering, referring_id=referring, description=ln.description or None)
        items.append(item)
        if ln.charge_cents:
            entry += [Line(Account.INS_AR, ln.charge_cents, item.line_id),
                      Line(Account.REVENUE, -ln.charge_cents, item.line_id)]
        ref_lines.append({"line_id": item.line_id, "number": ln.number, "control": ln.control[:50],
                          "code": item.procedure_code, "revenue_code": ln.revenue_code[:8],
                          "modifiers": list(item.modifiers or []), "dos": dos, "charge_cents": ln.charge_cents})
    outcome = Outcome("posted", review="; ".join(reviews) or None, guarantor_id=gid, encounter=encounter,
                      matched_by=None, amounts=amounts)
    if not entry:
        return record(ctx, visit.ordinal, Outcome("held", review="the claim has no charge", guarantor_id=gid,
                                                  amounts=amounts))
    ref = _ref_item(ctx, visit.claim_id, gid, pid, patient, encounter, visit.charge_cents,
                    visit.date_from or (lines[0].date_of_service if lines else None), visit.source, ref_lines)

    def extra(tx: Tx, seq: int) -> None:
        ref.charge_seqs = [seq]
        tx.put(ref, condition=ClaimRefItem.pk.does_not_exist())

    return _post(ctx, visit.ordinal, outcome, code=EntryCode.CHARGE, lines=entry,
                 source_key=f"claim:{encounter}:{visit.charge_cents}",
                 meta={"source": visit.source, "import": ctx.sha256[:16], "claim": str(visit.ordinal)},
                 new_lines=items, extra=extra)


def _encounter_of(visit: Visit) -> str:
    """The encounter number of a claim: CLM01 with the first date of service (837), or the FHIR
    Claim id. CLM01 is often the patient's account number, the same on every claim: the date
    keeps visits apart."""
    first_day = visit.date_from or min((ln.date_of_service for ln in visit.lines if ln.date_of_service), default=None)
    return encounter_for(visit.claim_id, first_day.replace("-", "") if first_day and visit.source == "837" else "")


def _original_visit(ctx: Context, visit: Visit) -> ClaimRefItem | str | None:
    """The charged claim an 837 replacement or void (CLM05-3 = 7 / 8) refers to: a claim of the
    same CLM01 and patient, charged from an 837; the one of the same encounter (CLM01 and first
    date of service) first, else the only one. None when there is none; a review text when
    several could be meant (DATA-FORMATS.md §3: CLM01 is not unique)."""
    patient = visit.patient or visit.subscriber
    if not has_name(patient):
        return "no subscriber or patient name"
    assert patient is not None
    patient_digest = digest(name_key(patient))
    prefix = f"{claim_key(visit.claim_id)}#{patient_digest[:16]}#"
    refs = [r for r in ClaimRefItem.query(keys.claim_refs_pk(ctx.clinic_id), ClaimRefItem.sk.startswith(prefix),
                                          limit=MAX_CANDIDATES, consistent_read=True)
            if r.origin == "837"]
    encounter = _encounter_of(visit)
    same = [r for r in refs if r.encounter == encounter]
    if same:
        return same[0]
    if len(refs) == 1:
        return refs[0]
    if refs:
        what = "replacement" if visit.frequency == REPLACEMENT else "void"
        return f"{what} (CLM05-3 = {visit.frequency}): several claims with this CLM01 and patient; pick one by hand"
    # A corrected claim often corrects the patient's name: the one 837 claim of this encounter
    # (CLM01 and first date of service) under any name is the original.
    renamed = [r for r in ClaimRefItem.query(keys.claim_refs_pk(ctx.clinic_id),
                                             ClaimRefItem.sk.startswith(f"{claim_key(visit.claim_id)}#"),
                                             limit=MAX_CANDIDATES, consistent_read=True)
               if r.origin == "837" and r.encounter == encounter]
    if len(renamed) == 1:
        return renamed[0]
    if renamed:
        return (f"{'replacement' if visit.frequency == REPLACEMENT else 'void'} (CLM05-3 = {visit.frequency}) "
                "names another patient than the claims of this encounter; pick one by hand")
    return None


def _same_line(ln: VisitLine, old: list[dict[str, object]], used: set[int]) -> int | None:
    """The index of the charged line a replacement's line replaces: the same REF*6R, else the
    same line number and procedure, else the same procedure and date of service."""
    free = [i for i in range(len(old)) if i not in used]
    for i in free:
        if ln.control and old[i].get("control") == ln.control:
            return i
    code = (ln.code or "-")[:20].upper()
    for i in free:
        if int(str(old[i].get("number", 0))) == ln.number and old[i].get("code") == code:
            return i
    for i in free:
        if old[i].get("code") == code and old[i].get("dos") == ln.date_of_service:
            return i
    return None


def _replace(ctx: Context, visit: Visit, ref: ClaimRefItem) -> Outcome:
    """CLM05-3 = 7: bring the charged claim ``ref`` to what the replacement bills, in one CHARGE
    entry of the differences per line (DATA-FORMATS.md §3): a line billed again at another
    amount moves by the difference, a new line is created and charged, a line the replacement
    no longer bills is charged back to 0 and kept (``dropped``) with its history; the visit's
    claim index item (its lines, total and charge entries) changes in the same transaction.
    Source key ``claim:<encounter>:r:<digest of the replacement>``: the same replacement twice
    posts once. Returns ``replaced``, or ``not_posted`` when no charge changes."""
    gid, pid, encounter = ref.guarantor_id, ref.patient_id, ref.encounter
    amounts = {"charge": visit.charge_cents}
    old = [_plain(x) for x in ref.lines]
    old_total = int(ref.charge_cents)
    old_seqs = [int(x) for x in ref.charge_seqs or []]
    people = ctx.people
    billing = people.provider(visit.billing, ("billing", "rendering"))
    rendering = people.provider(visit.rendering, ("rendering",))
    referring = people.provider(visit.referring, ("referring",))
    facility = people.facility(visit.facility or visit.billing)
    fallback = visit.date_from or ref.date_from or ctx.started_at.date().isoformat()
    delta: dict[str, int] = {}
    used: set[int] = set()
    new_items: list[ServiceLineItem] = []
    lines = [dict(r) for r in old]
    number = max((int(str(r.get("number", 0))) for r in old), default=0)
    if len(visit.lines) + len(old) > MAX_LINES:
        return record(ctx, visit.ordinal, Outcome("held", review="replacement: too many service lines for one "
                                                  "posting", guarantor_id=gid, amounts=amounts))
    for ln in visit.lines:
        dos = ln.date_of_service or fallback
        i = _same_line(ln, old, used)
        if i is not None:
            used.add(i)
            line_id = str(old[i]["line_id"])
            delta[line_id] = ln.charge_cents - int(str(old[i].get("charge_cents", 0)))
            lines[i].update({"charge_cents": ln.charge_cents, "control": ln.control[:50], "dos": dos,
                             "dropped": False})
            continue
        number += 1
        item = _service_line(ctx, gid, encounter, number, pid, code=ln.code, modifiers=ln.modifiers,
                             units=ln.units, dos=dos, facility_id=facility, billing_id=billing,
                             rendering_id=rendering, referring_id=referring, description=ln.description or None)
        new_items.append(item)
        delta[item.line_id] = ln.charge_cents
        lines.append({"line_id": item.line_id, "number": number, "control": ln.control[:50],
                      "code": item.procedure_code, "revenue_code": ln.revenue_code[:8],
                      "modifiers": list(item.modifiers or []), "dos": dos, "charge_cents": ln.charge_cents})
    for i, r in enumerate(old):
        if i not in used and int(str(r.get("charge_cents", 0))):
            delta[str(r["line_id"])] = -int(str(r.get("charge_cents", 0)))
            lines[i].update({"charge_cents": 0, "dropped": True})
    entry: list[Line] = []
    for line_id, cents in delta.items():
        if cents:
            entry += [Line(Account.INS_AR, cents, line_id), Line(Account.REVENUE, -cents, line_id)]
    amounts["charge_change"] = visit.charge_cents - old_total
    outcome = Outcome("replaced", reason=f"replacement (CLM05-3 = 7) of encounter {encounter}", guarantor_id=gid,
                      encounter=encounter, matched_by="claim id", amounts=amounts)
    if not entry and not new_items:
        return record(ctx, visit.ordinal, Outcome("not_posted", reason="replacement (CLM05-3 = 7) changes no charge",
                                                  guarantor_id=gid, encounter=encounter, amounts=amounts))
    fingerprint = digest("|".join([str(visit.charge_cents)] + [
        f"{ln.number}:{ln.control}:{ln.code}:{'/'.join(ln.modifiers)}:{ln.units}:{ln.date_of_service}:{ln.charge_cents}"
        for ln in visit.lines]))[:24]
    condition = (ClaimRefItem.charge_seqs == old_seqs) if old_seqs else ClaimRefItem.pk.exists()

    def extra(tx: Tx, seq: int) -> None:
        ref.lines = lines  # type: ignore[assignment]
        ref.charge_cents = visit.charge_cents
        ref.charge_seqs = [*old_seqs, seq]
        tx.put(ref, condition=condition & (ClaimRefItem.charge_cents == old_total))

    return _post(ctx, visit.ordinal, outcome, code=EntryCode.CHARGE, lines=entry,
                 source_key=f"claim:{encounter}:r:{fingerprint}",
                 meta={"source": visit.source, "import": ctx.sha256[:16], "claim": str(visit.ordinal),
                       "frequency": REPLACEMENT},
                 new_lines=new_items, extra=extra)


def _void(ctx: Context, visit: Visit, ref: ClaimRefItem | None) -> Outcome:
    """CLM05-3 = 8: take the claim's charges back by reversing every entry that charged it (the
    original and its replacements, ``ledger.entry_reverse``: the history stays, each reversal
    happens once, so a re-run or the same void in another file reverses nothing twice); its
    lines stay, charged 0 and ``dropped``, so no remittance matches them. Payments or patient
    responsibility already posted on the lines are left for staff (flagged). Returns
    ``voided``; ``already_posted`` when an earlier void took everything back; ``held`` when
    the claim was never charged here."""
    amounts = {"charge": visit.charge_cents}
    if ref is None:
        return record(ctx, visit.ordinal, Outcome("held", review="void (CLM05-3 = 8) of a claim never imported: "
                                                  "nothing to reverse", amounts=amounts))
    gid = ref.guarantor_id
    gpk = keys.guarantor_pk(ctx.clinic_id, gid)
    seqs = [int(x) for x in ref.charge_seqs or []]
    if not seqs:  # charged before charge_seqs were kept: the original charge's posting key
        try:
            seqs = [int(PostingKeyItem.get(gpk, keys.posting_key_sk(f"claim:{ref.encounter}:{int(ref.charge_cents)}"),
                                           consistent_read=True).entry_seq)]
        except PostingKeyItem.DoesNotExist:
            seqs = []
    reversed_now: list[int] = []
    for seq in reversed(seqs):
        try:
            reversed_now.append(ledger.entry_reverse(
                clinic_id=ctx.clinic_id, guarantor_id=gid, entry_seq=seq,
                reason=f"837 void (import {ctx.sha256[:16]}, claim {visit.ordinal})").seq)
        except (AlreadyReversed, UnknownEntry):
            continue
        except (InsufficientBalance, LineInCollections) as exc:
            return record(ctx, visit.ordinal, Outcome("held", review="void blocked: undo what was applied first",
                                                      reason=str(exc), guarantor_id=gid, amounts=amounts))
    line_ids = [str(_plain(x)["line_id"]) for x in ref.lines]
    money = [dict(it.money) for it in ServiceLineItem.batch_get([(gpk, keys.line_sk(i)) for i in line_ids],
                                                                 consistent_read=True)]
    settled = any(m.get(k) for m in money for k in ("ins_paid", "ins_adjusted", "pat_open", "pat_paid"))
    if any(not _plain(x).get("dropped") for x in ref.lines):
        dropped: list[Any] = [{**_plain(x), "charge_cents": 0, "dropped": True} for x in ref.lines]
        try:
            ref.update(actions=[ClaimRefItem.lines.set(dropped), ClaimRefItem.charge_cents.set(0)],
                       condition=ClaimRefItem.charge_cents == int(ref.charge_cents))
        except UpdateError as exc:
            if exc.cause_response_code != "ConditionalCheckFailedException":
                raise
    review = "the voided claim has payments or patient responsibility posted: check them" if settled else None
    if not reversed_now:
        return record(ctx, visit.ordinal, Outcome("already_posted", review=review or "already voided",
                                                  guarantor_id=gid, encounter=ref.encounter, amounts=amounts))
    return record(ctx, visit.ordinal, Outcome("voided", review=review, guarantor_id=gid, encounter=ref.encounter,
                                              entry_seq=reversed_now[-1], matched_by="claim id", amounts=amounts))


# --- remittances (835, FHIR ExplanationOfBenefit) -------------------------------------------------


def _patient_digest(claim: RemitClaim) -> str | None:
    """The digest of the remitted patient's name (835), None when the claim id is unique (FHIR)."""
    if claim.source == "835" and claim.patient is not None and has_name(claim.patient):
        return digest(name_key(claim.patient))
    return None


def _candidates(claim: RemitClaim, found: list[ClaimRefItem]) -> list[ClaimRefItem]:
    """Claims with the same claim id and patient (835: CLP01 is not unique, §2.2), the same
    total charge first."""
    wanted = _patient_digest(claim)
    if wanted is not None:
        found = [r for r in found if r.patient_digest == wanted]
    return sorted(found, key=lambda r: int(r.charge_cents) != abs(claim.charge_cents))


def _map_lines(claim: RemitClaim, ref: ClaimRefItem) -> list[dict[str, object]] | None:
    """The submitted line of each remitted line (all lines for a claim-level remit), or None
    when a remitted line has no counterpart: then this is not the claim the payer paid."""
    ref_lines = [r for r in (_plain(x) for x in ref.lines) if not r.get("dropped")]
    if not claim.lines:
        return ref_lines or None
    used: set[str] = set()
    mapped = []
    for svc in claim.lines:
        line = _pick_line(svc, ref_lines, used)
        if line is None:
            return None
        used.add(str(line["line_id"]))
        mapped.append(line)
    return mapped


def _match(ctx: Context, claim: RemitClaim) -> tuple[ClaimRefItem, str, list[dict[str, object]]] | None:
    """(submitted claim, how it matched, the submitted line of each remitted line) or None."""
    pk = keys.claim_refs_pk(ctx.clinic_id)
    key = claim_key(claim.fhir_claim or claim.patient_control)
    patient = _patient_digest(claim)
    exact = f"{key}#{patient[:16]}#" if patient else f"{key}#"
    found = list(ClaimRefItem.query(pk, ClaimRefItem.sk.startswith(exact), limit=MAX_CANDIDATES,
                                    consistent_read=True))
    for ref in _candidates(claim, found):
        mapped = _map_lines(claim, ref)
        if mapped is not None:
            return ref, "claim id", mapped
    if not found and claim.source == "835" and len(key) >= 5:  # some payers truncate CLP01
        longer = [r for r in ClaimRefItem.query(pk, ClaimRefItem.sk.startswith(key), limit=MAX_CANDIDATES,
                                                consistent_read=True)
                  if not r.sk.startswith(f"{key}#")]
        for ref in _candidates(claim, longer):
            mapped = _map_lines(claim, ref)
            if mapped is not None:
                return ref, "claim id prefix", mapped
    if claim.patient is None or not has_name(claim.patient) or not claim.lines:
        return None
    day = claim.date_from or next((ln.date_from for ln in claim.lines if ln.date_from), None)
    if not day:
        return None
    found = [r for r in ClaimRefItem.gsi1.query(keys.visit_gsi1pk(ctx.clinic_id,
                                                                  digest(f"{name_key(claim.patient)}|{day}")),
                                                limit=MAX_CANDIDATES)
             if isinstance(r, ClaimRefItem)]
    matches = [(r, m) for r in found if (m := _map_lines(claim, r)) is not None]
    if len(matches) == 1:  # an index read may lag: re-read the item before it is trusted (SERVERLESS.md 2.9)
        ref = ClaimRefItem.get(matches[0][0].pk, matches[0][0].sk, consistent_read=True)
        mapped = _map_lines(claim, ref)
        if mapped is not None:
            return ref, "patient, date and procedure", mapped
    return None


def _pick_line(svc: RemitLine, ref_lines: list[dict[str, object]], used: set[str]) -> dict[str, object] | None:
    free = [r for r in ref_lines if r["line_id"] not in used]
    if svc.control:
        for r in free:
            if r.get("control") and r["control"] == svc.control:
                return r
    code = svc.code.upper()

    def same_code(r: dict[str, object]) -> bool:
        return code in (str(r.get("code", "")).upper(), str(r.get("revenue_code", "")).upper())

    for r in free:
        modifiers = r.get("modifiers") or []
        if same_code(r) and tuple(modifiers if isinstance(modifiers, list) else ()) == svc.modifiers and (
                not svc.date_from or r.get("dos") == svc.date_from):
            return r
    for r in free:
        if same_code(r):
            return r
    return None


def _line_shares(claim: RemitClaim, targets: list[_Target]) -> tuple[list[int], list[list[Adjustment]]]:
    """Per target line: its part of CLP04 (by SVC03, else SVC02) and its adjustments (its own
    CAS plus its part of the claim-level CAS, by SVC02), exact cents (``core.money.allocate``)."""
    charge_w = [t.weight_charge for t in targets]
    paid_w = [t.weight_paid for t in targets]
    paid = _split(claim.paid_cents, paid_w if sum(paid_w) > 0 else charge_w)
    adjustments: list[list[Adjustment]] = [list(t.svc.adjustments) if t.svc is not None else [] for t in targets]
    for adj in claim.adjustments:
        for i, part in enumerate(_split(adj.cents, charge_w)):
            if part:
                adjustments[i].append(Adjustment(adj.group, adj.reason, part))
    return paid, adjustments


def _secondary_lines(ctx: Context, gid: str, claim: RemitClaim, targets: list[_Target]) -> tuple[list[Line], int, bool]:
    """(entry lines, patient balance change, patient credit made) of a secondary or tertiary
    payer's claim (CLP02 = 2, 3, 20, 21) on a charged visit, netted against what is already on
    each line (DATA-FORMATS.md §2.3, §6 "CLP02 = 19 ... then the secondary's 835 with OA*23"):

    - OA*23 (impact of prior payer adjudication) is the prior payer's part: not posted again;
    - what the secondary adjudicated, T = its payment P + its own adjustments A + its group PR R,
      comes first out of what is still with insurance on the line (``ins_open``: a primary's
      PR held as pending secondary, CLP02 = 19, or a primary not yet remitted), the rest out of
      what the primary put on the patient: the patient's open balance moves by
      ``from_ins − P − A``, so the patient ends owing the secondary's R, never R on top of the
      primary's PR;
    - a patient credit larger than the line's open patient balance (the patient paid the
      primary's PR already) goes to the guarantor's unapplied funds (``escrow``) for a refund
      or the next balance, never below zero on the line.

    PR kinds: a debit takes the secondary's PR reasons; a credit takes back the line's open
    kinds in order deductible, coinsurance, copay, other.
    """
    gpk = keys.guarantor_pk(ctx.clinic_id, gid)
    money = {it.line_id: dict(it.money) for it in ServiceLineItem.batch_get(
        [(gpk, keys.line_sk(t.line_id)) for t in targets if t.new_item is None], consistent_read=True)}
    paid, adjustments = _line_shares(claim, targets)
    acc: dict[tuple[Account, str, str], int] = {}

    def add(account: Account, line_id: str, cents: int, kind: str = "") -> None:
        if cents:
            acc[(account, line_id, kind)] = acc.get((account, line_id, kind), 0) + cents

    patient = 0
    escrow = 0
    for i, t in enumerate(targets):
        figures = money.get(t.line_id, {})
        if t.charge_needed:
            add(Account.INS_AR, t.line_id, t.charge_needed)
            add(Account.REVENUE, t.line_id, -t.charge_needed)
        ins_open = int(figures.get("ins_open", 0)) + t.charge_needed
        pat_open = int(figures.get("pat_open", 0))
        own = [a for a in adjustments[i] if not (a.group == "OA" and a.reason == "23")]
        pr = [a for a in own if a.group == PATIENT_GROUP]
        other = [a for a in own if a.group != PATIENT_GROUP]
        p, a_total, r = paid[i], sum(a.cents for a in other), sum(a.cents for a in pr)
        total = p + a_total + r
        from_ins = max(0, min(total, ins_open)) if total > 0 else total
        add(Account.INS_CASH, t.line_id, p)
        for adj in other:
            add(Account.INS_ADJ, t.line_id, adj.cents, f"{adj.group}-{adj.reason}"[:24])
        add(Account.INS_AR, t.line_id, -from_ins)
        change = from_ins - p - a_total
        if change > 0:
            weights = [a.cents for a in pr] if pr and all(a.cents > 0 for a in pr) else [1]
            kinds = [PR_KINDS.get(a.reason, ResponsibilityKind.OTHER).value for a in pr] if len(weights) == len(pr) \
                else [ResponsibilityKind.OTHER.value]
            for kind, part in zip(kinds, allocate(change, weights), strict=True):
                add(Account.PAT_AR, t.line_id, part, kind)
            patient += change
        elif change < 0:
            credit = -change
            from_patient = min(credit, max(pat_open, 0))
            left = from_patient
            for kind in ResponsibilityKind:
                take = min(left, int(figures.get(f"pr_{kind.value}", 0)))
                if take > 0:
                    add(Account.PAT_AR, t.line_id, -take, kind.value)
                    left -= take
            add(Account.PAT_AR, t.line_id, -left, ResponsibilityKind.OTHER.value)
            patient -= from_patient
            escrow += credit - from_patient
    order = {a: i for i, a in enumerate(Account)}
    lines = [Line(account, cents, line_id, kind or None)
             for (account, line_id, kind), cents in sorted(acc.items(), key=lambda kv: (kv[0][1], order[kv[0][0]],
                                                                                        kv[0][2]))
             if cents]
    if escrow:
        lines.append(Line(Account.ESCROW, -escrow))
    return lines, patient, escrow > 0


def _entry_lines(claim: RemitClaim, targets: list[_Target], *, adjudicate: bool,
                 include_pr: bool) -> tuple[list[Line], int, int]:
    """(entry lines, patient balance change, PR held with insurance) for a remittance claim."""
    acc: dict[tuple[Account, str, str | None], int] = {}

    def add(account: Account, line_id: str, cents: int, kind: str | None = None) -> None:
        if cents:
            acc[(account, line_id, kind)] = acc.get((account, line_id, kind), 0) + cents

    for t in targets:
        if t.charge_needed:
            add(Account.INS_AR, t.line_id, t.charge_needed)
            add(Account.REVENUE, t.line_id, -t.charge_needed)
    patient = held = 0
    if adjudicate:
        paid, adjustments = _line_shares(claim, targets)
        for i, t in enumerate(targets):
            settled = paid[i]
            add(Account.INS_CASH, t.line_id, paid[i])
            for adj in adjustments[i]:
                if adj.group == PATIENT_GROUP:
                    if not include_pr:
                        held += adj.cents
                        continue
                    add(Account.PAT_AR, t.line_id, adj.cents, PR_KINDS.get(adj.reason, ResponsibilityKind.OTHER).value)
                    patient += adj.cents
                else:
                    add(Account.INS_ADJ, t.line_id, adj.cents, f"{adj.group}-{adj.reason}"[:24])
                settled += adj.cents
            add(Account.INS_AR, t.line_id, -settled)
    order = {a: i for i, a in enumerate(Account)}
    lines = [Line(account, cents, line_id, kind)
             for (account, line_id, kind), cents in sorted(acc.items(), key=lambda kv: (kv[0][1], order[kv[0][0]],
                                                                                        kv[0][2] or ""))
             if cents]
    return lines, patient, held


def _dos(claim: RemitClaim, svc: RemitLine | None, ctx: Context) -> str:
    return ((svc.date_from if svc is not None else None) or claim.date_from or claim.date_to
            or claim.transaction.payment_date or claim.transaction.production_date
            or ctx.started_at.date().isoformat())


def post_remit(ctx: Context, claim: RemitClaim) -> Outcome:
    """Post one remittance claim (see the module docstring); returns its outcome."""
    amounts = {"charge": claim.charge_cents, "paid": claim.paid_cents, "patient": claim.patient_responsibility()}
    status = claim.status
    if status == PREDETERMINATION:
        return record(ctx, claim.ordinal, Outcome("not_posted", reason="predetermination (CLP02=25): estimate only",
                                                  amounts=amounts))
    if status == NOT_OUR_CLAIM:
        return record(ctx, claim.ordinal, Outcome("not_posted", reason="not our claim (CLP02=23)", amounts=amounts))
    if status == REVERSAL:
        return _reverse(ctx, claim, amounts)
    known: tuple[str, str] | None = None
    if claim.patient is None and claim.patient_ref:
        known = ctx.people.known_patient(claim.patient_ref)
        if known is None:
            return record(ctx, claim.ordinal, Outcome("held", review="the patient is in no imported file",
                                                      amounts=amounts))
        claim.patient = Person(last="", first="", external_key=claim.patient_ref)
    elif not has_name(claim.patient):
        return record(ctx, claim.ordinal, Outcome("held", review="no patient name (NM1*QC)", amounts=amounts))
    assert claim.patient is not None
    reviews: list[str] = []
    adjudicate = status in PROCESSED or status in FORWARDED
    if status == DENIED:
        reviews.append("denied (CLP02=4): check demographics and coverage")
    elif not adjudicate:
        reviews.append(f"unknown claim status {status[:3]}")
    if claim.corrected:
        reviews.append("the payer corrected the patient's name or id (NM1*74)")
    if adjudicate and claim.charge_cents - sum(a.cents for a in claim.adjustments) - sum(
            a.cents for ln in claim.lines for a in ln.adjustments) != claim.paid_cents:
        reviews.append("the claim does not balance")
    if claim.amounts.get("F5"):
        reviews.append("the patient paid part at the front desk (AMT*F5): do not bill it twice")
    if len(claim.lines) > MAX_LINES:
        return record(ctx, claim.ordinal, Outcome("held", review=f"{len(claim.lines)} service lines: too many for "
                                                  "one posting", amounts=amounts))
    rkey = remit_key(claim)
    match = _match(ctx, claim)
    targets: list[_Target] = []
    new_ref: ClaimRefItem | None = None
    if match is not None:
        ref, how, mapped = match
        gid, pid, encounter = ref.guarantor_id, ref.patient_id, ref.encounter
        if how != "claim id":
            reviews.append(f"matched by {how}: confirm")
        wanted = sorted({str(r["line_id"]) for r in mapped})
        billed = dict.fromkeys(wanted, 1)
        if ref.origin == "835":  # a visit an 835 created: a reversal may have taken its charges back
            gpk = keys.guarantor_pk(ctx.clinic_id, gid)
            billed = {it.line_id: int(it.money.get("billed", 0)) for it in ServiceLineItem.batch_get(
                [(gpk, keys.line_sk(line_id)) for line_id in wanted], consistent_read=True)}
            if set(billed) != set(wanted):
                return record(ctx, claim.ordinal, Outcome("held", review="the matched claim's service lines are "
                                                          "missing", guarantor_id=gid, amounts=amounts))
        recharged: set[str] = set()

        def recharge(r: dict[str, object]) -> int:
            """A line whose charge a reversal took back (an 835-created visit) is charged again."""
            line_id = str(r["line_id"])
            if billed[line_id] != 0 or line_id in recharged:
                return 0
            recharged.add(line_id)
            return int(str(r.get("charge_cents", 0)))

        if claim.lines:
            targets = [_Target(str(r["line_id"]), svc, abs(svc.charge_cents), abs(svc.paid_cents),
                               charge_needed=recharge(r)) for svc, r in zip(claim.lines, mapped, strict=True)]
        else:
            targets = [_Target(str(r["line_id"]), None, abs(int(str(r.get("charge_cents", 0)))), 0,
                               charge_needed=recharge(r)) for r in mapped]
        matched_by = how
    else:
        matched_by = "unmatched"
        reviews.append("unmatched: the visit was created from the remittance")
        if known is not None:
            gid, pid = known
        else:
            subscriber = claim.subscriber if has_name(claim.subscriber) else claim.patient
            assert subscriber is not None
            g_key = person_key(subscriber)
            gid = ctx.people.guarantor(subscriber, g_key)
            relationship = "self" if subscriber is claim.patient else "other"
            pid = ctx.people.patient(gid, g_key, claim.patient, relationship)
            if claim.patient.external_key.startswith("fhir:"):
                ctx.people.alias_patient(claim.patient.external_key, gid, pid)
        encounter = encounter_for(claim.patient_control, rkey[-6:])
        facility = billing = rendering = None
        if claim.rendering_npi:
            rendering = ctx.people.provider(Provider(npi=claim.rendering_npi, name="-"), ("rendering",))
        responsibility = claim.transaction.payment_date
        ref_lines = []
        svcs: list[RemitLine | None] = list(claim.lines) or [None]
        for number, svc in enumerate(svcs, start=1):
            if svc is not None:
                code, mods, units, charge = svc.code, svc.modifiers, _units(svc.units), svc.charge_cents
            else:
                code, mods, units, charge = "CLAIM", (), 1, claim.charge_cents
            item = _service_line(ctx, gid, encounter, number, pid, code=code, modifiers=mods, units=units,
                                 dos=_dos(claim, svc, ctx), facility_id=facility, billing_id=billing,
                                 rendering_id=rendering, referring_id=None,
                                 description=None if svc is not None else "claim-level remittance",
                                 responsibility_date=responsibility)
            paid_weight = abs(svc.paid_cents) if svc else abs(claim.paid_cents)
            targets.append(_Target(item.line_id, svc, abs(charge), paid_weight, charge_needed=charge, new_item=item))
            ref_lines.append({"line_id": item.line_id, "number": number, "control": (svc.control if svc else "")[:50],
                              "code": item.procedure_code, "revenue_code": "", "modifiers": list(item.modifiers or []),
                              "dos": item.date_of_service, "charge_cents": charge})
        new_ref = _ref_item(ctx, claim.fhir_claim or claim.patient_control, gid, pid, claim.patient, encounter,
                            claim.charge_cents, claim.date_from, claim.source, ref_lines)
    held = 0
    if match is not None and status in SECONDARY:
        lines, patient_change, credit = _secondary_lines(ctx, gid, claim, targets)
        if credit:
            reviews.append("the secondary payer paid more than the patient still owed: unapplied funds to refund "
                           "or apply")
    else:
        lines, patient_change, held = _entry_lines(claim, targets, adjudicate=adjudicate,
                                                   include_pr=status not in FORWARDED)
    if held:
        amounts["pending_secondary"] = held
    outcome = Outcome("posted", review="; ".join(dict.fromkeys(reviews))[:300] or None, guarantor_id=gid,
                      encounter=encounter,
                      matched_by=matched_by, amounts=amounts)
    if not lines:
        return record(ctx, claim.ordinal, Outcome("not_posted", review=outcome.review, reason="nothing to post",
                                                  guarantor_id=gid, encounter=encounter, matched_by=matched_by,
                                                  amounts=amounts))
    remit_ref_key = keys.remit_ref_sk(claim_key(claim.payer_claim_id) if claim.payer_claim_id else "-",
                                      claim_key(claim.fhir_claim or claim.patient_control), rkey)

    def extra(tx: Tx, seq: int) -> None:
        tx.put(RemitRefItem(keys.remit_refs_pk(ctx.clinic_id), remit_ref_key, guarantor_id=gid, entry_seq=seq,
                            status=status, charge_cents=claim.charge_cents, paid_cents=claim.paid_cents,
                            patient_cents=amounts["patient"], import_sha256=ctx.sha256, ordinal=claim.ordinal),
               condition=RemitRefItem.pk.does_not_exist())
        if new_ref is not None:
            tx.put(new_ref, condition=ClaimRefItem.pk.does_not_exist())
        if patient_change > 0:
            tx.put(_notice(ctx, gid, seq, patient_change))

    return _post(ctx, claim.ordinal, outcome, code=EntryCode.REMITTANCE, lines=lines, source_key=rkey,
                 meta={"source": claim.source, "import": ctx.sha256[:16], "claim": str(claim.ordinal),
                       "status": status[:3]},
                 new_lines=[t.new_item for t in targets if t.new_item is not None], extra=extra)


def _reverse(ctx: Context, claim: RemitClaim, amounts: dict[str, int]) -> Outcome:
    """CLP02=22: take back the original posting of this claim (DATA-FORMATS.md §2.5)."""
    rkey = remit_key(claim)
    prefix = (f"{claim_key(claim.payer_claim_id) if claim.payer_claim_id else '-'}#"
              f"{claim_key(claim.fhir_claim or claim.patient_control)}#")
    refs = list(RemitRefItem.query(keys.remit_refs_pk(ctx.clinic_id), RemitRefItem.sk.startswith(prefix),
                                   consistent_read=True))
    mine = [r for r in refs if r.reversed_by == rkey]
    candidates = mine or [r for r in refs if r.reversed_by is None and r.status != REVERSAL
                          and int(r.charge_cents) == -claim.charge_cents and int(r.paid_cents) == -claim.paid_cents]
    for ref in candidates:
        if ref.reversed_by != rkey:
            try:
                ref.update(actions=[RemitRefItem.reversed_by.set(rkey)],
                           condition=RemitRefItem.reversed_by.does_not_exist())
            except UpdateError as exc:
                if exc.cause_response_code != "ConditionalCheckFailedException":
                    raise
                continue
        seq: int | None
        try:
            seq = ledger.entry_reverse(clinic_id=ctx.clinic_id, guarantor_id=ref.guarantor_id,
                                       entry_seq=int(ref.entry_seq),
                                       reason=f"835 reversal (import {ctx.sha256[:16]}, claim {claim.ordinal})").seq
        except AlreadyReversed:
            seq = None
        except (InsufficientBalance, LineInCollections) as exc:
            return record(ctx, claim.ordinal, Outcome(
                "held", review="reversal blocked: money applied since the original must be undone first",
                reason=str(exc), guarantor_id=ref.guarantor_id, amounts=amounts))
        return record(ctx, claim.ordinal, Outcome("reversed", guarantor_id=ref.guarantor_id, entry_seq=seq,
                                                  matched_by="payer claim id", amounts=amounts))
    return record(ctx, claim.ordinal, Outcome("parked", review="reversal without its original posting: parked",
                                              amounts=amounts))


# --- people (roster rows, FHIR Patient / RelatedPerson / Account) ------------------------------


def post_person(ctx: Context, unit: PersonUnit) -> Outcome:
    """Find or create the guarantor (and the patient linked to them) of one roster row or FHIR
    resource; a person known before is left as it is (profiles are not overwritten), except the
    practice's account number a roster row carries (people.py)."""
    if not has_name(unit.guarantor) or (unit.patient is not None and not has_name(unit.patient)):
        return record(ctx, unit.ordinal, Outcome("held", review="no last name"))
    before = ctx.people.created_guarantors
    g_key = person_key(unit.guarantor)
    gid = ctx.people.guarantor(unit.guarantor, g_key)
    patient = unit.patient or unit.guarantor
    pid = ctx.people.patient(gid, g_key, patient, unit.relationship if unit.patient is not None else "self")
    if unit.patient_alias:
        ctx.people.alias_patient(unit.patient_alias, gid, pid)
    if unit.guarantor_alias:
        ctx.people.alias_guarantor(unit.guarantor_alias, gid)
    created = ctx.people.created_guarantors > before
    return record(ctx, unit.ordinal, Outcome("posted", reason=None if created else "guarantor existed",
                                             guarantor_id=gid))


def post_note(ctx: Context, unit: NoteUnit) -> Outcome:
    """Record a unit that is read but not imported (its reason on the marker)."""
    return record(ctx, unit.ordinal, Outcome("not_posted", reason=unit.reason))


# --- coverage (FHIR Coverage) --------------------------------------------------------------------


def coverage_identity(patient_id: str, unit: CoverageUnit) -> str:
    """What makes a coverage the same one (its item's key is the digest of this): the patient,
    the payer (its reference, else its folded name) and the normalized member id; without payer
    and member id, the Coverage id. ``""`` when there is nothing to tell it by."""
    payer = unit.payer_ref or keys.fold_name(unit.payer_name)
    member = normalize_id(unit.member_id)
    if payer or member:
        return f"{patient_id}|{payer}|{member}"
    return f"{patient_id}|coverage:{unit.coverage_id}" if unit.coverage_id else ""


def post_coverage(ctx: Context, unit: CoverageUnit) -> Outcome:
    """Store one FHIR Coverage as the :class:`CoverageItem` of its beneficiary's guarantor.

    The beneficiary is found by its ``fhir:Patient/<id>`` alias (this file's Patients are
    posted before its Coverages; else an earlier import's). Unknown: held for staff review
    (gsi1 ``C#<c>#IMPORTS#REVIEW``), nothing stored. The item and the unit's marker are written
    in one transaction; the item's key is the digest of :func:`coverage_identity`, so importing
    the same coverage again (another file, a re-run) overwrites the one item with the latest
    file's values, never adds a second. The member id is never logged nor put in a key or a
    marker."""
    earlier = existing_outcome(ctx, unit.ordinal)
    if earlier is not None:
        return earlier
    known = ctx.people.known_patient(unit.patient_ref) if unit.patient_ref else None
    if known is None:
        return record(ctx, unit.ordinal, Outcome("held", review="coverage: the patient is in no imported file"))
    gid, pid = known
    identity = coverage_identity(pid, unit)
    if not identity:
        return record(ctx, unit.ordinal, Outcome("held", review="coverage names no payer, member id or id",
                                                 guarantor_id=gid))
    outcome = Outcome("posted", reason="coverage stored", guarantor_id=gid)
    tx = Tx()
    tx.put(CoverageItem(
        keys.guarantor_pk(ctx.clinic_id, gid), keys.coverage_sk(digest(identity)), patient_id=pid,
        payer_name=unit.payer_name, payer_ref=unit.payer_ref, member_id=unit.member_id,
        relationship=unit.relationship, period_start=unit.period_start, period_end=unit.period_end,
        order=unit.order, status=unit.status or "unknown", coverage_id=unit.coverage_id, import_sha256=ctx.sha256,
        updated_at=clock.now()))
    tx.put(_marker(ctx, unit.ordinal, outcome), condition=ImportClaimItem.pk.does_not_exist())
    try:
        tx.commit()
    except TxFailed as exc:
        earlier = None if exc.retryable else existing_outcome(ctx, unit.ordinal)
        if earlier is None:
            raise
        return earlier  # a concurrent run of this file wrote it first
    return outcome
