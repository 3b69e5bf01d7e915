"""``ledger-verify``: recompute every stored figure from the entries and report differences.

Reads only by Query (no Scan, SERVERLESS.md §4 item 1): clinics from the operator index,
guarantors from each clinic's index, then each guarantor's whole collection in one Query.
Checks per guarantor: entries gapless 1..last_seq, each entry sums to zero, one posting key
per entry, the totals, the (facility, provider, patient) parts and every service line's money
equal a replay of the entries through :func:`accounts.apply_entry`, and the statement balance
equals the latest statement snapshot.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from chalicelib.ledger.accounts import STATEMENT_BALANCE, Account, EntryCode, Figures, Line, apply_entry
from chalicelib.store import keys
from chalicelib.store.db import clinic_scope
from chalicelib.store.models import (
    BalanceItem,
    ClinicItem,
    EntryItem,
    GuarantorItem,
    Item,
    PostingKeyItem,
    ServiceLineItem,
    StatementItem,
)


@dataclass
class VerifyReport:
    """``ok`` when no mismatch; ``balances_checked`` counts guarantors' balance items."""

    balances_checked: int = 0
    mismatches: list[dict[str, Any]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.mismatches

    def as_json(self) -> dict[str, Any]:
        return {"ok": self.ok, "balances_checked": self.balances_checked,
                "mismatches": self.mismatches}


def _clean(values: dict[str, int]) -> dict[str, int]:
    return {k: v for k, v in values.items() if v}


def clinic_ids() -> list[str]:
    """Every clinic id, from the operator index (an operator-level read)."""
    return [c.clinic_id for c in ClinicItem.gsi1.query(keys.OPERATOR_CLINICS) if isinstance(c, ClinicItem)]


def guarantor_ids(clinic_id: str) -> list[str]:
    """Every guarantor id of a clinic, from the clinic's guarantor index."""
    with clinic_scope(clinic_id):
        return [g.guarantor_id for g in GuarantorItem.gsi1.query(keys.guarantors_gsi1pk(clinic_id))
                if isinstance(g, GuarantorItem)]


def verify_guarantor(clinic_id: str, guarantor_id: str) -> list[dict[str, Any]]:
    """Mismatches for one guarantor (empty when everything agrees)."""
    with clinic_scope(clinic_id):
        items = list(Item.query(keys.guarantor_pk(clinic_id, guarantor_id), consistent_read=True))
    return check_collection(clinic_id, guarantor_id, items)


def check_collection(clinic_id: str, guarantor_id: str, items: Iterable[Item]) -> list[dict[str, Any]]:
    """Compare the stored figures in ``items`` (one guarantor's collection) with a replay."""
    where = {"clinic_id": clinic_id, "guarantor_id": guarantor_id}
    balance: BalanceItem | None = None
    entries: list[EntryItem] = []
    markers: dict[str, int] = {}
    lines: dict[str, ServiceLineItem] = {}
    statements: dict[str, StatementItem] = {}
    for item in items:
        if isinstance(item, BalanceItem):
            balance = item
        elif isinstance(item, EntryItem):
            entries.append(item)
        elif isinstance(item, PostingKeyItem):
            markers[item.sk[len(keys.POSTING_KEY_PREFIX):]] = int(item.entry_seq)
        elif isinstance(item, ServiceLineItem):
            lines[item.line_id] = item
        elif isinstance(item, StatementItem):
            statements[item.statement_id] = item
    if balance is None:
        return [{**where, "problem": "no balance item"}]
    out: list[dict[str, Any]] = []
    entries.sort(key=lambda e: int(e.seq))
    seqs = [int(e.seq) for e in entries]
    if seqs != list(range(1, int(balance.last_seq) + 1)):
        out.append({**where, "problem": "entry sequence has gaps or extras",
                    "last_seq": int(balance.last_seq), "entries": len(seqs)})
    figures = Figures()
    part_of = {lid: item.part for lid, item in lines.items()}
    for e in entries:
        entry_lines = [Line(Account(ln.account), int(ln.cents), ln.line_id, ln.kind) for ln in e.lines]
        if sum(ln.cents for ln in entry_lines) != 0:
            out.append({**where, "problem": "entry does not balance", "seq": int(e.seq)})
        if markers.get(e.source_key) != int(e.seq):
            out.append({**where, "problem": "posting key missing or wrong", "seq": int(e.seq)})
        missing = {ln.line_id for ln in entry_lines if ln.line_id and ln.line_id not in part_of}
        if missing:
            out.append({**where, "problem": "entry names unknown lines", "seq": int(e.seq)})
            continue
        meta = e.meta.as_dict() if e.meta else {}
        apply_entry(figures, code=EntryCode(e.code), lines=entry_lines, meta=meta,
                    part_of=part_of, since_statement=int(e.seq) > int(balance.statement_seq))
    if len(markers) != len(entries):
        out.append({**where, "problem": "posting keys do not match entries",
                    "posting_keys": len(markers), "entries": len(entries)})
    stored_totals = _clean(dict(balance.totals))
    if STATEMENT_BALANCE in stored_totals:
        figures.totals[STATEMENT_BALANCE] = stored_totals[STATEMENT_BALANCE]
    if _clean(figures.totals) != stored_totals:
        out.append({**where, "problem": "guarantor totals differ",
                    "stored": stored_totals, "recomputed": _clean(figures.totals)})
    stored_parts = {k: _clean(v) for k, v in balance.parts.items() if _clean(v)}
    replay_parts = {}
    for k, row in figures.parts.items():
        row = dict(row)
        if STATEMENT_BALANCE in balance.parts.get(k, {}):
            row[STATEMENT_BALANCE] = balance.parts[k][STATEMENT_BALANCE]
        if _clean(row):
            replay_parts[k] = _clean(row)
    for k, row in stored_parts.items():
        if k not in replay_parts and set(row) == {STATEMENT_BALANCE}:
            replay_parts[k] = row
    if replay_parts != stored_parts:
        out.append({**where, "problem": "part balances differ",
                    "stored": stored_parts, "recomputed": replay_parts})
    for lid, item in sorted(lines.items()):
        if _clean(dict(item.money)) != _clean(figures.lines.get(lid, {})):
            out.append({**where, "problem": "service line money differs", "line_id": lid,
                        "stored": _clean(dict(item.money)),
                        "recomputed": _clean(figures.lines.get(lid, {}))})
    if balance.statement_id is not None:
        stmt = statements.get(balance.statement_id)
        if stmt is None or int(stmt.statement_balance) != stored_totals.get(STATEMENT_BALANCE, 0):
            out.append({**where, "problem": "statement balance differs from its snapshot",
                        "statement_id": balance.statement_id})
    return out


def ledger_verify(*, clinic_id: str | None = None) -> VerifyReport:
    """Verify one clinic, or every clinic when ``clinic_id`` is None. Never writes."""
    report = VerifyReport()
    for cid in [clinic_id] if clinic_id else clinic_ids():
        for gid in guarantor_ids(cid):
            report.balances_checked += 1
            report.mismatches.extend(verify_guarantor(cid, gid))
    return report
