"""Hypothesis drives random sequences of money facts through the real services on DynamoDB
Local, and after every step checks (issue "Foundation", Done when):

- stored figures equal a replay of the entries (``verify_guarantor``), and equal a shadow model
  kept by the test itself, independently of the ledger's own arithmetic;
- Current Balance ≥ Amount Due ≥ 0, with and without Include New Charges;
- no money appears or vanishes: per line, billed = insurance open + paid + adjusted + patient
  open + adjusted + paid + collections; per guarantor, patient money received = applied + escrow.

At least 2,000 steps run per CI run (asserted at the end).
"""

from __future__ import annotations

from collections import defaultdict

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule, run_state_machine_as_test

from chalicelib.accounts import selectors as account_selectors
from chalicelib.accounts import services as accounts
from chalicelib.core.errors import AlreadyPosted, AlreadyReversed, DomainError, InsufficientBalance
from chalicelib.ledger import selectors as ledger_selectors
from chalicelib.ledger import services as ledger
from chalicelib.ledger.verify import verify_guarantor
from tests import factories

STEPS = {"count": 0}
FIELDS = ("ins_open", "pat_open", "collections", "escrow", "received")


class LedgerMachine(RuleBasedStateMachine):
    @initialize()
    def start(self) -> None:
        self.f = factories.family()
        self.lines: list[str] = []
        self.shadow: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))  # line -> fields
        self.g: dict[str, int] = defaultdict(int)  # escrow, received
        self.effects: dict[int, list[tuple[str | None, str, int]]] = {}
        self.keys: list[str] = []
        self.n = 0

    # --- helpers -------------------------------------------------------------------------------
    def _key(self) -> str:
        self.n += 1
        return f"k{self.n}"

    def _posted(self, seq: int, key: str, effect: list[tuple[str | None, str, int]]) -> None:
        self.effects[seq] = effect
        self.keys.append(key)
        self._apply(effect, 1)

    def _apply(self, effect: list[tuple[str | None, str, int]], sign: int) -> None:
        for line, name, cents in effect:
            if line is None:
                self.g[name] += sign * cents
            else:
                self.shadow[line][name] += sign * cents

    def _kw(self) -> dict[str, str]:
        return {"clinic_id": self.f.clinic_id, "guarantor_id": self.f.guarantor_id}

    def _open(self, line: str) -> int:
        return self.shadow[line]["pat_open"]

    # --- rules ---------------------------------------------------------------------------------
    @rule(billed=st.integers(1, 50_000), self_pay=st.booleans())
    def charge(self, billed: int, self_pay: bool) -> None:
        lid = factories.line(self.f, billed=billed, self_pay=self_pay,
                             dos=f"2026-{1 + len(self.lines) % 12:02d}-15")
        self.lines.append(lid)
        self.shadow[lid]["pat_open" if self_pay else "ins_open"] += billed
        self.shadow[lid]["billed"] += billed
        self.keys.append(f"charge:{lid}")
        self.effects[len(self.keys)] = [(lid, "pat_open" if self_pay else "ins_open", billed),
                                        (lid, "billed", billed)]

    @rule(data=st.data(), what=st.sampled_from(["ins_pay", "ins_adj", "pr"]))
    def insurance(self, data: st.DataObject, what: str) -> None:
        if not self.lines:
            return
        lid = data.draw(st.sampled_from(self.lines))
        cents = data.draw(st.integers(1, max(1, self.shadow[lid]["ins_open"])))
        key = self._key()
        if what == "ins_pay":
            p = accounts.insurance_payment_post(**self._kw(), line_id=lid, amount_cents=cents, source_key=key)
            self._posted(p.seq, key, [(lid, "ins_open", -cents), (lid, "ins_paid", cents)])
        elif what == "ins_adj":
            p = accounts.insurance_adjustment_post(**self._kw(), line_id=lid, amount_cents=cents,
                                                   carc_group="CO", carc_reason="45", source_key=key)
            self._posted(p.seq, key, [(lid, "ins_open", -cents), (lid, "ins_adjusted", cents)])
        else:
            kind = data.draw(st.sampled_from(["deductible", "coinsurance", "copay", "other"]))
            p = accounts.patient_responsibility_post(**self._kw(), line_id=lid, amount_cents=cents,
                                                     kind=kind, source_key=key)  # type: ignore[arg-type]
            self._posted(p.seq, key, [(lid, "ins_open", -cents), (lid, "pat_open", cents)])

    @rule(data=st.data(), amount=st.integers(1, 30_000))
    def patient_payment(self, data: st.DataObject, amount: int) -> None:
        applications: dict[str, int] = {}
        left = amount
        for lid in self.lines:  # oldest first, only lines not in collections
            if left and self._open(lid) > 0 and self.shadow[lid]["collections"] == 0 and data.draw(st.booleans()):
                part = min(left, self._open(lid))
                applications[lid] = part
                left -= part
        key = self._key()
        p = accounts.patient_payment_post(**self._kw(), amount_cents=amount, applications=applications,
                                          source_key=key)
        effect: list[tuple[str | None, str, int]] = [(None, "received", amount), (None, "escrow", left)]
        effect += [(lid, "pat_open", -c) for lid, c in applications.items()]
        effect += [(lid, "pat_paid", c) for lid, c in applications.items()]
        self._posted(p.seq, key, effect)

    @rule(data=st.data())
    def apply_escrow(self, data: st.DataObject) -> None:
        candidates = [lid for lid in self.lines if self._open(lid) > 0 and self.shadow[lid]["collections"] == 0]
        if not candidates or self.g["escrow"] <= 0:
            return
        lid = data.draw(st.sampled_from(candidates))
        cents = data.draw(st.integers(1, min(self.g["escrow"], self._open(lid))))
        key = self._key()
        p = accounts.payment_apply(**self._kw(), line_id=lid, amount_cents=cents, source_key=key)
        self._posted(p.seq, key, [(None, "escrow", -cents), (lid, "pat_open", -cents), (lid, "pat_paid", cents)])

    @rule(data=st.data(), what=st.sampled_from(["adjust", "collections"]))
    def patient_side(self, data: st.DataObject, what: str) -> None:
        candidates = [lid for lid in self.lines if self._open(lid) > 0 and self.shadow[lid]["collections"] == 0]
        if not candidates:
            return
        lid = data.draw(st.sampled_from(candidates))
        cents = data.draw(st.integers(1, self._open(lid)))
        key = self._key()
        if what == "adjust":
            p = accounts.patient_adjustment_post(**self._kw(), line_id=lid, amount_cents=cents,
                                                 reason="courtesy_discount", source_key=key)
            self._posted(p.seq, key, [(lid, "pat_open", -cents), (lid, "pat_adjusted", cents)])
        else:
            p = accounts.collections_transfer(**self._kw(), line_id=lid, amount_cents=cents, source_key=key)
            self._posted(p.seq, key, [(lid, "pat_open", -cents), (lid, "collections", cents)])

    @rule(amount=st.integers(1, 20_000))
    def refund(self, amount: int) -> None:
        key = self._key()
        if amount > self.g["escrow"]:
            with pytest.raises(InsufficientBalance):
                accounts.patient_refund_post(**self._kw(), amount_cents=amount, source_key=key)
            return
        p = accounts.patient_refund_post(**self._kw(), amount_cents=amount, source_key=key)
        self._posted(p.seq, key, [(None, "escrow", -amount), (None, "received", -amount)])

    @rule(data=st.data())
    def reverse(self, data: st.DataObject) -> None:
        if not self.effects:
            return
        seq = data.draw(st.sampled_from(sorted(self.effects)))
        effect = self.effects[seq]
        try:
            p = ledger.entry_reverse(**self._kw(), entry_seq=seq, reason="test")
        except AlreadyReversed:
            assert seq not in self.effects or self.effects[seq] == []
            return
        except InsufficientBalance:
            return  # money applied since must be undone first; nothing was written (verified below)
        except DomainError as exc:  # a reversal entry cannot itself be reversed
            assert "reversal" in str(exc)
            return
        self._apply(effect, -1)
        self.effects[seq] = []
        self.effects[p.seq] = []
        self.keys.append(f"reversal:{seq}")

    @rule(data=st.data())
    def replay(self, data: st.DataObject) -> None:
        """A fact posted again (Lambda retry, duplicate file) posts nothing."""
        if not self.lines:
            return
        key = data.draw(st.sampled_from(self.keys))
        with pytest.raises(AlreadyPosted):
            accounts.insurance_payment_post(**self._kw(), line_id=self.lines[0], amount_cents=1, source_key=key)

    @rule()
    def statement(self) -> None:
        accounts.statement_create(**self._kw(), statement_date="2026-11-01", due_date="2026-11-30")

    # --- invariants ----------------------------------------------------------------------------
    @invariant()
    def figures_hold(self) -> None:
        if not hasattr(self, "f"):
            return
        STEPS["count"] += 1
        assert ledger_selectors.guarantor_figures(**self._kw()).last_seq == len(self.keys)
        assert verify_guarantor(self.f.clinic_id, self.f.guarantor_id) == []
        for include in (False, True):
            b = ledger_selectors.guarantor_figures(**self._kw(), include_new_charges=include).balances
            assert b.current_balance >= b.amount_due >= 0
        pat_open = sum(self.shadow[lid]["pat_open"] for lid in self.lines)
        assert b.current_balance == max(0, pat_open - self.g["escrow"])
        assert b.unapplied_funds == self.g["escrow"] >= 0
        assert b.collections_balance == sum(self.shadow[lid]["collections"] for lid in self.lines)
        lines = account_selectors.service_lines_list(**self._kw())
        applied = 0
        for sl in lines:
            m = sl.money
            parts = ("ins_open", "ins_paid", "ins_adjusted", "pat_open", "pat_adjusted", "pat_paid", "collections")
            assert m.get("billed", 0) == sum(m.get(k, 0) for k in parts), sl.line_id
            for name in ("ins_open", "pat_open", "collections", "billed"):
                assert m.get(name, 0) == self.shadow[sl.line_id][name], (sl.line_id, name)
            applied += m.get("pat_paid", 0)
        assert self.g["received"] == applied + self.g["escrow"]


@pytest.mark.slow
@pytest.mark.usefixtures("dynamodb_endpoint")
def test_ledger_invariants_hold_over_random_sequences():
    STEPS["count"] = 0
    run_state_machine_as_test(
        LedgerMachine,
        settings=settings(max_examples=90, stateful_step_count=30, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much]),
    )
    assert STEPS["count"] >= 2_000, STEPS
