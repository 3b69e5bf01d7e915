"""Real threads against DynamoDB Local (SECURITY.md T1, T2, R38; SERVERLESS-PERF-REL.md R2):
one charge and one posting per payment, one batch per clinic and day, no over-collection."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

import pytest

from chalicelib.core import clock
from chalicelib.core.errors import ConcurrentPosting, DomainError, TryAgainLater
from chalicelib.payments import selectors, services
from chalicelib.payments.errors import PaymentInProgress, RefundNotAllowed
from chalicelib.store import keys
from chalicelib.store.models_payments import BatchItem
from tests import payments_support as ps

pytestmark = pytest.mark.usefixtures("dynamodb_endpoint")


@pytest.fixture(autouse=True)
def sandbox():
    yield from ps.fresh_sandbox()


def submit(p: ps.Payer, key: str, cents: int | None, token: str = "tok_visa", choice: str = "other"):
    return services.payment_attempt_submit(clinic_id=p.clinic_id, guarantor_id=p.guarantor_id, attempt_key=key,
                                           amount_choice=choice, amount_cents=cents, token=token)


def test_t1_fifty_concurrent_submissions_of_one_payment_charge_and_post_once():
    p = ps.payer(owes=(5_000,))
    key = ps.key()

    def one(_: int) -> str:
        try:
            view = submit(p, key, 5_000)
        except PaymentInProgress:
            return "in_progress"
        return f"{view.status}:{view.receipt_id}"

    with ThreadPoolExecutor(max_workers=50) as pool:
        outcomes = list(pool.map(one, range(50)))
    done = {o for o in outcomes if o != "in_progress"}
    final = selectors.attempt_get(clinic_id=p.clinic_id, guarantor_id=p.guarantor_id, attempt_key=key)
    assert done <= {f"succeeded:{final.receipt_id}"}  # every answer is the same payment, or 409 in progress
    assert final.status == "succeeded"
    assert len(ps.sandbox().charges) == 1 and len(ps.payment_entries(p)) == 1
    assert ps.balances(p).current_balance == 0
    ps.verified(p.clinic_id)


def test_t2_ten_tabs_with_different_keys_pay_the_balance_at_most_once():
    p = ps.payer(owes=(5_000,))

    def one(_: int) -> str:
        try:
            return submit(p, ps.key(), None, choice="current_balance").status
        except (PaymentInProgress, DomainError) as exc:
            return type(exc).__name__

    with ThreadPoolExecutor(max_workers=10) as pool:
        outcomes = list(pool.map(one, range(10)))
    assert outcomes.count("succeeded") == 1, outcomes
    assert len(ps.sandbox().charges) == 1 and ps.balances(p).current_balance == 0
    assert ps.balances(p).unapplied_funds == 0  # no over-collection
    ps.verified(p.clinic_id)


def test_fifty_concurrent_first_payments_of_a_day_open_one_batch_and_post_fifty():
    """R2 (distinct guarantors, no shared item) and the batch opened once by conditional put."""
    first = ps.payer(owes=(1_000,))
    payers = [first] + [ps.payer(owes=(1_000,), clinic_id=first.clinic_id) for _ in range(49)]
    clock.set_source(lambda: datetime(2027, 3, 9, 15, 0, tzinfo=UTC))  # a day with no batch yet

    with ThreadPoolExecutor(max_workers=50) as pool:
        outcomes = list(pool.map(lambda p: submit(p, ps.key(), 1_000).status, payers))
    assert outcomes == ["succeeded"] * 50
    batches = [b for b in selectors.batches_list(clinic_id=first.clinic_id) if b.business_date == "2027-03-09"]
    assert [b.batch_id for b in batches] == ["online-2027-03-09"]
    view = selectors.batch_get(clinic_id=first.clinic_id, batch_id="online-2027-03-09")
    assert view.totals is not None and (view.totals.receipt_count, view.totals.payments_cents) == (50, 50_000)
    assert BatchItem.get(keys.clinic_pk(first.clinic_id), keys.batch_sk("online-2027-03-09")).status == "open"
    ps.verified(first.clinic_id)


def test_r2_fifty_successful_attempts_of_one_guarantor_post_together_from_the_queue():
    """The charges' answers were lost; their webhooks arrive together: all 50 post exactly once
    (conflicts retried with jitter, then by redelivery), balance = sum of entries."""
    p = ps.payer(owes=(50_000,))
    keys_ = [ps.key() for _ in range(50)]
    for k in keys_:
        assert submit(p, k, 1_000, token="tok_lost").status == "processing"
    recorded = []
    for event in list(ps.sandbox().outbox):
        body = __import__("json").dumps(event).encode()
        parsed = ps.sandbox().parse_webhook(payload=body, headers={"Sandbox-Signature": ps.sandbox().sign(body)})
        recorded.append(services.processor_event_record(event=parsed))
    pending = list(recorded)
    for _ in range(10):  # SQS redelivery rounds
        def handle(r: services.RecordedEvent) -> services.RecordedEvent | None:
            try:
                services.processor_event_handle(clinic_id=r.clinic_id, processor=r.processor, event_id=r.event_id)
            except (TryAgainLater, PaymentInProgress, ConcurrentPosting):
                return r
            return None

        with ThreadPoolExecutor(max_workers=50) as pool:
            pending = [r for r in pool.map(handle, pending) if r is not None]
        if not pending:
            break
    assert pending == []
    assert len(ps.payment_entries(p)) == 50 and len(ps.sandbox().charges) == 50
    assert ps.balances(p).current_balance == 0
    ps.verified(p.clinic_id)


def test_r38_twenty_concurrent_full_refunds_refund_once():
    p = ps.payer(owes=(4_000,))
    paid = submit(p, ps.key(), 4_000)

    def refund(i: int) -> str:
        try:
            return services.refund_issue(clinic_id=p.clinic_id, guarantor_id=p.guarantor_id,
                                         receipt_id=str(paid.receipt_id), amount_cents=4_000, refund_key=f"rf-{i}",
                                         user_id=f"u_{i % 2}").status
        except (RefundNotAllowed, TryAgainLater) as exc:
            return type(exc).__name__

    with ThreadPoolExecutor(max_workers=20) as pool:
        outcomes = list(pool.map(refund, range(20)))
    assert outcomes.count("succeeded") == 1, outcomes
    assert len(ps.sandbox().refunds_for(str(paid.processor_reference))) == 1
    refunds = [r for r in selectors.receipts_list(clinic_id=p.clinic_id, guarantor_id=p.guarantor_id)
               if r.receipt_type == "patient_refund"]
    assert [r.amount_cents for r in refunds] == [4_000]
    ps.verified(p.clinic_id)
