"""Posting, reversal, bad input and the balance definitions of PRODUCT.md §2."""

from __future__ import annotations

import pytest

from chalicelib.accounts import selectors as account_selectors
from chalicelib.accounts import services as accounts
from chalicelib.core.errors import (
    AlreadyExists,
    AlreadyPosted,
    AlreadyReversed,
    InsufficientBalance,
    InvalidAmount,
    InvalidInput,
    LineInCollections,
    NotFound,
    Unbalanced,
    UnknownGuarantor,
    UnknownServiceLine,
)
from chalicelib.ledger import selectors as ledger_selectors
from chalicelib.ledger import services as ledger
from chalicelib.ledger.accounts import Account, EntryCode, Line
from chalicelib.ledger.verify import ledger_verify
from tests import factories

pytestmark = pytest.mark.usefixtures("dynamodb_endpoint")


def balances(f: factories.Family, include_new_charges: bool = False):
    return ledger_selectors.guarantor_figures(clinic_id=f.clinic_id, guarantor_id=f.guarantor_id,
                                              include_new_charges=include_new_charges).balances


def verified(clinic_id: str) -> None:
    report = ledger_verify(clinic_id=clinic_id)
    assert report.ok, report.mismatches


def test_insurance_leaves_patient_responsibility_as_current_balance():
    f = factories.family()
    lid = factories.line(f, billed=15_000)
    accounts.insurance_payment_post(clinic_id=f.clinic_id, guarantor_id=f.guarantor_id, line_id=lid,
                                    amount_cents=8_000, source_key="835:a:1")
    accounts.insurance_adjustment_post(clinic_id=f.clinic_id, guarantor_id=f.guarantor_id, line_id=lid,
                                       amount_cents=3_000, carc_group="CO", carc_reason="45",
                                       source_key="835:a:2")
    accounts.patient_responsibility_post(clinic_id=f.clinic_id, guarantor_id=f.guarantor_id, line_id=lid,
                                         amount_cents=4_000, kind="deductible", source_key="835:a:3")
    b = balances(f)
    assert (b.current_balance, b.amount_due, b.statement_balance) == (4_000, 0, 0)
    [sl] = account_selectors.service_lines_list(clinic_id=f.clinic_id, guarantor_id=f.guarantor_id)
    assert sl.money == {"billed": 15_000, "ins_paid": 8_000, "ins_adjusted": 3_000,
                        "pat_open": 4_000, "pr_deductible": 4_000}  # insurance receivable is 0
    verified(f.clinic_id)


def test_amount_due_follows_the_statement_and_payments_after_it():
    f = factories.family()
    factories.patient_owes(f, 6_000)
    accounts.statement_create(clinic_id=f.clinic_id, guarantor_id=f.guarantor_id,
                              statement_date="2026-11-01", due_date="2026-11-30")
    assert (balances(f).statement_balance, balances(f).amount_due) == (6_000, 6_000)
    accounts.patient_payment_post(clinic_id=f.clinic_id, guarantor_id=f.guarantor_id, amount_cents=2_500,
                                  applications={}, source_key="receipt:r1")
    b = balances(f)
    assert (b.statement_balance, b.amount_due, b.current_balance, b.unapplied_funds) == (6_000, 3_500, 3_500, 2_500)
    new_line = factories.patient_owes(f, 1_000)
    assert balances(f).amount_due == 3_500
    assert balances(f, include_new_charges=True).amount_due == 4_500
    assert balances(f).current_balance == 4_500
    accounts.patient_adjustment_post(clinic_id=f.clinic_id, guarantor_id=f.guarantor_id, line_id=new_line,
                                     amount_cents=500, reason="courtesy_discount", source_key="adj:1")
    assert balances(f).amount_due == 3_000
    verified(f.clinic_id)


def test_no_statement_means_nothing_is_due_yet():
    f = factories.family()
    factories.patient_owes(f, 2_000)
    b = balances(f, include_new_charges=True)
    assert (b.amount_due, b.current_balance, b.has_statement) == (0, 2_000, False)


def test_amount_due_is_capped_at_current_balance_and_overpayment_is_credit():
    f = factories.family()
    lid = factories.patient_owes(f, 3_000)
    accounts.statement_create(clinic_id=f.clinic_id, guarantor_id=f.guarantor_id,
                              statement_date="2026-11-01", due_date="2026-11-30")
    accounts.collections_transfer(clinic_id=f.clinic_id, guarantor_id=f.guarantor_id, line_id=lid,
                                  amount_cents=3_000, source_key="coll:1")
    b = balances(f, include_new_charges=True)
    assert (b.current_balance, b.amount_due, b.collections_balance) == (0, 0, 3_000)
    accounts.patient_payment_post(clinic_id=f.clinic_id, guarantor_id=f.guarantor_id, amount_cents=700,
                                  applications={}, source_key="receipt:r2")
    b = balances(f)
    assert (b.current_balance, b.credit_on_account, b.unapplied_funds) == (0, 700, 700)
    verified(f.clinic_id)


def test_payment_applied_to_lines_and_part_balances():
    f = factories.family()
    old = factories.patient_owes(f, 2_000, dos="2026-08-01")
    new = factories.patient_owes(f, 3_000, dos="2026-09-01")
    accounts.statement_create(clinic_id=f.clinic_id, guarantor_id=f.guarantor_id,
                              statement_date="2026-11-01", due_date="2026-11-30")
    accounts.patient_payment_post(clinic_id=f.clinic_id, guarantor_id=f.guarantor_id, amount_cents=2_500,
                                  applications={old: 2_000, new: 500}, source_key="receipt:r3")
    figures = ledger_selectors.guarantor_figures(clinic_id=f.clinic_id, guarantor_id=f.guarantor_id)
    [part] = figures.parts
    assert (part.patient_id, part.facility_id, part.provider_id) == (f.patient_id, f.facility_id, f.provider_id)
    assert (part.statement_balance, part.amount_due, part.current_balance) == (5_000, 2_500, 2_500)
    lines = {sl.line_id: sl.money for sl in account_selectors.service_lines_list(
        clinic_id=f.clinic_id, guarantor_id=f.guarantor_id)}
    assert lines[old].get("pat_open", 0) == 0 and lines[old]["pat_paid"] == 2_000
    assert lines[new]["pat_open"] == 2_500
    verified(f.clinic_id)


@pytest.mark.parametrize("amount", [0, -100])
def test_zero_or_negative_amount_is_refused_and_nothing_written(amount):
    f = factories.family()
    lid = factories.line(f)
    before = factories.collection(f)
    with pytest.raises(InvalidAmount):
        accounts.insurance_payment_post(clinic_id=f.clinic_id, guarantor_id=f.guarantor_id, line_id=lid,
                                        amount_cents=amount, source_key="x")
    with pytest.raises(InvalidAmount):
        ledger.entry_post(clinic_id=f.clinic_id, guarantor_id=f.guarantor_id, code=EntryCode.INSURANCE_PAYMENT,
                          lines=[Line(Account.INS_CASH, 0, lid), Line(Account.INS_AR, 0, lid)], source_key="y")
    assert factories.collection(f) == before


def test_float_cents_are_refused():
    f = factories.family()
    lid = factories.line(f)
    with pytest.raises(InvalidAmount):
        accounts.insurance_payment_post(clinic_id=f.clinic_id, guarantor_id=f.guarantor_id, line_id=lid,
                                        amount_cents=10.5, source_key="x")  # type: ignore[arg-type]


def test_unbalanced_entry_is_refused():
    f = factories.family()
    lid = factories.line(f)
    before = factories.collection(f)
    with pytest.raises(Unbalanced):
        ledger.entry_post(clinic_id=f.clinic_id, guarantor_id=f.guarantor_id, code=EntryCode.INSURANCE_PAYMENT,
                          lines=[Line(Account.INS_CASH, 100, lid), Line(Account.INS_AR, -99, lid)], source_key="u")
    assert factories.collection(f) == before


def test_same_source_key_posts_once():
    f = factories.family()
    lid = factories.line(f)
    accounts.insurance_payment_post(clinic_id=f.clinic_id, guarantor_id=f.guarantor_id, line_id=lid,
                                    amount_cents=1_000, source_key="835:f:1")
    before = factories.collection(f)
    with pytest.raises(AlreadyPosted) as err:
        accounts.insurance_payment_post(clinic_id=f.clinic_id, guarantor_id=f.guarantor_id, line_id=lid,
                                        amount_cents=1_000, source_key="835:f:1")
    assert err.value.entry_seq == 2
    assert factories.collection(f) == before


def test_charging_the_same_service_line_twice_is_refused():
    f = factories.family()
    factories.line(f, encounter="E77")
    before = factories.collection(f)
    with pytest.raises((AlreadyPosted, AlreadyExists)):
        factories.line(f, encounter="E77")
    assert factories.collection(f) == before


def test_reversal_takes_back_exactly_once():
    f = factories.family()
    lid = factories.line(f, billed=5_000)
    posted = accounts.patient_responsibility_post(clinic_id=f.clinic_id, guarantor_id=f.guarantor_id,
                                                  line_id=lid, amount_cents=1_200, kind="copay", source_key="pr")
    assert balances(f).current_balance == 1_200
    reversal = ledger.entry_reverse(clinic_id=f.clinic_id, guarantor_id=f.guarantor_id,
                                    entry_seq=posted.seq, reason="CLP 22")
    assert reversal.reverses == posted.seq
    assert balances(f).current_balance == 0
    before = factories.collection(f)
    with pytest.raises(AlreadyReversed):
        ledger.entry_reverse(clinic_id=f.clinic_id, guarantor_id=f.guarantor_id, entry_seq=posted.seq, reason="x")
    with pytest.raises(InvalidInput):
        ledger.entry_reverse(clinic_id=f.clinic_id, guarantor_id=f.guarantor_id, entry_seq=reversal.seq, reason="x")
    assert factories.collection(f) == before
    verified(f.clinic_id)


def test_reversal_that_would_strand_a_payment_is_refused():
    f = factories.family()
    lid = factories.line(f, billed=5_000)
    pr = accounts.patient_responsibility_post(clinic_id=f.clinic_id, guarantor_id=f.guarantor_id, line_id=lid,
                                              amount_cents=1_000, kind="copay", source_key="pr")
    accounts.patient_payment_post(clinic_id=f.clinic_id, guarantor_id=f.guarantor_id, amount_cents=1_000,
                                  applications={lid: 1_000}, source_key="receipt:1")
    before = factories.collection(f)
    with pytest.raises(InsufficientBalance):
        ledger.entry_reverse(clinic_id=f.clinic_id, guarantor_id=f.guarantor_id, entry_seq=pr.seq, reason="x")
    assert factories.collection(f) == before


def test_application_to_a_line_in_collections_is_refused():
    f = factories.family()
    lid = factories.patient_owes(f, 2_000)
    accounts.collections_transfer(clinic_id=f.clinic_id, guarantor_id=f.guarantor_id, line_id=lid,
                                  amount_cents=1_500, source_key="coll")
    before = factories.collection(f)
    with pytest.raises(LineInCollections):
        accounts.patient_payment_post(clinic_id=f.clinic_id, guarantor_id=f.guarantor_id, amount_cents=500,
                                      applications={lid: 500}, source_key="receipt:c")
    with pytest.raises(LineInCollections):
        accounts.patient_adjustment_post(clinic_id=f.clinic_id, guarantor_id=f.guarantor_id, line_id=lid,
                                         amount_cents=500, reason="courtesy_discount", source_key="adj")
    assert factories.collection(f) == before
    assert balances(f).collections_balance == 1_500


def test_refund_above_unapplied_funds_is_refused():
    f = factories.family()
    accounts.patient_payment_post(clinic_id=f.clinic_id, guarantor_id=f.guarantor_id, amount_cents=1_000,
                                  applications={}, source_key="receipt:e")
    before = factories.collection(f)
    with pytest.raises(InsufficientBalance):
        accounts.patient_refund_post(clinic_id=f.clinic_id, guarantor_id=f.guarantor_id, amount_cents=1_001,
                                     source_key="refund:1")
    assert factories.collection(f) == before
    accounts.patient_refund_post(clinic_id=f.clinic_id, guarantor_id=f.guarantor_id, amount_cents=1_000,
                                 source_key="refund:2")
    assert balances(f).unapplied_funds == 0
    verified(f.clinic_id)


def test_another_clinics_ids_are_unknown_here_and_nothing_is_written():
    mine = factories.family()
    theirs = factories.family()
    their_line = factories.line(theirs)
    their_before, my_before = factories.collection(theirs), factories.collection(mine)
    with pytest.raises(UnknownGuarantor):
        accounts.insurance_payment_post(clinic_id=mine.clinic_id, guarantor_id=theirs.guarantor_id,
                                        line_id=their_line, amount_cents=100, source_key="x")
    with pytest.raises(UnknownServiceLine):
        accounts.insurance_payment_post(clinic_id=mine.clinic_id, guarantor_id=mine.guarantor_id,
                                        line_id=their_line, amount_cents=100, source_key="x")
    with pytest.raises(NotFound):
        accounts.service_line_charge(clinic_id=mine.clinic_id, guarantor_id=mine.guarantor_id,
                                     encounter_number="E1", line_number=1, patient_id=mine.patient_id,
                                     date_of_service="2026-10-01", procedure_code="99213", billed_cents=100,
                                     facility_id=theirs.facility_id)
    with pytest.raises(UnknownGuarantor):
        ledger_selectors.guarantor_figures(clinic_id=mine.clinic_id, guarantor_id=theirs.guarantor_id)
    assert factories.collection(theirs) == their_before
    assert factories.collection(mine) == my_before


def test_a_key_separator_in_an_id_is_refused():
    f = factories.family()
    with pytest.raises(InvalidInput):
        ledger_selectors.guarantor_figures(clinic_id=f.clinic_id, guarantor_id=f"x#G#{f.guarantor_id}")


def test_quickpay_sized_read_costs_at_most_two_requests(request_log):
    f = factories.family()
    factories.patient_owes(f, 2_000)
    request_log.reset()
    summary = account_selectors.guarantor_summary(clinic_id=f.clinic_id, guarantor_id=f.guarantor_id)
    assert summary.figures.balances.current_balance == 2_000
    assert request_log.requests <= 2
    assert request_log.write_units == 0


def test_a_posting_is_two_requests_one_transaction(request_log):
    f = factories.family()
    lid = factories.line(f)
    request_log.reset()
    accounts.insurance_payment_post(clinic_id=f.clinic_id, guarantor_id=f.guarantor_id, line_id=lid,
                                    amount_cents=100, source_key="ins")
    assert dict(request_log.operations) == {"BatchGetItem": 1, "TransactWriteItems": 1}


def test_verify_finds_a_tampered_balance():
    f = factories.family()
    factories.patient_owes(f, 2_000)
    verified(f.clinic_id)
    from chalicelib.store import keys
    from chalicelib.store.db import clinic_scope
    from chalicelib.store.models import BalanceItem
    with clinic_scope(f.clinic_id):
        item = BalanceItem.get(keys.guarantor_pk(f.clinic_id, f.guarantor_id), keys.BALANCE)
        item.update(actions=[BalanceItem.totals.set({**item.totals, "pat_open": 1_999})])
    report = ledger_verify(clinic_id=f.clinic_id)
    assert not report.ok
    assert report.mismatches[0]["problem"] == "guarantor totals differ"


def test_one_remittance_entry_carries_several_facts_with_their_kinds():
    f = factories.family()
    a, b = factories.line(f, billed=10_000), factories.line(f, billed=5_000)
    ledger.entry_post(
        clinic_id=f.clinic_id, guarantor_id=f.guarantor_id, code=EntryCode.REMITTANCE, source_key="835:h:1",
        lines=[Line(Account.INS_CASH, 6_000, a), Line(Account.INS_ADJ, 2_000, a, "CO-45"),
               Line(Account.PAT_AR, 1_500, a, "deductible"), Line(Account.PAT_AR, 500, a, "copay"),
               Line(Account.INS_AR, -10_000, a),
               Line(Account.PAT_AR, 700, b, "coinsurance"), Line(Account.INS_AR, -700, b)])
    lines = {sl.line_id: sl.money for sl in account_selectors.service_lines_list(
        clinic_id=f.clinic_id, guarantor_id=f.guarantor_id)}
    assert lines[a]["pr_deductible"] == 1_500 and lines[a]["pr_copay"] == 500 and lines[b]["pr_coinsurance"] == 700
    assert balances(f).current_balance == 2_700
    ledger.entry_reverse(clinic_id=f.clinic_id, guarantor_id=f.guarantor_id, entry_seq=3, reason="CLP02 22")
    assert balances(f).current_balance == 0
    verified(f.clinic_id)


def test_a_callers_item_in_the_posting_transaction_is_all_or_nothing():
    from chalicelib.core.errors import ConditionFailed
    from chalicelib.store import keys
    from chalicelib.store.models import UniqueItem

    f = factories.family()
    lid = factories.line(f)
    pk = keys.guarantor_pk(f.clinic_id, f.guarantor_id)

    def marker(tx, seq):
        tx.put(UniqueItem(pk, "UQ#TEST#1", owner_sk=f"E#{seq}"), condition=UniqueItem.pk.does_not_exist())

    ledger.entry_post(clinic_id=f.clinic_id, guarantor_id=f.guarantor_id, code=EntryCode.INSURANCE_PAYMENT,
                      lines=[Line(Account.INS_CASH, 100, lid), Line(Account.INS_AR, -100, lid)],
                      source_key="a", also=marker)
    before = factories.collection(f)
    with pytest.raises(ConditionFailed) as err:
        ledger.entry_post(clinic_id=f.clinic_id, guarantor_id=f.guarantor_id, code=EntryCode.INSURANCE_PAYMENT,
                          lines=[Line(Account.INS_CASH, 100, lid), Line(Account.INS_AR, -100, lid)],
                          source_key="b", also=marker)
    assert list(err.value.keys) == ["UQ#TEST#1"]
    assert factories.collection(f) == before


def test_a_payment_can_be_reversed_after_its_line_went_to_collections():
    """Regression (found by the stateful test): the collections block applied to reversals."""
    f = factories.family()
    lid = factories.line(f, billed=1_000, self_pay=True)
    pay = accounts.patient_payment_post(clinic_id=f.clinic_id, guarantor_id=f.guarantor_id, amount_cents=400,
                                        applications={lid: 400}, source_key="receipt:1")
    accounts.collections_transfer(clinic_id=f.clinic_id, guarantor_id=f.guarantor_id, line_id=lid,
                                  amount_cents=600, source_key="coll:1")
    ledger.entry_reverse(clinic_id=f.clinic_id, guarantor_id=f.guarantor_id, entry_seq=pay.seq, reason="chargeback")
    b = balances(f)
    assert (b.current_balance, b.collections_balance) == (400, 600)
    verified(f.clinic_id)


def _statement_item(f: factories.Family, sid: str):
    from chalicelib.core import clock
    from chalicelib.store import keys
    from chalicelib.store.models import StatementItem

    pk = keys.guarantor_pk(f.clinic_id, f.guarantor_id)
    return StatementItem(pk, keys.statement_sk(sid), statement_id=sid, statement_date="2026-11-01",
                         due_date="2026-11-30", account_number=f.guarantor_id, statement_balance=0,
                         amount_due=0, as_of_seq=0, lines=[], created_at=clock.now())


def test_a_snapshot_given_a_stale_balance_read_takes_the_balance_as_it_is_now():
    """A statement run hands the snapshot the balance its page read; a posting since then makes
    that read stale: the balance's version condition refuses it and the retry reads afresh."""
    from chalicelib.store import keys
    from chalicelib.store.models import BalanceItem

    f = factories.family()
    factories.patient_owes(f, 6_000)
    pk = keys.guarantor_pk(f.clinic_id, f.guarantor_id)
    stale = BalanceItem.get(pk, keys.BALANCE, consistent_read=True)
    factories.patient_owes(f, 1_500)
    cents = ledger.statement_snapshot(clinic_id=f.clinic_id, guarantor_id=f.guarantor_id,
                                      statement=_statement_item(f, "st_stale"), balance_read=stale)
    assert cents == 7_500 and balances(f).statement_balance == 7_500
    other = factories.family()
    with pytest.raises(InvalidInput, match="balance_read"):
        ledger.statement_snapshot(clinic_id=other.clinic_id, guarantor_id=other.guarantor_id,
                                  statement=_statement_item(other, "st_x"), balance_read=stale)
    verified(f.clinic_id)
