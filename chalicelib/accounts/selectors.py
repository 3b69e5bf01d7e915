"""Account reads: guarantor profiles and balances, service lines, statements.

Selectors return frozen dataclasses. A guarantor's figures come from its balance item (one
GetItem); lists use the clinic's guarantor index and BatchGetItem, never Scan.
"""

from __future__ import annotations

from dataclasses import dataclass

from chalicelib.core.errors import UnknownGuarantor
from chalicelib.core.ids import require_id
from chalicelib.ledger.accounts import COLLECTIONS
from chalicelib.ledger.selectors import GuarantorFigures, figures_from_item
from chalicelib.store import db, keys
from chalicelib.store.db import clinic_scoped
from chalicelib.store.models import (
    BalanceItem,
    ClinicItem,
    GroupItem,
    GuarantorItem,
    Item,
    PatientItem,
    ServiceLineItem,
    StatementItem,
)
from chalicelib.tenants.groups import settings_load
from chalicelib.tenants.selectors import Group


@dataclass(frozen=True)
class GuarantorSummary:
    """A guarantor with its figures (cents). Names are PHI: never log this object."""

    guarantor_id: str
    first_name: str
    last_name: str
    preferred_name: str | None
    email: str | None
    mobile: str | None
    language: str
    dunning_count: int
    account_number: str  # what documents print: the practice's own number, else guarantor_id
    figures: GuarantorFigures


@dataclass(frozen=True)
class ServiceLine:
    """A service line with its money parts (cents) and collections status."""

    line_id: str
    encounter_number: str
    line_number: int
    patient_id: str
    facility_id: str | None
    rendering_provider_id: str | None
    date_of_service: str
    responsibility_date: str | None
    procedure_code: str
    modifiers: tuple[str, ...]
    units: int
    money: dict[str, int]

    @property
    def in_collections(self) -> bool:
        return self.money.get(COLLECTIONS, 0) > 0


def account_number_of(guarantor: GuarantorItem) -> str:
    """What patient-facing documents print as "Account number" for this guarantor: the
    practice's own account number when it gave one (a roster's ``guarantor_id``), else our
    guarantor id. Display only: lookups always use ``guarantor_id``."""
    return guarantor.account_number or guarantor.guarantor_id


def _summary(profile: GuarantorItem, balance: BalanceItem, include_new_charges: bool) -> GuarantorSummary:
    return GuarantorSummary(
        guarantor_id=profile.guarantor_id, first_name=profile.first_name,
        last_name=profile.last_name, preferred_name=profile.preferred_name,
        email=profile.email, mobile=profile.mobile, language=profile.language,
        dunning_count=int(profile.dunning_count), account_number=account_number_of(profile),
        figures=figures_from_item(balance, include_new_charges=include_new_charges),
    )


@clinic_scoped
def guarantor_summary(*, clinic_id: str, guarantor_id: str,
                      include_new_charges: bool = False) -> GuarantorSummary:
    """Profile and figures of one guarantor in one BatchGetItem (the QuickPay-sized read).

    Raises UnknownGuarantor (also for another clinic's guarantor id).
    """
    pk = keys.guarantor_pk(clinic_id, require_id(guarantor_id, field="guarantor_id"))
    found = {it.sk: it for it in Item.batch_get([(pk, keys.PROFILE), (pk, keys.BALANCE)],
                                                consistent_read=True)}
    profile, balance = found.get(keys.PROFILE), found.get(keys.BALANCE)
    if not isinstance(profile, GuarantorItem) or not isinstance(balance, BalanceItem):
        raise UnknownGuarantor(f"guarantor {guarantor_id} not found")
    return _summary(profile, balance, include_new_charges)


@clinic_scoped
def guarantors_list(*, clinic_id: str, include_new_charges: bool = False,
                    limit: int | None = None) -> list[GuarantorSummary]:
    """The clinic's guarantors with figures: one index Query, BatchGetItem per 100 balances."""
    profiles = [p for p in GuarantorItem.gsi1.query(keys.guarantors_gsi1pk(clinic_id), limit=limit)
                if isinstance(p, GuarantorItem)]
    balances: dict[str, BalanceItem] = {}
    for start in range(0, len(profiles), 100):
        chunk = [(p.pk, keys.BALANCE) for p in profiles[start:start + 100]]
        for b in BalanceItem.batch_get(chunk):
            balances[b.pk] = b
    return [_summary(p, balances[p.pk], include_new_charges) for p in profiles if p.pk in balances]


@clinic_scoped
def service_lines_list(*, clinic_id: str, guarantor_id: str) -> list[ServiceLine]:
    """The guarantor's service lines, oldest responsibility date (else date of service) first."""
    pk = keys.guarantor_pk(clinic_id, require_id(guarantor_id, field="guarantor_id"))
    lines = [
        ServiceLine(
            line_id=sl.line_id, encounter_number=sl.encounter_number,
            line_number=int(sl.line_number), patient_id=sl.patient_id,
            facility_id=sl.facility_id, rendering_provider_id=sl.rendering_provider_id,
            date_of_service=sl.date_of_service, responsibility_date=sl.responsibility_date,
            procedure_code=sl.procedure_code, modifiers=tuple(sl.modifiers or ()),
            units=int(sl.units), money=dict(sl.money),
        )
        for sl in ServiceLineItem.query(pk, ServiceLineItem.sk.startswith(keys.LINE_PREFIX),
                                        consistent_read=True)
    ]
    return sorted(lines, key=lambda x: (x.responsibility_date or x.date_of_service,
                                        x.encounter_number, x.line_number))


@dataclass(frozen=True)
class Statement:
    """A statement snapshot as printed (cents, ISO dates)."""

    statement_id: str
    statement_date: str
    due_date: str
    account_number: str
    statement_balance: int
    amount_due: int
    lines: tuple[dict[str, object], ...]


@clinic_scoped
def statements_list(*, clinic_id: str, guarantor_id: str) -> list[Statement]:
    """The guarantor's statements, newest due date first."""
    pk = keys.guarantor_pk(clinic_id, require_id(guarantor_id, field="guarantor_id"))
    out = [
        Statement(s.statement_id, s.statement_date, s.due_date, s.account_number,
                  int(s.statement_balance), int(s.amount_due),
                  tuple(dict(x) for x in s.lines))
        for s in StatementItem.query(pk, StatementItem.sk.startswith(keys.STATEMENT_PREFIX))
    ]
    return sorted(out, key=lambda s: s.due_date, reverse=True)


@dataclass(frozen=True)
class GuarantorPage:
    """Everything a patient page's header needs, read in ONE BatchGetItem (B2: QuickPay ≤ 3
    read units with the session): clinic name and phone, the group's settings, the guarantor's
    profile and figures (Amount Due per the group's Include New Charges)."""

    clinic_name: str
    clinic_phone: str | None
    group: Group
    guarantor: GuarantorSummary


def _kind(model: type[Item]) -> str:
    kind = Item.item_kind.get_discriminator(model)
    assert kind is not None
    return kind


_PAGE_KINDS = (_kind(ClinicItem), _kind(GroupItem), _kind(GuarantorItem), _kind(BalanceItem))
_PROFILE_FIELDS = ("guarantor_id", "first_name", "last_name", "preferred_name", "email", "mobile", "language",
                   "dunning_count", "account_number")


@clinic_scoped
def guarantor_page(*, clinic_id: str, guarantor_id: str, group_id: str) -> GuarantorPage:
    """Read clinic, group, profile and balance together (eventually consistent, 2 read units).

    One BatchGetItem whose answer is deserialised once, only the attributes a page shows (the
    balance as its model, for the ledger's figures): this is every patient page's read, so it
    skips building four full models (SERVERLESS-PERF-REL.md B1).
    Raises UnknownGuarantor if the guarantor or the group is missing (a page cannot render).
    """
    cpk = keys.clinic_pk(clinic_id)
    gpk = keys.guarantor_pk(clinic_id, require_id(guarantor_id, field="guarantor_id"))
    wanted = [(cpk, keys.CLINIC), (cpk, keys.group_sk(require_id(group_id, field="group_id"))),
              (gpk, keys.PROFILE), (gpk, keys.BALANCE)]
    pk_name, sk_name = Item.pk.attr_name, Item.sk.attr_name
    found = {(raw[pk_name]["S"], raw[sk_name]["S"]): raw for raw in db.raw_batch_get(wanted)}
    clinic, group, profile, balance = (found.get(key) for key in wanted)
    kind = Item.item_kind.attr_name
    if not (clinic and group and profile and balance) or _PAGE_KINDS != tuple(
            raw.get(kind, {}).get("S") for raw in (clinic, group, profile, balance)):
        raise UnknownGuarantor(f"guarantor {guarantor_id} not found")
    clinic_name, clinic_phone = db.stored_values(ClinicItem, clinic, ("name", "phone"))
    group_id_, group_name, is_default, settings_json = db.stored_values(
        GroupItem, group, ("group_id", "name", "is_default", "settings_json"))
    settings = settings_load(settings_json)
    shown = dict(zip(_PROFILE_FIELDS, db.stored_values(GuarantorItem, profile, _PROFILE_FIELDS), strict=True))
    shown["dunning_count"] = int(shown["dunning_count"])
    shown["account_number"] = shown["account_number"] or shown["guarantor_id"]  # as account_number_of
    figures = figures_from_item(BalanceItem.from_raw_data(balance), include_new_charges=settings.include_new_charges)
    return GuarantorPage(clinic_name=clinic_name, clinic_phone=clinic_phone,
                         group=Group(group_id_, group_name, bool(is_default), settings),
                         guarantor=GuarantorSummary(**shown, figures=figures))


@dataclass(frozen=True)
class Patient:
    patient_id: str
    first_name: str
    last_name: str
    preferred_name: str | None
    relationship: str


@clinic_scoped
def patients_list(*, clinic_id: str, guarantor_id: str) -> list[Patient]:
    """The patients linked to a guarantor (one Query)."""
    pk = keys.guarantor_pk(clinic_id, require_id(guarantor_id, field="guarantor_id"))
    return [Patient(p.patient_id, p.first_name, p.last_name, p.preferred_name, p.relationship)
            for p in PatientItem.query(pk, PatientItem.sk.startswith(keys.PATIENT_PREFIX))]


@clinic_scoped
def guarantor_names(*, clinic_id: str, guarantor_ids: list[str]) -> dict[str, str]:
    """Guarantor id -> first (or preferred) name and last initial, for an account switcher."""
    wanted = [(keys.guarantor_pk(clinic_id, require_id(g, field="guarantor_id")), keys.PROFILE)
              for g in sorted(guarantor_ids)[:25]]
    return {p.guarantor_id: f"{p.preferred_name or p.first_name} {p.last_name[:1]}."
            for p in GuarantorItem.batch_get(wanted) if isinstance(p, GuarantorItem)}


@clinic_scoped
def guarantor_consent(*, clinic_id: str, guarantor_id: str) -> dict[str, bool | None]:
    """The consent flags on the guarantor's profile (``{"email": True/False/None, "sms": ...}``),
    as recorded at registration or import; notify's per-contact consent records come first
    when it decides (SECURITY.md R41). One GetItem. Raises UnknownGuarantor."""
    pk = keys.guarantor_pk(clinic_id, require_id(guarantor_id, field="guarantor_id"))
    try:
        profile = GuarantorItem.get(pk, keys.PROFILE)
    except GuarantorItem.DoesNotExist:
        raise UnknownGuarantor(f"guarantor {guarantor_id} not found") from None
    values = profile.consent.as_dict() if profile.consent is not None else {}
    return {c: (bool(values[c]) if values.get(c) is not None else None) for c in ("email", "sms")}
