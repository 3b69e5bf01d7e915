"""Faults (SECURITY.md T4, T5; SERVERLESS-PERF-REL.md R3, R4, R5): a crash at each phase
boundary, processor faults, DynamoDB answers lost after commit, injected DynamoDB errors. Each
ends, after the client's retry, the webhooks and the completer, with exactly one charge and one
posting per payment, no attempt left pending, and ledger-verify clean."""

from __future__ import annotations

from datetime import timedelta

import pytest
from chalice.test import Client

from app import app
from chalicelib.core import clock
from chalicelib.core.errors import DomainError, TryAgainLater
from chalicelib.payments import faults, selectors, services
from chalicelib.payments.errors import PaymentInProgress
from chalicelib.payments.processors.sandbox import SandboxFaults
from chalicelib.store import keys
from chalicelib.store.db import clinic_scope
from chalicelib.store.models_payments import AttemptItem
from tests import payments_support as ps

pytestmark = pytest.mark.usefixtures("dynamodb_endpoint")
PAYMENT_PATH = ("attempt.before_record", "attempt.after_record", "attempt.after_claim", "processor.after_call",
                "posting.after_commit")


@pytest.fixture(autouse=True)
def sandbox():
    yield from ps.fresh_sandbox()


@pytest.fixture
def dynamo_faults():
    injected = ps.DynamoFaults(seed=7)
    yield injected
    injected.clear()


def advance(seconds: int) -> None:
    now = clock.now()
    clock.set_source(lambda: now + timedelta(seconds=seconds))


def submit(p: ps.Payer, key: str, cents: int = 3_000, token: str = "tok_visa"):
    return services.payment_attempt_submit(clinic_id=p.clinic_id, guarantor_id=p.guarantor_id, attempt_key=key,
                                           amount_choice="other", amount_cents=cents, token=token)


def retry_until_done(p: ps.Payer, key: str, cents: int = 3_000, token: str = "tok_visa", tries: int = 8):
    """The browser retrying with the same attempt key (after a 503/409, a crash, a reload)."""
    for _ in range(tries):
        try:
            view = submit(p, key, cents, token)
        except (TryAgainLater, PaymentInProgress):
            advance(40)  # a crashed driver's lease runs out
            continue
        if view.status != "processing":
            return view
        advance(40)
    return selectors.attempt_get(clinic_id=p.clinic_id, guarantor_id=p.guarantor_id, attempt_key=key)


def recover(p: ps.Payer) -> None:
    """Webhooks delivered, then the completer after the stuck threshold."""
    with Client(app) as c:
        ps.deliver_webhooks(c)
    advance(600)
    services.payment_attempts_complete_stuck(clinic_id=p.clinic_id)


def pending(p: ps.Payer) -> list[str]:
    with clinic_scope(p.clinic_id):
        return [a.attempt_key for a in AttemptItem.gsi1.query(keys.attempts_pending_gsi1pk(p.clinic_id))]


def exactly_once(p: ps.Payer, payments: int = 1) -> None:
    assert len(ps.sandbox().charges) == payments
    assert len(ps.payment_entries(p)) == payments
    assert pending(p) == []
    assert ps.sandbox().idempotency_violations == []
    ps.verified(p.clinic_id)


@pytest.mark.parametrize("point", PAYMENT_PATH)
def test_t4_crash_at_each_boundary_then_retry_and_completer(point):
    p = ps.payer(owes=(3_000,))
    key = ps.key()
    faults.arm(point)
    with pytest.raises(faults.CrashInjected):
        submit(p, key)
    view = retry_until_done(p, key)
    recover(p)
    final = selectors.attempt_get(clinic_id=p.clinic_id, guarantor_id=p.guarantor_id, attempt_key=key)
    assert view.status == final.status == "succeeded"  # never a visible failure for a charge that succeeded
    exactly_once(p)


@pytest.mark.parametrize("point", PAYMENT_PATH[2:4])
def test_t4_crash_without_a_client_retry_is_finished_by_the_completer(point):
    p = ps.payer(owes=(3_000,))
    key = ps.key()
    faults.arm(point)
    with pytest.raises(faults.CrashInjected):
        submit(p, key)
    recover(p)
    status = selectors.attempt_get(clinic_id=p.clinic_id, guarantor_id=p.guarantor_id, attempt_key=key).status
    charged = len(ps.sandbox().charges)
    assert (status, charged) in {("succeeded", 1), ("canceled", 0)}
    assert len(ps.payment_entries(p)) == charged and pending(p) == []
    ps.verified(p.clinic_id)


def test_t4_webhook_crashes_after_record_and_after_handle_are_redelivered():
    p = ps.payer(owes=(3_000,))
    key = ps.key()
    assert submit(p, key, token="tok_lost").status == "processing"
    events = list(ps.sandbox().outbox)
    with Client(app) as c:
        for point in ("webhook.after_record", "webhook.after_handle"):
            faults.arm(point)
            ps.sandbox().outbox = list(events)
            with pytest.raises(faults.CrashInjected):
                ps.deliver_webhooks(c)
        ps.sandbox().outbox = list(events)
        advance(120)  # the handler's lease on the event runs out; the processor redelivers
        assert set(ps.deliver_webhooks(c, twice=True)) == {200}
    exactly_once(p)


def test_refund_crash_after_the_processor_then_retry_refunds_once():
    p = ps.payer(owes=(3_000,))
    paid = submit(p, ps.key())
    faults.arm("refund.after_processor")
    args = dict(clinic_id=p.clinic_id, guarantor_id=p.guarantor_id, receipt_id=str(paid.receipt_id),
                amount_cents=1_000, refund_key="rf-crash", user_id="u_1")
    with pytest.raises(faults.CrashInjected):
        services.refund_issue(**args)
    assert services.refund_issue(**args).status == "succeeded"
    assert len(ps.sandbox().refunds_for(str(paid.processor_reference))) == 1
    assert ps.balances(p).current_balance == 1_000
    ps.verified(p.clinic_id)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_t5_processor_faults_end_exactly_once(seed):
    """500, 429, connection resets and timeouts after charging at up to 30%: bounded retries,
    the same idempotency key with the same parameters (the sandbox asserts it), one charge each."""
    p = ps.payer(owes=(30_000,))
    ps.sandbox().faults = SandboxFaults(server_error=0.1, rate_limited=0.1, connection_reset=0.1,
                                        timeout_after=0.3, seed=seed)
    keys_ = [ps.key() for _ in range(6)]
    for k in keys_:
        retry_until_done(p, k, cents=1_000)
    ps.sandbox().faults = SandboxFaults()
    recover(p)
    statuses = {selectors.attempt_get(clinic_id=p.clinic_id, guarantor_id=p.guarantor_id, attempt_key=k).status
                for k in keys_}
    charged = len(ps.sandbox().charges)
    assert statuses <= {"succeeded", "canceled"}
    assert charged == sum(1 for k in keys_ if selectors.attempt_get(
        clinic_id=p.clinic_id, guarantor_id=p.guarantor_id, attempt_key=k).status == "succeeded")
    exactly_once(p, payments=charged)


@pytest.mark.parametrize("operation,skip", [("PutItem", 0), ("TransactWriteItems", 0), ("TransactWriteItems", 1)])
def test_r4_answer_lost_after_commit_is_already_done_on_retry(dynamo_faults, operation, skip):
    """The write commits, its answer is lost: the retry path finds it done; 0 double postings."""
    p = ps.payer(owes=(3_000,))
    key = ps.key()
    dynamo_faults.timeout_after(operation, skip=skip)
    view = retry_until_done(p, key)
    assert dynamo_faults.injected == 1
    dynamo_faults.clear()
    recover(p)
    assert selectors.attempt_get(clinic_id=p.clinic_id, guarantor_id=p.guarantor_id,
                                 attempt_key=key).status == view.status == "succeeded"
    exactly_once(p)


def test_r4_update_answer_lost_on_the_hosted_page_start(dynamo_faults):
    p = ps.payer(owes=(3_000,))
    key = ps.key()
    dynamo_faults.timeout_after("UpdateItem")
    with pytest.raises(TryAgainLater):
        services.payment_attempt_start(clinic_id=p.clinic_id, guarantor_id=p.guarantor_id, attempt_key=key,
                                       amount_choice="current_balance")
    dynamo_faults.clear()
    view = services.payment_attempt_start(clinic_id=p.clinic_id, guarantor_id=p.guarantor_id, attempt_key=key,
                                          amount_choice="current_balance")
    assert view.redirect_url
    with Client(app) as c:
        done = c.http.post(ps.path_of(view.redirect_url), headers={"Content-Type": "application/x-www-form-urlencoded"},
                           body=b"card_number=4242424242424242&expiry=12%2F39&cvc=123")
        c.http.get(ps.path_of(done.headers["Location"]))
    recover(p)
    exactly_once(p)


@pytest.mark.parametrize("rate", [0.1, 0.3])
def test_r5_injected_dynamodb_errors_succeed_or_say_try_again(dynamo_faults, rate):
    """TransactionConflict, throttling, capacity and server errors on a share of all DynamoDB
    calls: every call succeeds or raises TryAgainLater (HTTP 503); nothing is half-written."""
    p = ps.payer(owes=(20_000,))
    keys_ = [ps.key() for _ in range(5)]
    dynamo_faults.errors(rate)
    outcomes = []
    for k in keys_:
        for _ in range(6):
            try:
                outcomes.append(submit(p, k, 1_000).status)
                break
            except (TryAgainLater, PaymentInProgress):
                outcomes.append("try_again")
                advance(40)
            except DomainError as exc:  # pragma: no cover - shown on failure
                pytest.fail(f"unexpected {type(exc).__name__}: {exc}")
    assert dynamo_faults.injected > 0
    dynamo_faults.clear()
    for k in keys_:
        retry_until_done(p, k, cents=1_000)
    recover(p)
    succeeded = [k for k in keys_ if selectors.attempt_get(clinic_id=p.clinic_id, guarantor_id=p.guarantor_id,
                                                           attempt_key=k).status == "succeeded"]
    exactly_once(p, payments=len(succeeded))
    assert len(succeeded) == len(ps.sandbox().charges)
