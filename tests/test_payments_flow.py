"""Online payments end to end on DynamoDB Local with the sandbox: the three phases, receipts in
the day's online batch, auto-post, declines, 3-D Secure, stored cards, wallets, split payments,
office payments, batches and refunds. Every test ends with ledger-verify clean."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from chalice.test import Client

from app import app
from chalicelib.accounts import selectors as account_selectors
from chalicelib.accounts import services as accounts
from chalicelib.core import clock
from chalicelib.core.errors import AlreadyExists, InvalidAmount
from chalicelib.payments import selectors, services
from chalicelib.payments.errors import (
    BatchClosed,
    IdempotencyConflict,
    PaymentInProgress,
    PaymentNotAllowed,
    RefundNotAllowed,
    UnknownCard,
)
from chalicelib.store import keys
from chalicelib.store.db import clinic_scope
from chalicelib.store.models import GuarantorItem
from chalicelib.tenants import services as tenants
from tests import payments_support as ps

pytestmark = pytest.mark.usefixtures("dynamodb_endpoint")
FORM = {"Content-Type": "application/x-www-form-urlencoded"}


@pytest.fixture(autouse=True)
def sandbox():
    yield from ps.fresh_sandbox()


def submit(p: ps.Payer, token: str = "tok_visa", *, choice: str = "other", cents: int | None = 1_000,
           key: str | None = None, **kw):
    return services.payment_attempt_submit(clinic_id=p.clinic_id, guarantor_id=p.guarantor_id,
                                           attempt_key=key or ps.key(), amount_choice=choice, amount_cents=cents,
                                           token=token, **kw)


def test_a_card_payment_posts_once_to_the_oldest_lines_in_the_days_online_batch(request_log):
    p = ps.payer(owes=(6_000, 4_000))
    request_log.reset()
    view = submit(p, cents=7_000)
    assert (view.status, view.card_brand, view.card_last4) == ("succeeded", "visa", "4242")
    assert request_log.operations["TransactWriteItems"] == 2  # the claim, and ONE posting transaction
    [receipt] = selectors.receipts_list(clinic_id=p.clinic_id, guarantor_id=p.guarantor_id)
    assert (receipt.status, receipt.amount_cents, receipt.receipt_id) == ("paid", 7_000, view.receipt_id)
    assert receipt.applied == {p.lines[0]: 6_000, p.lines[1]: 1_000} and receipt.escrow_cents == 0
    assert receipt.batch_id.startswith("online-")
    batch = selectors.batch_get(clinic_id=p.clinic_id, batch_id=receipt.batch_id)
    assert (batch.description, batch.user_id, batch.status) == ("Online payments", "system", "open")
    assert batch.totals is not None and (batch.totals.receipt_count, batch.totals.payments_cents) == (1, 7_000)
    assert ps.balances(p).current_balance == 3_000
    assert len(ps.sandbox().charges) == 1 and len(ps.payment_entries(p)) == 1
    ps.verified(p.clinic_id)


def test_the_business_date_is_the_clinics_local_date_not_utc():
    p = ps.payer(owes=(5_000,))
    clock.set_source(lambda: datetime(2026, 12, 1, 3, 30, tzinfo=UTC))  # 22:30 on Nov 30 in New York
    view = submit(p)
    receipt = selectors.receipt_get(clinic_id=p.clinic_id, guarantor_id=p.guarantor_id, receipt_id=str(view.receipt_id))
    assert (receipt.batch_id, receipt.business_date) == ("online-2026-11-30", "2026-11-30")
    ps.verified(p.clinic_id)


@pytest.mark.parametrize("token,code", [("tok_decline", "card_declined"), ("tok_insufficient", "insufficient_funds"),
                                        ("tok_expired", "expired_card"), ("tok_error", "processing_error")])
def test_a_declined_card_is_an_unsuccessful_receipt_of_zero_and_posts_nothing(token, code):
    p = ps.payer(owes=(5_000,))
    view = submit(p, token)
    assert (view.status, view.decline_code) == ("failed", code)
    assert "another card" in view.message or "try again" in view.message
    [receipt] = selectors.receipts_list(clinic_id=p.clinic_id, guarantor_id=p.guarantor_id)
    assert (receipt.status, receipt.amount_cents) == ("unsuccessful", 0)
    assert ps.balances(p).current_balance == 5_000 and ps.payment_entries(p) == []
    assert submit(p, cents=5_000).status == "succeeded"  # the hold was released
    ps.verified(p.clinic_id)


def test_a_reused_attempt_key_replays_and_a_changed_amount_is_a_conflict():
    p = ps.payer(owes=(5_000,))
    key = ps.key()
    first = submit(p, cents=1_500, key=key)
    assert submit(p, cents=1_500, key=key) == first
    with pytest.raises(IdempotencyConflict):
        submit(p, cents=1_600, key=key)
    assert len(ps.sandbox().charges) == 1 and len(ps.payment_entries(p)) == 1
    ps.verified(p.clinic_id)


def test_current_balance_replay_after_payment_is_the_stored_outcome():
    p = ps.payer(owes=(5_000,))
    key = ps.key()
    first = submit(p, choice="current_balance", cents=None, key=key)
    assert first.amount_cents == 5_000 and ps.balances(p).current_balance == 0
    assert submit(p, choice="current_balance", cents=None, key=key) == first


def test_amount_rules_minimum_balance_prepayment_and_amount_due():
    p = ps.payer(owes=(5_000,), statement=True)
    with pytest.raises(PaymentNotAllowed):
        submit(p, cents=99)
    with pytest.raises(PaymentNotAllowed):
        submit(p, cents=5_001)
    with pytest.raises(InvalidAmount):
        submit(p, cents=-5)
    assert submit(p, choice="amount_due", cents=None).amount_cents == 5_000
    q = ps.payer(owes=(1_000,), settings={"prepayment_allowed": True})
    view = submit(q, cents=2_500)
    receipt = selectors.receipt_get(clinic_id=q.clinic_id, guarantor_id=q.guarantor_id, receipt_id=str(view.receipt_id))
    assert (receipt.applied, receipt.escrow_cents) == ({q.lines[0]: 1_000}, 1_500)  # prepayment lands in escrow
    assert ps.balances(q).unapplied_funds == 1_500
    ps.verified(p.clinic_id)
    ps.verified(q.clinic_id)


def test_auto_post_off_leaves_the_money_in_escrow_and_collections_are_skipped():
    p = ps.payer(owes=(2_000, 3_000), settings={"auto_post": False})
    view = submit(p, cents=2_000)
    receipt = selectors.receipt_get(clinic_id=p.clinic_id, guarantor_id=p.guarantor_id, receipt_id=str(view.receipt_id))
    assert (receipt.applied, receipt.escrow_cents) == ({}, 2_000)
    q = ps.payer(owes=(2_000, 3_000))
    accounts.collections_transfer(clinic_id=q.clinic_id, guarantor_id=q.guarantor_id, line_id=q.lines[0],
                                  amount_cents=2_000, source_key="coll:1")
    view = submit(q, cents=3_000)
    receipt = selectors.receipt_get(clinic_id=q.clinic_id, guarantor_id=q.guarantor_id, receipt_id=str(view.receipt_id))
    assert receipt.applied == {q.lines[1]: 3_000}
    ps.verified(p.clinic_id)
    ps.verified(q.clinic_id)


def test_paying_the_amount_due_resets_the_dunning_count():
    p = ps.payer(owes=(3_000,), statement=True)
    with clinic_scope(p.clinic_id):
        GuarantorItem(keys.guarantor_pk(p.clinic_id, p.guarantor_id), keys.PROFILE).update(
            actions=[GuarantorItem.dunning_count.set(2)])
    submit(p, cents=1_000)
    assert account_selectors.guarantor_summary(clinic_id=p.clinic_id, guarantor_id=p.guarantor_id).dunning_count == 2
    submit(p, choice="amount_due", cents=None)
    assert account_selectors.guarantor_summary(clinic_id=p.clinic_id, guarantor_id=p.guarantor_id).dunning_count == 0
    ps.verified(p.clinic_id)


def test_three_d_secure_challenge_then_success_through_the_return_page():
    p = ps.payer(owes=(4_000,))
    view = submit(p, "tok_3ds", cents=4_000)
    assert view.status == "requires_action" and view.redirect_url and "/sandbox-processor/3ds/" in view.redirect_url
    with Client(app) as c:
        done = c.http.post(ps.path_of(view.redirect_url), headers=FORM, body=b"action=complete")
        assert done.status_code == 303
        page = c.http.get(ps.path_of(done.headers["Location"]))
        assert page.status_code == 200 and b"Payment received" in page.body
    assert ps.balances(p).current_balance == 0 and len(ps.payment_entries(p)) == 1
    ps.verified(p.clinic_id)


def test_stored_cards_store_pay_require_cvv_and_remove():
    p = ps.payer(owes=(9_000,), settings={"stored_cards": True, "require_cvv": False})
    submit(p, cents=1_000, store_card=True)
    [card] = selectors.stored_cards_list(clinic_id=p.clinic_id, guarantor_id=p.guarantor_id)
    assert (card.brand, card.last4, card.active) == ("visa", "4242", True)
    paid = services.payment_attempt_submit(clinic_id=p.clinic_id, guarantor_id=p.guarantor_id, attempt_key=ps.key(),
                                           amount_choice="other", amount_cents=2_000, card_id=card.card_id)
    assert paid.status == "succeeded"
    services.card_remove(clinic_id=p.clinic_id, guarantor_id=p.guarantor_id, card_id=card.card_id)
    assert selectors.stored_cards_list(clinic_id=p.clinic_id, guarantor_id=p.guarantor_id) == []
    with pytest.raises(UnknownCard):
        services.payment_attempt_submit(clinic_id=p.clinic_id, guarantor_id=p.guarantor_id, attempt_key=ps.key(),
                                        amount_choice="other", amount_cents=2_000, card_id=card.card_id)
    ps.verified(p.clinic_id)


def test_require_cvv_recollects_the_code_on_the_processors_page():
    p = ps.payer(owes=(9_000,), settings={"stored_cards": True, "require_cvv": True})
    card = services.card_store(clinic_id=p.clinic_id, guarantor_id=p.guarantor_id, token="tok_mastercard")
    assert (card.brand, card.last4) == ("mastercard", "4444")
    with pytest.raises(PaymentNotAllowed):
        services.payment_attempt_submit(clinic_id=p.clinic_id, guarantor_id=p.guarantor_id, attempt_key=ps.key(),
                                        amount_choice="other", amount_cents=1_000, card_id=card.card_id)
    view = services.payment_attempt_start(clinic_id=p.clinic_id, guarantor_id=p.guarantor_id, attempt_key=ps.key(),
                                          amount_choice="other", amount_cents=1_000, card_id=card.card_id)
    with Client(app) as c:
        page = c.http.get(ps.path_of(str(view.redirect_url)))
        assert b"Security code" in page.body and b"card_number" not in page.body and b"4444" in page.body
        done = c.http.post(ps.path_of(str(view.redirect_url)), headers=FORM, body=b"cvc=123")
        c.http.get(ps.path_of(done.headers["Location"]))
    assert ps.balances(p).current_balance == 8_000
    ps.verified(p.clinic_id)


def test_wallets_follow_the_group_and_never_split():
    p = ps.payer(owes=(3_000,), settings={"google_pay": True})
    assert submit(p, "tok_google_pay", method="google_pay").status == "succeeded"
    with pytest.raises(PaymentNotAllowed):
        submit(p, "tok_apple_pay", method="apple_pay")
    ps.verified(p.clinic_id)


def test_split_payment_is_one_transaction_per_merchant_account():
    p = ps.payer(owes=(2_000,), settings={"split_payments": "facility"})
    other = tenants.facility_create(clinic_id=p.clinic_id, name="Annex")
    accounts.service_line_charge(clinic_id=p.clinic_id, guarantor_id=p.guarantor_id, encounter_number="S1",
                                 line_number=1, patient_id=p.patient_id, date_of_service="2026-05-01",
                                 procedure_code="99213", billed_cents=3_000, facility_id=other, self_pay=True)
    services.payments_config_set(clinic_id=p.clinic_id, processor="sandbox", account_id="acct_main",
                                 facility_accounts={other: "acct_annex"})
    views = services.payment_split_submit(clinic_id=p.clinic_id, guarantor_id=p.guarantor_id, attempt_key="split-1",
                                          token="tok_visa", parts={p.facility_id: 2_000, other: 3_000})
    assert [v.status for v in views] == ["succeeded", "succeeded"]
    expected = {p.facility_id: "acct_main", other: "acct_annex"}
    for view, facility in zip(views, sorted(expected), strict=True):
        found = ps.sandbox().payment_retrieve(reference=str(view.processor_reference), account_id=expected[facility])
        assert found.outcome == "succeeded"  # charged on that facility's own merchant account
    receipts = selectors.receipts_list(clinic_id=p.clinic_id, guarantor_id=p.guarantor_id)
    assert {tuple(r.applied.items()) for r in receipts} == {((p.lines[0], 2_000),), (("S1-1", 3_000),)}
    assert ps.balances(p).current_balance == 0 and len(ps.sandbox().charges) == 2
    with pytest.raises(PaymentNotAllowed):
        services.payment_attempt_submit(clinic_id=p.clinic_id, guarantor_id=p.guarantor_id, attempt_key=ps.key(),
                                        amount_choice="other", amount_cents=100, token="tok_apple_pay",
                                        method="apple_pay")
    ps.verified(p.clinic_id)


def test_office_cash_and_check_payments_go_into_the_users_open_batch():
    p = ps.payer(owes=(5_000, 2_000))
    with pytest.raises(BatchClosed):
        services.office_payment_post(clinic_id=p.clinic_id, guarantor_id=p.guarantor_id, user_id="u_1",
                                     amount_cents=1_000, method="cash", receipt_key="rk1")
    batch = services.batch_open(clinic_id=p.clinic_id, user_id="u_1", description="Front desk")
    with pytest.raises(AlreadyExists):
        services.batch_open(clinic_id=p.clinic_id, user_id="u_1")
    cash = services.office_payment_post(clinic_id=p.clinic_id, guarantor_id=p.guarantor_id, user_id="u_1",
                                        amount_cents=1_000, method="cash", receipt_key="rk1")
    again = services.office_payment_post(clinic_id=p.clinic_id, guarantor_id=p.guarantor_id, user_id="u_1",
                                         amount_cents=1_000, method="cash", receipt_key="rk1")
    assert cash == again and cash.batch_id == batch.batch_id and cash.applied == {p.lines[0]: 1_000}
    copay = services.office_payment_post(clinic_id=p.clinic_id, guarantor_id=p.guarantor_id, user_id="u_1",
                                         amount_cents=2_500, method="check", receipt_key="rk2", channel="mail",
                                         check_number="1001", copay_cents=2_500)
    assert (copay.applied, copay.escrow_cents) == ({}, 2_500)  # E4: a copay amount blocks auto-post
    closed = services.batch_close(clinic_id=p.clinic_id, batch_id=batch.batch_id, user_id="u_1")
    assert closed.status == "closed" and closed.totals is not None
    assert (closed.totals.receipt_count, closed.totals.payments_cents) == (2, 3_500)
    with pytest.raises(BatchClosed):
        services.office_payment_post(clinic_id=p.clinic_id, guarantor_id=p.guarantor_id, user_id="u_1",
                                     amount_cents=1_000, method="cash", receipt_key="rk3")
    assert services.batch_reopen(clinic_id=p.clinic_id, batch_id=batch.batch_id, user_id="u_2").status == "open"
    services.batch_close(clinic_id=p.clinic_id, batch_id=batch.batch_id, user_id="u_1")
    assert services.batch_lock(clinic_id=p.clinic_id, batch_id=batch.batch_id, user_id="u_1").status == "locked"
    with pytest.raises(BatchClosed):
        services.batch_reopen(clinic_id=p.clinic_id, batch_id=batch.batch_id, user_id="u_1")
    services.batch_archive(clinic_id=p.clinic_id, batch_id=batch.batch_id, user_id="u_1")
    assert batch.batch_id not in [b.batch_id for b in selectors.batches_list(clinic_id=p.clinic_id)]
    assert batch.batch_id in [b.batch_id for b in selectors.batches_list(clinic_id=p.clinic_id, include_archived=True)]
    assert services.batch_verify(clinic_id=p.clinic_id, batch_id=batch.batch_id) == []
    ps.verified(p.clinic_id)


def test_office_card_payment_goes_through_the_hosted_page_into_the_staff_batch():
    p = ps.payer(owes=(5_000,))
    batch = services.batch_open(clinic_id=p.clinic_id, user_id="u_9")
    view = services.office_card_payment_start(clinic_id=p.clinic_id, guarantor_id=p.guarantor_id, user_id="u_9",
                                              attempt_key=ps.key(), amount_cents=5_000)
    with Client(app) as c:
        done = c.http.post(ps.path_of(str(view.redirect_url)), headers=FORM,
                           body=b"card_number=4242424242424242&expiry=12%2F39&cvc=123")
        c.http.get(ps.path_of(done.headers["Location"]))
    [receipt] = selectors.receipts_list(clinic_id=p.clinic_id, guarantor_id=p.guarantor_id)
    assert (receipt.batch_id, receipt.channel, receipt.user_id) == (batch.batch_id, "office", "u_9")
    ps.verified(p.clinic_id)


def test_a_closed_online_batch_sends_later_payments_to_the_next_day_with_the_original_date():
    p = ps.payer(owes=(9_000,))
    first = submit(p)
    receipt = selectors.receipt_get(clinic_id=p.clinic_id, guarantor_id=p.guarantor_id,
                                    receipt_id=str(first.receipt_id))
    closed = services.batch_close(clinic_id=p.clinic_id, batch_id=receipt.batch_id, user_id="u_1")
    assert closed.totals is not None and closed.totals.receipt_count == 1
    later = submit(p)
    moved = selectors.receipt_get(clinic_id=p.clinic_id, guarantor_id=p.guarantor_id, receipt_id=str(later.receipt_id))
    assert moved.batch_id != receipt.batch_id and moved.original_date == receipt.business_date
    assert services.batch_verify(clinic_id=p.clinic_id, batch_id=receipt.batch_id) == []
    # the processor settled both today; the later one is in the next batch, which staff see:
    assert services.batch_reconcile(clinic_id=p.clinic_id, batch_id=receipt.batch_id) == [
        f"settled but not in the batch: {later.processor_reference}"]
    ps.verified(p.clinic_id)


def test_an_evening_payment_reconciles_with_its_business_day_not_the_next_utc_day():
    """The batch's business date is the clinic's local date; the processor was asked for the
    UTC date, so every payment after 19:00 in New York (00:00 UTC) showed as a mismatch (CI
    caught it running after midnight UTC). Regression: reconcile asks for the local day."""
    p = ps.payer(owes=(9_000,))
    clock.set_source(lambda: datetime(2026, 12, 2, 1, 30, tzinfo=UTC))  # 20:30 on Dec 1 in New York
    paid = submit(p)
    receipt = selectors.receipt_get(clinic_id=p.clinic_id, guarantor_id=p.guarantor_id, receipt_id=str(paid.receipt_id))
    assert receipt.business_date == "2026-12-01"
    assert services.batch_reconcile(clinic_id=p.clinic_id, batch_id=receipt.batch_id) == []
    clock.set_source(lambda: datetime(2026, 12, 2, 15, 0, tzinfo=UTC))  # the next local day
    later = submit(p)
    assert services.batch_reconcile(clinic_id=p.clinic_id, batch_id=receipt.batch_id) == []  # not in Dec 1
    next_day = selectors.receipt_get(clinic_id=p.clinic_id, guarantor_id=p.guarantor_id,
                                     receipt_id=str(later.receipt_id)).batch_id
    assert services.batch_reconcile(clinic_id=p.clinic_id, batch_id=next_day) == []
    ps.verified(p.clinic_id)


def test_full_partial_and_void_refunds_create_patient_refund_receipts_and_reverse_postings():
    p = ps.payer(owes=(6_000, 4_000))
    paid = submit(p, cents=10_000)
    assert ps.balances(p).current_balance == 0
    part = services.refund_issue(clinic_id=p.clinic_id, guarantor_id=p.guarantor_id, receipt_id=str(paid.receipt_id),
                                 amount_cents=3_000, refund_key="rf-1", user_id="u_1", reason="overpaid")
    assert part.status == "succeeded"
    assert ps.balances(p).current_balance == 3_000  # newest line un-applied first
    with pytest.raises(RefundNotAllowed):
        services.refund_issue(clinic_id=p.clinic_id, guarantor_id=p.guarantor_id, receipt_id=str(paid.receipt_id),
                              amount_cents=7_001, refund_key="rf-2", user_id="u_1")
    rest = services.refund_issue(clinic_id=p.clinic_id, guarantor_id=p.guarantor_id, receipt_id=str(paid.receipt_id),
                                 amount_cents=7_000, refund_key="rf-3", user_id="u_1")
    assert rest.status == "succeeded" and ps.balances(p).current_balance == 10_000
    receipts = {r.receipt_id: r for r in selectors.receipts_list(clinic_id=p.clinic_id, guarantor_id=p.guarantor_id)}
    assert receipts[str(paid.receipt_id)].status == "refunded"
    refunds = [r for r in receipts.values() if r.receipt_type == "patient_refund"]
    assert sorted(r.amount_cents for r in refunds) == [3_000, 7_000]
    assert all(r.original_receipt_id == paid.receipt_id for r in refunds)
    assert selectors.attempt_get(clinic_id=p.clinic_id, guarantor_id=p.guarantor_id,
                                 attempt_key=paid.attempt_key).status == "refunded"
    assert [c for _, c in ps.sandbox().refunds_for(str(paid.processor_reference))] == [3_000, 7_000]
    second = submit(p, cents=2_000)
    void = services.refund_issue(clinic_id=p.clinic_id, guarantor_id=p.guarantor_id,
                                 receipt_id=str(second.receipt_id), amount_cents=2_000, refund_key="rf-4",
                                 user_id="u_1", void=True)
    assert void.status == "succeeded"
    assert selectors.receipt_get(clinic_id=p.clinic_id, guarantor_id=p.guarantor_id,
                                 receipt_id=str(second.receipt_id)).status == "voided"
    ps.verified(p.clinic_id)


def _start_page(p: ps.Payer):
    return services.payment_attempt_start(clinic_id=p.clinic_id, guarantor_id=p.guarantor_id, attempt_key=ps.key(),
                                          amount_choice="current_balance")


def test_a_card_page_left_unpaid_gives_way_to_a_new_payment_of_the_balance():
    """A guarantor who left the card page and comes back later is not told "already being
    processed" for the page's 15 minutes: a page unpaid for 2 minutes is canceled at the
    processor when a new payment needs its hold (R31: one payable page at a time)."""
    p = ps.payer(owes=(5_000,))
    at = datetime(2026, 12, 1, 17, 0, tzinfo=UTC)
    clock.set_source(lambda: at)
    first = _start_page(p)
    assert first.status == "processing" and first.redirect_url
    at = datetime(2026, 12, 1, 17, 1, tzinfo=UTC)  # a minute later it still holds (a second tab: T2)
    with pytest.raises(PaymentInProgress):
        _start_page(p)
    at = datetime(2026, 12, 1, 17, 3, tzinfo=UTC)
    second = _start_page(p)
    assert second.status == "processing" and second.redirect_url and second.amount_cents == 5_000
    old = selectors.attempt_get(clinic_id=p.clinic_id, guarantor_id=p.guarantor_id, attempt_key=first.attempt_key)
    assert old.status == "canceled"
    assert ps.sandbox().page_view(str(first.processor_reference))["status"] == "canceled"
    with pytest.raises(PaymentInProgress):  # the new page holds the balance in turn
        _start_page(p)
    ps.verified(p.clinic_id)


def test_a_page_paid_just_before_the_new_payment_posts_and_the_new_one_is_refused():
    p = ps.payer(owes=(5_000,))
    at = datetime(2026, 12, 1, 17, 0, tzinfo=UTC)
    clock.set_source(lambda: at)
    first = _start_page(p)
    ps.sandbox().page_submit(str(first.processor_reference), {"card_number": "4242424242424242", "expiry": "12/30",
                                                              "cvc": "123", "postal": "10001"})
    at = datetime(2026, 12, 1, 17, 5, tzinfo=UTC)  # the return to our site never happened
    with pytest.raises(PaymentNotAllowed, match="no balance"):
        _start_page(p)
    paid = selectors.attempt_get(clinic_id=p.clinic_id, guarantor_id=p.guarantor_id, attempt_key=first.attempt_key)
    assert paid.status == "succeeded" and ps.balances(p).current_balance == 0
    assert len(ps.sandbox().charges) == 1
    ps.verified(p.clinic_id)


def test_cash_refund_needs_no_processor():
    p = ps.payer(owes=(5_000,))
    services.batch_open(clinic_id=p.clinic_id, user_id="u_1")
    cash = services.office_payment_post(clinic_id=p.clinic_id, guarantor_id=p.guarantor_id, user_id="u_1",
                                        amount_cents=5_000, method="cash", receipt_key="c1")
    refund = services.refund_issue(clinic_id=p.clinic_id, guarantor_id=p.guarantor_id, receipt_id=cash.receipt_id,
                                   amount_cents=5_000, refund_key="crf", user_id="u_1")
    assert refund.status == "succeeded" and ps.balances(p).current_balance == 5_000
    ps.verified(p.clinic_id)


def test_two_tabs_cannot_both_pay_the_same_balance():
    """T2 / R31 (sequential form): a hosted page in progress holds the balance."""
    p = ps.payer(owes=(5_000,))
    first = services.payment_attempt_start(clinic_id=p.clinic_id, guarantor_id=p.guarantor_id, attempt_key=ps.key(),
                                           amount_choice="current_balance")
    assert first.status == "processing" and first.redirect_url
    with pytest.raises(PaymentInProgress):
        services.payment_attempt_start(clinic_id=p.clinic_id, guarantor_id=p.guarantor_id, attempt_key=ps.key(),
                                       amount_choice="current_balance")
    ps.verified(p.clinic_id)


# --- abandoned pages under pressure (review) --------------------------------------------------------

CARD = {"card_number": "4242424242424242", "expiry": "12/30", "cvc": "123", "postal": "10001"}
CARD_3DS = {"card_number": "4000002500003155", "expiry": "12/30", "cvc": "123", "postal": "10001"}


def _attempt(p: ps.Payer, key: str):
    return selectors.attempt_get(clinic_id=p.clinic_id, guarantor_id=p.guarantor_id, attempt_key=key)


def test_two_new_payments_at_once_after_an_abandoned_page_leave_one_payable_page():
    import threading

    p = ps.payer(owes=(5_000,))
    at = datetime(2026, 12, 1, 17, 0, tzinfo=UTC)
    clock.set_source(lambda: at)
    first = _start_page(p)
    at = datetime(2026, 12, 1, 17, 3, tzinfo=UTC)
    out: list[object] = []
    barrier = threading.Barrier(3)

    def start():
        barrier.wait()
        try:
            out.append(_start_page(p))
        except Exception as exc:  # the outcome is what is checked
            out.append(exc)

    threads = [threading.Thread(target=start) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    pages = [o for o in out if not isinstance(o, Exception)]
    assert len(pages) == 1, out
    assert all(isinstance(o, PaymentInProgress) for o in out if isinstance(o, Exception)), out
    assert _attempt(p, first.attempt_key).status == "canceled"
    for page in [first, *pages]:  # the guarantor pays every page still open in the browser
        ps.sandbox().page_submit(str(page.processor_reference), CARD)
    assert len(ps.sandbox().charges) == 1
    ps.verified(p.clinic_id)


def test_an_abandoned_page_paid_at_the_moment_of_its_cancel_posts_and_the_new_payment_is_refused(monkeypatch):
    p = ps.payer(owes=(5_000,))
    at = datetime(2026, 12, 1, 17, 0, tzinfo=UTC)
    clock.set_source(lambda: at)
    first = _start_page(p)
    at = datetime(2026, 12, 1, 17, 3, tzinfo=UTC)
    box = ps.sandbox()
    real_cancel = box.payment_cancel

    def paid_first(**kw):
        box.page_submit(str(first.processor_reference), CARD)  # the guarantor's click wins the race
        return real_cancel(**kw)

    monkeypatch.setattr(box, "payment_cancel", paid_first)
    with pytest.raises(PaymentNotAllowed, match="no balance"):
        _start_page(p)
    assert _attempt(p, first.attempt_key).status == "succeeded" and ps.balances(p).current_balance == 0
    assert len(box.charges) == 1
    ps.verified(p.clinic_id)


def test_a_page_waiting_on_3d_secure_that_we_recorded_is_abandoned_like_any_unpaid_page():
    """A hosted page where the card went into a 3-D Secure challenge nobody finished: whether or
    not we have recorded the ``requires_action`` state yet (webhook / return page), a new payment
    after two minutes cancels it, and only one charge can happen."""
    p = ps.payer(owes=(5_000,))
    at = datetime(2026, 12, 1, 17, 0, tzinfo=UTC)
    clock.set_source(lambda: at)
    first = _start_page(p)
    box = ps.sandbox()
    box.page_submit(str(first.processor_reference), CARD_3DS)
    recorded = services.payment_attempt_complete(clinic_id=p.clinic_id, guarantor_id=p.guarantor_id,
                                                 attempt_key=first.attempt_key)
    assert recorded.status == "requires_action"
    at = datetime(2026, 12, 1, 17, 3, tzinfo=UTC)
    second = _start_page(p)
    assert second.status == "processing" and second.redirect_url
    assert _attempt(p, first.attempt_key).status == "canceled"
    box.challenge_submit(str(first.processor_reference), passed=True)  # too late: canceled there
    box.page_submit(str(second.processor_reference), CARD)
    assert len(box.charges) == 1
    ps.verified(p.clinic_id)


def test_a_page_in_a_3d_secure_challenge_not_yet_recorded_is_canceled_and_charges_once():
    p = ps.payer(owes=(5_000,))
    at = datetime(2026, 12, 1, 17, 0, tzinfo=UTC)
    clock.set_source(lambda: at)
    first = _start_page(p)
    box = ps.sandbox()
    box.page_submit(str(first.processor_reference), CARD_3DS)  # no webhook, no return yet
    at = datetime(2026, 12, 1, 17, 3, tzinfo=UTC)
    second = _start_page(p)
    assert _attempt(p, first.attempt_key).status == "canceled"
    box.challenge_submit(str(first.processor_reference), passed=True)
    box.page_submit(str(second.processor_reference), CARD)
    assert len(box.charges) == 1
    ps.verified(p.clinic_id)


def test_an_abandoned_portal_page_gives_way_to_a_staff_office_payment():
    p = ps.payer(owes=(5_000,))
    at = datetime(2026, 12, 1, 17, 0, tzinfo=UTC)
    clock.set_source(lambda: at)
    first = _start_page(p)
    services.batch_open(clinic_id=p.clinic_id, user_id="u_1")
    at = datetime(2026, 12, 1, 17, 3, tzinfo=UTC)
    office = services.office_card_payment_start(clinic_id=p.clinic_id, guarantor_id=p.guarantor_id, user_id="u_1",
                                                attempt_key=ps.key(), amount_cents=5_000)
    assert office.status == "processing" and office.redirect_url
    assert _attempt(p, first.attempt_key).status == "canceled"
    ps.sandbox().page_submit(str(first.processor_reference), CARD)
    ps.sandbox().page_submit(str(office.processor_reference), CARD)
    assert len(ps.sandbox().charges) == 1
    ps.verified(p.clinic_id)
