"""Statement reads: history with the paid/unpaid flag, one statement, verification codes,
profiles and runs (PRODUCT.md §4, §11; REFERENCE-PORTAL.md G5, J6, §4 "Statement").

The paid/unpaid rule (:func:`statement_history`), applied to live figures as payments arrive:

- A statement that billed nothing (its account owed 0) is paid.
- The **latest** statements (the one the ledger's balance item names, and the other
  per-patient statements of the same run) are paid when their Amount Due has reached 0: for a
  per-guarantor statement the guarantor's Amount Due (``ledger.selectors`` Balances, without
  new charges: what is still owed on that statement); for a per-patient statement the patient's
  part Amount Due (``PartBalances``), or the guarantor's when that is 0.
- An **older** statement is paid when it is fully covered: every line it billed has no open
  patient balance left and none went to collections, or the guarantor's Current Balance is 0 with
  no billed line in collections (unapplied funds cover everything).

``amount_due_now`` is what is still owed on the statement under the same rule (cents).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from chalicelib.core import clock, config
from chalicelib.core.errors import InvalidInput, NotFound, UnknownGuarantor
from chalicelib.core.ids import require_id
from chalicelib.ledger.accounts import COLLECTIONS, PAT_OPEN
from chalicelib.ledger.selectors import figures_from_item
from chalicelib.statements.codes import code_normalize
from chalicelib.statements.profiles import StatementProfile, profile_load
from chalicelib.store import keys
from chalicelib.store.db import clinic_scoped
from chalicelib.store.models import BalanceItem, ClinicItem, Item, ServiceLineItem, StatementItem
from chalicelib.store.models_statements import (
    StatementProfileItem,
    StatementRecordItem,
    StatementRunItem,
    StatementRunPageItem,
    StatementSettingsItem,
    StatementVerifyItem,
)


@dataclass(frozen=True)
class StatementRow:
    """A statement in the history (cents, ISO dates).

    ``statement_balance`` / ``amount_due``: the guarantor's figures when it was issued (PRODUCT.md
    §2). ``account_balance``: what this statement's account owed (the patient's share on a
    per-patient statement). ``paid`` / ``amount_due_now``: the rule in this module's docstring.
    ``latest``: one of the guarantor's current statements. ``pdf_available``: a PDF is kept and
    within the viewing window. ``lines``: ``{"line_id", "date_of_service", "procedure_code",
    "open_cents", "status"}`` as billed (PHI: never log).
    """

    statement_id: str
    statement_date: str
    due_date: str
    account_number: str
    account_kind: str
    statement_balance: int
    amount_due: int
    account_balance: int
    new_cents: int
    previously_billed_cents: int
    paid: bool
    latest: bool
    amount_due_now: int
    source: str
    run_id: str | None
    delivery_channel: str | None
    delivery_status: str
    verification_code: str | None
    pdf_available: bool
    lines: tuple[dict[str, Any], ...]


def _pdf_available(item: StatementItem) -> bool:
    if not getattr(item, "pdf_key", None):
        return False
    days = config.settings().statement_pdf_days
    return clock.now().date() <= date.fromisoformat(item.statement_date) + timedelta(days=days)


def _rows(items: list[StatementItem], lines: dict[str, ServiceLineItem], balance: BalanceItem) -> list[StatementRow]:
    figures = figures_from_item(balance, include_new_charges=False)
    b = figures.balances
    latest_id = balance.statement_id
    latest = next((s for s in items if s.statement_id == latest_id), None)
    latest_run = getattr(latest, "run_id", None) if latest is not None else None
    part_due: dict[str, int] = {}
    for part in figures.parts:
        part_due[part.patient_id] = part_due.get(part.patient_id, 0) + part.amount_due
    rows = []
    for s in items:
        record = s if isinstance(s, StatementRecordItem) else None
        kind = record.account_kind if record else "guarantor"
        account_balance = int(record.account_balance) if record else int(s.statement_balance)
        is_latest = s.statement_id == latest_id or (
            latest_run is not None and record is not None and record.run_id == latest_run
            and int(s.as_of_seq) == int(balance.statement_seq))
        billed = [str(x.get("line_id")) for x in s.lines]
        if account_balance <= 0:
            due_now, paid = 0, True
        elif is_latest:
            if kind == "patient" and b.amount_due > 0:
                patients = record.patient_ids if record else []
                due_now = min(account_balance, sum(part_due.get(p, 0) for p in patients))
            else:
                due_now = b.amount_due
            paid = due_now == 0
        else:
            in_collections = any(lines[i].money.get(COLLECTIONS, 0) > 0 for i in billed if i in lines)
            still_open = sum(max(0, lines[i].money.get(PAT_OPEN, 0)) for i in billed if i in lines)
            paid = (still_open == 0 or b.current_balance == 0) and not in_collections
            due_now = 0 if paid or b.current_balance == 0 else min(account_balance, still_open)
        rows.append(StatementRow(
            statement_id=s.statement_id, statement_date=s.statement_date, due_date=s.due_date,
            account_number=s.account_number, account_kind=kind, statement_balance=int(s.statement_balance),
            amount_due=int(s.amount_due), account_balance=account_balance,
            new_cents=int(record.new_cents) if record else 0,
            previously_billed_cents=int(record.previously_billed_cents) if record else 0,
            paid=paid, latest=is_latest, amount_due_now=due_now,
            source=record.source if record else "ledger", run_id=record.run_id if record else None,
            delivery_channel=record.delivery_channel if record else None,
            delivery_status=record.delivery_status if record else s.status,
            verification_code=(f"{record.verification_code[:4]}-{record.verification_code[4:]}"
                               if record and record.verification_code else None),
            pdf_available=_pdf_available(s), lines=tuple(dict(x) for x in s.lines)))
    return sorted(rows, key=lambda r: (r.due_date, r.statement_date, r.statement_id), reverse=True)


def _read(clinic_id: str, guarantor_id: str) -> tuple[list[StatementItem], dict[str, ServiceLineItem], BalanceItem]:
    pk = keys.guarantor_pk(clinic_id, require_id(guarantor_id, field="guarantor_id"))
    try:
        balance = BalanceItem.get(pk, keys.BALANCE, consistent_read=True)
    except BalanceItem.DoesNotExist:
        raise UnknownGuarantor(f"guarantor {guarantor_id} not found") from None
    statements: list[StatementItem] = []
    lines: dict[str, ServiceLineItem] = {}
    for item in Item.query(pk, Item.sk.between(keys.LINE_PREFIX, keys.STATEMENT_PREFIX[:-1] + "$"),
                           consistent_read=True):
        if isinstance(item, StatementItem):
            statements.append(item)
        elif isinstance(item, ServiceLineItem):
            lines[item.line_id] = item
    return statements, lines, balance


@clinic_scoped
def statement_history(*, clinic_id: str, guarantor_id: str, hide_paid: bool = False) -> list[StatementRow]:
    """The guarantor's statements, newest due date first, each with ``paid`` (the rule in this
    module's docstring, REFERENCE-PORTAL.md G5/J6); ``hide_paid`` leaves paid ones out.

    Two requests: the balance item and one Query of the lines and statements. The web portal's
    Statements page can use this instead of its own rule. Raises UnknownGuarantor.
    """
    statements, lines, balance = _read(clinic_id, guarantor_id)
    rows = _rows(statements, lines, balance)
    return [r for r in rows if not (hide_paid and r.paid)]


@clinic_scoped
def statement_detail(*, clinic_id: str, guarantor_id: str, statement_id: str) -> StatementRow:
    """One statement of the guarantor with its lines and paid flag. Another guarantor's
    statement id is the same miss. Raises NotFound, UnknownGuarantor."""
    require_id(statement_id, field="statement_id")
    for row in statement_history(clinic_id=clinic_id, guarantor_id=guarantor_id):
        if row.statement_id == statement_id:
            return row
    raise NotFound(f"statement {statement_id} not found")


@dataclass(frozen=True)
class Verification:
    """The answer to "is this bill genuine?" (PRODUCT.md §11): the practice's name and the
    statement date(s) carrying the code; nothing else (no names, amounts or health data)."""

    genuine: bool
    practice: str | None
    statement_dates: tuple[str, ...]


@clinic_scoped
def statement_verify(*, clinic_id: str, code: str) -> Verification:
    """Check a verification code printed on a statement of ``clinic_id``. An unknown clinic, a
    malformed code and an unknown code all answer ``genuine=False``. One GetItem and one Query."""
    normalized = code_normalize(code or "")
    try:
        require_id(clinic_id, field="clinic_id")
    except InvalidInput:
        return Verification(False, None, ())
    if normalized is None:
        return Verification(False, None, ())
    found = list(StatementVerifyItem.query(keys.statement_verify_pk(clinic_id, normalized)))
    if not found:
        return Verification(False, None, ())
    try:
        clinic = ClinicItem.get(keys.clinic_pk(clinic_id), keys.CLINIC)
    except ClinicItem.DoesNotExist:
        return Verification(False, None, ())
    return Verification(True, clinic.name, tuple(sorted({f.statement_date for f in found})))


@dataclass(frozen=True)
class ProfileRow:
    """A statement profile and whether it is the clinic's default."""

    profile: StatementProfile
    is_default: bool


@clinic_scoped
def statement_profiles_list(*, clinic_id: str) -> list[ProfileRow]:
    """The clinic's statement profiles (one Query and one GetItem), by id."""
    pk = keys.clinic_pk(require_id(clinic_id, field="clinic_id"))
    try:
        default_id = StatementSettingsItem.get(pk, keys.STATEMENT_SETTINGS).default_profile_id
    except StatementSettingsItem.DoesNotExist:
        default_id = None
    items = StatementProfileItem.query(pk, StatementProfileItem.sk.startswith(keys.STATEMENT_PROFILE_PREFIX))
    return sorted((ProfileRow(profile_load(p.settings_json), p.profile_id == default_id) for p in items),
                  key=lambda r: r.profile.profile_id)


@clinic_scoped
def statement_profile_get(*, clinic_id: str, profile_id: str) -> StatementProfile:
    """One profile. A statement names its ``profile_id``; the notifications package reads the
    reminder schedule from ``notification_schedule_id``. Raises NotFound."""
    try:
        item = StatementProfileItem.get(keys.clinic_pk(clinic_id),
                                        keys.statement_profile_sk(require_id(profile_id, field="profile_id")))
    except StatementProfileItem.DoesNotExist:
        raise NotFound(f"statement profile {profile_id} not found") from None
    return profile_load(item.settings_json)


@dataclass(frozen=True)
class RunView:
    """A statement run's progress: pages enumerated and closed, and (with ``outcomes``) counts
    of created statements, skips by reason and errors ``(guarantor id, reason code)``."""

    run_id: str
    run_date: str
    status: str
    pages_total: int
    pages_done: int
    guarantors_billed: int = 0
    statements_created: int = 0
    skipped: dict[str, int] | None = None
    errors: tuple[tuple[str, str], ...] = ()

    def as_json(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "run_date": self.run_date, "status": self.status,
                "pages_total": self.pages_total, "pages_done": self.pages_done,
                "guarantors_billed": self.guarantors_billed, "statements_created": self.statements_created,
                "skipped": self.skipped or {}, "errors": [{"guarantor_id": g, "reason": r} for g, r in self.errors]}


@clinic_scoped
def statement_run_get(*, clinic_id: str, run_id: str, outcomes: bool = True) -> RunView:
    """A run's progress (one GetItem), with ``outcomes`` also its pages' results (one Query of
    the run's pages). Raises NotFound."""
    try:
        run = StatementRunItem.get(keys.clinic_pk(clinic_id), keys.statement_run_sk(require_id(run_id, field="run_id")),
                                   consistent_read=True)
    except StatementRunItem.DoesNotExist:
        raise NotFound(f"statement run {run_id} not found") from None
    view = RunView(run.run_id, run.run_date, run.status, int(run.pages_total), int(run.pages_done))
    if not outcomes:
        return view
    billed = created = 0
    skipped: dict[str, int] = {}
    errors: list[tuple[str, str]] = []
    for page in StatementRunPageItem.query(keys.statement_run_pk(clinic_id, run_id),
                                           StatementRunPageItem.sk.startswith(keys.STATEMENT_RUN_PAGE_PREFIX),
                                           consistent_read=True):
        for gid, outcome in sorted((page.results.as_dict() if page.results else {}).items()):
            what, _, detail = str(outcome).partition(":")
            if what == "created":
                billed += 1
                created += len([x for x in detail.split(",") if x])
            elif what == "skipped":
                skipped[detail] = skipped.get(detail, 0) + 1
            else:
                errors.append((gid, detail))
    return RunView(run.run_id, run.run_date, run.status, int(run.pages_total), int(run.pages_done),
                   billed, created, skipped, tuple(errors))


@clinic_scoped
def statement_runs_list(*, clinic_id: str, limit: int = 30) -> list[RunView]:
    """The clinic's runs, newest first (one Query, no outcomes)."""
    runs = StatementRunItem.query(keys.clinic_pk(require_id(clinic_id, field="clinic_id")),
                                  StatementRunItem.sk.startswith(keys.STATEMENT_RUN_PREFIX),
                                  scan_index_forward=False, limit=limit)
    return [RunView(r.run_id, r.run_date, r.status, int(r.pages_total), int(r.pages_done)) for r in runs]
