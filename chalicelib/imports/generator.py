"""Realistic, deterministic 837P / 835 pairs for the demo, tests and benchmarks (invented people).

``write_837(out, claims=N, seed=S)`` and ``write_835(out, claims=N, seed=S)`` describe the same
N claims: claim ``i`` is a pure function of (seed, i), so both files stream without holding the
claims in memory (a 50 MB 835 is as cheap to write as a small one). Families share a subscriber
(the guarantor) with 0-2 dependents; each claim has 1-4 service lines (CPT codes with their
usual charges, modifiers on some), REF*6R line ids (left out of the 835 on some lines, so line
matching falls back to procedure and date), and is adjudicated as payers do:

- allowed 55-85 % of the charge, the rest CO-45 (contractual);
- patient responsibility PR-1 deductible, PR-2 coinsurance (20 %), PR-3 copay, at line level;
- about 4 % denied (CLP02=4, CO-29 for the whole charge, nothing paid);
- about 1 % reversed: the original payment, then in the last transaction set a CLP02=22
  reversal (every amount negated) followed by the corrected claim with a smaller deductible;
- PLB at each transaction set: L6 interest (negative: it adds to the payment) or a WO
  overpayment recovery (positive), so BPR02 = ΣCLP04 − ΣPLB balances (DATA-FORMATS.md §2.6).

``claims_per_transaction`` (default 2,000) splits the 835 into several ST..SE with their own
BPR/TRN. Envelope counts and control numbers are exact. :func:`write_835` returns the file's
totals (claims, ΣCLP04, ΣPR, ΣPLB) for tests to compare with an import.
"""

from __future__ import annotations

import csv
import hashlib
import io
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import TextIO

FIRST = ["JAMES", "MARY", "ROBERT", "PATRICIA", "JOHN", "JENNIFER", "MICHAEL", "LINDA", "DAVID", "ELIZABETH",
         "WILLIAM", "BARBARA", "RICHARD", "SUSAN", "JOSEPH", "JESSICA", "THOMAS", "SARAH", "CARLOS", "KAREN",
         "ANA", "LUIS", "SOFIA", "MATEO", "PRIYA", "CHEN", "AISHA", "OMAR", "GRACE", "HIRO"]
LAST = ["SMITH", "JOHNSON", "WILLIAMS", "BROWN", "JONES", "GARCIA", "MILLER", "DAVIS", "RODRIGUEZ", "MARTINEZ",
        "HERNANDEZ", "LOPEZ", "GONZALEZ", "WILSON", "ANDERSON", "THOMAS", "TAYLOR", "MOORE", "JACKSON", "MARTIN",
        "LEE", "PEREZ", "THOMPSON", "WHITE", "HARRIS", "NGUYEN", "PATEL", "KIM", "OKAFOR", "CLARK"]
#: (CPT/HCPCS, charge in cents, usual modifier or "")
PROCEDURES = [("99213", 15000, ""), ("99214", 22000, ""), ("99203", 18000, ""), ("99204", 26000, ""),
              ("36415", 2500, ""), ("85025", 4500, ""), ("80053", 6500, ""), ("90471", 3500, ""),
              ("90686", 4200, ""), ("93000", 6000, ""), ("71046", 12000, "26"), ("97110", 9000, "GP"),
              ("11102", 16000, ""), ("20610", 21000, "RT"), ("G0439", 19000, "")]
PAYER = ("RIVERBEND HEALTH PLAN", "87726")
PRACTICE = ("RIVERSIDE FAMILY MEDICINE", "1467583920", "741234567")
RENDERING = [("PARK", "HELEN", "1730291845"), ("ORTIZ", "SAMUEL", "1902847561"), ("CHOU", "RITA", "1588776655")]


@dataclass(frozen=True)
class Line:
    """One generated service line: procedure, modifier, charge, units and adjudication (cents)."""

    number: int
    code: str
    modifier: str
    charge: int
    allowed: int
    deductible: int
    coinsurance: int
    copay: int
    control: str
    control_in_835: bool

    @property
    def patient(self) -> int:
        return self.deductible + self.coinsurance + self.copay

    @property
    def paid(self) -> int:
        return self.allowed - self.patient


@dataclass(frozen=True)
class Claim:
    """One generated claim of family ``family``: the patient (subscriber or a dependent)."""

    index: int
    claim_id: str
    payer_claim_id: str
    family: int
    dependent: int  # 0: the subscriber is the patient; 1-2: a child
    day: date
    rendering: int
    lines: tuple[Line, ...]
    denied: bool
    reversed: bool

    @property
    def charge(self) -> int:
        return sum(ln.charge for ln in self.lines)


@dataclass
class Totals:
    """What an 835 written by :func:`write_835` holds: CLP count, ΣCLP04, ΣCAS-PR, ΣPLB (cents)."""

    transactions: int = 0
    claims: int = 0
    service_lines: int = 0
    paid: int = 0
    patient: int = 0
    plb: int = 0
    reversals: int = 0
    denials: int = 0
    segments: int = 0
    by_transaction: list[int] = field(default_factory=list)


def _rng(seed: int, *parts: object) -> random.Random:
    digest = hashlib.sha256(":".join(str(p) for p in (seed, *parts)).encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


def family_of(seed: int, family: int) -> dict[str, object]:
    """The subscriber and dependents of a family: names, member id, birth dates, address."""
    rng = _rng(seed, "family", family)
    last = rng.choice(LAST)
    kids = rng.choice([0, 0, 1, 2])
    return {
        "last": last, "first": rng.choice(FIRST), "member": f"RB{seed % 100:02d}{family:07d}",
        "dob": date(1950, 1, 1) + timedelta(days=rng.randrange(365 * 50)),
        "sex": rng.choice("FM"), "street": f"{100 + family % 9000} {rng.choice(['OAK', 'ELM', 'MAIN', 'PINE'])} ST",
        "children": [(rng.choice(FIRST), date(2008, 1, 1) + timedelta(days=rng.randrange(365 * 15)),
                      rng.choice("FM")) for _ in range(kids)],
    }


def claim_of(seed: int, index: int, *, families: int, start: date) -> Claim:
    """Claim ``index`` (0-based) of the generated set: a pure function of its arguments."""
    rng = _rng(seed, "claim", index)
    family = rng.randrange(families)
    fam = family_of(seed, family)
    children = fam["children"]
    assert isinstance(children, list)
    dependent = rng.randrange(len(children) + 1) if children else 0
    denied = rng.random() < 0.04
    reversed_ = not denied and rng.random() < 0.01
    deductible_left = rng.choice([0, 0, 0, 0, 2500, 5000, 10000])
    copay = rng.choice([0, 0, 2000, 3000, 4000])
    lines = []
    for number, (code, charge, modifier) in enumerate(rng.sample(PROCEDURES, rng.randint(1, 4)), start=1):
        allowed = 0 if denied else charge * rng.randint(55, 85) // 100
        ded = min(deductible_left, allowed)
        deductible_left -= ded
        co = min(copay, allowed - ded) if number == 1 else 0
        coins = (allowed - ded - co) // 5 if rng.random() < 0.4 else 0
        lines.append(Line(number, code, modifier, charge, allowed, ded, coins, co,
                          control=f"L{index:07d}{number}", control_in_835=rng.random() < 0.8))
    return Claim(index=index, claim_id=f"PCN{seed % 100:02d}{index:08d}", payer_claim_id=f"{seed % 10}{index:011d}01",
                 family=family, dependent=dependent, day=start + timedelta(days=rng.randrange(180)),
                 rendering=rng.randrange(len(RENDERING)), lines=tuple(lines), denied=denied, reversed=reversed_)


def _money(cents: int) -> str:
    sign = "-" if cents < 0 else ""
    whole, frac = divmod(abs(cents), 100)
    return f"{sign}{whole}" if frac == 0 else f"{sign}{whole}.{frac:02d}"


class _Writer:
    """Segments to text with the chosen delimiters; counts segments per transaction set."""

    def __init__(self, out: TextIO, element: str, component: str, terminator: str, newline: bool) -> None:
        self.out, self.e, self.c, self.t = out, element, component, terminator + ("\n" if newline else "")
        self.count = 0
        self.total = 0

    def seg(self, *elements: str) -> None:
        self.out.write(self.e.join(elements) + self.t)
        self.count += 1
        self.total += 1

    def isa(self, control: int, version: str = "00501") -> None:
        self.seg("ISA", "00", " " * 10, "00", " " * 10, "ZZ", "RIVERBEND".ljust(15), "ZZ",
                 "RIVERSIDEFM".ljust(15), "260301", "1200", "^", version, f"{control:09d}", "0", "P", self.c)


def _envelope_open(w: _Writer, control: int, functional: str, version: str) -> None:
    w.isa(control)
    w.seg("GS", functional, "RIVERBEND", "RIVERSIDEFM", "20260301", "1200", str(control), "X", version)


def _envelope_close(w: _Writer, control: int, sets: int) -> None:
    w.seg("GE", str(sets), str(control))
    w.seg("IEA", "1", f"{control:09d}")


def write_837(out: TextIO, *, claims: int, seed: int = 7, families: int | None = None,
              start: date = date(2026, 1, 5), claims_per_transaction: int = 2000, element: str = "*",
              component: str = ":", terminator: str = "~", newline: bool = True) -> int:
    """Write an 837P with ``claims`` claims to ``out``; returns the number of segments."""
    families = families or max(1, claims * 2 // 3)
    w = _Writer(out, element, component, terminator, newline)
    control = 1000 + seed % 1000
    _envelope_open(w, control, "HC", "005010X222A1")
    sets = 0
    for first in range(0, claims, claims_per_transaction):
        sets += 1
        w.count = 0
        w.seg("ST", "837", f"{sets:04d}", "005010X222A1")
        w.seg("BHT", "0019", "00", f"B{seed}{sets}", "20260301", "1200", "CH")
        w.seg("NM1", "41", "2", PRACTICE[0], "", "", "", "", "46", "RFM001")
        w.seg("PER", "IC", "BILLING OFFICE", "TE", "5555550100")
        w.seg("NM1", "40", "2", PAYER[0], "", "", "", "", "46", PAYER[1])
        hl = 1
        w.seg("HL", "1", "", "20", "1")
        w.seg("NM1", "85", "2", PRACTICE[0], "", "", "", "", "XX", PRACTICE[1])
        w.seg("N3", "100 RIVER RD")
        w.seg("N4", "SPRINGFIELD", "IL", "62701")
        w.seg("REF", "EI", PRACTICE[2])
        for index in range(first, min(first + claims_per_transaction, claims)):
            claim = claim_of(seed, index, families=families, start=start)
            fam = family_of(seed, claim.family)
            hl += 1
            subscriber_hl = hl
            w.seg("HL", str(hl), "1", "22", "1" if claim.dependent else "0")
            w.seg("SBR", "P", "" if claim.dependent else "18", "GRP01", "", "", "", "", "", "CI")
            w.seg("NM1", "IL", "1", str(fam["last"]), str(fam["first"]), "", "", "", "MI", str(fam["member"]))
            w.seg("N3", str(fam["street"]))
            w.seg("N4", "SPRINGFIELD", "IL", "62704")
            dob = fam["dob"]
            assert isinstance(dob, date)
            w.seg("DMG", "D8", dob.strftime("%Y%m%d"), str(fam["sex"]))
            w.seg("NM1", "PR", "2", PAYER[0], "", "", "", "", "PI", PAYER[1])
            if claim.dependent:
                children = fam["children"]
                assert isinstance(children, list)
                first_name, child_dob, sex = children[claim.dependent - 1]
                hl += 1
                w.seg("HL", str(hl), str(subscriber_hl), "23", "0")
                w.seg("PAT", "19")
                w.seg("NM1", "QC", "1", str(fam["last"]), first_name)
                w.seg("N3", str(fam["street"]))
                w.seg("N4", "SPRINGFIELD", "IL", "62704")
                w.seg("DMG", "D8", child_dob.strftime("%Y%m%d"), sex)
            w.seg("CLM", claim.claim_id, _money(claim.charge), "", "", component.join(["11", "B", "1"]), "Y", "A",
                  "Y", "Y")
            w.seg("HI", component.join(["ABK", "Z0000"]))
            last, first_name, npi = RENDERING[claim.rendering]
            w.seg("NM1", "82", "1", last, first_name, "", "", "", "XX", npi)
            for ln in claim.lines:
                w.seg("LX", str(ln.number))
                proc = component.join(["HC", ln.code] + ([ln.modifier] if ln.modifier else []))
                w.seg("SV1", proc, _money(ln.charge), "UN", "1", "", "", "1")
                w.seg("DTP", "472", "D8", claim.day.strftime("%Y%m%d"))
                w.seg("REF", "6R", ln.control)
        w.seg("SE", str(w.count + 1), f"{sets:04d}")
    _envelope_close(w, control, sets)
    return w.total


def _svc(w: _Writer, claim: Claim, ln: Line, sign: int, deductible: int | None = None) -> None:
    ded = ln.deductible if deductible is None else deductible
    allowed = ln.allowed
    patient = ded + ln.coinsurance + ln.copay
    paid = allowed - patient
    proc = w.c.join(["HC", ln.code] + ([ln.modifier] if ln.modifier else []))
    w.seg("SVC", proc, _money(sign * ln.charge), _money(sign * paid), "", "1")
    w.seg("DTM", "472", claim.day.strftime("%Y%m%d"))
    if claim.denied:
        w.seg("CAS", "CO", "29", _money(sign * ln.charge))
    else:
        if ln.charge - allowed:
            w.seg("CAS", "CO", "45", _money(sign * (ln.charge - allowed)))
        pr = [(code, amount) for code, amount in (("1", ded), ("2", ln.coinsurance), ("3", ln.copay)) if amount]
        if pr:
            triplets: list[str] = []
            for code, amount in pr:
                triplets += [code, _money(sign * amount), ""]
            w.seg("CAS", "PR", *triplets[:-1])
    if ln.control_in_835:
        w.seg("REF", "6R", ln.control)
    if not claim.denied:
        w.seg("AMT", "B6", _money(sign * allowed))
    if ln.deductible or claim.denied:
        w.seg("LQ", "HE", "N130" if not claim.denied else "N211")


def _clp(w: _Writer, claim: Claim, fam: dict[str, object], status: str, sign: int, totals: Totals,
         deductible_cut: bool = False) -> int:
    """Write one claim payment; returns its CLP04 in cents."""
    deductibles = [ln.deductible // 2 * 2 // 5 if deductible_cut else ln.deductible for ln in claim.lines]
    patient = sum(d + ln.coinsurance + ln.copay for d, ln in zip(deductibles, claim.lines, strict=True))
    paid = 0 if claim.denied else sum(ln.allowed for ln in claim.lines) - patient
    w.seg("CLP", claim.claim_id, status, _money(sign * claim.charge), _money(sign * paid),
          _money(sign * patient) if patient else "", "12", claim.payer_claim_id, "11", "1")
    if claim.dependent:
        children = fam["children"]
        assert isinstance(children, list)
        w.seg("NM1", "QC", "1", str(fam["last"]), children[claim.dependent - 1][0], "", "", "", "MI",
              f"{fam['member']}0{claim.dependent}")
        w.seg("NM1", "IL", "1", str(fam["last"]), str(fam["first"]), "", "", "", "MI", str(fam["member"]))
    else:
        w.seg("NM1", "QC", "1", str(fam["last"]), str(fam["first"]), "", "", "", "MI", str(fam["member"]))
    last, first_name, npi = RENDERING[claim.rendering]
    w.seg("NM1", "82", "1", last, first_name, "", "", "", "XX", npi)
    w.seg("REF", "EA", claim.claim_id)
    w.seg("DTM", "232", claim.day.strftime("%Y%m%d"))
    w.seg("DTM", "233", claim.day.strftime("%Y%m%d"))
    w.seg("DTM", "050", (claim.day + timedelta(days=7)).strftime("%Y%m%d"))
    if not claim.denied:
        w.seg("AMT", "AU", _money(sign * sum(ln.allowed for ln in claim.lines)))
    for ln, ded in zip(claim.lines, deductibles, strict=True):
        _svc(w, claim, ln, sign, ded)
    totals.claims += 1
    totals.service_lines += len(claim.lines)
    totals.paid += sign * paid
    totals.patient += sign * patient
    return sign * paid


def write_835(out: TextIO, *, claims: int, seed: int = 7, families: int | None = None,
              start: date = date(2026, 1, 5), claims_per_transaction: int = 2000, element: str = "*",
              component: str = ":", terminator: str = "~", newline: bool = True) -> Totals:
    """Write the 835 paying the claims of :func:`write_837` (same arguments); returns its totals."""
    families = families or max(1, claims * 2 // 3)
    w = _Writer(out, element, component, terminator, newline)
    totals = Totals()
    control = 5000 + seed % 1000
    _envelope_open(w, control, "HP", "005010X221A1")
    reversed_: list[int] = []
    groups: list[tuple[str, list[int]]] = [
        ("pay", list(range(first, min(first + claims_per_transaction, claims))))
        for first in range(0, claims, claims_per_transaction)]
    for _, indexes in groups:
        reversed_ += [i for i in indexes if claim_of(seed, i, families=families, start=start).reversed]
    if reversed_:
        groups.append(("reverse", reversed_))
    for number, (kind, indexes) in enumerate(groups, start=1):
        body = io.StringIO()
        inner = _Writer(body, element, component, terminator, newline)
        paid = 0
        for index in indexes:
            claim = claim_of(seed, index, families=families, start=start)
            fam = family_of(seed, claim.family)
            if kind == "pay":
                paid += _clp(inner, claim, fam, "4" if claim.denied else "1", 1, totals)
                totals.denials += claim.denied
            else:
                paid += _clp(inner, claim, fam, "22", -1, totals)
                paid += _clp(inner, claim, fam, "1", 1, totals, deductible_cut=True)
                totals.reversals += 1
        rng = _rng(seed, "plb", number)
        plb = -rng.randrange(100, 2500) if rng.random() < 0.5 else min(paid, rng.randrange(100, 5000))
        amount = paid - plb
        w.count = 0
        w.seg("ST", "835", f"{number:04d}")
        w.seg("BPR", "I", _money(amount), "C", "ACH", "CCP", "01", "999999992", "DA", "123456", "1512345678", "",
              "01", "999988880", "DA", "98765", (start + timedelta(days=200 + number)).strftime("%Y%m%d"))
        w.seg("TRN", "1", f"{seed}EFT{number:06d}", f"1{PAYER[1]}")
        w.seg("DTM", "405", (start + timedelta(days=199 + number)).strftime("%Y%m%d"))
        w.seg("N1", "PR", PAYER[0])
        w.seg("N3", "PO BOX 1400")
        w.seg("N4", "CHICAGO", "IL", "60601")
        w.seg("REF", "2U", PAYER[1])
        w.seg("PER", "BL", "PROVIDER SERVICES", "TE", "8005550199")
        w.seg("N1", "PE", PRACTICE[0], "XX", PRACTICE[1])
        w.seg("REF", "TJ", PRACTICE[2])
        w.seg("LX", "1")
        out.write(body.getvalue())
        w.count += inner.count
        w.total += inner.total
        reason = "L6" if plb < 0 else "WO"
        reference = f"{reason}{component}{seed}REF{number:05d}"
        w.seg("PLB", PRACTICE[1], (start + timedelta(days=364)).strftime("%Y%m%d"), reference, _money(plb))
        w.seg("SE", str(w.count + 1), f"{number:04d}")
        totals.plb += plb
        totals.transactions += 1
        totals.by_transaction.append(amount)
    _envelope_close(w, control, len(groups))
    totals.segments = w.total
    return totals


def pair(*, claims: int, seed: int = 7, **kwargs: object) -> tuple[bytes, bytes, Totals]:
    """(837 bytes, 835 bytes, the 835's totals) for ``claims`` claims, in memory."""
    a, b = io.StringIO(), io.StringIO()
    write_837(a, claims=claims, seed=seed, **kwargs)  # type: ignore[arg-type]
    totals = write_835(b, claims=claims, seed=seed, **kwargs)  # type: ignore[arg-type]
    return a.getvalue().encode(), b.getvalue().encode(), totals


def claims(seed: int, count: int, *, families: int | None = None, start: date = date(2026, 1, 5)) -> Iterator[Claim]:
    """The generated claims themselves (tests compute expectations from them)."""
    families = families or max(1, count * 2 // 3)
    for index in range(count):
        yield claim_of(seed, index, families=families, start=start)


ROSTER_COLUMNS = ("guarantor_id", "guarantor_first_name", "guarantor_last_name", "guarantor_date_of_birth",
                  "member_id", "email", "mobile", "language", "consent_email", "consent_sms", "address_line1",
                  "city", "state", "postal_code", "patient_id", "patient_first_name", "patient_last_name",
                  "patient_date_of_birth", "patient_sex", "relationship")


def write_roster(out: TextIO, *, claims: int, seed: int = 7, families: int | None = None,
                 start: date = date(2026, 1, 5)) -> int:
    """Write the CSV roster (csv_roster.py columns) of every family the generated claims bill:
    one row per family member, the subscriber as guarantor with ``member_id`` so the roster's
    guarantors are the 837/835 subscribers. Contacts are invented (``@example.com``, 555
    numbers); about 20 % prefer Spanish, all consent to email, about 60 % to texts. Returns the
    number of guarantors written."""
    families = families or max(1, claims * 2 // 3)
    billed = sorted({claim_of(seed, i, families=families, start=start).family for i in range(claims)})
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(ROSTER_COLUMNS)
    for family in billed:
        fam = family_of(seed, family)
        rng = _rng(seed, "contact", family)
        first, last = str(fam["first"]).title(), str(fam["last"]).title()
        dob = fam["dob"]
        children = fam["children"]
        assert isinstance(dob, date) and isinstance(children, list)
        common = [f"A{family:06d}", first, last, dob.isoformat(), str(fam["member"]),
                  f"{first.lower()}.{last.lower()}.{family}@example.com", f"+1555555{family % 10000:04d}",
                  "es" if rng.random() < 0.2 else "en", "yes", "yes" if rng.random() < 0.6 else "no",
                  str(fam["street"]).title(), "Springfield", "IL", "62704"]
        writer.writerow([*common, f"P{family:06d}0", first, last, dob.isoformat(), str(fam["sex"]), "self"])
        for n, (child, child_dob, sex) in enumerate(children, start=1):
            writer.writerow([*common, f"P{family:06d}{n}", str(child).title(), last, child_dob.isoformat(), sex,
                             "child"])
    return len(billed)
