"""FHIR R4 reader: single resources or bundles (Synthea transaction bundles included) to units.

Validation uses ``fhir.resources`` (8.3.0, its ``R4B`` models, pinned in requirements.txt): every
resource of the file is validated against its model before anything is read, and a resource
that does not validate rejects the file with its entry number, resource type and the failing
element path (never its value). Measured on the samples: every R4 spec example and Synthea
bundle validates, ~20 ms per 270 KB bundle once the models are warm, so the library meets the
need. It is imported inside :func:`read_fhir` only (its pydantic models cost ~0.2 s to import;
``import app`` must stay light, SERVERLESS-PERF-REL.md B3). Fields are then read from the
validated JSON (parsed with ``Decimal`` for numbers), whose shapes the validation guarantees.

What becomes what (DATA-FORMATS.md §4):

- Account with ``guarantor[].party`` -> the party (RelatedPerson or Patient) is the guarantor of
  the Account's subject Patient; RelatedPerson.relationship gives the patient's relationship
  (a wife/husband party: spouse; a parent: child; else other).
- Patient without such an Account -> their own guarantor. RelatedPerson alone -> a guarantor.
- Claim -> a visit (:class:`Visit`): items with ``net`` (else ``unitPrice`` × ``quantity``)
  are charge lines; items without a price share the rest of ``total`` (the first one takes
  it: Synthea prices the encounter only in the total). ``use`` other than ``claim``,
  statuses ``cancelled``/``entered-in-error`` and non-USD money are not imported (a warning).
- ExplanationOfBenefit -> a remittance claim (:class:`RemitClaim`): per item the adjudication
  categories of three vocabularies (core R4, CARIN C4BB, Synthea's CMS Blue Button URIs):
  submitted, allowed/eligible, payer paid (benefit, paidtoprovider, line_prvdr_pmt_amt),
  deductible, coinsurance, copay. Deductible, coinsurance and copay become CAS group PR with
  reasons 1, 2 and 3; submitted − allowed becomes CO-45. ``outcome`` error is a denial.
- ChargeItem (billable, USD) -> a one-line visit. Every other resource type is counted in one
  warning.
- Coverage -> a :class:`CoverageUnit`: payer (payor[0]: the Organization's name, else the
  reference's display; a Patient/RelatedPerson payor is ``self-pay``), member id
  (``subscriberId``, else the identifier typed MB, else the first identifier), the patient's
  relationship to the subscriber, period, order and status of the beneficiary, stored by
  :func:`chalicelib.imports.posting.post_coverage`. Only top-level Coverage resources are read:
  the Coverage that Synthea contains in each EOB (``#coverage``, payor ``private``, no member id
  nor period) is a stub naming the kind of plan, not a payer, and is not stored.

References resolve inside the file: ``urn:uuid:`` fullUrls, ``Type/id``, absolute URLs ending
in ``Type/id`` and contained resources (``#id``). A patient that is not in the file is looked
up by ``fhir:Patient/<id>`` among earlier imports at posting time.

Money: decimals rounded half-up to cents (Synthea writes ``112.41600000000001``); one warning
per file says how many amounts needed rounding.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

from chalicelib.imports.errors import ImportRejected, Warnings
from chalicelib.imports.model import (
    Adjustment,
    FileFacts,
    NoteUnit,
    Person,
    PersonUnit,
    RemitClaim,
    RemitLine,
    RemitTransaction,
    Visit,
    VisitLine,
)

PAID = {"benefit", "paidtoprovider", "https://bluebutton.cms.gov/resources/variables/line_prvdr_pmt_amt"}
SUBMITTED = {"submitted", "https://bluebutton.cms.gov/resources/variables/line_sbmtd_chrg_amt"}
ALLOWED = {"eligible", "https://bluebutton.cms.gov/resources/variables/line_alowd_chrg_amt"}
PATIENT_SHARE = {
    "deductible": "1", "https://bluebutton.cms.gov/resources/variables/line_bene_ptb_ddctbl_amt": "1",
    "https://bluebutton.cms.gov/resources/variables/line_bene_ddctbl_amt": "1",
    "coinsurance": "2", "https://bluebutton.cms.gov/resources/variables/line_coinsrnc_amt": "2",
    "copay": "3",
}
SPOUSE = {"WIFE", "HUSB", "SPS", "DOMPART"}
PARENT = {"MTH", "FTH", "PRN", "PAR", "NMTH", "NFTH", "GUARD", "STPPRN", "STPMTH", "STPFTH"}
IMPORTED = {"Patient", "RelatedPerson", "Account", "Coverage", "Claim", "ExplanationOfBenefit", "ChargeItem"}

Unit = PersonUnit | Visit | RemitClaim | NoteUnit


@dataclass(slots=True)
class CoverageUnit(NoteUnit):
    """One FHIR Coverage (see the module docstring), stored by ``posting.post_coverage``.

    ``patient_ref``: ``fhir:Patient/<id>`` of the beneficiary (``""`` when it is not a Patient);
    dates ISO ``YYYY-MM-DD`` or None; ``order`` Coverage.order or None. ``member_id`` is
    PHI-adjacent: never log it (it is left out of ``repr``).
    """

    patient_ref: str = ""
    payer_name: str = ""
    payer_ref: str = ""
    member_id: str = field(default="", repr=False)
    relationship: str | None = None
    period_start: str | None = None
    period_end: str | None = None
    order: int | None = None
    status: str = ""
    coverage_id: str = ""


@dataclass
class FhirFile:
    """A read FHIR file: its units of work in posting order, and its facts (``transactions``
    counts the resources read)."""

    units: list[Unit] = field(default_factory=list)
    facts: FileFacts = field(default_factory=lambda: FileFacts("fhir"))


class _Money:
    """Decimal -> cents, half-up, counting the values that needed rounding."""

    def __init__(self) -> None:
        self.rounded = 0

    def cents(self, value: Any, position: int, resource: str, what: str) -> int:
        if isinstance(value, bool) or value is None:
            raise ImportRejected(position, resource, f"{what} is not an amount")
        try:
            amount = Decimal(str(value))
        except InvalidOperation:
            raise ImportRejected(position, resource, f"{what} is not an amount") from None
        if not amount.is_finite():
            raise ImportRejected(position, resource, f"{what} is not an amount")
        scaled = amount * 100
        whole = scaled.quantize(Decimal(1), rounding=ROUND_HALF_UP)
        if whole != scaled:
            self.rounded += 1
        return int(whole)


def _validate(data: dict[str, Any]) -> None:
    """Validate the whole file with fhir.resources' R4B models; ImportRejected on the first error."""
    from fhir.resources.R4B import get_fhir_model_class  # heavy (pydantic): only when reading FHIR
    from pydantic import ValidationError

    rtype = str(data.get("resourceType", ""))
    try:
        model = get_fhir_model_class(rtype)
    except (ValueError, KeyError):
        raise ImportRejected(0, rtype[:40], "unknown FHIR resource type") from None
    try:
        model.model_validate(data)
    except ValidationError as exc:
        error = exc.errors(include_input=False, include_url=False)[0]
        loc = [str(x) for x in error.get("loc", ())]
        position, resource = 0, rtype
        if rtype == "Bundle" and len(loc) > 1 and loc[0] == "entry" and loc[1].isdigit():
            position = int(loc[1]) + 1
            entries = data.get("entry") or []
            if position - 1 < len(entries):
                resource = str((entries[position - 1].get("resource") or {}).get("resourceType", ""))[:40]
        path = ".".join(x for x in loc if not x.isdigit())[:120]
        raise ImportRejected(position, resource, f"not valid FHIR R4: {path or '(resource)'}: "
                                                 f"{error.get('type', 'invalid')}") from None


def _text(value: Any) -> str:
    return value.strip() if isinstance(value, str) else ""


def _name(resource: dict[str, Any]) -> tuple[str, str]:
    names = resource.get("name") or []
    official = next((n for n in names if n.get("use") == "official"), names[0] if names else {})
    given = official.get("given") or []
    return _text(official.get("family")), _text(given[0]) if given else ""


def _person(resource: dict[str, Any], key: str) -> Person:
    last, first = _name(resource)
    telecom = resource.get("telecom") or []
    email = next((_text(t.get("value")) for t in telecom if t.get("system") == "email" and t.get("value")), None)
    address = (resource.get("address") or [None])[0]
    addr = None
    if isinstance(address, dict):
        lines = address.get("line") or []
        addr = {"line1": _text(lines[0]) if lines else "", "city": _text(address.get("city")),
                "state": _text(address.get("state")), "postal_code": _text(address.get("postalCode"))}
    gender = _text(resource.get("gender"))
    birth = _text(resource.get("birthDate"))
    return Person(last=last, first=first, external_key=key, date_of_birth=birth if len(birth) == 10 else None,
                  sex={"female": "F", "male": "M"}.get(gender, "U" if gender else None), email=email,
                  address=addr)


def _code(concept: Any) -> str:
    if not isinstance(concept, dict):
        return ""
    for coding in concept.get("coding") or []:
        if coding.get("code"):
            return _text(coding["code"])
    return _text(concept.get("text"))


def _date(value: Any) -> str | None:
    text = _text(value)
    return text[:10] if len(text) >= 10 and text[4] == "-" else None


def _item_date(item: dict[str, Any], resource: dict[str, Any]) -> str | None:
    return (_date(item.get("servicedDate")) or _date((item.get("servicedPeriod") or {}).get("start"))
            or _date((resource.get("billablePeriod") or {}).get("start")) or _date(resource.get("created")))


class _Index:
    """References inside one file: fullUrl, ``Type/id`` and absolute URLs ending in ``Type/id``."""

    def __init__(self, resources: list[tuple[int, str, dict[str, Any]]]) -> None:
        self.by_ref: dict[str, dict[str, Any]] = {}
        for _, full_url, res in resources:
            if full_url:
                self.by_ref[full_url] = res
            if res.get("id"):
                self.by_ref[f"{res['resourceType']}/{res['id']}"] = res

    def get(self, reference: Any, owner: dict[str, Any] | None = None) -> dict[str, Any] | None:
        ref = _text((reference or {}).get("reference")) if isinstance(reference, dict) else ""
        if not ref:
            return None
        if ref.startswith("#") and owner is not None:
            return next((c for c in owner.get("contained") or [] if c.get("id") == ref[1:]), None)
        if ref in self.by_ref:
            return self.by_ref[ref]
        parts = ref.rstrip("/").split("/")
        return self.by_ref.get("/".join(parts[-2:])) if len(parts) >= 2 else None


def _type_id(reference: Any) -> str:
    """``Patient/123`` of a reference that is not resolved in the file (for a later lookup)."""
    ref = _text((reference or {}).get("reference")) if isinstance(reference, dict) else ""
    parts = ref.rstrip("/").split("/")
    return "/".join(parts[-2:]) if len(parts) >= 2 and not ref.startswith(("urn:", "#")) else ""


def read_fhir(data: bytes, warnings: Warnings) -> FhirFile:
    """Validate and read a FHIR JSON file into units; raises ImportRejected (see module docstring)."""
    try:
        text = data.decode("utf-8-sig")
        root = json.loads(text, parse_float=Decimal)
    except (UnicodeDecodeError, ValueError):
        raise ImportRejected(0, "", "not a JSON document") from None
    if not isinstance(root, dict) or not isinstance(root.get("resourceType"), str):
        raise ImportRejected(0, "", "not a FHIR resource (no resourceType)")
    resources: list[tuple[int, str, dict[str, Any]]] = []
    if root["resourceType"] == "Bundle":
        for n, entry in enumerate(root.get("entry") or [], start=1):
            res = entry.get("resource") if isinstance(entry, dict) else None
            if isinstance(res, dict) and isinstance(res.get("resourceType"), str):
                resources.append((n, _text(entry.get("fullUrl")), res))
    else:
        resources.append((0, "", root))
    _validate(root)
    out = FhirFile()
    facts = out.facts
    facts.transactions = len(resources)
    money = _Money()
    index = _Index(resources)
    skipped: Counter[str] = Counter()
    ordinal = 0

    def next_ordinal() -> int:
        nonlocal ordinal
        ordinal += 1
        return ordinal

    def key_of(res: dict[str, Any]) -> str:
        return f"fhir:{res['resourceType']}/{res.get('id', '')}"

    patients_done: set[str] = set()
    # 1. Accounts naming a guarantor for their subject patient(s).
    for position, _, res in resources:
        if res["resourceType"] != "Account":
            continue
        party_ref = next((g.get("party") for g in res.get("guarantor") or [] if not g.get("onHold")), None)
        party = index.get(party_ref, res)
        if party is None or party.get("resourceType") not in ("Patient", "RelatedPerson"):
            out.units.append(NoteUnit(next_ordinal(), position, "account without a guarantor in this file"))
            continue
        guarantor = _person(party, key_of(party))
        relationship = "other"
        if party["resourceType"] == "RelatedPerson":
            codes = {_text(c.get("code")).upper() for r in party.get("relationship") or []
                     for c in r.get("coding") or []}
            relationship = "spouse" if codes & SPOUSE else "child" if codes & PARENT else "other"
        for subject_ref in res.get("subject") or []:
            subject = index.get(subject_ref, res)
            if subject is None or subject.get("resourceType") != "Patient":
                continue
            if subject is party:
                out.units.append(PersonUnit(next_ordinal(), position, guarantor, None, "self",
                                            patient_alias=key_of(subject)))
            else:
                out.units.append(PersonUnit(next_ordinal(), position, guarantor, _person(subject, key_of(subject)),
                                            relationship, patient_alias=key_of(subject)))
            patients_done.add(key_of(subject))
            patients_done.add(key_of(party))
    # 2. RelatedPersons and Patients not placed by an Account.
    for position, _, res in resources:
        rtype = res["resourceType"]
        if rtype not in ("Patient", "RelatedPerson") or key_of(res) in patients_done:
            continue
        person = _person(res, key_of(res))
        if rtype == "Patient":
            out.units.append(PersonUnit(next_ordinal(), position, person, None, "self", patient_alias=key_of(res)))
        else:
            out.units.append(PersonUnit(next_ordinal(), position, person, None, "self"))
    # 3. Claims, ChargeItems, Coverages, then ExplanationOfBenefits.
    guarantor_of: dict[str, tuple[Person, str]] = {}
    for unit in out.units:
        if isinstance(unit, PersonUnit) and unit.patient_alias:
            guarantor_of[unit.patient_alias] = (unit.guarantor, unit.relationship)
    claims_by_ref: dict[int, str] = {}
    for position, _, res in resources:
        rtype = res["resourceType"]
        if rtype == "Claim":
            visit = _claim(res, position, next_ordinal(), index, guarantor_of, money, warnings)
            facts.claims += 1
            if isinstance(visit, Visit):
                facts.service_lines += len(visit.lines)
                facts.charge_cents += visit.charge_cents
                claims_by_ref[id(res)] = _text(res.get("id"))
            out.units.append(visit)
        elif rtype == "ChargeItem":
            out.units.append(_charge_item(res, position, next_ordinal(), index, guarantor_of, money))
        elif rtype == "Coverage":
            out.units.append(_coverage(res, position, next_ordinal(), index))
        elif rtype not in IMPORTED:
            skipped[rtype] += 1
    for position, _, res in resources:
        if res["resourceType"] == "ExplanationOfBenefit":
            remit = _eob(res, position, next_ordinal(), index, guarantor_of, money, warnings)
            facts.claims += 1
            if isinstance(remit, RemitClaim):
                facts.service_lines += len(remit.lines)
                facts.insurance_paid_cents += remit.paid_cents
                facts.patient_responsibility_cents += remit.patient_responsibility()
            out.units.append(remit)
    if skipped:
        warnings.add("resource types not imported: " + ", ".join(f"{t} ×{n}" for t, n in sorted(skipped.items())))
    if money.rounded:
        warnings.add(f"{money.rounded} amounts had more than two decimals and were rounded half-up to cents")
    return out


def _patient_of(resource: dict[str, Any], index: _Index, guarantor_of: dict[str, tuple[Person, str]]
                ) -> tuple[Person | None, Person | None, str, str]:
    """(guarantor, patient or None when self, relationship, patient ref) of a Claim/EOB/ChargeItem."""
    ref = resource.get("patient") or resource.get("subject")
    patient = index.get(ref, resource)
    if patient is None or patient.get("resourceType") != "Patient":
        type_id = _type_id(ref)
        return None, None, "self", f"fhir:{type_id}" if type_id.startswith("Patient/") else ""
    key = f"fhir:Patient/{patient.get('id', '')}"
    person = _person(patient, key)
    if key in guarantor_of:
        guarantor, relationship = guarantor_of[key]
        if guarantor.external_key != key:
            return guarantor, person, relationship, key
    return person, None, "self", key


def _currency_ok(money_value: Any) -> bool:
    return not isinstance(money_value, dict) or _text(money_value.get("currency")) in ("", "USD")


def _claim(res: dict[str, Any], position: int, ordinal: int, index: _Index,
           guarantor_of: dict[str, tuple[Person, str]], money: _Money, warnings: Warnings) -> Visit | NoteUnit:
    status, use = _text(res.get("status")), _text(res.get("use")) or "claim"
    if status in ("cancelled", "entered-in-error") or use != "claim":
        return NoteUnit(ordinal, position, f"claim with status {status or '-'} and use {use}: not a charge")
    items = res.get("item") or []
    total = res.get("total")
    if not _currency_ok(total) or any(not _currency_ok(i.get("net")) or not _currency_ok(i.get("unitPrice"))
                                      for i in items):
        warnings.add(f"entry {position} (Claim): money is not in USD; the claim is not imported")
        return NoteUnit(ordinal, position, "claim money not in USD")
    prices: list[int | None] = []
    for item in items:
        if isinstance(item.get("net"), dict) and item["net"].get("value") is not None:
            prices.append(money.cents(item["net"]["value"], position, "Claim", "item.net"))
        elif isinstance(item.get("unitPrice"), dict) and item["unitPrice"].get("value") is not None:
            qty = Decimal(str((item.get("quantity") or {}).get("value", 1)))
            prices.append(money.cents(Decimal(str(item["unitPrice"]["value"])) * qty, position, "Claim",
                                      "item.unitPrice"))
        else:
            prices.append(None)
    total_cents = money.cents(total["value"], position, "Claim", "total") if isinstance(total, dict) and \
        total.get("value") is not None else sum(p or 0 for p in prices)
    rest = total_cents - sum(p or 0 for p in prices)
    lines: list[VisitLine] = []
    for number, (item, price) in enumerate(zip(items, prices, strict=True), start=1):
        if price is None:
            price, rest = max(rest, 0), 0
        mods = tuple(_code(m) for m in item.get("modifier") or [] if _code(m))
        qty = (item.get("quantity") or {}).get("value", 1)
        lines.append(VisitLine(number=number, code=_code(item.get("productOrService"))[:20] or "ITEM",
                               modifiers=mods[:4], charge_cents=price,
                               units=max(1, int(Decimal(str(qty)))) if str(qty).replace(".", "", 1).isdigit() else 1,
                               date_of_service=_item_date(item, res),
                               description=_text((item.get("productOrService") or {}).get("text"))[:100]))
    guarantor, patient, relationship, ref = _patient_of(res, index, guarantor_of)
    return Visit(ordinal=ordinal, position=position, claim_id=_text(res.get("id")) or f"claim{ordinal}",
                 charge_cents=total_cents, subscriber=guarantor, patient=patient, relationship=relationship,
                 lines=lines,
                 date_from=_date((res.get("billablePeriod") or {}).get("start")) or _date(res.get("created")),
                 source="fhir", patient_ref=ref)


def _charge_item(res: dict[str, Any], position: int, ordinal: int, index: _Index,
                 guarantor_of: dict[str, tuple[Person, str]], money: _Money) -> Visit | NoteUnit:
    if _text(res.get("status")) != "billable":
        return NoteUnit(ordinal, position, "charge item is not billable")
    price = res.get("priceOverride")
    if not isinstance(price, dict) or price.get("value") is None:
        return NoteUnit(ordinal, position, "charge item has no price")
    if not _currency_ok(price):
        return NoteUnit(ordinal, position, "charge item money is not in USD: not imported")
    cents = money.cents(price["value"], position, "ChargeItem", "priceOverride")
    day = _date(res.get("occurrenceDateTime")) or _date((res.get("occurrencePeriod") or {}).get("start"))
    guarantor, patient, relationship, ref = _patient_of(res, index, guarantor_of)
    line = VisitLine(number=1, code=_code(res.get("code"))[:20] or "ITEM", modifiers=(), charge_cents=cents,
                     units=1, date_of_service=day)
    return Visit(ordinal=ordinal, position=position, claim_id=f"CI{_text(res.get('id'))}", charge_cents=cents,
                 subscriber=guarantor, patient=patient, relationship=relationship, lines=[line], date_from=day,
                 source="fhir", patient_ref=ref)


def _coverage(res: dict[str, Any], position: int, ordinal: int, index: _Index) -> CoverageUnit:
    """A Coverage resource as a unit (shapes guaranteed by the R4 validation; DATA-FORMATS.md §4)."""
    beneficiary = res.get("beneficiary")
    patient = index.get(beneficiary, res)
    if patient is not None and patient.get("resourceType") == "Patient":
        patient_ref = f"fhir:Patient/{patient.get('id', '')}"
    else:
        type_id = _type_id(beneficiary)
        patient_ref = f"fhir:{type_id}" if type_id.startswith("Patient/") else ""
    payor = (res.get("payor") or [{}])[0]
    payer = index.get(payor, res)
    payer_name = _text(payor.get("display"))
    if payer is not None and payer.get("resourceType") == "Organization":
        payer_name = _text(payer.get("name")) or payer_name
    elif payer is not None and payer.get("resourceType") in ("Patient", "RelatedPerson"):
        payer_name = "self-pay"
    payer_ref = f"{payer['resourceType']}/{payer.get('id', '')}" if payer is not None else _type_id(payor)
    member = _text(res.get("subscriberId"))
    if not member:
        identifiers = [i for i in res.get("identifier") or [] if _text(i.get("value"))]
        typed = next((i for i in identifiers if _code(i.get("type")).upper() == "MB"), None)
        chosen = typed or (identifiers[0] if identifiers else None)
        member = _text(chosen.get("value")) if chosen else ""
    period = res.get("period") or {}
    order = res.get("order")
    return CoverageUnit(
        ordinal, position, "coverage", patient_ref=patient_ref, payer_name=payer_name[:120], payer_ref=payer_ref[:120],
        member_id=member[:80], relationship=_code(res.get("relationship")).lower()[:20] or None,
        period_start=_date(period.get("start")), period_end=_date(period.get("end")),
        order=int(order) if isinstance(order, int) and not isinstance(order, bool) else None,
        status=_text(res.get("status"))[:20], coverage_id=_text(res.get("id"))[:64])


def _eob(res: dict[str, Any], position: int, ordinal: int, index: _Index,
         guarantor_of: dict[str, tuple[Person, str]], money: _Money, warnings: Warnings) -> RemitClaim | NoteUnit:
    outcome = _text(res.get("outcome"))
    if _text(res.get("status")) in ("cancelled", "entered-in-error") or outcome in ("queued", ""):
        return NoteUnit(ordinal, position, f"explanation of benefit with outcome {outcome or '-'}: not posted")
    claim_res = index.get(res.get("claim"), res)
    claim_id = _text(claim_res.get("id")) if claim_res is not None else _type_id(res.get("claim")).split("/")[-1]
    eob_id = _text(res.get("id")) or f"eob{ordinal}"
    tx = RemitTransaction(ordinal=1, position=position, control=eob_id, version="R4",
                          payer_name=_text((res.get("insurer") or {}).get("display")))
    lines: list[RemitLine] = []
    for item in res.get("item") or []:
        values: dict[str, int] = {}
        adjustments: list[Adjustment] = []
        for adj in item.get("adjudication") or []:
            amount = adj.get("amount")
            if not isinstance(amount, dict) or amount.get("value") is None:
                continue
            if not _currency_ok(amount):
                warnings.add(f"entry {position} (ExplanationOfBenefit): money is not in USD; not imported")
                return NoteUnit(ordinal, position, "explanation of benefit money not in USD")
            category = _code(adj.get("category"))
            cents = money.cents(amount["value"], position, "ExplanationOfBenefit", "adjudication.amount")
            if category in PATIENT_SHARE:
                if cents:
                    adjustments.append(Adjustment("PR", PATIENT_SHARE[category], cents))
            elif category in PAID or category in SUBMITTED or category in ALLOWED:
                key = "paid" if category in PAID else "submitted" if category in SUBMITTED else "allowed"
                values[key] = values.get(key, 0) + cents
        net = item.get("net")
        charge = values.get("submitted")
        if charge is None and isinstance(net, dict) and net.get("value") is not None:
            charge = money.cents(net["value"], position, "ExplanationOfBenefit", "item.net")
        charge = charge or 0
        allowed = values.get("allowed")
        if allowed is not None and allowed < charge:
            adjustments.append(Adjustment("CO", "45", charge - allowed))
        lines.append(RemitLine(position=position, qualifier="HC",
                               code=_code(item.get("productOrService"))[:20] or "ITEM",
                               modifiers=tuple(_code(m) for m in item.get("modifier") or [] if _code(m))[:4],
                               charge_cents=charge, paid_cents=values.get("paid", 0),
                               date_from=_item_date(item, res), adjustments=tuple(adjustments),
                               allowed_cents=allowed))
    submitted = next((t.get("amount") for t in res.get("total") or [] if _code(t.get("category")) in SUBMITTED), None)
    charge_total = (money.cents(submitted["value"], position, "ExplanationOfBenefit", "total")
                    if isinstance(submitted, dict) and submitted.get("value") is not None
                    else sum(ln.charge_cents for ln in lines))
    payment = (res.get("payment") or {}).get("amount")
    paid_total = (money.cents(payment["value"], position, "ExplanationOfBenefit", "payment.amount")
                  if isinstance(payment, dict) and payment.get("value") is not None
                  else sum(ln.paid_cents for ln in lines))
    guarantor, patient, _relationship, ref = _patient_of(res, index, guarantor_of)
    person = patient or guarantor
    return RemitClaim(
        ordinal=ordinal, position=position, transaction=tx, patient_control=eob_id,
        status="4" if outcome == "error" else "1", charge_cents=charge_total, paid_cents=paid_total,
        patient=person, subscriber=guarantor if patient is not None else None, lines=lines,
        date_from=_date((res.get("billablePeriod") or {}).get("start")), source="fhir", fhir_claim=claim_id,
        patient_ref=ref,
    )
