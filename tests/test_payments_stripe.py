"""The Stripe adapter's server calls against localstripe (a local fake Stripe server started
here), and recorded exchanges where localstripe falls short (Checkout Sessions). localstripe
ignores idempotency keys, so the exactly-once test here rests on our own idempotency."""

from __future__ import annotations

import hashlib
import hmac
import json
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from chalice.test import Client

from app import app
from chalicelib.payments import services
from chalicelib.payments.errors import PaymentInProgress, WebhookRejected
from chalicelib.payments.processors import registry
from chalicelib.payments.processors.base import Outcome, PaymentRequest, RefundRequest
from tests import payments_support as ps

stripe = pytest.importorskip("stripe")
from chalicelib.payments.processors.stripe import (  # noqa: E402
    MAX_NETWORK_RETRIES,
    TIMEOUT,
    WORST_CASE_SECONDS,
    StripeProcessor,
)

WHSEC = "whsec_test_secret_for_frontdesk"
MD = {"clinic_id": "c_1", "guarantor_id": "g_1", "attempt_key": "k1"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def localstripe() -> Iterator[str]:
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "localstripe", "--port", str(port), "--from-scratch"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    for _ in range(100):
        try:
            urllib.request.urlopen(f"{base}/v1/balance", timeout=0.2)
        except OSError as exc:
            if getattr(exc, "code", None) == 401:
                break
            if proc.poll() is not None:
                pytest.skip("localstripe could not start on this Python")
            time.sleep(0.1)
    else:
        proc.kill()
        pytest.skip("localstripe did not answer")
    yield base
    proc.terminate()
    proc.wait(timeout=10)


@pytest.fixture
def processor(localstripe: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[StripeProcessor]:
    monkeypatch.setenv("FRONTDESK_STRIPE_SECRET_KEY", "sk_test_frontdesk")
    proc = StripeProcessor(api_key="sk_test_frontdesk", webhook_secret=WHSEC, api_base=localstripe)
    registry.register("stripe", proc)
    yield proc
    registry.reset()


def request(token: str | None = "pm_card_visa", key: str | None = None, **kw: Any) -> PaymentRequest:
    return PaymentRequest(idempotency_key=key or f"pa_{ps.key()}", amount_cents=kw.pop("amount", 2_500),
                          account_id="acct_clinic", metadata=MD, token=token, **kw)


def test_timeouts_are_explicit_and_below_api_gateway():
    """R6: Stripe's (connect + read) × 2 attempts is 12 s; with DynamoDB's 9 s and Secrets
    Manager's 6 s, 27 s < API Gateway's 29 s (tests/test_infra.py checks every function)."""
    proc = StripeProcessor(api_key="sk_test_x", webhook_secret=WHSEC)
    assert proc.client._requestor._client._timeout == TIMEOUT == (2.0, 4.0)
    assert proc.client._requestor._options.max_network_retries == MAX_NETWORK_RETRIES == 1
    assert WORST_CASE_SECONDS == 12 and WORST_CASE_SECONDS + 9 + 6 < 29


# --- a Stripe deployment: the sandbox is off ------------------------------------------------


@pytest.mark.parametrize("processor_env", ["sandbox", "stripe"])
def test_sandbox_pages_answer_only_where_the_sandbox_is_the_processor(processor_env, monkeypatch):
    """The sandbox's hosted pages stand for a processor's domain and keep payments in process
    memory: a deployment whose processor is Stripe (every cloud stage) answers 404 on each of
    them, even for a payment the sandbox knows, and the card form never reaches it."""
    from chalicelib.core import config

    monkeypatch.delenv("FRONTDESK_PROCESSOR", raising=False)
    config.reset()
    registry.reset()
    sandbox = registry.sandbox()
    pay = sandbox.checkout_create(PaymentRequest(
        idempotency_key=f"pa_{ps.key()}", amount_cents=2_500, account_id="acct_sbx_c1", metadata=MD,
        return_url="http://127.0.0.1:8000/pay/done"))
    challenge = sandbox.checkout_create(PaymentRequest(
        idempotency_key=f"pa_{ps.key()}", amount_cents=2_500, account_id="acct_sbx_c1", metadata=MD,
        token="tok_3ds", return_url="http://127.0.0.1:8000/pay/done"))
    paths = [f"/sandbox-processor/pay/{pay.reference}", f"/sandbox-processor/3ds/{challenge.reference}"]
    monkeypatch.setenv("FRONTDESK_PROCESSOR", processor_env)
    config.reset()
    try:
        with Client(app) as client:
            pages = [client.http.get(path).status_code for path in paths]
            posted = client.http.post(paths[0], body="card_number=4242424242424242&expiry=12%2F30&cvc=123",
                                      headers={"Content-Type": "application/x-www-form-urlencoded"})
            challenged = client.http.post(paths[1], body="action=complete",
                                          headers={"Content-Type": "application/x-www-form-urlencoded"})
        state = sandbox.payment_retrieve(reference=str(pay.reference), account_id="acct_sbx_c1").outcome
        if processor_env == "sandbox":
            assert pages == [200, 200] and posted.status_code == 303 and challenged.status_code == 303
            assert state is Outcome.SUCCEEDED
        else:
            assert pages == [404, 404] and posted.status_code == 404 and challenged.status_code == 404
            assert state is Outcome.PENDING  # the card form never reached the sandbox
            assert "sandbox" not in registry.aliases()
    finally:
        monkeypatch.delenv("FRONTDESK_PROCESSOR")
        config.reset()
        registry.reset()


def test_charge_success_decline_and_refund(processor):
    refs: list[str] = []
    ok = processor.charge(request(), on_reference=refs.append)
    assert ok.outcome is Outcome.SUCCEEDED and refs == [ok.reference]
    assert ok.card is not None and (ok.card.brand, ok.card.last4) == ("visa", "4242")
    declined = processor.charge(request("pm_card_chargeCustomerFail"))
    assert declined.outcome is Outcome.DECLINED and declined.decline_code
    found = processor.payment_retrieve(reference=str(ok.reference), account_id="acct_clinic")
    assert found.outcome is Outcome.SUCCEEDED
    assert processor.payment_retrieve(reference="pi_missing", account_id="acct_clinic").outcome is Outcome.NOT_FOUND
    refund = processor.refund(RefundRequest(idempotency_key="rf_1", reference=str(ok.reference), amount_cents=500,
                                            account_id="acct_clinic", metadata=MD))
    assert refund.outcome is Outcome.SUCCEEDED and refund.amount_cents == 500


def test_three_d_secure_and_resume_from_a_stored_reference(processor):
    method = processor.client.v1.payment_methods.create(
        {"type": "card", "card": {"number": "4000002500003155", "exp_month": 12, "exp_year": 2030, "cvc": "123"}})
    challenged = processor.charge(request(method.id))
    assert challenged.outcome is Outcome.REQUIRES_ACTION and challenged.client_secret
    again = processor.charge(request(method.id), reference=challenged.reference)  # a retry resumes, never recreates
    assert again.reference == challenged.reference


def test_saved_payment_methods_attach_and_detach(processor):
    customer = processor.customer_create(account_id="acct_clinic", metadata={"clinic_id": "c_1"})
    token, card = processor.card_save(token="pm_card_visa", customer=customer, account_id="acct_clinic")
    assert token.startswith("pm_") and card.last4 == "4242"
    processor.card_remove(token=token, account_id="acct_clinic")


def test_our_idempotency_holds_where_localstripe_ignores_keys(processor, dynamodb_endpoint):
    """T1 on Stripe: 20 concurrent submissions of one attempt make one PaymentIntent charge and
    one posting; localstripe would happily create a second PaymentIntent for a reused key."""
    p = ps.payer(owes=(2_500,))
    services.payments_config_set(clinic_id=p.clinic_id, processor="stripe", account_id="acct_clinic")
    key = ps.key()

    def one(_: int) -> str:
        try:
            return services.payment_attempt_submit(clinic_id=p.clinic_id, guarantor_id=p.guarantor_id,
                                                   attempt_key=key, amount_choice="current_balance",
                                                   token="pm_card_visa").status
        except PaymentInProgress:
            return "in_progress"

    with ThreadPoolExecutor(max_workers=20) as pool:
        outcomes = list(pool.map(one, range(20)))
    assert "succeeded" in outcomes and set(outcomes) <= {"succeeded", "in_progress"}
    intents = processor.client.v1.payment_intents.list({"limit": 100}).data
    ours = [pi for pi in intents if (pi.to_dict().get("metadata") or {}).get("attempt_key") == key]
    assert [pi.status for pi in ours] == ["succeeded"]
    assert len(ps.payment_entries(p)) == 1 and ps.balances(p).current_balance == 0
    ps.verified(p.clinic_id)


def _signed(payload: bytes, *, secret: str = WHSEC, at: int | None = None) -> dict[str, str]:
    t = int(time.time()) if at is None else at
    sig = hmac.new(secret.encode(), f"{t}.".encode() + payload, hashlib.sha256).hexdigest()
    return {"Content-Type": "application/json", "Stripe-Signature": f"t={t},v1={sig}"}


def test_stripe_webhooks_are_verified_and_post_once(processor, dynamodb_endpoint):
    p = ps.payer(owes=(2_500,))
    services.payments_config_set(clinic_id=p.clinic_id, processor="stripe", account_id="acct_clinic")
    view = services.payment_attempt_submit(clinic_id=p.clinic_id, guarantor_id=p.guarantor_id, attempt_key=ps.key(),
                                           amount_choice="current_balance", token="pm_card_visa")
    event = {"id": "evt_1" + ps.key()[:8], "object": "event", "type": "payment_intent.succeeded",
             "account": "acct_clinic", "livemode": False, "created": int(time.time()), "api_version": "2025-01-01",
             "data": {"object": {"id": view.processor_reference, "object": "payment_intent", "status": "succeeded",
                                 "metadata": {"clinic_id": p.clinic_id, "guarantor_id": p.guarantor_id,
                                              "attempt_key": view.attempt_key}}}}
    body = json.dumps(event).encode()
    with Client(app) as c:
        assert c.http.post("/webhooks/stripe", headers=_signed(body), body=body).status_code == 200
        assert c.http.post("/webhooks/stripe", headers=_signed(body), body=body).status_code == 200
        assert c.http.post("/webhooks/stripe", headers=_signed(body + b" "), body=body).status_code == 400
        assert c.http.post("/webhooks/stripe", headers=_signed(body, at=int(time.time()) - 301),
                           body=body).status_code == 400
        other = _signed(body, secret="whsec_other")
        assert c.http.post("/webhooks/stripe", headers=other, body=body).status_code == 400
    live = json.dumps({**event, "livemode": True}).encode()
    with pytest.raises(WebhookRejected):
        processor.parse_webhook(payload=live, headers=_signed(live))
    assert len(ps.payment_entries(p)) == 1
    ps.verified(p.clinic_id)


class RecordedHTTP(stripe.HTTPClient):
    """Replays a recorded Stripe exchange (Checkout Sessions are not served by localstripe)."""

    name = "recorded"

    def __init__(self, answers: dict[tuple[str, str], dict[str, Any]]) -> None:
        super().__init__()
        self.answers = answers
        self.sent: list[tuple[str, str, dict[str, str]]] = []

    def request(self, method: str, url: str, headers: Any, post_data: Any = None) -> tuple[bytes, int, dict[str, str]]:
        path = url.split("://", 1)[-1].split("/", 1)[-1].split("?", 1)[0]
        self.sent.append((method, path, dict(headers or {})))
        return json.dumps(self.answers[(method.upper(), "/" + path)]).encode(), 200, {}

    def close(self) -> None:
        return None


def test_checkout_session_create_and_retrieve_from_recorded_exchanges():
    session = {"id": "cs_test_1", "object": "checkout.session", "url": "https://checkout.stripe.com/c/pay/cs_test_1",
               "status": "open", "payment_intent": None, "amount_total": 2_500, "metadata": MD}
    paid = {**session, "status": "complete", "payment_intent": "pi_rec_1"}
    intent = {"id": "pi_rec_1", "object": "payment_intent", "status": "succeeded", "amount": 2_500,
              "payment_method": "pm_rec_1", "metadata": MD}
    method = {"id": "pm_rec_1", "object": "payment_method", "card": {"brand": "visa", "last4": "4242",
                                                                     "exp_month": 1, "exp_year": 2031}}
    http = RecordedHTTP({("POST", "/v1/checkout/sessions"): session, ("GET", "/v1/checkout/sessions/cs_test_1"): paid,
                         ("GET", "/v1/payment_intents/pi_rec_1"): intent,
                         ("GET", "/v1/payment_methods/pm_rec_1"): method})
    proc = StripeProcessor(api_key="sk_test_rec", webhook_secret=WHSEC, http_client=http)
    created = proc.checkout_create(request(None, key="pa_rec", return_url="https://portal.example/payments/return"))
    assert created.outcome is Outcome.PENDING and created.redirect_url == session["url"]
    _, _, headers = http.sent[0]
    assert headers.get("Idempotency-Key") == "pa_rec" and headers.get("Stripe-Account") == "acct_clinic"
    done = proc.payment_retrieve(reference="cs_test_1", account_id="acct_clinic")
    assert done.outcome is Outcome.SUCCEEDED and done.reference == "pi_rec_1" and done.card is not None


def test_configuration_check_names_the_problems():
    proc = StripeProcessor(api_key="sk_live_x", webhook_secret="", publishable_key="pk_test_y",
                           http_client=RecordedHTTP({}))
    problems = proc.check()
    assert any("WEBHOOK_SECRET" in p for p in problems) and any("live" in p for p in problems)
