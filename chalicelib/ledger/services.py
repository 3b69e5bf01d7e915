"""Ledger writes: post an entry, reverse one, snapshot a statement, verify everything.

Each posting is one TransactWriteItems (DESIGN.md rule 2): the entry (attribute_not_exists),
its posting-key item (attribute_not_exists: the source key is posted once, rule 3), the
guarantor's balance item (conditioned on its version) and every touched service line. A lost
race re-reads and retries a bounded number of times with jitter, then raises ConcurrentPosting.
A posting costs 2 DynamoDB requests: one consistent BatchGetItem and the transaction.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from pynamodb.exceptions import GetError

from chalicelib.core import clock
from chalicelib.core.errors import (
    AlreadyExists,
    AlreadyPosted,
    AlreadyReversed,
    ConcurrentPosting,
    ConditionFailed,
    InsufficientBalance,
    InvalidAmount,
    InvalidInput,
    LineInCollections,
    TryAgainLater,
    Unbalanced,
    UnknownEntry,
    UnknownGuarantor,
    UnknownServiceLine,
)
from chalicelib.core.ids import require_id
from chalicelib.ledger.accounts import (
    BLOCKED_IN_COLLECTIONS,
    COLLECTIONS,
    ESCROW,
    GUARANTOR_ACCOUNTS,
    LINE_ACCOUNTS,
    PAT_OPEN,
    STATEMENT_BALANCE,
    Account,
    EntryCode,
    Figures,
    Line,
    apply_entry,
    negative_figures,
)
from chalicelib.store import keys
from chalicelib.store.db import Tx, TxFailed, clinic_scoped
from chalicelib.store.models import (
    BalanceItem,
    EntryItem,
    EntryLineMap,
    Item,
    PostingKeyItem,
    ServiceLineItem,
    StatementItem,
)

MAX_ATTEMPTS = 4  # R5: at most 3 application-level retries, with jitter

#: ``also(tx, seq)`` adds a caller's items to a posting's transaction (see entry_post).
Also = Callable[[Tx, int], None]


@dataclass(frozen=True, slots=True)
class PostedEntry:
    """An entry as posted: per-guarantor ``seq``, code, source key, UTC time."""

    seq: int
    code: EntryCode
    source_key: str
    posted_at: str
    reverses: int | None = None


def _validate(code: EntryCode, lines: Sequence[Line], source_key: str) -> None:
    if not isinstance(code, EntryCode):
        raise InvalidInput(f"unknown entry code {code!r}")
    if not source_key or len(source_key) > 200:
        raise InvalidInput("source_key must be 1-200 characters")
    if not lines:
        raise Unbalanced("an entry needs at least two lines")
    for i, ln in enumerate(lines):
        if isinstance(ln.cents, bool) or not isinstance(ln.cents, int):
            raise InvalidAmount(f"line {i}: cents must be int, got {type(ln.cents).__name__}")
        if ln.cents == 0:
            raise InvalidAmount(f"line {i}: a zero amount posts nothing")
        if ln.account in LINE_ACCOUNTS and not ln.line_id:
            raise InvalidInput(f"line {i}: account {ln.account} needs a service line id")
        if ln.account in GUARANTOR_ACCOUNTS and ln.line_id:
            raise InvalidInput(f"line {i}: account {ln.account} takes no service line id")
    total = sum(ln.cents for ln in lines)
    if total != 0:
        raise Unbalanced(f"entry lines sum to {total} cents, not 0")


def _sleep_jittered(attempt: int) -> None:
    time.sleep(random.uniform(0.005, 0.03) * (attempt + 1))


def _figures_from(balance: BalanceItem, lines: Mapping[str, ServiceLineItem]) -> Figures:
    return Figures(
        totals=dict(balance.totals),
        parts={k: dict(v) for k, v in balance.parts.items()},
        lines={lid: dict(item.money) for lid, item in lines.items()},
    )


def _clean(values: Mapping[str, int]) -> dict[str, int]:
    return {k: v for k, v in values.items() if v}


@clinic_scoped
def entry_post(
    *,
    clinic_id: str,
    guarantor_id: str,
    code: EntryCode,
    lines: Sequence[Line],
    source_key: str,
    meta: Mapping[str, str] | None = None,
    new_lines: Sequence[ServiceLineItem] = (),
    also: Also | None = None,
) -> PostedEntry:
    """Append one balanced entry and move the stored figures, exactly once per ``source_key``.

    ``lines``: signed cents, debit > 0, summing to 0. ``new_lines``: service line items to
    create in the same transaction (a charge and its line are one fact). ``meta``: short
    strings such as ``kind`` (responsibility kind) or ``carc_group``/``carc_reason``.
    ``also(tx, seq)``: adds the caller's own items to the same transaction (a receipt, a
    payment attempt's transition, an import's claim marker); it is called once per attempt
    with the entry's sequence number, so it must build fresh items each time. If one of those
    items fails its condition, ConditionFailed(keys) is raised and nothing is written.

    Raises InvalidAmount / InvalidInput / Unbalanced before any request; UnknownGuarantor,
    UnknownServiceLine (a foreign clinic's ids are the same miss), LineInCollections,
    InsufficientBalance (escrow, open or collections below zero), AlreadyExists (new line),
    AlreadyPosted(source_key), ConcurrentPosting after MAX_ATTEMPTS lost races, TryAgainLater.
    DynamoDB is unchanged whenever an error is raised.
    """
    return _post(
        clinic_id=clinic_id, guarantor_id=guarantor_id, code=code, lines=lines,
        source_key=source_key, meta=dict(meta or {}), new_lines=new_lines, reverses=None, also=also,
    )


def _post(
    *,
    clinic_id: str,
    guarantor_id: str,
    code: EntryCode,
    lines: Sequence[Line],
    source_key: str,
    meta: dict[str, str],
    new_lines: Sequence[ServiceLineItem],
    reverses: int | None,
    also: Also | None = None,
) -> PostedEntry:
    require_id(clinic_id, field="clinic_id")
    require_id(guarantor_id, field="guarantor_id")
    _validate(code, lines, source_key)
    pk = keys.guarantor_pk(clinic_id, guarantor_id)
    created = {item.line_id: item for item in new_lines}
    for item in new_lines:
        if item.pk != pk:
            raise InvalidInput("a new service line must belong to the posting guarantor")
    line_ids = sorted({ln.line_id for ln in lines if ln.line_id} - set(created))
    for line_id in line_ids:
        require_id(line_id, field="line_id")
    posting_sk = keys.posting_key_sk(source_key)
    for attempt in range(MAX_ATTEMPTS):
        wanted = [(pk, keys.BALANCE), (pk, posting_sk)] + [(pk, keys.line_sk(i)) for i in line_ids]
        found: dict[str, Item] = {it.sk: it for it in Item.batch_get(wanted, consistent_read=True)}
        balance = found.get(keys.BALANCE)
        if not isinstance(balance, BalanceItem):
            raise UnknownGuarantor(f"guarantor {guarantor_id} not found")
        marker = found.get(posting_sk)
        if isinstance(marker, PostingKeyItem):
            raise AlreadyPosted(source_key, int(marker.entry_seq))
        existing: dict[str, ServiceLineItem] = {}
        for line_id in line_ids:
            got = found.get(keys.line_sk(line_id))
            if not isinstance(got, ServiceLineItem):
                raise UnknownServiceLine(f"service line {line_id} not found for this guarantor")
            existing[line_id] = got
        touched_items = {**existing, **created}
        if code in BLOCKED_IN_COLLECTIONS and reverses is None:  # a correction is never blocked
            for ln in lines:
                if ln.account is Account.PAT_AR and ln.line_id in existing:
                    if existing[ln.line_id].money.get(COLLECTIONS, 0) > 0:
                        raise LineInCollections(
                            f"service line {ln.line_id} is in collections; "
                            "it cannot take payments or adjustments here"
                        )
        figures = _figures_from(balance, touched_items)
        part_of = {lid: item.part for lid, item in touched_items.items()}
        touched = apply_entry(
            figures, code=code, lines=lines, meta=meta, part_of=part_of, since_statement=True
        )
        bad = negative_figures(figures, touched)
        if bad:
            raise InsufficientBalance("the entry would take below zero: " + "; ".join(bad))
        seq = int(balance.last_seq) + 1
        now = clock.now()
        entry = EntryItem(
            pk, keys.entry_sk(seq), seq=seq, code=code.value,
            lines=[EntryLineMap(account=ln.account.value, cents=ln.cents, line_id=ln.line_id, kind=ln.kind)
                   for ln in lines],
            source_key=source_key, posted_at=now, reverses=reverses, meta=meta or None,
        )
        tx = Tx()
        tx.put(entry, condition=EntryItem.pk.does_not_exist())
        tx.put(PostingKeyItem(pk, posting_sk, entry_seq=seq),
               condition=PostingKeyItem.pk.does_not_exist())
        for line_id, item in created.items():
            item.money = _clean(figures.lines.get(line_id, {}))
            tx.put(item, condition=ServiceLineItem.pk.does_not_exist())
        for line_id in sorted(touched - set(created)):
            item = existing[line_id]
            # BatchGetItem is not a snapshot: the balance may be newer than a line read with it,
            # so each line is also conditioned on the money read (a lost race retries).
            read = dict(item.money)
            tx.update(
                item,
                [ServiceLineItem.money.set(_clean(figures.lines.get(line_id, {})))],
                condition=(ServiceLineItem.money == read) if read else ServiceLineItem.pk.exists(),
                versioned=False,
            )
        own_keys = {entry.sk, posting_sk, keys.BALANCE} | {keys.line_sk(i) for i in touched | set(created)}
        if also is not None:
            also(tx, seq)
        tx.update(
            balance,
            [
                BalanceItem.totals.set(_clean(figures.totals)),
                BalanceItem.parts.set({k: _clean(v) for k, v in figures.parts.items()}),
                BalanceItem.last_seq.set(seq),
            ],
        )
        try:
            tx.commit()
        except TxFailed as failed:
            if posting_sk in failed.reasons:
                raise AlreadyPosted(source_key, _posted_seq(pk, posting_sk)) from failed
            if set(created) & {k[len(keys.LINE_PREFIX):] for k in failed.reasons}:
                raise AlreadyExists("a service line with this encounter and line number "
                                    "already exists") from failed
            foreign = {k: v for k, v in failed.reasons.items() if k not in own_keys}
            if foreign and not failed.retryable:
                raise ConditionFailed(foreign) from failed
            _sleep_jittered(attempt)
            continue
        except TryAgainLater:
            if attempt == MAX_ATTEMPTS - 1:
                raise
            _sleep_jittered(attempt)
            continue
        return PostedEntry(seq=seq, code=code, source_key=source_key,
                           posted_at=now.isoformat(), reverses=reverses)
    raise ConcurrentPosting(f"guarantor {guarantor_id} is busy; try again")


def _posted_seq(pk: str, posting_sk: str) -> int | None:
    try:
        return int(PostingKeyItem.get(pk, posting_sk, consistent_read=True).entry_seq)
    except PostingKeyItem.DoesNotExist:
        return None


@clinic_scoped
def entry_reverse(
    *, clinic_id: str, guarantor_id: str, entry_seq: int, reason: str
) -> PostedEntry:
    """Post the reversal of entry ``entry_seq``: the same code with every line negated.

    An entry can be reversed once (posting key ``reversal:<seq>``); a reversal cannot itself be
    reversed (post the fact again instead). Raises UnknownEntry, AlreadyReversed, InvalidInput,
    and what :func:`entry_post` raises (e.g. InsufficientBalance when money applied since the
    entry must be undone first).
    """
    require_id(clinic_id, field="clinic_id")
    require_id(guarantor_id, field="guarantor_id")
    pk = keys.guarantor_pk(clinic_id, guarantor_id)
    if isinstance(entry_seq, bool) or not isinstance(entry_seq, int) or entry_seq < 1:
        raise InvalidInput("entry_seq must be a positive integer")
    try:
        original = EntryItem.get(pk, keys.entry_sk(entry_seq), consistent_read=True)
    except (EntryItem.DoesNotExist, GetError):
        raise UnknownEntry(f"entry {entry_seq} not found for this guarantor") from None
    if original.reverses is not None:
        raise InvalidInput(f"entry {entry_seq} is a reversal and cannot be reversed")
    meta = original.meta.as_dict() if original.meta else {}
    meta["reason"] = reason[:200]
    lines = [Line(Account(ln.account), -int(ln.cents), ln.line_id, ln.kind) for ln in original.lines]
    try:
        return _post(
            clinic_id=clinic_id, guarantor_id=guarantor_id, code=EntryCode(original.code),
            lines=lines, source_key=f"reversal:{entry_seq}", meta=meta, new_lines=(),
            reverses=entry_seq,
        )
    except AlreadyPosted as exc:
        raise AlreadyReversed(f"entry {entry_seq} was already reversed") from exc


@clinic_scoped
def statement_snapshot(
    *,
    clinic_id: str,
    guarantor_id: str,
    statement: StatementItem,
    also: Also | None = None,
    held: Mapping[str, int] | None = None,
    balance_read: BalanceItem | None = None,
) -> int:
    """Store ``statement`` and make it the guarantor's latest, in one transaction.

    Fills ``statement_balance`` (= Current Balance now: open patient responsibility not in
    collections minus escrow, floor 0) and ``amount_due`` (the same), records the entry
    sequence it covers, and restarts the since-statement figures. Returns the statement
    balance in cents. Raises UnknownGuarantor, AlreadyExists, ConcurrentPosting.

    ``held``: open patient responsibility held back from this statement by a hold profile
    (REFERENCE-PORTAL.md K1), cents per part key ``facility|provider|patient``; it is taken off
    the statement balance (in total and per part, floor 0). ``also(tx, seq)``: adds the
    caller's own items to the same transaction (the statement run's marker, the dunning count
    conditioned on the value read), as in :func:`entry_post`; ``seq`` is the entry sequence the
    snapshot covers, so a caller that computed figures from its own read can refuse a stale
    one by raising. If one of those items fails its condition, ConditionFailed(keys) is raised
    and nothing is written. ``balance_read``: the caller's own read of the balance item, used
    for the first try instead of a new read (a statement run reads a page's balances together);
    the balance's version condition refuses it if it is stale, and the retry reads afresh.
    """
    pk = keys.guarantor_pk(clinic_id, guarantor_id)
    if statement.pk != pk:
        raise InvalidInput("the statement must belong to the guarantor")
    held = dict(held or {})
    if any(isinstance(c, bool) or not isinstance(c, int) or c < 0 for c in held.values()):
        raise InvalidAmount("held amounts must be non-negative integer cents")
    for attempt in range(MAX_ATTEMPTS):
        if attempt == 0 and balance_read is not None:
            if balance_read.pk != pk or balance_read.sk != keys.BALANCE:
                raise InvalidInput("balance_read must be the guarantor's balance")
            balance = balance_read
        else:
            try:
                balance = BalanceItem.get(pk, keys.BALANCE, consistent_read=True)
            except BalanceItem.DoesNotExist:
                raise UnknownGuarantor(f"guarantor {guarantor_id} not found") from None
        totals = dict(balance.totals)
        current = max(0, totals.get(PAT_OPEN, 0) - totals.get(ESCROW, 0) - sum(held.values()))
        for since in ("paid_since", "credits_since", "new_since"):
            totals.pop(since, None)
        totals[STATEMENT_BALANCE] = current
        parts = {}
        for key, row in balance.parts.items():
            parts[key] = _clean({
                PAT_OPEN: row.get(PAT_OPEN, 0),
                COLLECTIONS: row.get(COLLECTIONS, 0),
                STATEMENT_BALANCE: max(0, row.get(PAT_OPEN, 0) - held.get(key, 0)),
            })
        statement.statement_balance = current
        statement.amount_due = current
        statement.as_of_seq = int(balance.last_seq)
        tx = Tx()
        tx.put(statement, condition=StatementItem.pk.does_not_exist())
        if also is not None:
            also(tx, int(balance.last_seq))
        tx.update(balance, [
            BalanceItem.totals.set(_clean(totals)),
            BalanceItem.parts.set(parts),
            BalanceItem.statement_id.set(statement.statement_id),
            BalanceItem.statement_seq.set(int(balance.last_seq)),
        ])
        try:
            tx.commit()
        except TxFailed as failed:
            if statement.sk in failed.reasons:
                raise AlreadyExists(f"statement {statement.statement_id} exists") from failed
            foreign = {k: v for k, v in failed.reasons.items() if k != keys.BALANCE}
            if foreign and not failed.retryable:
                raise ConditionFailed(foreign) from failed
            _sleep_jittered(attempt)
            continue
        return current
    raise ConcurrentPosting(f"guarantor {guarantor_id} is busy; try again")
