"""Ledger reads: a guarantor's balances (PRODUCT.md §2 definitions) and entries.

One guarantor's figures are one consistent GetItem of the balance item (B2: a QuickPay-sized
read is at most 2 requests with the profile).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from chalicelib.core.errors import UnknownGuarantor
from chalicelib.core.ids import require_id
from chalicelib.ledger.accounts import (
    APPLIED_SINCE,
    COLLECTIONS,
    CREDITS_SINCE,
    ESCROW,
    NEW_SINCE,
    PAID_SINCE,
    PAT_OPEN,
    STATEMENT_BALANCE,
)
from chalicelib.store import keys
from chalicelib.store.db import clinic_scoped
from chalicelib.store.models import BalanceItem, EntryItem


@dataclass(frozen=True, slots=True)
class Balances:
    """The figures a guarantor sees, integer cents (PRODUCT.md §2, REFERENCE-PORTAL.md B1).

    ``statement_balance``: printed on the latest statement (snapshot). ``amount_due``:
    max(0, statement balance − payments and credit adjustments since it) + new charges when
    the group includes them, capped at ``current_balance``; 0 with no statement.
    ``current_balance``: open patient responsibility not in collections − unapplied funds,
    floor 0 (``credit_on_account`` holds a negative result). ``unapplied_funds``: escrow.
    ``collections_balance``: lines in collections (never payable online).
    """

    statement_balance: int
    amount_due: int
    current_balance: int
    unapplied_funds: int
    collections_balance: int
    credit_on_account: int
    has_statement: bool


@dataclass(frozen=True, slots=True)
class PartBalances:
    """The same figures for one (facility, provider, patient); ids are '-' where unknown."""

    facility_id: str
    provider_id: str
    patient_id: str
    statement_balance: int
    amount_due: int
    current_balance: int
    collections_balance: int


@dataclass(frozen=True, slots=True)
class GuarantorFigures:
    """Guarantor-level balances, per-part balances, entry count and latest statement id."""

    balances: Balances
    parts: tuple[PartBalances, ...]
    last_seq: int
    statement_id: str | None


def balances_from(
    totals: Mapping[str, int], *, has_statement: bool, include_new_charges: bool
) -> Balances:
    """Compute :class:`Balances` from stored totals. The one formula for every caller."""
    pat_open = totals.get(PAT_OPEN, 0)
    escrow = totals.get(ESCROW, 0)
    current = max(0, pat_open - escrow)
    if has_statement:
        due = max(0, totals.get(STATEMENT_BALANCE, 0) - totals.get(PAID_SINCE, 0)
                  - totals.get(CREDITS_SINCE, 0))
        if include_new_charges:
            due += max(0, totals.get(NEW_SINCE, 0))
        due = min(due, current)
    else:
        due = 0
    return Balances(
        statement_balance=totals.get(STATEMENT_BALANCE, 0) if has_statement else 0,
        amount_due=due,
        current_balance=current,
        unapplied_funds=escrow,
        collections_balance=totals.get(COLLECTIONS, 0),
        credit_on_account=max(0, escrow - pat_open),
        has_statement=has_statement,
    )


def part_balances_from(
    key: str, row: Mapping[str, int], *, has_statement: bool, include_new_charges: bool
) -> PartBalances:
    """Per-(facility, provider, patient) figures; escrow is guarantor-level, so not netted."""
    facility_id, provider_id, patient_id = key.split("|", 2)
    current = max(0, row.get(PAT_OPEN, 0))
    if has_statement:
        due = max(0, row.get(STATEMENT_BALANCE, 0) - row.get(APPLIED_SINCE, 0))
        if include_new_charges:
            due += max(0, row.get(NEW_SINCE, 0))
        due = min(due, current)
    else:
        due = 0
    return PartBalances(
        facility_id=facility_id, provider_id=provider_id, patient_id=patient_id,
        statement_balance=row.get(STATEMENT_BALANCE, 0) if has_statement else 0,
        amount_due=due, current_balance=current, collections_balance=row.get(COLLECTIONS, 0),
    )


@clinic_scoped
def guarantor_figures(
    *, clinic_id: str, guarantor_id: str, include_new_charges: bool = False
) -> GuarantorFigures:
    """One guarantor's balances and parts from one GetItem. Raises UnknownGuarantor."""
    require_id(guarantor_id, field="guarantor_id")
    pk = keys.guarantor_pk(clinic_id, guarantor_id)
    try:
        item = BalanceItem.get(pk, keys.BALANCE, consistent_read=True)
    except BalanceItem.DoesNotExist:
        raise UnknownGuarantor(f"guarantor {guarantor_id} not found") from None
    return figures_from_item(item, include_new_charges=include_new_charges)


def figures_from_item(item: BalanceItem, *, include_new_charges: bool) -> GuarantorFigures:
    """Turn a stored balance item into :class:`GuarantorFigures` (used by bulk readers)."""
    has_statement = item.statement_id is not None
    return GuarantorFigures(
        balances=balances_from(item.totals, has_statement=has_statement,
                               include_new_charges=include_new_charges),
        parts=tuple(
            part_balances_from(k, row, has_statement=has_statement,
                               include_new_charges=include_new_charges)
            for k, row in sorted(item.parts.items())
        ),
        last_seq=int(item.last_seq),
        statement_id=item.statement_id,
    )


@dataclass(frozen=True, slots=True)
class EntryView:
    """A ledger entry for display: seq, code, UTC time, lines ``(account, cents, line_id)``."""

    seq: int
    code: str
    source_key: str
    posted_at: str
    reverses: int | None
    lines: tuple[tuple[str, int, str | None], ...]


@clinic_scoped
def entries_list(*, clinic_id: str, guarantor_id: str) -> list[EntryView]:
    """Every entry of a guarantor in sequence order (one paginated Query on the collection)."""
    require_id(guarantor_id, field="guarantor_id")
    pk = keys.guarantor_pk(clinic_id, guarantor_id)
    return [
        EntryView(
            seq=int(e.seq), code=e.code, source_key=e.source_key,
            posted_at=e.posted_at.isoformat(),
            reverses=int(e.reverses) if e.reverses is not None else None,
            lines=tuple((ln.account, int(ln.cents), ln.line_id) for ln in e.lines),
        )
        for e in EntryItem.query(pk, EntryItem.sk.startswith(keys.ENTRY_PREFIX),
                                 consistent_read=True)
    ]
