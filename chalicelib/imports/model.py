"""What the readers produce and the posting consumes: plain dataclasses, amounts in integer cents,
dates ISO ``YYYY-MM-DD`` (or None). Names and ids in here are PHI: never log these objects.

The 835 reader fills :class:`RemitClaim` (one per CLP); the 837 and FHIR readers fill
:class:`Visit` (one per CLM or FHIR Claim); FHIR ExplanationOfBenefit is mapped onto
:class:`RemitClaim` too, so one posting path serves both.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NamedTuple

#: CLP02 claim status codes and what posting does with them (DATA-FORMATS.md §2.3).
PROCESSED = frozenset({"1", "2", "3"})
FORWARDED = frozenset({"19", "20", "21"})
DENIED = "4"
REVERSAL = "22"
NOT_OUR_CLAIM = "23"
PREDETERMINATION = "25"
CLAIM_STATUSES = PROCESSED | FORWARDED | {DENIED, REVERSAL, NOT_OUR_CLAIM, PREDETERMINATION}
#: CAS01 group codes (DATA-FORMATS.md §2.4); CR is 4010 only but still seen.
CAS_GROUPS = frozenset({"CO", "PR", "OA", "PI", "CR"})
PATIENT_GROUP = "PR"


class Adjustment(NamedTuple):
    """One CAS triplet: group (CAS01), reason (CARC), signed cents, quantity (raw, may be '').

    A named tuple: the 835 reader makes one per triplet (70,000 in a 20,000-claim file), and
    ``tuple.__new__(Adjustment, (...))`` builds one at C speed (PERFORMANCE.md S4)."""

    group: str
    reason: str
    cents: int
    quantity: str = ""


@dataclass(slots=True)
class Person:
    """A patient, subscriber or guarantor as a file names them (PHI).

    ``member_id``: the payer's member id (NM1*IL09/NM1*QC09 with qualifier MI, FHIR
    Coverage.subscriberId) or another external id; ``external_key``: the importer's own
    stable key (``member:<id>``, ``fhir:Patient/<id>``, ``csv:<id>``) when the file has one;
    ``account_number``: the practice's own account number of a guarantor as the file spells it
    (a roster's ``guarantor_id``; other files give none), stored on the profile for display.
    """

    last: str
    first: str
    middle: str = ""
    member_id: str = ""
    external_key: str = ""
    date_of_birth: str | None = None
    sex: str | None = None
    email: str | None = None
    mobile: str | None = None
    language: str | None = None
    address: dict[str, str] | None = None
    consent: dict[str, bool] | None = None
    account_number: str = ""


class RemitLine(NamedTuple):
    """One SVC loop (2110): procedure (SVC01 qualifier, code, modifiers), SVC02 charge, SVC03
    paid, SVC04 revenue code, SVC05 units, SVC06 original procedure, DTM*472/150/151 dates,
    REF*6R line item control number, line CAS, AMT*B6 allowed, LQ*HE remarks; ``adjusted_cents``
    is Σ line CAS.

    A named tuple, built once when its loop ends: the 835 reader makes one per service line
    (50,000 in a 20,000-claim file) and a tuple is built at C speed, several times faster than
    a dataclass (PERFORMANCE.md S4). Immutable: readers collect a line's parts, then build it."""

    position: int
    qualifier: str
    code: str
    modifiers: tuple[str, ...]
    charge_cents: int
    paid_cents: int
    revenue_code: str = ""
    units: str = ""
    original_code: str = ""
    date_from: str | None = None
    date_to: str | None = None
    control: str = ""
    adjustments: tuple[Adjustment, ...] = ()
    allowed_cents: int | None = None
    remarks: tuple[str, ...] = ()
    adjusted_cents: int = 0


@dataclass(slots=True)
class RemitTransaction:
    """One 835 transaction set (ST..SE): the payment (BPR), trace (TRN), payer and payee.

    ``handling`` BPR01 (C, D, H, I, P, U, X); ``amount_cents`` BPR02; ``payment_date`` BPR16;
    ``trace`` TRN02; ``payer_trn_id`` TRN03. Filled as the header is read; ``claims``,
    ``claims_paid_cents`` (ΣCLP04), ``plb_cents`` (ΣPLB) and ``plbs`` when SE is read.
    """

    ordinal: int
    position: int
    control: str
    version: str
    handling: str = ""
    amount_cents: int = 0
    credit_debit: str = ""
    method: str = ""
    payment_date: str | None = None
    trace: str = ""
    payer_trn_id: str = ""
    production_date: str | None = None
    payer_name: str = ""
    payer_id: str = ""
    payee_name: str = ""
    payee_id_qualifier: str = ""
    payee_id: str = ""
    claims: int = 0
    claims_paid_cents: int = 0
    plb_cents: int = 0
    plbs: list[Plb] = field(default_factory=list)
    service_lines: int = 0
    patient_cents: int = 0


@dataclass(slots=True)
class Plb:
    """One PLB adjustment pair: provider (PLB01), fiscal period date (PLB02), reason and
    reference (PLB03-1/-2), signed cents (PLB04; positive reduces the payment, §2.6)."""

    position: int
    provider_id: str
    fiscal_date: str | None
    reason: str
    reference: str
    cents: int


@dataclass(slots=True)
class RemitClaim:
    """One claim payment (loop 2100, CLP): what the payer paid, adjusted and left to the patient.

    ``ordinal``: 1-based claim number in the file (the import's unit of work). CLP01
    ``patient_control``, CLP02 ``status``, CLP03 ``charge_cents``, CLP04 ``paid_cents``, CLP05
    ``patient_resp_cents`` (None when empty), CLP06 ``filing``, CLP07 ``payer_claim_id``, CLP08
    ``facility``, CLP09 ``frequency``. NM1*QC ``patient``, NM1*IL ``subscriber``; NM1*74 sets
    ``corrected``, NM1*TT ``crossover``. Claim-level CAS in ``adjustments``; SVC loops in
    ``lines``; DTM*232/233 ``date_from``/``date_to``; AMT by qualifier in ``amounts``.
    ``source``: ``"835"`` or ``"fhir"``; ``fhir_claim``: the FHIR Claim id an EOB refers to.
    The 835 reader keeps ``adjusted_cents`` (Σ CAS, claim and line level) and ``pr_cents``
    (Σ group PR) as it reads; lines keep their own ``adjusted_cents``.
    """

    ordinal: int
    position: int
    transaction: RemitTransaction
    patient_control: str
    status: str
    charge_cents: int
    paid_cents: int
    patient_resp_cents: int | None = None
    filing: str = ""
    payer_claim_id: str = ""
    facility: str = ""
    frequency: str = ""
    patient: Person | None = None
    subscriber: Person | None = None
    corrected: bool = False
    crossover: bool = False
    rendering_npi: str = ""
    adjustments: tuple[Adjustment, ...] = ()
    lines: list[RemitLine] = field(default_factory=list)
    date_from: str | None = None
    date_to: str | None = None
    amounts: dict[str, int] = field(default_factory=dict)
    ordinal_in_transaction: int = 0
    source: str = "835"
    fhir_claim: str = ""
    patient_ref: str = ""
    adjusted_cents: int = 0
    pr_cents: int = 0

    def patient_responsibility(self) -> int:
        """Σ of every CAS group-PR amount, claim and line level, signs as in the file."""
        total = sum(a.cents for a in self.adjustments if a.group == PATIENT_GROUP)
        for line in self.lines:
            total += sum(a.cents for a in line.adjustments if a.group == PATIENT_GROUP)
        return total


@dataclass(slots=True)
class VisitLine:
    """One charge line: procedure (CPT/HCPCS or a revenue code), modifiers, charge in cents,
    units, date of service, line item control number (837 REF*6R), revenue code (SV201)."""

    number: int
    code: str
    modifiers: tuple[str, ...]
    charge_cents: int
    units: int
    date_of_service: str | None
    control: str = ""
    revenue_code: str = ""
    description: str = ""


@dataclass(slots=True)
class Provider:
    """A billing, rendering or referring provider or a service facility: NPI, name, tax id."""

    npi: str
    name: str
    first: str = ""
    tax_id: str = ""


@dataclass(slots=True)
class Visit:
    """One billed claim (837 CLM or FHIR Claim): the visit and its charge lines.

    ``claim_id``: CLM01 patient control number (or the FHIR Claim id): the key an 835's CLP01
    (or an EOB's claim reference) is matched on. ``subscriber`` becomes the guarantor;
    ``patient`` is None when the patient is the subscriber; ``relationship`` is the patient's
    relationship to the guarantor (self, child, spouse, other). ``frequency``: CLM05-3
    (1 original, 7 replacement, 8 void). A FHIR Claim whose patient is in another file has no
    ``subscriber`` and names the patient by ``patient_ref`` (``fhir:Patient/<id>``).
    """

    ordinal: int
    position: int
    claim_id: str
    charge_cents: int
    subscriber: Person | None
    patient: Person | None
    relationship: str
    lines: list[VisitLine]
    date_from: str | None = None
    frequency: str = "1"
    billing: Provider | None = None
    rendering: Provider | None = None
    referring: Provider | None = None
    facility: Provider | None = None
    payer_name: str = ""
    payer_id: str = ""
    source: str = "837"
    patient_ref: str = ""


@dataclass(slots=True)
class PersonUnit:
    """A guarantor (and optionally one patient linked to them) from a roster row or FHIR
    Patient / RelatedPerson / Account. ``patient_alias``: a key (``fhir:Patient/<id>``) under
    which later files find this patient; ``guarantor_alias``: likewise for the guarantor (a
    roster's ``csv:<account number>`` when the guarantor is keyed by member id)."""

    ordinal: int
    position: int
    guarantor: Person
    patient: Person | None
    relationship: str
    patient_alias: str = ""
    guarantor_alias: str = ""


@dataclass(slots=True)
class NoteUnit:
    """A resource read but not imported (Coverage, non-USD ChargeItem, ...), with the reason."""

    ordinal: int
    position: int
    reason: str


@dataclass
class FileFacts:
    """What reading a whole file learnt (the counts and totals of its report), in cents.

    ``transactions``: X12 transaction sets, FHIR resources or CSV rows; ``claims``: CLP, CLM or
    FHIR Claim/ExplanationOfBenefit; ``insurance_paid_cents`` ΣCLP04 (or EOB payments);
    ``patient_responsibility_cents`` Σ every CAS group-PR amount, claim and line level, signs as
    in the file; ``plb_cents`` ΣPLB; ``charge_cents`` Σ charges (837, FHIR Claim); ``payments``:
    one row per 835 transaction set (trace, payer, BPR handling/amount/date, balanced);
    ``plbs``: the first 100 PLB pairs.
    """

    file_format: str
    transactions: int = 0
    claims: int = 0
    service_lines: int = 0
    insurance_paid_cents: int = 0
    patient_responsibility_cents: int = 0
    plb_cents: int = 0
    charge_cents: int = 0
    payments: list[dict[str, Any]] = field(default_factory=list)
    plbs: list[dict[str, Any]] = field(default_factory=list)
