"""Accounts, entry codes, and how an entry moves the stored figures: the ledger's arithmetic.

Double entry with debits positive and credits negative; every entry's lines sum to zero.
Guarantor-side accounts (their sums are stored): ``ins_ar`` insurance receivable per service
line, ``pat_ar`` open patient responsibility per line, ``collections`` per line, ``escrow``
unapplied patient funds (a liability: credit = money held). Clinic-side accounts (never stored
as one hot item, SERVERLESS.md 2.4): ``revenue``, ``ins_cash``, ``ins_adj``, ``pat_cash``,
``pat_adj``.

:func:`apply_entry` is the one place that turns an entry into figure changes; posting and
``ledger-verify`` both use it, so the stored figures and the recomputed ones cannot disagree
by construction of two formulas.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum


class Account(StrEnum):
    INS_AR = "ins_ar"
    PAT_AR = "pat_ar"
    COLLECTIONS = "collections"
    ESCROW = "escrow"
    REVENUE = "revenue"
    INS_CASH = "ins_cash"
    INS_ADJ = "ins_adj"
    PAT_CASH = "pat_cash"
    PAT_ADJ = "pat_adj"


LINE_ACCOUNTS = frozenset(
    {Account.INS_AR, Account.PAT_AR, Account.COLLECTIONS, Account.REVENUE, Account.INS_CASH,
     Account.INS_ADJ, Account.PAT_ADJ}
)
GUARANTOR_ACCOUNTS = frozenset({Account.ESCROW, Account.PAT_CASH})


class EntryCode(StrEnum):
    """What business fact an entry records (PRODUCT.md §2 entities)."""

    CHARGE = "charge"  # service line billed to insurance: ins_ar / revenue
    PATIENT_CHARGE = "patient_charge"  # self-pay charge: pat_ar / revenue
    INSURANCE_PAYMENT = "insurance_payment"  # ins_cash / ins_ar
    INSURANCE_ADJUSTMENT = "insurance_adjustment"  # ins_adj / ins_ar (CARC group, reason)
    PATIENT_RESPONSIBILITY = "patient_responsibility"  # pat_ar / ins_ar (kind)
    PATIENT_PAYMENT = "patient_payment"  # pat_cash / pat_ar per line + escrow
    PAYMENT_APPLICATION = "payment_application"  # escrow / pat_ar
    PATIENT_ADJUSTMENT = "patient_adjustment"  # pat_adj / pat_ar (courtesy, small balance)
    COLLECTION_TRANSFER = "collection_transfer"  # collections / pat_ar
    PATIENT_REFUND = "patient_refund"  # escrow and un-applied pat_ar / pat_cash
    REMITTANCE = "remittance"  # one 835 claim: ins_cash, ins_adj, pat_ar per line / ins_ar (+ charge)


class ResponsibilityKind(StrEnum):
    """Patient responsibility by kind (CAS group PR reason 1, 2, 3, anything else)."""

    DEDUCTIBLE = "deductible"
    COINSURANCE = "coinsurance"
    COPAY = "copay"
    OTHER = "other"


NEW_CHARGE_CODES = frozenset({EntryCode.PATIENT_RESPONSIBILITY, EntryCode.PATIENT_CHARGE, EntryCode.REMITTANCE})
#: Codes whose pat_ar debits are patient responsibility by kind (the line's ``kind``, else meta).
RESPONSIBILITY_CODES = frozenset({EntryCode.PATIENT_RESPONSIBILITY, EntryCode.REMITTANCE})
APPLICATION_CODES = frozenset(
    {EntryCode.PATIENT_PAYMENT, EntryCode.PAYMENT_APPLICATION, EntryCode.PATIENT_ADJUSTMENT,
     EntryCode.PATIENT_REFUND}
)
#: A patient refund that un-applies a line (pat_ar debit) takes the line's paid figure back down.
PAID_CODES = frozenset({EntryCode.PATIENT_PAYMENT, EntryCode.PAYMENT_APPLICATION, EntryCode.PATIENT_REFUND})
#: Codes that may not touch a line in collections (REFERENCE-PORTAL.md B3, E4).
BLOCKED_IN_COLLECTIONS = frozenset(
    {EntryCode.PATIENT_PAYMENT, EntryCode.PAYMENT_APPLICATION, EntryCode.PATIENT_ADJUSTMENT}
)

# Figure names. Guarantor totals:
PAT_OPEN = "pat_open"
INS_OPEN = "ins_open"
COLLECTIONS = "collections"
ESCROW = "escrow"
BILLED = "billed"
RECEIVED = "received"
PAID_SINCE = "paid_since"
CREDITS_SINCE = "credits_since"
NEW_SINCE = "new_since"
STATEMENT_BALANCE = "statement_balance"
# Per part (facility|provider|patient): PAT_OPEN, COLLECTIONS, APPLIED_SINCE, NEW_SINCE,
# STATEMENT_BALANCE. Per service line: the LINE_* figures below plus "pr_<kind>".
APPLIED_SINCE = "applied_since"
INS_PAID = "ins_paid"
INS_ADJUSTED = "ins_adjusted"
PAT_PAID = "pat_paid"
PAT_ADJUSTED = "pat_adjusted"


@dataclass(frozen=True, slots=True)
class Line:
    """One entry line: ``account``, signed ``cents`` (debit > 0), ``line_id`` for line accounts.

    ``kind`` qualifies the line where one entry carries several facts: the responsibility kind
    of a pat_ar line (deductible, coinsurance, copay, other) or ``<CARC group>-<reason>`` of an
    ins_adj line (e.g. ``CO-45``), as in an 835 claim posted as one entry.
    """

    account: Account
    cents: int
    line_id: str | None = None
    kind: str | None = None


@dataclass
class Figures:
    """Mutable working copy of a guarantor's stored figures (all integer cents)."""

    totals: dict[str, int] = field(default_factory=dict)
    parts: dict[str, dict[str, int]] = field(default_factory=dict)
    lines: dict[str, dict[str, int]] = field(default_factory=dict)


def _add(target: dict[str, int], key: str, cents: int) -> None:
    if cents:
        target[key] = target.get(key, 0) + cents


def apply_entry(
    figures: Figures,
    *,
    code: EntryCode,
    lines: Iterable[Line],
    meta: Mapping[str, str],
    part_of: Mapping[str, str],
    since_statement: bool,
) -> set[str]:
    """Move ``figures`` by one entry; return the ids of the service lines it touched.

    ``part_of`` maps each service line id to its ``facility|provider|patient`` key.
    ``since_statement`` is False for entries at or before the latest statement (verify replay).
    Reversals pass the original code with negated lines, so every effect here is linear.
    """
    touched: set[str] = set()
    totals = figures.totals
    for ln in lines:
        c = ln.cents
        acct = ln.account
        if acct is Account.PAT_CASH:
            _add(totals, RECEIVED, c)
            if since_statement:
                _add(totals, PAID_SINCE, c)
            continue
        if acct is Account.ESCROW:
            _add(totals, ESCROW, -c)
            continue
        assert ln.line_id is not None
        touched.add(ln.line_id)
        line = figures.lines.setdefault(ln.line_id, {})
        part = figures.parts.setdefault(part_of[ln.line_id], {})
        if acct is Account.INS_AR:
            _add(totals, INS_OPEN, c)
            _add(line, INS_OPEN, c)
        elif acct is Account.PAT_AR:
            _add(totals, PAT_OPEN, c)
            _add(line, PAT_OPEN, c)
            _add(part, PAT_OPEN, c)
            if code in RESPONSIBILITY_CODES:
                _add(line, f"pr_{ln.kind or meta.get('kind', ResponsibilityKind.OTHER)}", c)
            if code in PAID_CODES:
                _add(line, PAT_PAID, -c)
            if since_statement and code in NEW_CHARGE_CODES:
                _add(totals, NEW_SINCE, c)
                _add(part, NEW_SINCE, c)
            if since_statement and code in APPLICATION_CODES:
                _add(part, APPLIED_SINCE, -c)
        elif acct is Account.COLLECTIONS:
            _add(totals, COLLECTIONS, c)
            _add(line, COLLECTIONS, c)
            _add(part, COLLECTIONS, c)
        elif acct is Account.REVENUE:
            _add(totals, BILLED, -c)
            _add(line, BILLED, -c)
        elif acct is Account.INS_CASH:
            _add(line, INS_PAID, c)
        elif acct is Account.INS_ADJ:
            _add(line, INS_ADJUSTED, c)
        elif acct is Account.PAT_ADJ:
            _add(line, PAT_ADJUSTED, c)
            if since_statement:
                _add(totals, CREDITS_SINCE, c)
    return touched


def negative_figures(figures: Figures, line_ids: Iterable[str]) -> list[str]:
    """Names of figures that went below zero and must not (escrow, open and collections).

    Insurance receivable may go negative (a payer may pay more than the known charge).
    """
    bad = [f"escrow {figures.totals[ESCROW]}"] if figures.totals.get(ESCROW, 0) < 0 else []
    for line_id in sorted(line_ids):
        line = figures.lines.get(line_id, {})
        for name in (PAT_OPEN, COLLECTIONS):
            if line.get(name, 0) < 0:
                bad.append(f"line {line_id} {name} {line[name]}")
    return bad


def part_key(facility_id: str | None, provider_id: str | None, patient_id: str) -> str:
    """The ``facility|provider|patient`` key of a service line ('-' where unknown)."""
    return f"{facility_id or '-'}|{provider_id or '-'}|{patient_id}"
