"""Our payment routes and handlers through ``chalice.test.Client``: the sandbox hosted page and
the return page (no card number ever reaches a Frontdesk route, R1), webhooks (R32, R33, R34,
R20), and the scheduled and SQS handlers replayed (R1 of SERVERLESS-PERF-REL.md)."""

from __future__ import annotations

import json
import re
import time

import pytest
from chalice.test import Client

from app import app
from chalicelib.core import clock
from chalicelib.payments import selectors, services
from chalicelib.payments.processors.base import find_pans
from chalicelib.store import keys
from chalicelib.store.models_payments import ProcessorEventItem
from tests import payments_support as ps

pytestmark = pytest.mark.usefixtures("dynamodb_endpoint")
FORM = {"Content-Type": "application/x-www-form-urlencoded"}
CARD_FIELD = re.compile(rb"(cc-number|cc-csc|name=\"(card|cvc|cvv)[^\"]*\")", re.I)


@pytest.fixture(autouse=True)
def sandbox():
    yield from ps.fresh_sandbox()


@pytest.fixture
def client():
    with Client(app) as c:
        yield c


class Recorder:
    """Wraps the test client and keeps every request sent to a Frontdesk route (not the sandbox)."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self.ours: list[str] = []

    def _note(self, method: str, path: str, headers: dict[str, str], body: bytes) -> None:
        if not path.startswith("/sandbox-processor/"):
            self.ours.append(f"{method} {path} {json.dumps(headers)} {body.decode('utf-8', 'replace')}")

    def get(self, path: str):
        self._note("GET", path, {}, b"")
        return self.client.http.get(path)

    def post(self, path: str, *, headers: dict[str, str], body: bytes):
        self._note("POST", path, headers, body)
        return self.client.http.post(path, headers=headers, body=body)


def test_no_request_to_our_routes_carries_a_card_number(client):
    """R1: the card is typed on the processor's page (its own path); our return page and webhook
    receive ids and statuses only: 0 Luhn-valid PANs in any body, URL or header we receive."""
    p = ps.payer(owes=(7_000,), settings={"stored_cards": True})
    rec = Recorder(client)
    view = services.payment_attempt_start(clinic_id=p.clinic_id, guarantor_id=p.guarantor_id, attempt_key=ps.key(),
                                          amount_choice="current_balance", store_card=True)
    page = rec.get(ps.path_of(str(view.redirect_url)))
    assert page.status_code == 200 and CARD_FIELD.search(page.body)  # card fields: on the processor's page only
    done = rec.post(ps.path_of(str(view.redirect_url)), headers=FORM,
                    body=b"card_number=4242+4242+4242+4242&expiry=12%2F39&cvc=123")
    assert done.status_code == 303 and done.headers["Location"].startswith("http://127.0.0.1:8000/pay/done")
    back = rec.get(ps.path_of(done.headers["Location"]))
    assert back.status_code == 200 and b"Payment received" in back.body and b"4242424242424242" not in back.body
    assert not CARD_FIELD.search(back.body)
    ps.sandbox().deliver(lambda body, headers: rec.post("/webhooks/sandbox", headers=headers, body=body), twice=True)
    assert len(rec.ours) == 3
    assert [r for r in rec.ours if find_pans(r) or "4242424242424242" in r.replace(" ", "").replace("+", "")] == []
    assert ps.balances(p).current_balance == 0 and len(ps.payment_entries(p)) == 1
    [card] = selectors.stored_cards_list(clinic_id=p.clinic_id, guarantor_id=p.guarantor_id)
    assert card.last4 == "4242"
    dump = json.dumps([r.__dict__ for r in selectors.receipts_list(clinic_id=p.clinic_id, guarantor_id=p.guarantor_id)])
    assert find_pans(dump) == []  # R2: nothing stored either
    ps.verified(p.clinic_id)


def test_duplicate_and_reordered_webhooks_change_nothing(client):
    """R33/R34: the same events 5 times, shuffled; one posting; failed-after-succeeded ignored."""
    p = ps.payer(owes=(4_000,))
    view = services.payment_attempt_submit(clinic_id=p.clinic_id, guarantor_id=p.guarantor_id, attempt_key=ps.key(),
                                           amount_choice="other", amount_cents=4_000, token="tok_lost")
    assert view.status == "processing"  # charged, but the answer was lost
    events = list(ps.sandbox().outbox)
    for seed in range(5):
        ps.sandbox().outbox = list(events)
        statuses = ps.deliver_webhooks(client, seed=seed, twice=seed % 2 == 1)
        assert set(statuses) == {200}
    assert selectors.attempt_get(clinic_id=p.clinic_id, guarantor_id=p.guarantor_id,
                                 attempt_key=view.attempt_key).status == "succeeded"
    assert len(ps.payment_entries(p)) == 1 and len(ps.sandbox().charges) == 1
    ps.verified(p.clinic_id)


def test_webhook_authenticity_is_checked_before_any_write(client, request_log):
    """R32/R20: tampered byte, stale timestamp, another secret, wrong mode: 400, nothing written."""
    p = ps.payer(owes=(4_000,))
    services.payment_attempt_submit(clinic_id=p.clinic_id, guarantor_id=p.guarantor_id, attempt_key=ps.key(),
                                    amount_choice="other", amount_cents=4_000, token="tok_lost")
    [event] = ps.sandbox().outbox
    body = json.dumps(event).encode()
    sbx = ps.sandbox()
    bad = [
        (body.replace(b"4000", b"4001"), {"Sandbox-Signature": sbx.sign(body)}),
        (body, {"Sandbox-Signature": sbx.sign(body, timestamp=int(clock.now().timestamp()) - 301)}),
        (body, {"Sandbox-Signature": sbx.sign(body, secret="another-secret-of-the-right-size")}),
        (body, {}),
        (json.dumps({**event, "livemode": True}).encode(),
         {"Sandbox-Signature": sbx.sign(json.dumps({**event, "livemode": True}).encode())}),
    ]
    request_log.reset()
    for payload, headers in bad:
        response = client.http.post("/webhooks/sandbox", headers={"Content-Type": "application/json", **headers},
                                    body=payload)
        assert response.status_code == 400
    assert request_log.write_units == 0 and request_log.requests == 0
    ok = client.http.post("/webhooks/sandbox", headers={"Content-Type": "application/json",
                                                       "Sandbox-Signature": sbx.sign(body)}, body=body)
    assert ok.status_code == 200 and len(ps.payment_entries(p)) == 1
    ps.verified(p.clinic_id)


def test_unknown_account_or_payment_is_stored_alerted_and_acknowledged(client, caplog):
    """R20: no retry storm (200), the event is kept (unmatched) for staff, and an alert is logged."""
    sbx = ps.sandbox()
    p = ps.payer(owes=(1_000,))
    cases = [({"clinic_id": p.clinic_id, "guarantor_id": p.guarantor_id, "attempt_key": "nope"},
              f"acct_sbx_{p.clinic_id}", p.clinic_id),
             ({"clinic_id": p.clinic_id}, "acct_someone_else", keys.UNMATCHED_CLINIC),
             ({"clinic_id": "c_missing"}, "acct_sbx_c_missing", keys.UNMATCHED_CLINIC)]
    for metadata, account, owner in cases:
        event_id = f"evt_{ps.key()[:8]}"
        event = {"id": event_id, "type": "payment.succeeded", "created": int(time.time()), "account": account,
                 "livemode": False, "data": {"object": {"object": "payment", "id": "sbx_x", "status": "succeeded",
                                                        "amount": 100, "metadata": metadata}}}
        body = json.dumps(event).encode()
        response = client.http.post("/webhooks/sandbox", headers={"Content-Type": "application/json",
                                                                  "Sandbox-Signature": sbx.sign(body)}, body=body)
        assert response.status_code == 200
        stored = ProcessorEventItem.get(keys.processor_event_pk(owner, "sandbox", event_id), keys.EVENT)
        assert stored.status == "unmatched"
    assert "ALERT" in caplog.text
    assert ps.payment_entries(p) == []
    ps.verified(p.clinic_id)


def test_a_late_event_for_a_refunded_payment_changes_nothing(client):
    """R20: the payment was refunded; its succeeded event arriving late posts nothing."""
    p = ps.payer(owes=(3_000,))
    paid = services.payment_attempt_submit(clinic_id=p.clinic_id, guarantor_id=p.guarantor_id, attempt_key=ps.key(),
                                           amount_choice="other", amount_cents=3_000, token="tok_visa")
    services.refund_issue(clinic_id=p.clinic_id, guarantor_id=p.guarantor_id, receipt_id=str(paid.receipt_id),
                          amount_cents=3_000, refund_key="r1", user_id="u_1")
    ps.sandbox().outbox.reverse()  # refund.succeeded first, payment.succeeded last
    assert set(ps.deliver_webhooks(client, twice=True)) == {200}
    assert len(ps.payment_entries(p)) == 1 and ps.balances(p).current_balance == 3_000
    ps.verified(p.clinic_id)


def test_return_page_is_generic_for_tampered_parameters_and_safe_to_reload(client):
    p = ps.payer(owes=(2_000,))
    view = services.payment_attempt_start(clinic_id=p.clinic_id, guarantor_id=p.guarantor_id, attempt_key=ps.key(),
                                          amount_choice="current_balance")
    assert client.http.get("/pay/done?c=c_x&g=g_x&a=nope").status_code == 404
    assert client.http.get("/pay/done?c=%23&g=..&a=").status_code == 404
    pending = client.http.get(f"/pay/done?c={p.clinic_id}&g={p.guarantor_id}&a={view.attempt_key}")
    assert pending.status_code == 202 and pending.headers["Cache-Control"] == "no-store"
    done = client.http.post(ps.path_of(str(view.redirect_url)), headers=FORM,
                            body=b"card_number=4000000000000002&expiry=12%2F39&cvc=123")
    for _ in range(2):  # a Lambda retry or a reload: same outcome
        page = client.http.get(ps.path_of(done.headers["Location"]))
        assert page.status_code == 200 and b"Payment failed" in page.body and b"declined" in page.body
    assert ps.payment_entries(p) == []
    ps.verified(p.clinic_id)


def test_scheduled_batch_opener_is_safe_twice_and_late(client):
    """R1/R9: the hourly opener replayed and 6 h late opens one batch per clinic and local date."""
    p = ps.payer(owes=(1_000,))
    event = client.events.generate_cw_event(source="aws.events", detail_type="Scheduled Event", detail={},
                                            resources=[])
    event["time"] = "2026-11-30T05:00:00Z"  # midnight in New York
    for _ in range(2):
        result = client.lambda_.invoke("reference_batches_open", event)
        assert "online-2026-11-30" in result.payload["opened"]
    late = client.lambda_.invoke("reference_batches_open", event)  # delivered 6 h late: same scheduled time
    assert late.payload == result.payload
    batches = [b for b in selectors.batches_list(clinic_id=p.clinic_id) if b.business_date == "2026-11-30"]
    assert [b.batch_id for b in batches] == ["online-2026-11-30"]
    event["time"] = "2026-12-01T06:00:00Z"  # 01:00 in New York: not the start of this clinic's day
    client.lambda_.invoke("reference_batches_open", event)
    assert [b for b in selectors.batches_list(clinic_id=p.clinic_id) if b.business_date == "2026-12-01"] == []


def test_sqs_consumer_redelivery_and_poison_records(client):
    """R1/R7: each queued event 3 times, plus records that cannot be handled: reported back."""
    p = ps.payer(owes=(2_000,))
    view = services.payment_attempt_submit(clinic_id=p.clinic_id, guarantor_id=p.guarantor_id, attempt_key=ps.key(),
                                           amount_choice="other", amount_cents=2_000, token="tok_lost")
    recorded = []
    for event in list(ps.sandbox().outbox):
        body = json.dumps(event).encode()
        parsed = ps.sandbox().parse_webhook(payload=body, headers={"Sandbox-Signature": ps.sandbox().sign(body)})
        recorded.append(services.processor_event_record(event=parsed))
    bodies = [json.dumps({"clinic_id": r.clinic_id, "processor": r.processor, "event_id": r.event_id})
              for r in recorded] * 3 + ["not json", json.dumps({"clinic_id": "#bad"})]
    sqs = client.events.generate_sqs_event(message_bodies=bodies, queue_name="frontdesk-processor-events")
    result = client.lambda_.invoke("processor_events_consume", sqs)
    assert len(result.payload["batchItemFailures"]) == 2
    assert selectors.attempt_get(clinic_id=p.clinic_id, guarantor_id=p.guarantor_id,
                                 attempt_key=view.attempt_key).status == "succeeded"
    assert len(ps.payment_entries(p)) == 1
    ps.verified(p.clinic_id)


def test_completer_schedule_finishes_stuck_attempts(client):
    p = ps.payer(owes=(2_500,))
    view = services.payment_attempt_submit(clinic_id=p.clinic_id, guarantor_id=p.guarantor_id, attempt_key=ps.key(),
                                           amount_choice="other", amount_cents=2_500, token="tok_lost")
    ps.sandbox().outbox.clear()  # the webhook never arrives
    start = clock.now()
    clock.set_source(lambda: start.replace(microsecond=0) + services.timedelta(minutes=5))
    event = client.events.generate_cw_event(source="aws.events", detail_type="Scheduled Event", detail={},
                                            resources=[])
    for _ in range(2):
        client.lambda_.invoke("payment_attempts_complete", event)
    assert selectors.attempt_get(clinic_id=p.clinic_id, guarantor_id=p.guarantor_id,
                                 attempt_key=view.attempt_key).status == "succeeded"
    assert len(ps.payment_entries(p)) == 1
    ps.verified(p.clinic_id)


def test_the_sandbox_card_page_names_its_test_card_and_closes_once_its_payment_is_over(client):
    """A new user's findings: the page did not say which card to use, and an abandoned page
    that was canceled (the guarantor started another payment) still showed a Pay form."""
    from datetime import UTC, datetime

    p = ps.payer(owes=(5_000,))
    at = datetime(2026, 12, 1, 17, 0, tzinfo=UTC)
    clock.set_source(lambda: at)
    first = services.payment_attempt_start(clinic_id=p.clinic_id, guarantor_id=p.guarantor_id,
                                           attempt_key=ps.key(), amount_choice="current_balance")
    page = client.http.get(ps.path_of(str(first.redirect_url)))
    body = page.body.decode()
    assert page.status_code == 200 and "4242 4242 4242 4242" in body and 'name="viewport"' in body
    at = datetime(2026, 12, 1, 17, 5, tzinfo=UTC)
    second = services.payment_attempt_start(clinic_id=p.clinic_id, guarantor_id=p.guarantor_id,
                                            attempt_key=ps.key(), amount_choice="current_balance")
    assert second.redirect_url != first.redirect_url
    closed = client.http.get(ps.path_of(str(first.redirect_url)))
    assert closed.status_code == 410 and "Nothing was charged" in closed.body.decode()
    assert "card_number" not in closed.body.decode()
    clock.set_source(None)
