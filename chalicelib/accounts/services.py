"""Account writes. Each money fact is one ledger entry with a business source key, so the same
fact posted twice raises AlreadyPosted and posts nothing (DESIGN.md rule 3).

Amounts are positive integer cents; dates are ISO ``YYYY-MM-DD``; ids are checked by
``require_id``. A guarantor, line, facility or provider id of another clinic is the same miss
as an unknown one (Unknown*/NotFound errors, R16), raised before anything is written.
"""

from __future__ import annotations

import hmac
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from pynamodb.exceptions import UpdateError

from chalicelib.accounts.selectors import account_number_of
from chalicelib.core import clock
from chalicelib.core.errors import (
    AlreadyExists,
    CodeRefused,
    InvalidInput,
    NotFound,
    UnknownGuarantor,
)
from chalicelib.core.ids import new_id, require_id
from chalicelib.core.money import require_positive_cents
from chalicelib.ledger import services as ledger
from chalicelib.ledger.accounts import (
    COLLECTIONS,
    PAT_OPEN,
    Account,
    EntryCode,
    Line,
    ResponsibilityKind,
    part_key,
)
from chalicelib.ledger.services import Also, PostedEntry
from chalicelib.store import keys
from chalicelib.store.db import Tx, TxFailed, clinic_scoped
from chalicelib.store.models import (
    BalanceItem,
    FacilityItem,
    GuarantorItem,
    Item,
    PatientItem,
    ProviderItem,
    ServiceLineItem,
    StatementItem,
)

CARC_GROUPS = frozenset({"CO", "PR", "OA", "PI", "CR"})
RELATIONSHIPS = frozenset({"self", "child", "spouse", "other"})
ADJUSTMENT_REASONS = frozenset({"courtesy_discount", "small_balance_write_off", "other"})


def _iso_date(value: str, field: str) -> str:
    try:
        return date.fromisoformat(value).isoformat()
    except (TypeError, ValueError):
        raise InvalidInput(f"{field} must be a date YYYY-MM-DD, got {value!r}") from None


@clinic_scoped
def guarantor_create(
    *,
    clinic_id: str,
    first_name: str,
    last_name: str,
    preferred_name: str | None = None,
    date_of_birth: str | None = None,
    email: str | None = None,
    mobile: str | None = None,
    language: str = "en",
    address: Mapping[str, str] | None = None,
    consent: Mapping[str, Any] | None = None,
    guarantor_id: str | None = None,
    external_id: str | None = None,
    account_number: str | None = None,
) -> str:
    """Create a guarantor profile and its zero balance item in one transaction; return the id.

    ``account_number``: the practice's own account number (a roster's ``guarantor_id``), what
    patient-facing documents print as "Account number" (see :func:`account_number_of`); None
    when the practice gave none. Raises InvalidInput (names, language, dates, account number
    longer than :data:`ACCOUNT_NUMBER_MAX`) or AlreadyExists.
    """
    if not first_name.strip() or not last_name.strip():
        raise InvalidInput("guarantor first and last name are required")
    if language not in ("en", "es"):
        raise InvalidInput("guarantor language must be 'en' or 'es'")
    gid = require_id(guarantor_id, field="guarantor_id") if guarantor_id else new_id("g")
    number = _account_number(account_number)
    pk = keys.guarantor_pk(clinic_id, gid)
    profile = GuarantorItem(
        pk, keys.PROFILE, guarantor_id=gid, first_name=first_name.strip(),
        last_name=last_name.strip(), preferred_name=preferred_name,
        date_of_birth=_iso_date(date_of_birth, "date_of_birth") if date_of_birth else None,
        email=email, mobile=mobile, language=language,
        address=dict(address) if address else None, consent=dict(consent) if consent else None,
        external_id=external_id, account_number=number, created_at=clock.now(),
        gsi1pk=keys.guarantors_gsi1pk(clinic_id), gsi1sk=gid,
        gsi2pk=keys.last_name_gsi2pk(clinic_id, last_name),
        gsi2sk=f"{keys.fold_name(first_name)}#{gid}",
    )
    tx = Tx()
    tx.put(profile, condition=GuarantorItem.pk.does_not_exist())
    tx.put(BalanceItem(pk, keys.BALANCE), condition=BalanceItem.pk.does_not_exist())
    try:
        tx.commit()
    except TxFailed as exc:
        if exc.reasons:
            raise AlreadyExists(f"guarantor {gid} already exists") from exc
        raise
    return gid


#: Longest practice account number kept (the roster's ``guarantor_id`` limit).
ACCOUNT_NUMBER_MAX = 64


def _account_number(value: str | None) -> str | None:
    number = (value or "").strip()
    if len(number) > ACCOUNT_NUMBER_MAX or any(not ch.isprintable() for ch in number):
        raise InvalidInput(f"account_number must be 1-{ACCOUNT_NUMBER_MAX} printable characters")
    return number or None


@clinic_scoped
def guarantor_account_number_set(*, clinic_id: str, guarantor_id: str, account_number: str) -> bool:
    """Set the practice's account number on an existing guarantor's profile (a roster naming
    it, or naming a new one). Reads the profile and writes only a change (so importing the same
    roster again is one GetItem and no write); returns True when it changed it.
    Raises InvalidInput (blank, too long), UnknownGuarantor."""
    number = _account_number(account_number)
    if number is None:
        raise InvalidInput("account_number is blank")
    pk, sk = _profile_key(clinic_id, guarantor_id)
    try:
        current = GuarantorItem.get(pk, sk, consistent_read=True)
    except GuarantorItem.DoesNotExist:
        raise UnknownGuarantor(f"guarantor {guarantor_id} not found") from None
    if current.account_number == number:
        return False
    if not _profile_update(clinic_id, guarantor_id, [GuarantorItem.account_number.set(number)]):
        raise UnknownGuarantor(f"guarantor {guarantor_id} not found")
    return True


@clinic_scoped
def patient_link(
    *,
    clinic_id: str,
    guarantor_id: str,
    first_name: str,
    last_name: str,
    relationship: str = "self",
    date_of_birth: str | None = None,
    sex: str | None = None,
    preferred_name: str | None = None,
    patient_id: str | None = None,
) -> str:
    """Link a patient to a guarantor with a relationship; return the patient id.

    Raises UnknownGuarantor (checked in the same transaction), InvalidInput, AlreadyExists.
    """
    if relationship not in RELATIONSHIPS:
        raise InvalidInput(f"relationship must be one of {sorted(RELATIONSHIPS)}")
    pid = require_id(patient_id, field="patient_id") if patient_id else new_id("pt")
    require_id(guarantor_id, field="guarantor_id")
    pk = keys.guarantor_pk(clinic_id, guarantor_id)
    item = PatientItem(pk, keys.patient_sk(pid), patient_id=pid, first_name=first_name,
                       last_name=last_name, preferred_name=preferred_name,
                       date_of_birth=_iso_date(date_of_birth, "date_of_birth") if date_of_birth else None,
                       sex=sex, relationship=relationship)
    tx = Tx()
    tx.check(BalanceItem, pk, keys.BALANCE, BalanceItem.pk.exists())
    tx.put(item, condition=PatientItem.pk.does_not_exist())
    try:
        tx.commit()
    except TxFailed as exc:
        if keys.BALANCE in exc.reasons:
            raise UnknownGuarantor(f"guarantor {guarantor_id} not found") from exc
        if item.sk in exc.reasons:
            raise AlreadyExists(f"patient {pid} is already linked") from exc
        raise
    return pid


def _clinic_refs_exist(clinic_id: str, facility_id: str | None, provider_ids: Sequence[str]) -> None:
    pk = keys.clinic_pk(clinic_id)
    wanted: list[tuple[str, str]] = []
    if facility_id:
        wanted.append((pk, keys.facility_sk(require_id(facility_id, field="facility_id"))))
    for pid in provider_ids:
        wanted.append((pk, keys.provider_sk(require_id(pid, field="provider_id"))))
    if not wanted:
        return
    found = {it.sk for it in Item.batch_get(wanted)
             if isinstance(it, FacilityItem | ProviderItem)}
    for _, sk in wanted:
        if sk not in found:
            raise NotFound(f"{'facility' if sk.startswith('FAC#') else 'provider'} "
                           f"{sk.split('#', 1)[1]} not found in this clinic")


@clinic_scoped
def service_line_charge(
    *,
    clinic_id: str,
    guarantor_id: str,
    encounter_number: str,
    line_number: int,
    patient_id: str,
    date_of_service: str,
    procedure_code: str,
    billed_cents: int,
    modifiers: Sequence[str] = (),
    units: int = 1,
    facility_id: str | None = None,
    billing_provider_id: str | None = None,
    rendering_provider_id: str | None = None,
    referring_provider_id: str | None = None,
    responsibility_date: str | None = None,
    description: str | None = None,
    self_pay: bool = False,
) -> PostedEntry:
    """Create a service line and post its charge in one transaction.

    The charge goes to insurance receivable, or straight to the patient when ``self_pay``.
    Service ID = ``<encounter>-<line>`` (PRODUCT.md §2); source key ``charge:<service id>``.
    Raises InvalidInput, InvalidAmount, NotFound (facility/provider), UnknownGuarantor,
    AlreadyExists/AlreadyPosted for a line charged before.
    """
    billed = require_positive_cents(billed_cents, field="billed_cents")
    require_id(encounter_number, field="encounter_number")
    require_id(patient_id, field="patient_id")
    if isinstance(line_number, bool) or not isinstance(line_number, int) or not 1 <= line_number <= 999:
        raise InvalidInput("line_number must be 1-999")
    if isinstance(units, bool) or not isinstance(units, int) or units < 1:
        raise InvalidInput("units must be a positive integer")
    code = procedure_code.strip().upper()
    if not code.isalnum() or not 4 <= len(code) <= 7:
        raise InvalidInput(f"procedure_code {procedure_code!r} is not a CPT/HCPCS code")
    if len(modifiers) > 4 or any(not (len(m) == 2 and m.isalnum()) for m in modifiers):
        raise InvalidInput("modifiers are at most four 2-character codes")
    dos = _iso_date(date_of_service, "date_of_service")
    resp = _iso_date(responsibility_date, "responsibility_date") if responsibility_date else None
    providers = [p for p in (billing_provider_id, rendering_provider_id, referring_provider_id) if p]
    _clinic_refs_exist(clinic_id, facility_id, providers)
    line_id = keys.service_line_id(encounter_number, line_number)
    pk = keys.guarantor_pk(clinic_id, require_id(guarantor_id, field="guarantor_id"))
    item = ServiceLineItem(
        pk, keys.line_sk(line_id), line_id=line_id, encounter_number=encounter_number,
        line_number=line_number, patient_id=patient_id, facility_id=facility_id,
        billing_provider_id=billing_provider_id, rendering_provider_id=rendering_provider_id,
        referring_provider_id=referring_provider_id, date_of_service=dos,
        responsibility_date=resp, procedure_code=code, modifiers=[m.upper() for m in modifiers],
        units=units, description=description,
        part=part_key(facility_id, rendering_provider_id or billing_provider_id, patient_id),
    )
    receivable = Account.PAT_AR if self_pay else Account.INS_AR
    return ledger.entry_post(
        clinic_id=clinic_id, guarantor_id=guarantor_id,
        code=EntryCode.PATIENT_CHARGE if self_pay else EntryCode.CHARGE,
        lines=[Line(receivable, billed, line_id), Line(Account.REVENUE, -billed, line_id)],
        source_key=f"charge:{line_id}", new_lines=[item],
    )


@clinic_scoped
def insurance_payment_post(*, clinic_id: str, guarantor_id: str, line_id: str,
                           amount_cents: int, source_key: str) -> PostedEntry:
    """Insurance paid ``amount_cents`` on a line (835 SVC03/CLP04). Raises as entry_post."""
    cents = require_positive_cents(amount_cents)
    return ledger.entry_post(
        clinic_id=clinic_id, guarantor_id=guarantor_id, code=EntryCode.INSURANCE_PAYMENT,
        lines=[Line(Account.INS_CASH, cents, line_id), Line(Account.INS_AR, -cents, line_id)],
        source_key=source_key,
    )


@clinic_scoped
def insurance_adjustment_post(*, clinic_id: str, guarantor_id: str, line_id: str,
                              amount_cents: int, carc_group: str, carc_reason: str,
                              source_key: str) -> PostedEntry:
    """An insurance adjustment with its CARC group (CO, OA, PI, CR) and reason code (CAS).

    A negative CAS amount (an adjustment taken back) is posted as the reversal of the original
    fact by the importer, not as a negative amount here.
    """
    cents = require_positive_cents(amount_cents)
    if carc_group not in CARC_GROUPS - {"PR"}:
        raise InvalidInput("carc_group must be CO, OA, PI or CR (PR is patient responsibility)")
    if not carc_reason or len(carc_reason) > 5:
        raise InvalidInput("carc_reason must be a CARC code such as 45")
    return ledger.entry_post(
        clinic_id=clinic_id, guarantor_id=guarantor_id, code=EntryCode.INSURANCE_ADJUSTMENT,
        lines=[Line(Account.INS_ADJ, cents, line_id), Line(Account.INS_AR, -cents, line_id)],
        source_key=source_key, meta={"carc_group": carc_group, "carc_reason": carc_reason},
    )


@clinic_scoped
def patient_responsibility_post(*, clinic_id: str, guarantor_id: str, line_id: str,
                                amount_cents: int, kind: ResponsibilityKind, source_key: str,
                                carc_reason: str | None = None) -> PostedEntry:
    """Move ``amount_cents`` of a line from insurance to the patient (CAS group PR)."""
    cents = require_positive_cents(amount_cents)
    meta = {"kind": ResponsibilityKind(kind).value, "carc_group": "PR"}
    if carc_reason:
        meta["carc_reason"] = carc_reason
    return ledger.entry_post(
        clinic_id=clinic_id, guarantor_id=guarantor_id, code=EntryCode.PATIENT_RESPONSIBILITY,
        lines=[Line(Account.PAT_AR, cents, line_id), Line(Account.INS_AR, -cents, line_id)],
        source_key=source_key, meta=meta,
    )


@clinic_scoped
def patient_adjustment_post(*, clinic_id: str, guarantor_id: str, line_id: str,
                            amount_cents: int, reason: str, source_key: str) -> PostedEntry:
    """A patient credit adjustment (courtesy discount, small-balance write-off, other)."""
    cents = require_positive_cents(amount_cents)
    if reason not in ADJUSTMENT_REASONS:
        raise InvalidInput(f"reason must be one of {sorted(ADJUSTMENT_REASONS)}")
    return ledger.entry_post(
        clinic_id=clinic_id, guarantor_id=guarantor_id, code=EntryCode.PATIENT_ADJUSTMENT,
        lines=[Line(Account.PAT_ADJ, cents, line_id), Line(Account.PAT_AR, -cents, line_id)],
        source_key=source_key, meta={"reason": reason},
    )


@clinic_scoped
def collections_transfer(*, clinic_id: str, guarantor_id: str, line_id: str,
                         amount_cents: int, source_key: str, agency: str | None = None) -> PostedEntry:
    """Transfer open patient balance of a line to collections (no longer payable online)."""
    cents = require_positive_cents(amount_cents)
    meta = {"agency": agency} if agency else {}
    return ledger.entry_post(
        clinic_id=clinic_id, guarantor_id=guarantor_id, code=EntryCode.COLLECTION_TRANSFER,
        lines=[Line(Account.COLLECTIONS, cents, line_id), Line(Account.PAT_AR, -cents, line_id)],
        source_key=source_key, meta=meta,
    )


@clinic_scoped
def patient_payment_post(*, clinic_id: str, guarantor_id: str, amount_cents: int,
                         applications: Mapping[str, int], source_key: str,
                         method: str = "card", also: Also | None = None) -> PostedEntry:
    """Patient money received, applied to lines as given; the rest is held in escrow.

    ``applications``: service line id -> positive cents, summing to at most the amount. The
    payments package chooses them (auto-post oldest first, REFERENCE-PORTAL.md E4) and owns
    receipts and batches; this is the ledger fact. ``also``: the caller's items in the same
    transaction (the receipt, the attempt's transition), as in ``entry_post``. Raises
    InvalidAmount, LineInCollections, InsufficientBalance (an application above the line's open
    balance), AlreadyPosted, ConditionFailed (one of ``also``'s items).
    """
    cents = require_positive_cents(amount_cents)
    lines = [Line(Account.PAT_CASH, cents)]
    applied = 0
    for line_id, part in sorted(applications.items()):
        part = require_positive_cents(part, field=f"applications[{line_id}]")
        applied += part
        lines.append(Line(Account.PAT_AR, -part, line_id))
    if applied > cents:
        raise InvalidInput("applications exceed the amount received")
    if cents - applied:
        lines.append(Line(Account.ESCROW, -(cents - applied)))
    return ledger.entry_post(clinic_id=clinic_id, guarantor_id=guarantor_id,
                             code=EntryCode.PATIENT_PAYMENT, lines=lines,
                             source_key=source_key, meta={"method": method}, also=also)


@clinic_scoped
def payment_apply(*, clinic_id: str, guarantor_id: str, line_id: str, amount_cents: int,
                  source_key: str) -> PostedEntry:
    """Apply unapplied funds (escrow) to a line. Raises InsufficientBalance if escrow is short."""
    cents = require_positive_cents(amount_cents)
    return ledger.entry_post(
        clinic_id=clinic_id, guarantor_id=guarantor_id, code=EntryCode.PAYMENT_APPLICATION,
        lines=[Line(Account.ESCROW, cents), Line(Account.PAT_AR, -cents, line_id)],
        source_key=source_key,
    )


@clinic_scoped
def patient_refund_post(*, clinic_id: str, guarantor_id: str, amount_cents: int,
                        source_key: str) -> PostedEntry:
    """Refund unapplied funds to the guarantor. Applied money is reversed first (payments)."""
    cents = require_positive_cents(amount_cents)
    return ledger.entry_post(
        clinic_id=clinic_id, guarantor_id=guarantor_id, code=EntryCode.PATIENT_REFUND,
        lines=[Line(Account.ESCROW, cents), Line(Account.PAT_CASH, -cents)],
        source_key=source_key,
    )


@clinic_scoped
def statement_create(*, clinic_id: str, guarantor_id: str, statement_date: str,
                     due_date: str, statement_id: str | None = None) -> str:
    """Snapshot a statement for the guarantor: open lines, statement balance, amount due.

    Lines with open patient balance are listed as ``new`` (first billed) or
    ``previously_billed``. Returns the statement id. Raises UnknownGuarantor, InvalidInput.
    """
    sdate = _iso_date(statement_date, "statement_date")
    ddate = _iso_date(due_date, "due_date")
    if ddate < sdate:
        raise InvalidInput("due_date is before statement_date")
    sid = require_id(statement_id, field="statement_id") if statement_id else new_id("st")
    pk = keys.guarantor_pk(clinic_id, require_id(guarantor_id, field="guarantor_id"))
    try:
        number = account_number_of(GuarantorItem.get(pk, keys.PROFILE))
    except GuarantorItem.DoesNotExist:
        raise UnknownGuarantor(f"guarantor {guarantor_id} not found") from None
    billed_before: set[str] = set()
    for st in StatementItem.query(pk, StatementItem.sk.startswith(keys.STATEMENT_PREFIX)):
        billed_before.update(str(x.get("line_id")) for x in st.lines)
    lines = []
    for sl in ServiceLineItem.query(pk, ServiceLineItem.sk.startswith(keys.LINE_PREFIX),
                                    consistent_read=True):
        open_cents = sl.money.get(PAT_OPEN, 0)
        if open_cents > 0 and not sl.money.get(COLLECTIONS, 0):
            lines.append({"line_id": sl.line_id, "date_of_service": sl.date_of_service,
                          "procedure_code": sl.procedure_code, "open_cents": open_cents,
                          "status": "previously_billed" if sl.line_id in billed_before else "new"})
    item = StatementItem(pk, keys.statement_sk(sid), statement_id=sid, statement_date=sdate,
                         due_date=ddate, account_number=number, statement_balance=0,
                         amount_due=0, as_of_seq=0, lines=lines, created_at=clock.now())
    ledger.statement_snapshot(clinic_id=clinic_id, guarantor_id=guarantor_id, statement=item)
    return sid



# --- profile fields the guarantor edits in the portal (REFERENCE-PORTAL.md G7) -------------------

PREFERRED_NAME_MAX = 40
#: A pending email/mobile change lives 10 minutes and takes at most 5 guesses (SECURITY.md R17, R19).
CONTACT_CODE_MINUTES = 10
CONTACT_CODE_ATTEMPTS = 5
CONTACT_CHANNELS = ("email", "sms")
#: A pending change first awaits the step-up code sent to the current contact, then the new one's (R22).
STAGE_STEPUP, STAGE_NEW = "stepup", "new"
_EMAIL = re.compile(r"^[^@\s]{1,64}@[A-Za-z0-9.-]{1,252}\.[A-Za-z]{2,}$")


def _profile_key(clinic_id: str, guarantor_id: str) -> tuple[str, str]:
    return keys.guarantor_pk(clinic_id, require_id(guarantor_id, field="guarantor_id")), keys.PROFILE


def _profile_update(clinic_id: str, guarantor_id: str, actions: list[Any], condition: Any = None) -> bool:
    """One update of an existing profile under ``condition``; False when a condition failed."""
    pk, sk = _profile_key(clinic_id, guarantor_id)
    exists = GuarantorItem.pk.exists()
    try:
        GuarantorItem(pk, sk).update(actions=actions, condition=exists if condition is None else exists & condition)
    except UpdateError as exc:
        if exc.cause_response_code == "ConditionalCheckFailedException":
            return False
        raise
    return True


@clinic_scoped
def preferred_name_set(*, clinic_id: str, guarantor_id: str, preferred_name: str) -> str | None:
    """Set (or, with blank text, clear) the guarantor's preferred name; return what is stored.

    At most 40 characters, no control characters. Sign-in matches the first or preferred name
    (PRODUCT.md §6), read from the profile, so no index changes. Safe to repeat.
    Raises InvalidInput, UnknownGuarantor.
    """
    text = " ".join((preferred_name or "").split())
    if len(text) > PREFERRED_NAME_MAX:
        raise InvalidInput(f"preferred name: at most {PREFERRED_NAME_MAX} characters")
    if any(not c.isprintable() for c in text):
        raise InvalidInput("preferred name: letters, spaces and punctuation only")
    action = GuarantorItem.preferred_name.set(text) if text else GuarantorItem.preferred_name.remove()
    if not _profile_update(clinic_id, guarantor_id, [action]):
        raise UnknownGuarantor(f"guarantor {guarantor_id} not found")
    return text or None


def contact_normalize(channel: str, value: str) -> str:
    """``email``: casefolded address; ``sms``: a US/Canadian mobile in E.164 (``+1XXXXXXXXXX``,
    10 digits or 1 + 10 digits accepted). Raises InvalidInput naming what is wrong."""
    text = (value or "").strip()
    if channel == "email":
        folded = text.casefold()
        if not _EMAIL.match(folded) or ".." in folded:
            raise InvalidInput("email: that is not an email address")
        return folded
    if channel == "sms":
        digits = "".join(c for c in text if c.isdigit())
        if len(digits) == 10:
            digits = "1" + digits
        if len(digits) != 11 or not digits.startswith("1") or digits[1] in "01" or len(text) > 30:
            raise InvalidInput("mobile: that is not a US or Canadian mobile number")
        return f"+{digits}"
    raise InvalidInput(f"channel must be one of {CONTACT_CHANNELS}")


class StepUpRequired(CodeRefused):
    """A contact change was attempted before its step-up code (to the current contact) was
    confirmed, or no contact is on file to send one to (SECURITY.md R22): the portal answers 403."""


def stepup_contact(channel: str, *, email: str | None, mobile: str | None) -> tuple[str, str]:
    """Where the step-up code for changing ``channel`` goes (SECURITY.md R22): the CURRENT
    contact of that channel, else the other channel's contact on file. Returns ``(channel,
    destination)`` with the destination normalized (casefolded email, E.164 mobile).
    Raises InvalidInput for an unknown channel, StepUpRequired when no usable contact is on file
    (nothing can prove it is the account holder; the practice changes it)."""
    if channel not in CONTACT_CHANNELS:
        raise InvalidInput(f"channel must be one of {CONTACT_CHANNELS}")
    on_file = {"email": email, "sms": mobile}
    for candidate in (channel, "sms" if channel == "email" else "email"):
        value = on_file[candidate]
        if not value:
            continue
        try:
            return candidate, contact_normalize(candidate, value)
        except InvalidInput:
            continue
    raise StepUpRequired("no contact on file to confirm the change")


@dataclass(frozen=True)
class ContactChange:
    """A pending email or mobile change (SECURITY.md R22). ``stage`` is ``stepup`` while the
    code that went to ``stepup_to`` (the current contact, by ``stepup_channel``) awaits
    confirmation, then ``new`` while the code sent to ``value`` (the NEW contact) does."""

    request_id: str
    channel: str
    value: str
    expires_at: datetime
    stage: str
    stepup_channel: str
    stepup_to: str


def _pending_view(pending: Mapping[str, Any]) -> ContactChange:
    return ContactChange(str(pending["request_id"]), str(pending["channel"]), str(pending["value"]),
                         datetime.fromtimestamp(int(pending["expires_epoch"]), tz=UTC),
                         str(pending.get("stage") or STAGE_STEPUP), str(pending.get("stepup_channel") or ""),
                         str(pending.get("stepup_to") or ""))


def _require_code_hash(code_hash: str) -> None:
    if not (isinstance(code_hash, str) and len(code_hash) == 64):
        raise InvalidInput("code_hash is an HMAC-SHA256 hex digest")


@clinic_scoped
def contact_change_start(*, clinic_id: str, guarantor_id: str, channel: str, value: str, request_id: str,
                         code_hash: str) -> ContactChange:
    """Begin a change of the guarantor's email (``channel="email"``) or mobile (``"sms"``):
    hold the new ``value`` and the step-up code's hash until :func:`contact_change_stepup`
    (REFERENCE-PORTAL.md G7, SECURITY.md R22). The caller sends that code to the returned
    ``stepup_to`` (the current contact of the channel, else the other channel on file; see
    :func:`stepup_contact`), never to the new contact. Only ``code_hash`` (links' HMAC of the
    code and ``request_id``, R16) is kept; it lives 10 minutes and takes 5 guesses (R17, R19).
    A newer change replaces the pending one, so earlier codes stop working (R18). Nothing
    visible changes until :func:`contact_change_confirm`.
    Raises InvalidInput (format, or the value already on file), StepUpRequired (no contact on
    file to confirm with), UnknownGuarantor.
    """
    normalized = contact_normalize(channel, value)
    require_id(request_id, field="request_id")
    _require_code_hash(code_hash)
    current = GuarantorItem.batch_get([_profile_key(clinic_id, guarantor_id)])
    profile = next((p for p in current if isinstance(p, GuarantorItem)), None)
    if profile is None:
        raise UnknownGuarantor(f"guarantor {guarantor_id} not found")
    on_file = profile.email if channel == "email" else profile.mobile
    try:
        same = on_file is not None and contact_normalize(channel, on_file) == normalized
    except InvalidInput:
        same = False
    if same:
        raise InvalidInput(f"{'email' if channel == 'email' else 'mobile'}: that is already on file")
    stepup_channel, stepup_to = stepup_contact(channel, email=profile.email, mobile=profile.mobile)
    expires = clock.now() + timedelta(minutes=CONTACT_CODE_MINUTES)
    pending = {"request_id": request_id, "channel": channel, "value": normalized, "code_hash": code_hash,
               "expires_epoch": int(expires.timestamp()), "attempts": 0, "stage": STAGE_STEPUP,
               "stepup_channel": stepup_channel, "stepup_to": stepup_to}
    if not _profile_update(clinic_id, guarantor_id, [GuarantorItem.contact_change.set(pending)]):
        raise UnknownGuarantor(f"guarantor {guarantor_id} not found")
    return _pending_view(pending)


def _pending_get(clinic_id: str, guarantor_id: str) -> tuple[GuarantorItem, dict[str, Any] | None]:
    pk, sk = _profile_key(clinic_id, guarantor_id)
    try:
        profile = GuarantorItem.get(pk, sk, consistent_read=True)
    except GuarantorItem.DoesNotExist:
        raise UnknownGuarantor(f"guarantor {guarantor_id} not found") from None
    pending = profile.contact_change.as_dict() if profile.contact_change is not None else None
    return profile, pending


def _live(request_id: str, stage: str) -> Any:
    """The condition of a pending change still open at ``stage``: this request's, unexpired
    (checked here, not left to any TTL, R17) and under 5 attempts (R19)."""
    change = GuarantorItem.contact_change
    return ((change["request_id"] == request_id) & (change["stage"] == stage)
            & (change["attempts"] < CONTACT_CODE_ATTEMPTS) & (change["expires_epoch"] > int(clock.now().timestamp())))


@clinic_scoped
def contact_change_stepup(*, clinic_id: str, guarantor_id: str, request_id: str, code_hash: str,
                          new_code_hash: str) -> ContactChange:
    """Confirm the step-up code that went to the current contact (SECURITY.md R22) and arm the
    code for the NEW contact (``new_code_hash``; the caller sends that code to the returned
    ``value``), with a fresh 10 minutes and 5 guesses of its own (R17, R19).

    One conditional update: the pending change must be this request's, at the step-up stage,
    unexpired and under 5 attempts. A wrong code burns an attempt and the 6th try fails even
    when right; a right code moves the change to stage ``new``, so the step-up code cannot be
    used twice. Raises CodeRefused for every refusal (wrong, expired, used, superseded, another
    guarantor's request), InvalidInput (``new_code_hash``), UnknownGuarantor.
    """
    refused = CodeRefused("code invalid or expired")
    _require_code_hash(new_code_hash)
    try:
        require_id(request_id, field="request_id")
    except InvalidInput:
        raise refused from None
    _, pending = _pending_get(clinic_id, guarantor_id)
    if not pending or pending.get("request_id") != request_id or pending.get("stage") != STAGE_STEPUP:
        raise refused
    change = GuarantorItem.contact_change
    right = isinstance(code_hash, str) and hmac.compare_digest(str(pending.get("code_hash")), code_hash)
    expires = clock.now() + timedelta(minutes=CONTACT_CODE_MINUTES)
    armed = {**pending, "stage": STAGE_NEW, "code_hash": new_code_hash, "attempts": 0,
             "expires_epoch": int(expires.timestamp())}
    actions = [change.set(armed)] if right else [change["attempts"].set(change["attempts"] + 1)]
    if not _profile_update(clinic_id, guarantor_id, actions, _live(request_id, STAGE_STEPUP)) or not right:
        raise refused
    return _pending_view(armed)


@dataclass(frozen=True)
class ContactChanged:
    """A confirmed change: ``old_value`` (None if there was none) is told of it by the caller."""

    channel: str
    old_value: str | None
    new_value: str


@clinic_scoped
def contact_change_confirm(*, clinic_id: str, guarantor_id: str, request_id: str, code_hash: str) -> ContactChanged:
    """Apply the pending change whose NEW-contact code hashes to ``code_hash``; single use and
    atomic, and only after its step-up (:func:`contact_change_stepup`, SECURITY.md R22).

    One conditional update: the pending change must be this request's, past its step-up,
    unexpired (checked here, not left to any TTL, R17) and under 5 attempts; a right code sets
    the email/mobile and drops the pending change (so a replay or a double submit is refused),
    a wrong one burns an attempt, and the 6th try fails even when right (R19).
    Raises StepUpRequired when this request's step-up is not confirmed (whatever the code),
    CodeRefused for every other refusal (wrong, expired, used, superseded, another guarantor's
    request), UnknownGuarantor.
    """
    refused = CodeRefused("code invalid or expired")
    try:
        require_id(request_id, field="request_id")
    except InvalidInput:
        raise refused from None
    profile, pending = _pending_get(clinic_id, guarantor_id)
    if not pending or pending.get("request_id") != request_id:
        raise refused
    if pending.get("stage") != STAGE_NEW:
        raise StepUpRequired("confirm the code sent to the contact on file first")
    change = GuarantorItem.contact_change
    right = isinstance(code_hash, str) and hmac.compare_digest(str(pending.get("code_hash")), code_hash)
    channel, value = str(pending["channel"]), str(pending["value"])
    field = GuarantorItem.email if channel == "email" else GuarantorItem.mobile
    old = profile.email if channel == "email" else profile.mobile
    actions = [field.set(value), change.remove()] if right else [change["attempts"].set(change["attempts"] + 1)]
    if not _profile_update(clinic_id, guarantor_id, actions, _live(request_id, STAGE_NEW)) or not right:
        raise refused
    return ContactChanged(channel, old, value)
