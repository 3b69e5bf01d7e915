"""Statement workflows (PRODUCT.md §4, REFERENCE-PORTAL.md §3.2, H1, J6, K1, K2): profiles and
their assignments, statement runs, pay codes for practice-management (PM) print runs, PM
statements pushed in as snapshots, PDF links and delivery status.

A statement run is one :class:`StatementRunItem` per clinic and local run date (conditional
put), enumerated into pages of guarantor ids (resumable from a cursor), each page processed by
:func:`statement_run_page` inline or from SQS. A guarantor's statement(s), the run's marker in
the guarantor's collection, the dunning count (conditioned on the value read), the statement-id
reference, the verification lookup, the printed pay links and the statement's notifications
(balance notice and reminders, :class:`chalicelib.notify.services.StatementNotices`) are written
in the ledger's snapshot transaction (:func:`chalicelib.ledger.services.statement_snapshot`),
so a redelivered page, a crashed worker or a run started twice never makes two statements for
one guarantor in one run, nor queues a statement's notifications twice. A run statement costs
one Query (the account), the snapshot's balance read and that one transaction; the page reads
its balances and markers in BatchGetItems, and its configuration once.

PDFs, CSV manifests and the statement documents carry PHI (names, addresses): never log them.
Outcomes and reasons are codes (``cycle_days``, ``no_address``, ...), never personal data.
"""

from __future__ import annotations

import csv
import io
import json
import random
import time
from collections import defaultdict
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import date, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from pynamodb.exceptions import PutError, UpdateError
from pynamodb.expressions.update import Action

from chalicelib.accounts.selectors import account_number_of
from chalicelib.core import clock, config
from chalicelib.core.errors import (
    AlreadyExists,
    ConditionFailed,
    InvalidInput,
    NotFound,
    TryAgainLater,
    UnknownClinic,
    UnknownGuarantor,
)
from chalicelib.core.ids import new_id, require_id
from chalicelib.ledger import services as ledger
from chalicelib.ledger.accounts import COLLECTIONS, ESCROW, PAID_SINCE, PAT_OPEN, STATEMENT_BALANCE
from chalicelib.links import services as links
from chalicelib.links.services import LinkKind
from chalicelib.notify import services as notify
from chalicelib.statements import queue, render, storage
from chalicelib.statements.codes import code_display, verification_code
from chalicelib.statements.profiles import Address, StatementProfile, dunning_next, profile_load, profile_parse
from chalicelib.store import keys
from chalicelib.store.db import Tx, TxFailed, clinic_scope, clinic_scoped
from chalicelib.store.models import (
    BalanceItem,
    ClinicItem,
    GuarantorItem,
    Item,
    PatientItem,
    ServiceLineItem,
    StatementItem,
)
from chalicelib.store.models_imports import BalanceNoticeItem
from chalicelib.store.models_statements import (
    StatementAssignItem,
    StatementProfileItem,
    StatementRecordItem,
    StatementRefItem,
    StatementRunItem,
    StatementRunMarkerItem,
    StatementRunPageItem,
    StatementSettingsItem,
    StatementVerifyItem,
)
from chalicelib.tenants import selectors as tenant_selectors

#: Guarantors per run page (one SQS message each).
PAGE_SIZE = 100
#: Guarantors of a page billed at once: their DynamoDB and S3 round trips overlap the rendering.
PAGE_THREADS = 4
#: Per-patient statements for one guarantor live in one transaction (100 items at most).
MAX_ACCOUNTS = 15
#: Items in one TransactWriteItems (DynamoDB's limit).
TX_MAX_ITEMS = 100
#: Items :func:`chalicelib.ledger.services.statement_snapshot` adds after the caller's (the balance).
SNAPSHOT_OWN_ITEMS = 1
#: A presigned PDF URL lives this long (seconds): enough to open it, too short to share.
PDF_URL_SECONDS = 300
BILL_ATTEMPTS = 3
LEVELS = ("PRV", "PAT", "ENC")


# --- profiles ---------------------------------------------------------------------------------


@clinic_scoped
def statement_profile_save(*, clinic_id: str, profile: Mapping[str, Any]) -> StatementProfile:
    """Create or replace a statement profile (REFERENCE-PORTAL.md §3.2, K1) and return it.

    ``profile``: the fields of :class:`~chalicelib.statements.profiles.StatementProfile`
    (``profile_id`` required). The group a pay link opens must exist. ``is_default`` makes it
    the clinic's default profile (the one guarantors without an assignment get); saving the
    default with ``is_default`` false leaves the clinic without one. Raises InvalidInput,
    NotFound (group), UnknownClinic.
    """
    parsed = profile_parse(dict(profile))
    tenant_selectors.clinic_get(clinic_id=clinic_id)
    if parsed.group_id:
        tenant_selectors.group_get(clinic_id=clinic_id, group_id=parsed.group_id)
    pk = keys.clinic_pk(clinic_id)
    sk = keys.statement_profile_sk(parsed.profile_id)
    try:
        item = StatementProfileItem.get(pk, sk, consistent_read=True)
    except StatementProfileItem.DoesNotExist:
        item = StatementProfileItem(pk, sk, profile_id=parsed.profile_id)
    item.settings_json = parsed.to_json()
    item.is_default = parsed.is_default
    item.hold = parsed.hold
    item.notification_schedule_id = parsed.notification_schedule_id
    item.save()  # conditioned on the version read (VersionAttribute)
    try:
        settings = StatementSettingsItem.get(pk, keys.STATEMENT_SETTINGS, consistent_read=True)
    except StatementSettingsItem.DoesNotExist:
        settings = StatementSettingsItem(pk, keys.STATEMENT_SETTINGS)
    if parsed.is_default and settings.default_profile_id != parsed.profile_id:
        settings.default_profile_id = parsed.profile_id
        settings.save()
    elif not parsed.is_default and settings.default_profile_id == parsed.profile_id:
        settings.default_profile_id = None
        settings.save()
    return parsed


@clinic_scoped
def statement_profile_assign(*, clinic_id: str, profile_id: str | None, guarantor_id: str | None = None,
                             patient_id: str | None = None, encounter_number: str | None = None,
                             provider_id: str | None = None) -> None:
    """Assign a profile (``None`` removes the assignment) at one level (REFERENCE-PORTAL.md K1):

    - ``guarantor_id`` alone: the guarantor's profile (statement grouping, cycle days, pay link,
      billing office, due days, payment rules);
    - ``guarantor_id`` + ``patient_id``: the patient's lines (a hold profile holds them);
    - ``guarantor_id`` + ``encounter_number``: one visit; overrides patient and provider, so a
      visit can be released from a provider hold;
    - ``provider_id`` alone: the provider's lines (a hold profile holds them, e.g. credentialing).

    Raises InvalidInput (none or several levels), NotFound (profile), UnknownGuarantor.
    """
    if profile_id is not None:
        require_id(profile_id, field="profile_id")
        try:
            StatementProfileItem.get(keys.clinic_pk(clinic_id), keys.statement_profile_sk(profile_id))
        except StatementProfileItem.DoesNotExist:
            raise NotFound(f"statement profile {profile_id} not found") from None
    if provider_id is not None:
        if guarantor_id or patient_id or encounter_number:
            raise InvalidInput("assign a provider's profile on its own")
        _assign(keys.clinic_pk(clinic_id), "PRV", require_id(provider_id, field="provider_id"), profile_id)
        return
    if guarantor_id is None:
        raise InvalidInput("name a guarantor (with a patient or encounter) or a provider")
    gpk = keys.guarantor_pk(clinic_id, require_id(guarantor_id, field="guarantor_id"))
    if patient_id is not None and encounter_number is not None:
        raise InvalidInput("assign a patient's or an encounter's profile, not both at once")
    if patient_id is None and encounter_number is None:
        try:
            GuarantorItem(gpk, keys.PROFILE).update(
                actions=[GuarantorItem.statement_profile_id.set(profile_id) if profile_id
                         else GuarantorItem.statement_profile_id.remove()],
                condition=GuarantorItem.pk.exists())
        except UpdateError as exc:
            if exc.cause_response_code == "ConditionalCheckFailedException":
                raise UnknownGuarantor(f"guarantor {guarantor_id} not found") from exc
            raise
        return
    try:
        GuarantorItem.get(gpk, keys.PROFILE)
    except GuarantorItem.DoesNotExist:
        raise UnknownGuarantor(f"guarantor {guarantor_id} not found") from None
    if patient_id is not None:
        _assign(gpk, "PAT", require_id(patient_id, field="patient_id"), profile_id)
    else:
        _assign(gpk, "ENC", require_id(encounter_number, field="encounter_number"), profile_id)


def _assign(pk: str, level: str, ref_id: str, profile_id: str | None) -> None:
    item = StatementAssignItem(pk, keys.statement_assign_sk(level, ref_id), level=level, ref_id=ref_id,
                               profile_id=profile_id or "")
    if profile_id:
        item.save()
    else:
        item.delete()


# --- what a run or a push reads -----------------------------------------------------------------


@dataclass
class ClinicContext:
    """A clinic's statement configuration, read once per page: name, time zone, profiles by id,
    the default profile id and provider-level assignments."""

    clinic_id: str
    name: str
    time_zone: str
    profiles: dict[str, StatementProfile]
    default_id: str | None
    provider_profiles: dict[str, str]

    @property
    def default(self) -> StatementProfile | None:
        return self.profiles.get(self.default_id) if self.default_id else None

    def guarantor_profile(self, profile_id: str | None) -> StatementProfile | None:
        """The guarantor's own profile, else the default."""
        return (self.profiles.get(profile_id) if profile_id else None) or self.default

    @property
    def runs_everyone(self) -> bool:
        """True when every guarantor has a profile billed from here (a default, and every
        profile ``runs``): then no guarantor's outcome depends on which profile is theirs."""
        return self.default is not None and all(p.runs for p in self.profiles.values())


def clinic_context(clinic_id: str) -> ClinicContext:
    """Read the clinic and its statement configuration: one BatchGetItem (clinic, settings) and
    one Query (``STPA#`` .. ``STPROF$``: assignments and profiles). Raises UnknownClinic."""
    pk = keys.clinic_pk(require_id(clinic_id, field="clinic_id"))
    profiles: dict[str, StatementProfile] = {}
    default_id = None
    providers: dict[str, str] = {}
    with clinic_scope(clinic_id):
        found = {it.sk: it for it in Item.batch_get([(pk, keys.CLINIC), (pk, keys.STATEMENT_SETTINGS)],
                                                    consistent_read=True)}
        clinic = found.get(keys.CLINIC)
        if not isinstance(clinic, ClinicItem):
            raise UnknownClinic(f"clinic {clinic_id} not found")
        settings = found.get(keys.STATEMENT_SETTINGS)
        if isinstance(settings, StatementSettingsItem):
            default_id = settings.default_profile_id
        for item in Item.query(pk, Item.sk.between(keys.STATEMENT_ASSIGN_PREFIX,
                                                   keys.STATEMENT_PROFILE_PREFIX[:-1] + "$"),
                               consistent_read=True):
            if isinstance(item, StatementProfileItem):
                profiles[item.profile_id] = profile_load(item.settings_json)
            elif isinstance(item, StatementAssignItem) and item.level == "PRV":
                providers[item.ref_id] = item.profile_id
    profiles = {pid: replace(p, is_default=pid == default_id) for pid, p in profiles.items()}
    return ClinicContext(clinic_id, clinic.name, clinic.time_zone, profiles, default_id, providers)


@dataclass
class AccountRead:
    """One guarantor as a statement needs it: profile, balance, patients, service lines, past
    statements, patient/encounter assignments, and this run's marker if any."""

    guarantor: GuarantorItem
    balance: BalanceItem
    patients: dict[str, PatientItem]
    lines: list[ServiceLineItem]
    statements: list[StatementItem]
    assigns: dict[tuple[str, str], str]
    marker: StatementRunMarkerItem | None = None


def account_read(clinic_id: str, guarantor_id: str, balance: BalanceItem | None = None,
                 marker: StatementRunMarkerItem | None = None) -> AccountRead:
    """One consistent Query of the collection from ``PAT#`` to ``STPA$`` (patients, posting keys,
    profile, receipts, lines, statements, assignments; never the entries or messages), plus the
    balance item when not given. Raises UnknownGuarantor."""
    pk = keys.guarantor_pk(clinic_id, guarantor_id)
    if balance is None:
        try:
            balance = BalanceItem.get(pk, keys.BALANCE, consistent_read=True)
        except BalanceItem.DoesNotExist:
            raise UnknownGuarantor(f"guarantor {guarantor_id} not found") from None
    guarantor = None
    patients: dict[str, PatientItem] = {}
    lines: list[ServiceLineItem] = []
    statements: list[StatementItem] = []
    assigns: dict[tuple[str, str], str] = {}
    for item in Item.query(pk, Item.sk.between(keys.PATIENT_PREFIX, keys.STATEMENT_ASSIGN_PREFIX[:-1] + "$"),
                           consistent_read=True):
        if isinstance(item, GuarantorItem):
            guarantor = item
        elif isinstance(item, PatientItem):
            patients[item.patient_id] = item
        elif isinstance(item, ServiceLineItem):
            lines.append(item)
        elif isinstance(item, StatementItem):
            statements.append(item)
        elif isinstance(item, StatementAssignItem):
            assigns[(item.level, item.ref_id)] = item.profile_id
    if guarantor is None:
        raise UnknownGuarantor(f"guarantor {guarantor_id} not found")
    lines.sort(key=lambda x: (x.responsibility_date or x.date_of_service, x.encounter_number, int(x.line_number)))
    return AccountRead(guarantor, balance, patients, lines, statements, assigns, marker)


# --- planning one guarantor's statement(s) -----------------------------------------------------


@dataclass
class AccountPlan:
    """One statement to issue: the account (guarantor or patient), its lines and figures (cents).

    ``account_number`` is what the statement prints as "Account number" (display only, never a
    key): for a guarantor account the practice's own number when it gave one, else the
    guarantor id (``accounts.account_number_of``); for a per-patient account the patient id
    (REFERENCE-PORTAL.md K1 "One Statement Per": the account number is the Guarantor ID, or the
    Patient ID, as the practice's PM system knows them).
    """

    account_kind: str
    account_number: str
    patient_ids: list[str]
    lines: list[ServiceLineItem]
    new_ids: set[str]
    account_balance: int
    new_cents: int
    previously_billed_cents: int


@dataclass
class Plan:
    """What a guarantor gets now: ``skip`` or ``error`` (a reason code), else ``accounts``."""

    profile: StatementProfile | None
    statement_balance: int = 0
    held: dict[str, int] = field(default_factory=dict)
    accounts: list[AccountPlan] = field(default_factory=list)
    channel: str = "paper"
    skip: str | None = None
    error: str | None = None
    dunning: int = 0


def _line_held(ctx: ClinicContext, acct: AccountRead, line: ServiceLineItem, own: StatementProfile) -> bool:
    """K1 holds: an encounter's profile decides its visit (it can release a provider hold); else a
    provider's hold profile holds the line; else the patient's profile; else the guarantor's."""
    enc = acct.assigns.get(("ENC", line.encounter_number))
    if enc and enc in ctx.profiles:
        return ctx.profiles[enc].hold
    provider = line.rendering_provider_id or line.billing_provider_id
    prv = ctx.provider_profiles.get(provider or "")
    if prv and prv in ctx.profiles and ctx.profiles[prv].hold:
        return True
    pat = acct.assigns.get(("PAT", line.patient_id))
    if pat and pat in ctx.profiles:
        return ctx.profiles[pat].hold
    return own.hold


def _address(guarantor: GuarantorItem) -> Address:
    raw = guarantor.address.as_dict() if guarantor.address is not None else {}
    values = {k: str(raw.get(k) or "") for k in ("line1", "line2", "city", "state", "postal_code")}
    if not values["line1"] and raw.get("street"):
        values["line1"] = str(raw["street"])
    if not values["postal_code"] and raw.get("zip"):
        values["postal_code"] = str(raw["zip"])
    return Address(**values)


def _channel(guarantor: GuarantorItem) -> str | None:
    """``paper`` with a complete mailing address; ``electronic`` without one when an email is on
    file with email consent; else None (the statement cannot be delivered)."""
    if _address(guarantor).complete:
        return "paper"
    consent = guarantor.consent.as_dict() if guarantor.consent is not None else {}
    if guarantor.email and consent.get("email") is True:
        return "electronic"
    return None


def plan_statement(ctx: ClinicContext, acct: AccountRead, *, statement_date: date, for_run: bool,
                   only_line_ids: set[str] | None = None) -> Plan:
    """Decide what ``acct`` gets on ``statement_date`` (PRODUCT.md §4, REFERENCE-PORTAL.md K1).

    Skips (reason codes): ``not_billed_here`` (the profile's statements come from the PM system;
    runs only), ``hold`` (every open line is held), ``no_balance`` (no open patient balance
    outside collections), ``below_minimum``, ``cycle_days`` (the last statement is more recent
    than the profile's cycle days; runs only). Errors: ``no_profile``, ``no_address`` (runs: no
    complete mailing address and no email with email consent), ``too_many_accounts``. A run
    statement goes by ``paper`` (an address) or ``electronic``; a PM statement is ``pm``.

    ``only_line_ids`` (a PM push): the lines the PM billed; other open lines count as held.
    Statement balance = open patient balance − held − unapplied funds (floor 0), what the
    ledger's snapshot stores; per-patient accounts owe their lines' open balance.
    """
    own = ctx.guarantor_profile(acct.guarantor.statement_profile_id)
    plan = Plan(profile=own)
    if own is None:
        plan.error = "no_profile"
        return plan
    if for_run and not own.runs:
        plan.skip = "not_billed_here"
        return plan
    totals = acct.balance.totals
    billable: list[ServiceLineItem] = []
    for line in acct.lines:
        open_cents = line.money.get(PAT_OPEN, 0)
        if open_cents <= 0 or line.money.get(COLLECTIONS, 0) > 0:
            continue
        held = (line.line_id not in only_line_ids) if only_line_ids is not None else _line_held(ctx, acct, line, own)
        if held:
            plan.held[line.part] = plan.held.get(line.part, 0) + open_cents
        else:
            billable.append(line)
    plan.statement_balance = max(0, totals.get(PAT_OPEN, 0) - totals.get(ESCROW, 0) - sum(plan.held.values()))
    if not billable:
        plan.skip = "hold" if plan.held else "no_balance"
        return plan
    if plan.statement_balance <= 0:
        plan.skip = "no_balance"
        return plan
    if plan.statement_balance < own.minimum_cents:
        plan.skip = "below_minimum"
        return plan
    dates = [date.fromisoformat(s.statement_date) for s in acct.statements]
    if for_run and dates and statement_date < max(dates) + timedelta(days=own.cycle_days):
        plan.skip = "cycle_days"
        return plan
    if for_run:
        channel = _channel(acct.guarantor)
        if channel is None:
            plan.error = "no_address"
            return plan
        plan.channel = channel
    else:
        plan.channel = "pm"
    billed_before = {str(x.get("line_id")) for s in acct.statements for x in s.lines}
    groups: dict[str, list[ServiceLineItem]] = defaultdict(list)
    if own.one_statement_per == "patient":
        for line in billable:
            groups[line.patient_id].append(line)
    else:
        groups[acct.guarantor.guarantor_id] = billable
    if len(groups) > MAX_ACCOUNTS:
        plan.error = "too_many_accounts"
        return plan
    per_patient = own.one_statement_per == "patient"
    for group_id, lines in groups.items():
        new_ids = {ln.line_id for ln in lines if ln.line_id not in billed_before}
        new_cents = sum(ln.money.get(PAT_OPEN, 0) for ln in lines if ln.line_id in new_ids)
        prev_cents = sum(ln.money.get(PAT_OPEN, 0) for ln in lines if ln.line_id not in new_ids)
        plan.accounts.append(AccountPlan(
            account_kind="patient" if per_patient else "guarantor",
            account_number=group_id if per_patient else account_number_of(acct.guarantor),
            patient_ids=sorted({ln.patient_id for ln in lines}), lines=lines, new_ids=new_ids,
            account_balance=new_cents + prev_cents if per_patient else plan.statement_balance,
            new_cents=new_cents, previously_billed_cents=prev_cents))
    has_statement = acct.balance.statement_id is not None
    plan.dunning = dunning_next(
        own, current=int(acct.guarantor.dunning_count or 0), paid_since_cents=max(0, totals.get(PAID_SINCE, 0)),
        last_statement_cents=totals.get(STATEMENT_BALANCE, 0) if has_statement else 0)
    return plan


# --- issuing ----------------------------------------------------------------------------------


class _Stale(Exception):
    """Something was posted between reading the account and the snapshot: read again."""


@dataclass(frozen=True)
class Issued:
    """Statements issued for one guarantor (ids in account order), and the notifications written
    in their transaction (None: not written with them, e.g. they would not fit)."""

    statement_ids: tuple[str, ...]
    notices: notify.PreparedNotices | None = None


def _patient_name(acct: AccountRead, patient_id: str) -> str:
    p = acct.patients.get(patient_id)
    if p is None:
        return ""
    return f"{p.preferred_name or p.first_name} {p.last_name}".strip()


def _recipient(guarantor: GuarantorItem) -> tuple[str, ...]:
    name = f"{guarantor.preferred_name or guarantor.first_name} {guarantor.last_name}".strip()
    return (name, *_address(guarantor).lines())


def _office_lines(profile: StatementProfile) -> tuple[str, ...]:
    office = profile.billing_office
    out = list(office.return_address.lines())
    contact = "  ".join(x for x in (f"Phone {office.phone}" if office.phone else "",
                                    f"Fax {office.fax}" if office.fax else "") if x)
    out += [x for x in (contact, office.hours_1, office.hours_2, office.email, office.contact_info) if x]
    return tuple(out)


def _notice(dunning: int) -> str | None:
    if dunning >= 3:
        return "Past due: please pay now or call us."
    if dunning == 2:
        return "Reminder: this balance is past due."
    return None


def _document(ctx: ClinicContext, acct: AccountRead, plan: Plan, account: AccountPlan, *, statement_date: str,
              due_date: str, code: str, pay_url: str | None, qr_url: str | None) -> render.StatementDoc:
    assert plan.profile is not None
    office = plan.profile.billing_office
    remit = office.remit_address.lines() or office.return_address.lines()
    per_patient = account.account_kind == "patient"
    escrow = acct.balance.totals.get(ESCROW, 0)
    notice = _notice(plan.dunning)
    if per_patient and escrow > 0:
        notice = notice or f"Unapplied payments on the family account: ${escrow / 100:,.2f}"
    cfg = config.settings()
    return render.StatementDoc(
        practice_name=office.name or ctx.name, office_lines=_office_lines(plan.profile),
        remit_lines=tuple(remit), recipient_lines=_recipient(acct.guarantor),
        account_number=account.account_number, statement_date=statement_date, due_date=due_date,
        amount_due_cents=account.account_balance, previously_billed_cents=account.previously_billed_cents,
        new_charges_cents=account.new_cents, unapplied_cents=0 if per_patient else min(escrow, account.new_cents
                                                                                     + account.previously_billed_cents),
        lines=tuple(render.PrintedLine(ln.date_of_service, _patient_name(acct, ln.patient_id), ln.procedure_code,
                                       ln.description or "", ln.money.get(PAT_OPEN, 0), ln.line_id in account.new_ids)
                    for ln in account.lines),
        pay_url=pay_url, qr_url=qr_url, verification_code=code_display(code),
        verify_url=f"{cfg.portal_url}/verify?c={ctx.clinic_id}" if cfg.portal_url_set else None, notice=notice,
        patient_label=_patient_name(acct, account.patient_ids[0]) if per_patient and account.patient_ids else None)


def _commit(clinic_id: str, acct: AccountRead, plan: Plan, records: list[StatementRecordItem],
            marker: StatementRunMarkerItem | None, pay_links: Sequence[links.PreparedLink] = (),
            notices: notify.PreparedNotices | None = None) -> bool:
    """The snapshot transaction: the first record through the ledger, the rest with the marker,
    the dunning count (conditioned on the value read), references, verification lookups, the
    printed pay links (so a link exists only for a statement that was issued; the balance
    update in the same transaction proves the guarantor exists) and, when they fit in the
    transaction's 100 items, the statement's notifications (``notices``, built with the dunning
    count written here). Returns True when the notifications were written."""
    guarantor = acct.guarantor
    read_seq = int(acct.balance.last_seq)
    old_dunning = int(guarantor.dunning_count or 0)
    pk = keys.guarantor_pk(clinic_id, guarantor.guarantor_id)
    written = [False]

    def also(tx: Tx, seq: int) -> None:
        written[0] = False
        if seq != read_seq:
            raise _Stale()
        for record in records[1:]:
            tx.put(record, condition=StatementItem.pk.does_not_exist())
        if marker is not None:
            tx.put(marker, condition=StatementRunMarkerItem.pk.does_not_exist())
        unchanged = GuarantorItem.dunning_count == old_dunning
        if old_dunning == 0:
            unchanged = unchanged | GuarantorItem.dunning_count.does_not_exist()
        tx.update(GuarantorItem(pk, keys.PROFILE), [GuarantorItem.dunning_count.set(plan.dunning)],
                  condition=GuarantorItem.pk.exists() & unchanged, versioned=False)
        for record in records:
            tx.put(StatementRefItem(keys.statement_ref_pk(clinic_id, record.statement_id), keys.STATEMENT_REF,
                                    statement_id=record.statement_id, guarantor_id=guarantor.guarantor_id),
                   condition=StatementRefItem.pk.does_not_exist())
            if record.verification_code:
                tx.put(StatementVerifyItem(keys.statement_verify_pk(clinic_id, record.verification_code),
                                           keys.statement_verify_sk(record.statement_id),
                                           statement_id=record.statement_id, statement_date=record.statement_date))
        for link in pay_links:
            links.LinkIssuer.add_to(tx, link)
        if (notices is not None and notices.items
                and len(tx) + len(notices.items) + SNAPSHOT_OWN_ITEMS <= TX_MAX_ITEMS):
            notify.StatementNotices.add_to(tx, notices)
            written[0] = True

    ledger.statement_snapshot(clinic_id=clinic_id, guarantor_id=guarantor.guarantor_id, statement=records[0],
                              also=also, held=plan.held, balance_read=acct.balance)
    return written[0]


def _record(clinic_id: str, acct: AccountRead, plan: Plan, account: AccountPlan, *, statement_id: str,
            statement_date: str, due_date: str, source: str, run_id: str | None, code: str | None,
            pdf_key: str | None, channel: str, status: str) -> StatementRecordItem:
    assert plan.profile is not None
    now = clock.now()
    return StatementRecordItem(
        keys.guarantor_pk(clinic_id, acct.guarantor.guarantor_id), keys.statement_sk(statement_id),
        statement_id=statement_id, statement_date=statement_date, due_date=due_date,
        account_number=account.account_number, statement_balance=plan.statement_balance,
        amount_due=plan.statement_balance, as_of_seq=int(acct.balance.last_seq),
        lines=[{"line_id": ln.line_id, "date_of_service": ln.date_of_service, "procedure_code": ln.procedure_code,
                "patient_id": ln.patient_id, "open_cents": ln.money.get(PAT_OPEN, 0),
                "status": "new" if ln.line_id in account.new_ids else "previously_billed"} for ln in account.lines],
        created_at=now, guarantor_id=acct.guarantor.guarantor_id, run_id=run_id, source=source,
        profile_id=plan.profile.profile_id, account_kind=account.account_kind, patient_ids=account.patient_ids,
        account_balance=account.account_balance, new_cents=account.new_cents,
        previously_billed_cents=account.previously_billed_cents,
        unapplied_cents=acct.balance.totals.get(ESCROW, 0), verification_code=code, pdf_key=pdf_key,
        delivery_channel=channel, delivery_status=status, dunning_count=plan.dunning)


def _pay_links(issuer: links.LinkIssuer, guarantor_id: str, profile: StatementProfile,
               statement_id: str | None) -> tuple[str | None, str | None, list[links.PreparedLink]]:
    """``(printed URL, QR URL, links to store)`` as the profile prints them: a statement-URL
    link and a statement-QR link (two links, so the session log tells the origins apart,
    PRODUCT.md §6). Nothing is written: the caller stores the links in its own transaction."""
    if profile.pay_link == "none" or not profile.group_id:
        return None, None, []
    qr = issuer.prepare(guarantor_id=guarantor_id, group_id=profile.group_id, kind=LinkKind.STATEMENT_QR,
                        statement_id=statement_id) if profile.prints_qr else None
    url = issuer.prepare(guarantor_id=guarantor_id, group_id=profile.group_id, kind=LinkKind.STATEMENT_URL,
                         statement_id=statement_id) if profile.prints_url else None
    return (url.link.url if url else None, qr.link.url if qr else None, [x for x in (qr, url) if x is not None])


def _issue(ctx: ClinicContext, acct: AccountRead, plan: Plan, *, run_id: str, statement_date: date,
           issuer: links.LinkIssuer, notices: notify.StatementNotices) -> Issued:
    """Links, PDFs, notifications and the snapshot transaction for a planned run statement."""
    assert plan.profile is not None
    clinic_id = ctx.clinic_id
    gid = acct.guarantor.guarantor_id
    sdate = statement_date.isoformat()
    due = (statement_date + timedelta(days=plan.profile.due_days)).isoformat()
    store = storage.storage()
    records = []
    pay_links: list[links.PreparedLink] = []
    for account in plan.accounts:
        sid = new_id("st")
        code = verification_code(clinic_id, sid)
        pay_url, qr_url, prepared = _pay_links(issuer, gid, plan.profile, sid)
        pay_links += prepared
        pdf = render.statement_pdf(_document(ctx, acct, plan, account, statement_date=sdate, due_date=due,
                                             code=code, pay_url=pay_url, qr_url=qr_url))
        key = storage.pdf_key(clinic_id, run_id, sid)
        store.put(key, pdf)
        status = "not_yet_mailed" if plan.channel == "paper" else "e_delivered"
        records.append(_record(clinic_id, acct, plan, account, statement_id=sid, statement_date=sdate, due_date=due,
                               source="run", run_id=run_id, code=code, pdf_key=key, channel=plan.channel,
                               status=status))
    marker = StatementRunMarkerItem(keys.guarantor_pk(clinic_id, gid), keys.statement_run_marker_sk(run_id),
                                    run_id=run_id, status="created", statement_ids=[r.statement_id for r in records],
                                    created_at=clock.now())
    messages = notices.prepare(guarantor=acct.guarantor, statement=records[0], dunning_count=plan.dunning,
                               schedule_id=plan.profile.notification_schedule_id)
    written = _commit(clinic_id, acct, plan, records, marker, pay_links, messages)
    return Issued(tuple(r.statement_id for r in records), messages if written else None)


def _marker_outcome(marker: StatementRunMarkerItem) -> str:
    if marker.status == "created":
        return "created:" + ",".join(marker.statement_ids or [])
    return f"error:{marker.reason}"


def _error_marker(clinic_id: str, guarantor_id: str, run_id: str, reason: str) -> str:
    """Record that this run could not bill the guarantor (J6 status Error, with the reason)."""
    marker = StatementRunMarkerItem(keys.guarantor_pk(clinic_id, guarantor_id), keys.statement_run_marker_sk(run_id),
                                    run_id=run_id, status="error", reason=reason, created_at=clock.now())
    try:
        marker.save(condition=StatementRunMarkerItem.pk.does_not_exist())
    except PutError as exc:
        if exc.cause_response_code != "ConditionalCheckFailedException":
            raise
        return _marker_outcome(StatementRunMarkerItem.get(marker.pk, marker.sk, consistent_read=True))
    return f"error:{reason}"


def _notify_statement(ctx: ClinicContext, guarantor_id: str, statement_id: str,
                      profile: StatementProfile | None) -> None:
    """Queue the balance notification and reminders of a new statement, paper or electronic,
    on every channel on file (PRODUCT.md §1.3: "its notification goes out at once by email
    and/or SMS, carrying a payment link"; consent and quiet hours are checked at send time; the
    profile names the reminder schedule). Idempotent: the messages' ids are keyed by the
    statement, so a resumed page or a redelivered message queues nothing twice."""
    notify.statement_notifications_queue(
        clinic_id=ctx.clinic_id, guarantor_id=guarantor_id, statement_id=statement_id,
        schedule_id=profile.notification_schedule_id if profile else "default")


def _notify_resumed(ctx: ClinicContext, guarantor_id: str, statement: StatementItem | None) -> None:
    """On a resumed guarantor (billed before a crash or by another worker): queue its
    statement's notifications again (nothing is queued twice)."""
    if statement is not None:
        _notify_statement(ctx, guarantor_id, statement.statement_id,
                          ctx.profiles.get(getattr(statement, "profile_id", None) or ""))


def _marker_statement(clinic_id: str, guarantor_id: str, marker: StatementRunMarkerItem) -> StatementItem | None:
    """The statement a ``created`` marker points at first (the one the balance names)."""
    if marker.status != "created" or not marker.statement_ids:
        return None
    try:
        return StatementItem.get(keys.guarantor_pk(clinic_id, guarantor_id), keys.statement_sk(marker.statement_ids[0]),
                                 consistent_read=True)
    except StatementItem.DoesNotExist:
        return None


def _bill_guarantor(ctx: ClinicContext, guarantor_id: str, *, run_id: str, statement_date: date,
                    balance: BalanceItem | None, marker: StatementRunMarkerItem | None,
                    issuer: links.LinkIssuer, notices: notify.StatementNotices) -> str:
    """One guarantor of a run: an outcome code ``created:<ids>``, ``skipped:<reason>`` or
    ``error:<reason>``. Safe to repeat: the run's marker decides. A new statement's
    notifications are written in its snapshot transaction (else queued right after it), and
    queued again, idempotently, on every pass that finds it created (a resumed page). A
    guarantor whose balance shows nothing open is ``skipped:no_balance`` without reading the
    account (when :attr:`ClinicContext.runs_everyone`). Raises TryAgainLater when the account
    kept changing under it (the page is retried)."""
    clinic_id = ctx.clinic_id
    for attempt in range(BILL_ATTEMPTS):
        if marker is not None:
            _notify_resumed(ctx, guarantor_id, _marker_statement(clinic_id, guarantor_id, marker))
            return _marker_outcome(marker)
        if balance is None:
            return "skipped:unknown_guarantor"
        if balance.totals.get(PAT_OPEN, 0) <= 0 and ctx.runs_everyone:
            # The ledger keeps every line's open amount >= 0 and the total is their sum: no line
            # is open, so the account read could only end in no_balance (plan_statement).
            return "skipped:no_balance"
        try:
            acct = account_read(clinic_id, guarantor_id, balance)
        except UnknownGuarantor:
            return "skipped:unknown_guarantor"
        mine = sorted((s for s in acct.statements if getattr(s, "run_id", None) == run_id),
                      key=lambda s: s.statement_id)
        if mine:  # billed by a concurrent worker after the page's marker read
            latest = next((s for s in mine if s.statement_id == acct.balance.statement_id), None)
            _notify_resumed(ctx, guarantor_id, latest)
            return "created:" + ",".join(s.statement_id for s in mine)
        plan = plan_statement(ctx, acct, statement_date=statement_date, for_run=True)
        if plan.skip:
            return f"skipped:{plan.skip}"
        if plan.error:
            return _error_marker(clinic_id, guarantor_id, run_id, plan.error)
        try:
            issued = _issue(ctx, acct, plan, run_id=run_id, statement_date=statement_date, issuer=issuer,
                            notices=notices)
        except ConditionFailed as failed:
            marker_sk = keys.statement_run_marker_sk(run_id)
            if marker_sk in failed.keys:
                marker = StatementRunMarkerItem.get(keys.guarantor_pk(clinic_id, guarantor_id), marker_sk,
                                                    consistent_read=True)
                continue
        except (_Stale, AlreadyExists):
            pass
        else:
            if issued.notices is not None:
                notify.StatementNotices.committed(issued.notices)
            elif acct.guarantor.email or acct.guarantor.mobile:  # they did not fit in its transaction
                _notify_statement(ctx, guarantor_id, issued.statement_ids[0], plan.profile)
            return "created:" + ",".join(issued.statement_ids)
        time.sleep(random.uniform(0.01, 0.05) * (attempt + 1))
        pk = keys.guarantor_pk(clinic_id, guarantor_id)
        balance = BalanceItem.get(pk, keys.BALANCE, consistent_read=True)
    if marker is not None:
        _notify_resumed(ctx, guarantor_id, _marker_statement(clinic_id, guarantor_id, marker))
        return _marker_outcome(marker)
    raise TryAgainLater(f"guarantor {guarantor_id} kept changing during the statement run")


# --- runs ---------------------------------------------------------------------------------------


def _check_ready(ctx: ClinicContext) -> None:
    """Refuse a run up front (not guarantor by guarantor) when it could not print correctly."""
    if ctx.default is None:
        raise InvalidInput("the clinic has no default statement profile: save one with is_default true")
    cfg = config.settings()
    for pid, profile in sorted(ctx.profiles.items()):
        if profile.runs and (profile.prints_qr or profile.prints_url) and not cfg.portal_url_set:
            what = "a QR code" if profile.prints_qr else "a pay URL"
            raise InvalidInput(
                f"statement profile {pid} prints {what}, but no portal base URL is configured: "
                "set FRONTDESK_PORTAL_URL to the portal's public address (e.g. https://pay.example.org) "
                "and start the run again")
    storage.storage()


def _local_date(ctx: ClinicContext) -> date:
    return clock.now().astimezone(ZoneInfo(ctx.time_zone)).date()


@clinic_scoped
def statement_run_start(*, clinic_id: str, run_date: str | None = None) -> StatementRunItem:
    """Start (or join) the clinic's statement run for ``run_date`` (default: the clinic's local
    date) and drive it as far as this process can: enumerate guarantors into pages, then send
    the pages to SQS, or process them inline when no queue is configured.

    One run per clinic and date (conditional put): a second start, concurrent or later, joins
    the same run and never creates a second set of statements. Raises InvalidInput up front: no
    default profile, a profile printing a QR code or URL without ``FRONTDESK_PORTAL_URL``, bad
    storage configuration. Raises UnknownClinic.
    """
    ctx = clinic_context(clinic_id)
    _check_ready(ctx)
    day = date.fromisoformat(run_date) if run_date else _local_date(ctx)
    run_id = day.isoformat()
    item = StatementRunItem(keys.clinic_pk(clinic_id), keys.statement_run_sk(run_id), run_id=run_id,
                            run_date=run_id, created_at=clock.now())
    try:
        item.save(condition=StatementRunItem.pk.does_not_exist())
    except PutError as exc:
        if exc.cause_response_code != "ConditionalCheckFailedException":
            raise
    return statement_run_continue(clinic_id=clinic_id, run_id=run_id)


def _run_get(clinic_id: str, run_id: str) -> StatementRunItem:
    try:
        return StatementRunItem.get(keys.clinic_pk(clinic_id),
                                    keys.statement_run_sk(require_id(run_id, field="run_id")), consistent_read=True)
    except StatementRunItem.DoesNotExist:
        raise NotFound(f"statement run {run_id} not found") from None


def _enumerate(clinic_id: str, run: StatementRunItem, sent: set[int]) -> StatementRunItem:
    """Page the clinic's guarantor index into run pages from the stored cursor (resumable);
    with a queue, each page is sent as it is stored (its number added to ``sent``)."""
    while run.status == "enumerating":
        cursor = json.loads(run.cursor) if run.cursor else None
        found = GuarantorItem.gsi1.query(keys.guarantors_gsi1pk(clinic_id), limit=PAGE_SIZE,
                                         last_evaluated_key=cursor)
        ids = [g.guarantor_id for g in found if isinstance(g, GuarantorItem)]
        after = found.last_evaluated_key
        page_no = int(run.pages_total) + 1
        if ids:
            page = StatementRunPageItem(keys.statement_run_pk(clinic_id, run.run_id),
                                        keys.statement_run_page_sk(page_no), page=page_no, guarantor_ids=ids)
            try:
                page.save(condition=StatementRunPageItem.pk.does_not_exist())
            except PutError as exc:
                if exc.cause_response_code != "ConditionalCheckFailedException":
                    raise
            if queue.enabled():
                queue.send([queue.message(clinic_id=clinic_id, run_id=run.run_id, page=page_no)])
                sent.add(page_no)
        try:
            actions: list[Action] = [
                StatementRunItem.cursor.set(json.dumps(after)) if after else StatementRunItem.cursor.remove(),
                StatementRunItem.pages_total.set(page_no if ids else int(run.pages_total))]
            if not after:
                actions.append(StatementRunItem.status.set("processing"))
            run.update(actions=actions)
        except UpdateError as exc:
            if exc.cause_response_code != "ConditionalCheckFailedException":
                raise
            run = _run_get(clinic_id, run.run_id)  # another worker moved on: continue from its cursor
    return run


def _pending_pages(clinic_id: str, run_id: str) -> list[int]:
    return [int(p.page) for p in StatementRunPageItem.query(
        keys.statement_run_pk(clinic_id, run_id), StatementRunPageItem.sk.startswith(keys.STATEMENT_RUN_PAGE_PREFIX),
        consistent_read=True) if p.status == "pending"]


def _close_if_finished(clinic_id: str, run_id: str) -> StatementRunItem:
    """Mark the run done once enumeration has ended and every page is closed (idempotent); the
    worker that marks it starts the print files (:func:`statement_run_print`)."""
    for _ in range(5):
        run = _run_get(clinic_id, run_id)
        if run.status != "processing" or int(run.pages_done) < int(run.pages_total):
            return run
        try:
            run.update(actions=[StatementRunItem.status.set("done"), StatementRunItem.finished_at.set(clock.now())],
                       condition=StatementRunItem.status == "processing")
        except UpdateError as exc:
            if exc.cause_response_code != "ConditionalCheckFailedException":
                raise
            continue
        _print_files_start(clinic_id, run_id)  # only the worker that closed the run
        return run
    return _run_get(clinic_id, run_id)


@clinic_scoped
def statement_run_continue(*, clinic_id: str, run_id: str) -> StatementRunItem:
    """Resume a run after a crash or a lost message: finish enumerating from the cursor, then
    (re)send every page not yet done to SQS, or process them inline. Re-sending a page that is
    in flight is harmless (pages and guarantors are idempotent). Returns the run item as it
    stands. Raises NotFound."""
    sent: set[int] = set()
    run = _enumerate(clinic_id, _run_get(clinic_id, run_id), sent)
    if run.status == "done":  # closed before: its print files may still be missing (a crash)
        if not storage.storage().exists(storage.print_manifest_key(clinic_id, run_id)):
            _print_files_start(clinic_id, run_id)
        return run
    pending = _pending_pages(clinic_id, run_id)
    if queue.enabled():
        queue.send([queue.message(clinic_id=clinic_id, run_id=run_id, page=n) for n in pending if n not in sent])
    else:
        for n in pending:
            statement_run_page(clinic_id=clinic_id, run_id=run_id, page=n)
    return _close_if_finished(clinic_id, run_id)


@clinic_scoped
def statement_run_page(*, clinic_id: str, run_id: str, page: int) -> dict[str, str]:
    """Process one page of a run (the SQS consumer's unit): bill each guarantor once, then close
    the page and count it on the run in one transaction. Returns guarantor id -> outcome code.

    A page already done returns its stored results; a guarantor already billed in this run
    returns its marker's outcome. Raises NotFound (run or page), TryAgainLater (the message is
    retried).
    """
    run = _run_get(clinic_id, run_id)
    pk = keys.statement_run_pk(clinic_id, run_id)
    try:
        item = StatementRunPageItem.get(pk, keys.statement_run_page_sk(page), consistent_read=True)
    except StatementRunPageItem.DoesNotExist:
        raise NotFound(f"page {page} of statement run {run_id} not found") from None
    if item.status == "done":
        if run.status == "done" and not storage.storage().exists(storage.print_manifest_key(clinic_id, run_id)):
            _print_files_start(clinic_id, run_id)  # the run closed, but its print files were lost
        return {k: str(v) for k, v in (item.results.as_dict() if item.results else {}).items()}
    ctx = clinic_context(clinic_id)
    day = date.fromisoformat(run.run_date)
    ids = list(dict.fromkeys(item.guarantor_ids or []))
    wanted = [(keys.guarantor_pk(clinic_id, g), sk) for g in ids
              for sk in (keys.BALANCE, keys.statement_run_marker_sk(run_id))]
    found: dict[tuple[str, str], Item] = {}
    for start in range(0, len(wanted), 100):
        for it in Item.batch_get(wanted[start:start + 100], consistent_read=True):
            found[(it.pk, it.sk)] = it

    issuer = links.LinkIssuer(clinic_id)  # each group's link lifetimes read once per page
    notices = notify.StatementNotices(clinic_id)  # each reminder schedule read once per page

    def bill(gid: str) -> str:
        gpk = keys.guarantor_pk(clinic_id, gid)
        balance = found.get((gpk, keys.BALANCE))
        marker = found.get((gpk, keys.statement_run_marker_sk(run_id)))
        with clinic_scope(clinic_id):  # worker threads do not inherit the caller's context
            return _bill_guarantor(ctx, gid, run_id=run_id, statement_date=day,
                                   balance=balance if isinstance(balance, BalanceItem) else None,
                                   marker=marker if isinstance(marker, StatementRunMarkerItem) else None,
                                   issuer=issuer, notices=notices)

    with ThreadPoolExecutor(PAGE_THREADS) as pool:
        results = dict(zip(ids, pool.map(bill, ids), strict=True))
    tx = Tx()
    tx.update(item, [StatementRunPageItem.status.set("done"), StatementRunPageItem.results.set(results),
                     StatementRunPageItem.done_at.set(clock.now())],
              condition=StatementRunPageItem.status == "pending", versioned=False)
    tx.update(run, [StatementRunItem.pages_done.set(StatementRunItem.pages_done + 1)],
              condition=StatementRunItem.pk.exists(), versioned=False)
    try:
        tx.commit()
    except TxFailed as failed:
        if item.sk not in failed.reasons:
            raise TryAgainLater("could not close the statement run page; try again") from failed
        return results  # another worker closed it first
    _close_if_finished(clinic_id, run_id)
    return results


# --- the print vendor's files -----------------------------------------------------------------

#: Statement PDFs read from storage at once while merging a run's print file.
PRINT_THREADS = 8
#: Statements per merged PDF: a run's paper output is one PDF up to this many, then volumes of
#: it, so the merging worker's memory stays bounded (pypdf holds ~80 KB a page until it writes).
PRINT_VOLUME = 2_000
PRINT_COLUMNS = ("sequence", "file", "first_page", "pages", "statement_id", "guarantor_id", "account_number",
                 "pdf_key")


def _print_files_start(clinic_id: str, run_id: str) -> None:
    """Build the finished run's print files: on the queue when runs fan out, else now."""
    if queue.enabled():
        queue.send([queue.print_message(clinic_id=clinic_id, run_id=run_id)])
    else:
        statement_run_print(clinic_id=clinic_id, run_id=run_id)


@dataclass(frozen=True)
class PrintFiles:
    """A run's files for the print vendor in statement storage: ``pdf_keys``, the merged PDF
    (one volume per :data:`PRINT_VOLUME` statements; none when nothing goes by paper), the
    ``manifest_key``, and how many statements and pages they hold."""

    pdf_keys: tuple[str, ...]
    manifest_key: str
    statements: int
    pages: int


def _run_paper_statements(clinic_id: str, run_id: str) -> list[StatementRecordItem]:
    """The run's statements that go by paper, in run order (page, guarantor, account): one
    Query of the pages and one BatchGetItem per 100 statements."""
    order: list[tuple[str, str]] = []
    pages = StatementRunPageItem.query(keys.statement_run_pk(clinic_id, run_id),
                                       StatementRunPageItem.sk.startswith(keys.STATEMENT_RUN_PAGE_PREFIX),
                                       consistent_read=True)
    for page in sorted(pages, key=lambda p: int(p.page)):
        results = page.results.as_dict() if page.results else {}
        for gid in dict.fromkeys(page.guarantor_ids or []):
            outcome = str(results.get(gid, ""))
            if outcome.startswith("created:"):
                order += [(gid, sid) for sid in outcome.split(":", 1)[1].split(",") if sid]
    wanted = [(keys.guarantor_pk(clinic_id, gid), keys.statement_sk(sid)) for gid, sid in order]
    found: dict[tuple[str, str], Item] = {}
    for start in range(0, len(wanted), 100):
        for it in Item.batch_get(wanted[start:start + 100], consistent_read=True):
            found[(it.pk, it.sk)] = it
    return [it for it in (found.get(k) for k in wanted)
            if isinstance(it, StatementRecordItem) and it.delivery_channel == "paper" and it.pdf_key]


@clinic_scoped
def statement_run_print(*, clinic_id: str, run_id: str) -> PrintFiles:
    """Write a finished run's paper output for the print vendor (PRODUCT.md §4): the merged PDF
    of every statement of the run that goes by paper, in run order (page, then guarantor, then
    account), as one file, or volumes of :data:`PRINT_VOLUME` statements for a bigger run, and
    a CSV manifest (ids, keys and page numbers only: no names) whose rows give each statement's
    file, first page and page count. Electronic statements are not printed. Deterministic, so
    building it again (a redelivered message, a resumed run) rewrites the same files; the
    manifest is written last and marks the files complete.

    Cost: one Query, one BatchGetItem per 100 statements, every paper statement's PDF read from
    storage (``PRINT_THREADS`` at once); memory bounded by one volume. Raises NotFound (run),
    InvalidInput (the run is not done yet).
    """
    from pypdf import PdfReader, PdfWriter  # only this step needs it

    if _run_get(clinic_id, run_id).status != "done":
        raise InvalidInput(f"statement run {run_id} is not finished yet")
    paper = _run_paper_statements(clinic_id, run_id)
    store = storage.storage()
    out = io.StringIO()
    manifest = csv.writer(out, lineterminator="\n")
    manifest.writerow(PRINT_COLUMNS)
    pdf_keys: list[str] = []
    pages = 0
    with ThreadPoolExecutor(PRINT_THREADS) as pool:
        for start in range(0, len(paper), PRINT_VOLUME):
            volume = paper[start:start + PRINT_VOLUME]
            key = storage.print_pdf_key(clinic_id, run_id, len(pdf_keys) + 1)
            merged = PdfWriter()
            for n, (record, body) in enumerate(zip(volume, pool.map(lambda r: store.get(str(r.pdf_key)), volume),
                                                   strict=True), start=start + 1):
                first = len(merged.pages) + 1
                merged.append(PdfReader(io.BytesIO(body)))
                manifest.writerow([n, key.rsplit("/", 1)[1], first, len(merged.pages) - first + 1,
                                   record.statement_id, record.guarantor_id, record.account_number, record.pdf_key])
            buffer = io.BytesIO()
            merged.write(buffer)
            store.put(key, buffer.getvalue())
            pdf_keys.append(key)
            pages += len(merged.pages)
    manifest_key = storage.print_manifest_key(clinic_id, run_id)
    store.put(manifest_key, out.getvalue().encode(), content_type="text/csv")
    return PrintFiles(tuple(pdf_keys), manifest_key, len(paper), pages)


# --- practice-management statements -------------------------------------------------------------


@dataclass(frozen=True)
class PayCode:
    """One statement's pay codes: ``url`` printed as text, ``qr_url`` encoded in the QR code
    (two links: statement URL and statement QR origins), QR as SVG text and PNG bytes. ``error``
    (a reason code) instead when nothing could be issued."""

    guarantor_id: str
    statement_id: str | None
    account_number: str | None
    url: str | None = None
    qr_url: str | None = None
    qr_svg: str | None = None
    qr_png: bytes | None = None
    error: str | None = None


@dataclass(frozen=True)
class PayCodes:
    """Pay codes in request order, and the print vendor's CSV manifest (ids and URLs only)."""

    items: tuple[PayCode, ...]
    manifest_csv: str


MANIFEST_COLUMNS = ("guarantor_id", "statement_id", "account_number", "pay_url", "qr_url", "qr_png", "qr_svg",
                    "status", "error")


def _manifest(items: Sequence[PayCode]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(MANIFEST_COLUMNS)
    for it in items:
        stem = it.statement_id or it.guarantor_id
        writer.writerow([it.guarantor_id, it.statement_id or "", it.account_number or "", it.url or "",
                         it.qr_url or "", f"{stem}.png" if it.qr_png else "", f"{stem}.svg" if it.qr_svg else "",
                         "error" if it.error else "ok", it.error or ""])
    return out.getvalue()


@clinic_scoped
def statement_pay_codes(*, clinic_id: str, guarantor_ids: Sequence[str] = (),
                        statement_ids: Sequence[str] = ()) -> PayCodes:
    """Pay URL and QR code (SVG, PNG) for each of the PM system's statements, by guarantor or by
    statement number, plus a CSV manifest for the print vendor (PRODUCT.md §4, REFERENCE-PORTAL.md
    H1). The guarantor's profile decides what is issued (URL, QR or both) and the group the link
    opens; links are statement URL / statement QR links (one-year default lifetime).

    At most 500 per call. Unknown guarantors or statements, and profiles that print no pay link,
    become items with an ``error`` code, not failures. Raises InvalidInput (both or neither list,
    too many, no portal base URL configured while a profile prints a code).
    """
    if bool(guarantor_ids) == bool(statement_ids):
        raise InvalidInput("give guarantor ids or statement ids, not both")
    requested = list(guarantor_ids or statement_ids)
    if len(requested) > 500:
        raise InvalidInput("at most 500 statements per call")
    ctx = clinic_context(clinic_id)
    if not config.settings().portal_url_set and any(p.pay_link != "none" for p in ctx.profiles.values()):
        raise InvalidInput("no portal base URL is configured: set FRONTDESK_PORTAL_URL to the portal's public "
                           "address before issuing pay codes")
    items: list[PayCode] = []
    issuer = links.LinkIssuer(clinic_id)
    for value in requested:
        try:
            require_id(value, field="id")
        except InvalidInput:
            items.append(PayCode(value[:64], None, None, error="bad_id"))
            continue
        gid: str | None = value if guarantor_ids else None
        sid: str | None = None if guarantor_ids else value
        account: str | None = None
        if sid is not None:
            try:
                ref = StatementRefItem.get(keys.statement_ref_pk(clinic_id, sid), keys.STATEMENT_REF)
                gid = ref.guarantor_id
                account = StatementItem.get(keys.guarantor_pk(clinic_id, gid), keys.statement_sk(sid)).account_number
            except (StatementRefItem.DoesNotExist, StatementItem.DoesNotExist):
                items.append(PayCode("", sid, None, error="unknown_statement"))
                continue
        assert gid is not None
        try:
            guarantor = GuarantorItem.get(keys.guarantor_pk(clinic_id, gid), keys.PROFILE)
        except GuarantorItem.DoesNotExist:
            items.append(PayCode(gid, sid, None, error="unknown_guarantor"))
            continue
        profile = ctx.guarantor_profile(guarantor.statement_profile_id)
        account = account or account_number_of(guarantor)  # a statement's own number, else the profile's
        if profile is None or profile.pay_link == "none" or not profile.group_id:
            items.append(PayCode(gid, sid, account, error="no_pay_link"))
            continue
        url, qr_url, prepared = _pay_links(issuer, gid, profile, sid)
        tx = Tx()  # both links in one request; the guarantor was read above
        for link in prepared:
            links.LinkIssuer.add_to(tx, link)
        tx.commit()
        items.append(PayCode(gid, sid, account, url=url, qr_url=qr_url,
                             qr_svg=render.qr_svg(qr_url) if qr_url else None,
                             qr_png=render.qr_png(qr_url) if qr_url else None))
    return PayCodes(tuple(items), _manifest(items))


@dataclass(frozen=True)
class PushResult:
    """One pushed statement: ``created``, ``exists`` (pushed before) or ``error`` with a reason;
    ``warnings`` when the PM's printed figures differ from the ledger's."""

    statement_id: str
    status: str
    reason: str | None = None
    verification_code: str | None = None
    warnings: tuple[str, ...] = ()


PUSH_FIELDS = frozenset({"statement_id", "guarantor_id", "statement_date", "due_date", "account_number",
                         "statement_balance_cents", "amount_due_cents", "line_ids"})


def _push_one(ctx: ClinicContext, data: Mapping[str, Any]) -> PushResult:
    clinic_id = ctx.clinic_id
    unknown = set(data) - PUSH_FIELDS
    sid = str(data.get("statement_id", ""))[:64]
    if unknown:
        return PushResult(sid, "error", f"unknown fields {sorted(unknown)}")
    try:
        require_id(data.get("statement_id"), field="statement_id")
        gid = require_id(data.get("guarantor_id"), field="guarantor_id")
        sdate = date.fromisoformat(str(data.get("statement_date")))
        due = date.fromisoformat(str(data.get("due_date")))
    except (InvalidInput, ValueError) as exc:
        return PushResult(sid, "error", str(exc) if isinstance(exc, InvalidInput) else "dates must be YYYY-MM-DD")
    if due < sdate:
        return PushResult(sid, "error", "due_date is before statement_date")
    line_ids = data.get("line_ids")
    if line_ids is not None and (not isinstance(line_ids, list) or not all(isinstance(x, str) for x in line_ids)):
        return PushResult(sid, "error", "line_ids must be a list of service line ids")
    pm: dict[str, Any] = {}
    for name in ("statement_balance_cents", "amount_due_cents"):
        if name in data:
            value = data[name]
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                return PushResult(sid, "error", f"{name} must be non-negative integer cents")
            pm[name] = value
    if "account_number" in data:
        pm["account_number"] = str(data["account_number"])[:64]
    try:
        StatementRefItem.get(keys.statement_ref_pk(clinic_id, sid), keys.STATEMENT_REF, consistent_read=True)
        return PushResult(sid, "exists")
    except StatementRefItem.DoesNotExist:
        pass
    for _ in range(BILL_ATTEMPTS):
        try:
            acct = account_read(clinic_id, gid)
        except UnknownGuarantor:
            return PushResult(sid, "error", "unknown_guarantor")
        plan = plan_statement(ctx, acct, statement_date=sdate, for_run=False,
                              only_line_ids=set(line_ids) if line_ids is not None else None)
        if plan.error or plan.skip:
            return PushResult(sid, "error", plan.error or plan.skip)
        account = plan.accounts[0]
        if len(plan.accounts) > 1:  # a per-patient profile: the PM's statement is one account's
            lines = [ln for a in plan.accounts for ln in a.lines]
            account = AccountPlan("guarantor", account_number_of(acct.guarantor),
                                  sorted({ln.patient_id for ln in lines}), lines,
                                  set().union(*(a.new_ids for a in plan.accounts)), plan.statement_balance,
                                  sum(a.new_cents for a in plan.accounts),
                                  sum(a.previously_billed_cents for a in plan.accounts))
        account.account_number = pm.get("account_number") or account.account_number
        code = verification_code(clinic_id, sid)
        record = _record(clinic_id, acct, plan, account, statement_id=sid, statement_date=sdate.isoformat(),
                         due_date=due.isoformat(), source="pm", run_id=None, code=code, pdf_key=None,
                         channel="pm", status="mailed")
        record.pm_figures = pm or None
        try:
            _commit(clinic_id, acct, plan, [record], None)
        except (AlreadyExists, ConditionFailed) as exc:
            if isinstance(exc, AlreadyExists) or keys.STATEMENT_REF in exc.keys:
                return PushResult(sid, "exists")
            continue
        except _Stale:
            continue
        warnings = tuple(f"{name} {pm[name]} differs from the ledger's {plan.statement_balance}"
                         for name in ("statement_balance_cents", "amount_due_cents")
                         if name in pm and pm[name] != plan.statement_balance)
        return PushResult(sid, "created", verification_code=code_display(code), warnings=warnings)
    raise TryAgainLater(f"guarantor {gid} kept changing; push statement {sid} again")


@clinic_scoped
def statement_push(*, clinic_id: str, statements: Sequence[Mapping[str, Any]]) -> list[PushResult]:
    """Record statements the PM system printed as snapshots here (PRODUCT.md §3, §4).

    Each: ``statement_id`` (the PM's statement number; unique per clinic), ``guarantor_id``,
    ``statement_date``, ``due_date``, optional ``account_number``, ``line_ids`` (the lines it
    billed; other open lines count as held), ``statement_balance_cents``, ``amount_due_cents``
    (kept as printed; a difference from the ledger is a warning). The snapshot restarts the
    since-statement figures and raises the dunning count like a run's statement. Pushing a
    statement again answers ``exists``; a bad one answers ``error`` with the reason and does
    not stop the others. At most 500 per call. Raises InvalidInput (shape), UnknownClinic.
    """
    if not isinstance(statements, list | tuple) or len(statements) > 500:
        raise InvalidInput("statements must be a list of at most 500 objects")
    ctx = clinic_context(clinic_id)
    out = []
    for data in statements:
        if not isinstance(data, Mapping):
            out.append(PushResult("", "error", "each statement must be an object"))
            continue
        out.append(_push_one(ctx, data))
    return out


# --- PDF and delivery ---------------------------------------------------------------------------


def _statement(clinic_id: str, guarantor_id: str, statement_id: str) -> StatementItem:
    try:
        return StatementItem.get(keys.guarantor_pk(clinic_id, require_id(guarantor_id, field="guarantor_id")),
                                 keys.statement_sk(require_id(statement_id, field="statement_id")),
                                 consistent_read=True)
    except StatementItem.DoesNotExist:
        raise NotFound(f"statement {statement_id} not found") from None


@dataclass(frozen=True)
class StatementPdf:
    """How a browser gets a statement's PDF: ``url``, a short-lived S3 presigned GET; or, from
    the embedded default's local folder (no address a browser may open), ``body``, the bytes."""

    url: str | None
    body: bytes | None


@clinic_scoped
def statement_pdf(*, clinic_id: str, guarantor_id: str, statement_id: str,
                  expires_seconds: int = PDF_URL_SECONDS) -> StatementPdf:
    """The statement's PDF for its guarantor's browser (:class:`StatementPdf`).

    Only while the PDF is kept: ``FRONTDESK_STATEMENT_PDF_DAYS`` (default 120) after the statement
    date (REFERENCE-PORTAL.md J6), matching the bucket's lifecycle rule. Another guarantor's
    statement is the same miss. Raises NotFound (unknown statement, no PDF, past the window),
    InvalidInput (``expires_seconds`` outside 1-3600).
    """
    if isinstance(expires_seconds, bool) or not isinstance(expires_seconds, int) or not 1 <= expires_seconds <= 3600:
        raise InvalidInput("expires_seconds must be 1-3600")
    item = _statement(clinic_id, guarantor_id, statement_id)
    key = getattr(item, "pdf_key", None)
    if not key:
        raise NotFound("this statement has no PDF here")
    days = config.settings().statement_pdf_days
    if clock.now().date() > date.fromisoformat(item.statement_date) + timedelta(days=days):
        raise NotFound(f"statement PDFs are kept for {days} days")
    store = storage.storage()
    if isinstance(store, storage.LocalStorage):
        return StatementPdf(url=None, body=store.get(key))
    return StatementPdf(url=store.url(key, expires_seconds=expires_seconds), body=None)


DELIVERY_STATUSES = ("not_yet_mailed", "mailed", "e_delivered", "error")


@clinic_scoped
def statement_delivery_set(*, clinic_id: str, guarantor_id: str, statement_id: str, status: str) -> None:
    """Record a statement's delivery status (mailed / not yet mailed / error / e-delivered,
    PRODUCT.md §4, REFERENCE-PORTAL.md J6), e.g. when the print vendor confirms mailing.
    Raises InvalidInput, NotFound (also for a statement without delivery tracking)."""
    if status not in DELIVERY_STATUSES:
        raise InvalidInput(f"status must be one of {DELIVERY_STATUSES}")
    item = _statement(clinic_id, guarantor_id, statement_id)
    if not isinstance(item, StatementRecordItem):
        raise NotFound("this statement has no delivery tracking")
    item.update(actions=[StatementRecordItem.delivery_status.set(status)], condition=StatementRecordItem.pk.exists())


def run_clinic_ids() -> list[str]:
    """Clinics whose statements Frontdesk runs: at least one profile with ``runs`` on (operator
    read: the clinic index, then each clinic's statement settings)."""
    out = []
    for clinic in ClinicItem.gsi1.query(keys.OPERATOR_CLINICS):
        if not isinstance(clinic, ClinicItem) or clinic.status != "active":
            continue
        with clinic_scope(clinic.clinic_id):
            profiles = StatementProfileItem.query(keys.clinic_pk(clinic.clinic_id),
                                                  StatementProfileItem.sk.startswith(keys.STATEMENT_PROFILE_PREFIX))
            if any(profile_load(p.settings_json).runs for p in profiles):
                out.append(clinic.clinic_id)
    return out


# --- balance notices: a remittance's new patient balance is billed at once --------------------

#: Notices handled per call; the schedule calls again for the rest.
NOTICES_PER_CALL = 500


@clinic_scoped
def balance_notices_bill(*, clinic_id: str, limit: int = NOTICES_PER_CALL) -> dict[str, int]:
    """Bill at once each guarantor an import marked due a balance notice (PRODUCT.md §1: "a
    remittance creates a patient balance, the guarantor is told at once"; the importers write the
    notice in the posting's transaction, gsi1 ``C#<clinic>#NOTICE#DUE``, found by Query).

    Each one goes through the statement run's own per-guarantor step under the run id
    ``notice-<local date>``: the profile decides (cycle days, holds, minimum, the practice
    billing from Frontdesk at all), a new statement queues its balance notification and
    reminders (so does a paper one, which is also printed). Then the notice leaves the index,
    conditioned on the entry it named, so a balance that grew again meanwhile stays due.
    Safe to repeat (markers per guarantor and run id). Returns outcome counts (``created``,
    ``skipped``, ``error``). Raises InvalidInput when the clinic cannot bill (``_check_ready``).
    """
    ctx = clinic_context(clinic_id)
    _check_ready(ctx)
    day = _local_date(ctx)
    run_id = f"notice-{day.isoformat()}"
    issuer = links.LinkIssuer(clinic_id)
    notices = notify.StatementNotices(clinic_id)
    counts: dict[str, int] = defaultdict(int)
    for due in BalanceNoticeItem.gsi1.query(keys.notices_due_gsi1pk(clinic_id), limit=limit):
        if not isinstance(due, BalanceNoticeItem):
            continue
        gpk = keys.guarantor_pk(clinic_id, due.guarantor_id)
        found = {it.sk: it for it in Item.batch_get([(gpk, keys.BALANCE), (gpk, keys.statement_run_marker_sk(run_id))],
                                                     consistent_read=True)}
        balance = found.get(keys.BALANCE)
        marker = found.get(keys.statement_run_marker_sk(run_id))
        outcome = _bill_guarantor(ctx, due.guarantor_id, run_id=run_id, statement_date=day,
                                  balance=balance if isinstance(balance, BalanceItem) else None,
                                  marker=marker if isinstance(marker, StatementRunMarkerItem) else None,
                                  issuer=issuer, notices=notices)
        counts[outcome.split(":", 1)[0]] += 1
        try:
            due.update(actions=[BalanceNoticeItem.gsi1pk.remove(), BalanceNoticeItem.gsi1sk.remove()],
                       condition=BalanceNoticeItem.entry_seq == int(due.entry_seq), add_version_condition=False)
        except UpdateError as exc:
            if exc.cause_response_code != "ConditionalCheckFailedException":
                raise
    return dict(counts)


def balance_notices_bill_all() -> dict[str, int]:
    """:func:`balance_notices_bill` for every clinic billing from Frontdesk (the schedule); a
    clinic that cannot bill is skipped (its notices wait). Returns summed outcome counts."""
    total: dict[str, int] = defaultdict(int)
    for clinic_id in run_clinic_ids():
        try:
            for k, v in balance_notices_bill(clinic_id=clinic_id).items():
                total[k] += v
        except InvalidInput:
            continue
    return dict(total)
