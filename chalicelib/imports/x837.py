"""X12 837P / 837I (health care claims) reader: segments to :class:`Visit` objects.

Structural, 4010 and 5010 alike (DATA-FORMATS.md §3): HL03 20 billing provider (NM1*85, REF*EI),
22 subscriber (SBR, NM1*IL with the member id, DMG, N3/N4, NM1*PR payer), 23 patient (PAT01
relationship, NM1*QC, DMG, N3/N4); the claim CLM (CLM01 patient control number, CLM02 total,
CLM05-3 frequency), claim DTP*472/434, rendering (NM1*82), service facility (NM1*77),
referring (NM1*DN); service lines LX + SV1 (professional: HC:code:modifiers, charge, units) or
SV2 (institutional: revenue code, HC:code:modifiers, charge, units), line DTP*472 and REF*6R.

HL parents are taken from the hierarchy as read (the last billing provider, the last
subscriber), not from a dictionary of HL ids: several transaction sets in one file reuse
``HL*1`` (DATA-FORMATS.md §5 issue 19), and one sample even repeats an HL id inside a set.
Loops 2320/2330 (other payers, after the claim) never replace the subscriber or the providers.

Rejections (ImportRejected): CLM02, SV102, SV203 that are not decimal amounts or have
fractions of a cent, an empty CLM01, an SV1/SV2 without a procedure or revenue code, a claim
before any subscriber, a segment id that is not an 837 segment. Warnings: lines that do not
sum to CLM02, lines without a date of service (the claim's date is used), units that are not
whole numbers (rounded up).
"""

from __future__ import annotations

from collections.abc import Iterator
from decimal import ROUND_CEILING, Decimal, InvalidOperation
from typing import BinaryIO

from chalicelib.core.money import format_cents
from chalicelib.imports.errors import ImportRejected, Warnings
from chalicelib.imports.model import FileFacts, Person, Provider, Visit, VisitLine
from chalicelib.imports.x12 import X12Reader, cents
from chalicelib.imports.x835 import iso_date

SEGMENTS = frozenset({
    "BHT", "REF", "NM1", "N2", "N3", "N4", "PER", "HL", "PRV", "SBR", "PAT", "DMG", "CUR", "CLM", "DTP", "CL1",
    "PWK", "CN1", "AMT", "K3", "NTE", "CR1", "CR2", "CR3", "CR4", "CR5", "CR6", "CR7", "CRC", "HI", "HCP", "QTY",
    "MEA", "LX", "SV1", "SV2", "SV3", "SV4", "SV5", "SV6", "SV7", "TOO", "PS1", "HSD", "LIN", "CTP", "SVD", "CAS",
    "MIA", "MOA", "LQ", "FRM", "OI", "DN1", "DN2", "IMM",
})
RELATIONSHIP_CODES = {"01": "spouse", "19": "child", "18": "self"}


def _person(els: list[str]) -> Person:
    n = len(els)
    return Person(last=els[3] if n > 3 else "", first=els[4] if n > 4 else "", middle=els[5] if n > 5 else "",
                  member_id=(els[9] if n > 9 else "").strip())


def _provider(els: list[str]) -> Provider | None:
    n = len(els)
    npi = (els[9] if n > 9 else "").strip()
    name = els[3] if n > 3 else ""
    if not npi and not name:
        return None
    return Provider(npi=npi if n > 8 and els[8] == "XX" else "", name=name, first=els[4] if n > 4 else "")


def _units(raw: str, position: int, warnings: Warnings) -> int:
    if not raw:
        return 1
    try:
        value = Decimal(raw)
    except InvalidOperation:
        warnings.add(f"segment {position}: units are not a number; 1 is used")
        return 1
    if not value.is_finite() or value <= 0:
        return 1
    if value != value.to_integral_value():
        warnings.add(f"segment {position}: units are not a whole number; rounded up")
    return max(1, int(value.to_integral_value(rounding=ROUND_CEILING)))


def _date(qualifier_format: str, raw: str) -> str | None:
    """DTP03 in format D8 (CCYYMMDD) or RD8 (CCYYMMDD-CCYYMMDD): the first date."""
    if qualifier_format == "RD8":
        raw = raw.split("-", 1)[0]
    return iso_date(raw)


def read_837(reader: X12Reader, warnings: Warnings) -> Iterator[Visit]:
    """Yield every claim of the file as a :class:`Visit`, in file order.

    Refuses transaction sets that are not 837s. Raises ImportRejected as in the module docstring.
    """
    billing: Provider | None = None
    subscriber: Person | None = None
    patient: Person | None = None
    relationship = "self"
    payer_name = payer_id = ""
    visit: Visit | None = None
    line: VisitLine | None = None
    ordinal = 0
    level = ""  # the current HL level: 20, 22, 23
    person: Person | None = None  # who N3/N4/DMG describe
    for els in reader:
        tag = els[0]
        n = len(els)
        position = reader.position
        if tag == "ST":
            if n < 2 or els[1] != "837":
                raise ImportRejected(position, tag, f"transaction set {(els[1] if n > 1 else '')[:3]!r} is not an 837")
            billing = subscriber = patient = person = None
            visit = line = None
            level = ""
            continue
        if tag in ("HL", "SE"):
            if visit is not None:
                yield _closed(visit, warnings)
                visit = line = None
            if tag == "SE":
                continue
            level = els[3] if n > 3 else ""
            if level == "20":
                billing, subscriber, patient, person = None, None, None, None
            elif level == "22":
                subscriber, patient, person, relationship = None, None, None, "self"
                payer_name = payer_id = ""
            elif level == "23":
                patient, person = None, None
            continue
        if tag == "NM1":
            entity = els[1] if n > 1 else ""
            if visit is None:
                person = None
                if entity == "IL" and level == "22":
                    subscriber = person = _person(els)
                elif entity == "QC":
                    patient = person = _person(els)
                elif entity == "85" and level == "20":
                    billing = _provider(els)
                elif entity == "PR" and level == "22":
                    payer_name, payer_id = (els[3] if n > 3 else ""), (els[9] if n > 9 else "")
            elif line is None:
                if entity == "82" and visit.rendering is None:
                    visit.rendering = _provider(els)
                elif entity == "77" and visit.facility is None:
                    visit.facility = _provider(els)
                elif entity == "DN" and visit.referring is None:
                    visit.referring = _provider(els)
            continue
        if tag == "DMG":
            if person is not None and visit is None:
                person.date_of_birth = iso_date(els[2]) if n > 2 and (els[1] if n > 1 else "") == "D8" else None
                person.sex = (els[3] if n > 3 else "")[:1] or None
            continue
        if tag == "N3":
            if person is not None and visit is None:
                person.address = {"line1": els[1] if n > 1 else "", "line2": els[2] if n > 2 else ""}
            continue
        if tag == "N4":
            if person is not None and visit is None and person.address is not None:
                person.address.update({"city": els[1] if n > 1 else "", "state": els[2] if n > 2 else "",
                                       "postal_code": els[3] if n > 3 else ""})
            continue
        if tag == "REF":
            if line is not None and n > 2 and els[1] == "6R":
                line.control = els[2]
            elif visit is None and billing is not None and level == "20" and n > 2 and els[1] == "EI":
                billing.tax_id = els[2]
            continue
        if tag == "PAT":
            relationship = RELATIONSHIP_CODES.get(els[1] if n > 1 else "", "other")
            if relationship == "self":
                relationship = "other"
            continue
        if tag == "SBR":
            if visit is None and level == "22" and n > 2 and els[2] == "18":
                relationship = "self"
            continue
        if tag == "CLM":
            if visit is not None:
                yield _closed(visit, warnings)
                line = None
            if subscriber is None:
                raise ImportRejected(position, tag, "claim before any subscriber (NM1*IL)")
            claim_id = (els[1] if n > 1 else "").strip()
            if not claim_id:
                raise ImportRejected(position, tag, "CLM01 (patient control number) is empty")
            delims = reader.delimiters
            assert delims is not None
            clm05 = (els[5] if n > 5 else "").split(delims.component)
            ordinal += 1
            visit = Visit(
                ordinal=ordinal, position=position, claim_id=claim_id,
                charge_cents=cents(els[2] if n > 2 else "", "CLM02", position, tag),
                subscriber=subscriber, patient=patient,
                relationship="self" if patient is None else (relationship if relationship != "self" else "other"),
                lines=[], frequency=clm05[2] if len(clm05) > 2 and clm05[2] else "1", billing=billing,
                payer_name=payer_name, payer_id=payer_id,
            )
            continue
        if tag == "DTP":
            if visit is None:
                continue
            qualifier = els[1] if n > 1 else ""
            value = _date(els[2] if n > 2 else "", els[3] if n > 3 else "")
            if line is not None:
                if qualifier == "472" and value:
                    line.date_of_service = value
            elif qualifier in ("472", "434") and value and visit.date_from is None:
                visit.date_from = value
            continue
        if tag == "LX":
            if visit is not None:
                line = None
            continue
        if tag in ("SV1", "SV2"):
            if visit is None:
                raise ImportRejected(position, tag, f"{tag} outside a claim")
            delims = reader.delimiters
            assert delims is not None
            if tag == "SV1":
                proc = (els[1] if n > 1 else "").split(delims.component)
                if len(proc) < 2 or not proc[1].strip():
                    raise ImportRejected(position, tag, "SV101 has no procedure code")
                code, mods, revenue = proc[1].strip(), proc[2:6], ""
                charge = cents(els[2] if n > 2 else "", "SV102", position, tag)
                units = _units(els[4] if n > 4 else "", position, warnings)
            else:
                revenue = (els[1] if n > 1 else "").strip()
                proc = (els[2] if n > 2 else "").split(delims.component)
                code = proc[1].strip() if len(proc) > 1 else ""
                mods = proc[2:6] if len(proc) > 2 else []
                if not code and not revenue:
                    raise ImportRejected(position, tag, "SV2 has neither a revenue code nor a procedure code")
                code = code or revenue
                charge = cents(els[3] if n > 3 else "", "SV203", position, tag)
                units = _units(els[5] if n > 5 else "", position, warnings)
            line = VisitLine(number=len(visit.lines) + 1, code=code, modifiers=tuple(m for m in mods if m),
                             charge_cents=charge, units=units, date_of_service=None, revenue_code=revenue)
            visit.lines.append(line)
            continue
        if tag in SEGMENTS or tag in ("ISA", "GS", "GE", "IEA", "TA1"):
            continue
        raise ImportRejected(position, tag[:3], "not a segment of an 837 transaction set")
    if visit is not None:  # pragma: no cover - the reader refuses a file that ends inside ST
        yield _closed(visit, warnings)


def _closed(visit: Visit, warnings: Warnings) -> Visit:
    total = sum(ln.charge_cents for ln in visit.lines)
    if visit.lines and total != visit.charge_cents:
        warnings.add(f"segment {visit.position} (CLM): claim {visit.ordinal}: service lines sum to "
                     f"{format_cents(total)}, CLM02 says {format_cents(visit.charge_cents)}")
    for ln in visit.lines:
        if ln.date_of_service is None:
            ln.date_of_service = visit.date_from
            if ln.date_of_service is None:
                warnings.add(f"segment {visit.position} (CLM): claim {visit.ordinal} line {ln.number} has no "
                             "date of service")
    return visit


def summarize_837(stream: BinaryIO, warnings: Warnings, *, strict: bool = False) -> FileFacts:
    """Read a whole 837 and return its counts and charges; raises ImportRejected on the first
    fatal error (the validation pass of an import)."""
    reader = X12Reader(stream, warnings=warnings, strict=strict)
    facts = FileFacts("837")
    for visit in read_837(reader, warnings):
        facts.claims += 1
        facts.service_lines += len(visit.lines)
        facts.charge_cents += visit.charge_cents
    facts.transactions = reader.transactions
    return facts
