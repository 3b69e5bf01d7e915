"""The scheduler and the event handlers (SERVERLESS.md §2.5, §3.6-3.7; SERVERLESS-PERF-REL.md
§4.1, R7, R12): the hourly sweep through the sharded due index is safe when EventBridge fires
twice, late or not at all for hours; expired claims become ``unknown`` and are never resent;
the SQS worker reports only failed records; inbound STOP/HELP/START through SNS."""

from __future__ import annotations

import json
from collections import Counter

import pytest
from chalice.test import Client

from app import app
from chalicelib.notify import queue, selectors, services
from chalicelib.notify.outbox import MessageRef
from chalicelib.store import keys
from chalicelib.store.db import clinic_scope
from chalicelib.store.models_notify import MessageItem
from tests import notify_support as ns

pytestmark = pytest.mark.usefixtures("dynamodb_endpoint")


@pytest.fixture
def client():
    with Client(app) as c:
        yield c


def _mine(cid: str):
    """Run only this test's clinic's work items (the shared test table holds other clinics)."""
    def handle(bodies):
        for result in services.work_items_handle(bodies=[b for b in bodies if b.get("clinic_id") == cid]):
            if isinstance(result, Exception):
                raise result
    return handle


def _cw_event(at: str) -> dict:
    return {"version": "0", "id": "e-1", "detail-type": "Scheduled Event", "source": "aws.events",
            "account": ns.ACCOUNT, "time": at, "region": ns.REGION, "resources": [], "detail": {}}


def test_hourly_schedule_fired_twice_sends_each_due_message_once(client, monkeypatch):
    with ns.aws() as url:
        clock = ns.Clock(ns.utc(2026, 12, 1, 15, 0))
        cid = ns.clinic()
        payers = [ns.payer(cid) for _ in range(6)]
        for p in payers:
            services.reminders_plan(clinic_id=cid, guarantor_id=p.guarantor_id, statement_id=ns.statement_id(p))
        ses, sns = ns.taps()
        # The shared test table holds every test's clinics; the operator index is read as usual,
        # and this test's clinic is the one swept.
        real_ids = services.verify.clinic_ids
        monkeypatch.setattr(services.verify, "clinic_ids", lambda: [c for c in real_ids() if c == cid])
        clock.set(ns.utc(2026, 12, 12, 16, 2))  # before-3-days email is due at 16:00 UTC (10:00 Chicago)
        for _ in range(2):  # EventBridge delivers the same event twice
            result = client.lambda_.invoke("notify_due_hourly", _cw_event("2026-12-12T16:00:00Z"))
            assert result.payload == {"clinics": 1}
        ns.sqs_drain(url, handle=_mine(cid))
        assert len(ses.accepted) == 6 and len(sns.accepted) == 0
        assert max(Counter(p["Destination"]["ToAddresses"][0] for _, p, _ in ses.accepted).values()) == 1


def test_a_late_or_skipped_schedule_catches_up_and_due_keys_are_sharded(tmp_path):
    with ns.console(tmp_path):
        clock = ns.Clock(ns.utc(2026, 12, 1, 15, 0))
        cid = ns.clinic()
        refs = []
        p = ns.payer(cid, mobile=False)
        for n in range(40):
            refs.append(services.message_queue(
                clinic_id=cid, guarantor_id=p.guarantor_id, kind="on_demand", channel="email",
                logical_key=f"k{n}", due_at=ns.utc(2026, 12, 1, 15 + n % 5, 30)).ref)
        with clinic_scope(cid):
            shards = {MessageItem.get(r.pk, r.sk).gsi3pk.rsplit("#", 1)[1] for r in refs}
        assert len(shards) >= keys.DUE_SHARDS - 2  # one hour is not one partition (ids are digests)
        first = services.messages_due_fanout(clinic_id=cid, at=ns.utc(2026, 12, 1, 15, 0))
        assert first.enqueued == 0 and len(first.hours) == 25
        queue.LOCAL.clear()
        clock.set(ns.utc(2026, 12, 1, 21, 0))
        # The 16:00-20:00 runs never happened; the 21:00 run covers every hour since the mark.
        late = services.messages_due_fanout(clinic_id=cid, at=ns.utc(2026, 12, 1, 21, 0))
        assert late.hours[0] == "2026-12-01T15" and late.hours[-1] == "2026-12-01T21"
        assert late.enqueued == 40
        again = services.messages_due_fanout(clinic_id=cid, at=ns.utc(2026, 12, 1, 21, 0))
        assert again.hours == ("2026-12-01T21",) and again.enqueued == 0  # the index holds no queued hour 21
        from chalicelib.notify import local

        assert local.drain().sent == 40
        assert services.messages_due_fanout(clinic_id=cid, at=ns.utc(2026, 12, 1, 21, 0)).enqueued == 0


def test_an_expired_claim_becomes_unknown_for_review_and_is_never_resent(tmp_path):
    with ns.console(tmp_path):
        clock = ns.Clock(ns.utc(2026, 12, 1, 17, 0))
        cid = ns.clinic()
        p = ns.payer(cid, mobile=False)
        [q] = services.balance_notification_queue(clinic_id=cid, guarantor_id=p.guarantor_id,
                                                  statement_id=ns.statement_id(p))
        queue.LOCAL.clear()
        from chalicelib.notify import channels

        class Killed(BaseException):
            pass

        channel = channels.get("email")
        real = channel.send

        def killed_mid_send(message):
            real(message)
            raise Killed  # the process dies after the provider accepted, before the mark

        channel.send = killed_mid_send  # type: ignore[method-assign]
        with pytest.raises(Killed):
            services.message_send(clinic_id=cid, owner=q.ref.owner, message_id=q.ref.message_id)
        channel.send = real  # type: ignore[method-assign]
        row = selectors.message_get(clinic_id=cid, owner=q.ref.owner, message_id=q.ref.message_id)
        assert row.status == "sending"
        assert services.message_send(clinic_id=cid, owner=q.ref.owner, message_id=q.ref.message_id).status == \
            "skipped"  # a redelivery loses the claim
        clock.move(minutes=4)
        assert services.messages_due_fanout(clinic_id=cid, at=clock.at).expired == 0  # lease still running
        clock.move(minutes=2)
        result = services.messages_due_fanout(clinic_id=cid, at=clock.at)
        assert (result.expired, result.enqueued) == (1, 0)
        assert [m.message_id for m in selectors.messages_review_list(clinic_id=cid)] == [q.ref.message_id]
        resolved = services.message_review_resolve(clinic_id=cid, owner=q.ref.owner, message_id=q.ref.message_id,
                                                   outcome="sent", staff_user_id="u_7")
        assert resolved.status == "sent"
        assert len(selectors.console_outbox_read(clinic_id=cid)) == 1


def test_sqs_worker_reports_only_the_failed_records(client, tmp_path):
    with ns.console(tmp_path):
        ns.Clock(ns.utc(2026, 12, 1, 17, 0))
        cid = ns.clinic()
        p = ns.payer(cid, mobile=False)
        refs = [services.message_queue(clinic_id=cid, guarantor_id=p.guarantor_id, kind="on_demand",
                                       channel="email", logical_key=f"r{n}").ref for n in range(7)]
        bodies = [json.dumps(r.body()) for r in refs] + [
            "not json", json.dumps({"op": "send", "clinic_id": cid, "owner": "G#x#y", "message_id": "z"}),
            json.dumps({"op": "drop-table"})]
        records = [{"messageId": f"m-{i}", "receiptHandle": f"h-{i}", "body": b, "attributes": {},
                    "messageAttributes": {}, "md5OfBody": "", "eventSource": "aws:sqs",
                    "eventSourceARN": f"arn:aws:sqs:{ns.REGION}:{ns.ACCOUNT}:frontdesk-notify", "awsRegion": ns.REGION}
                   for i, b in enumerate(bodies)]
        result = client.lambda_.invoke("notify_worker", {"Records": records})
        assert result.payload == {"batchItemFailures": [{"itemIdentifier": "m-7"}, {"itemIdentifier": "m-8"},
                                                        {"itemIdentifier": "m-9"}]}
        again = client.lambda_.invoke("notify_worker", {"Records": records[:7]})  # redelivered: no-ops
        assert again.payload == {"batchItemFailures": []}
        assert {r.status for r in selectors.outbox_list(clinic_id=cid, guarantor_id=p.guarantor_id)} == {"sent"}
        assert len(selectors.console_outbox_read(clinic_id=cid)) == 7


def test_r12_inbound_stop_help_start_through_sns(client):
    with ns.aws() as url:
        clock = ns.Clock(ns.utc(2026, 12, 1, 17, 0))
        cid = ns.clinic()
        p = ns.payer(cid, email=False)
        ours = ns.number_of(cid)

        def inbound(body, inbound_id):
            event = client.events.generate_sns_event(
                message=json.dumps(ns.inbound(p.mobile, body, to=ours, inbound_id=inbound_id)))
            client.lambda_.invoke("notify_sms_inbound", event)

        inbound(" Stop ", "in-1")
        inbound(" Stop ", "in-1")  # SNS redelivers the same message
        inbound("STOP ALL", "in-2")  # already opted out: no second confirmation
        replies = [text for _, (to, text) in ns.sms_sent().items() if to == p.mobile]
        assert len(replies) == 1 and "unsubscribed" in replies[0]
        assert selectors.contact_get(clinic_id=cid, channel="sms", destination=p.mobile).consent == "revoked"
        services.balance_notification_queue(clinic_id=cid, guarantor_id=p.guarantor_id,
                                            statement_id=ns.statement_id(p))
        ns.sqs_drain(url)
        [row] = selectors.outbox_list(clinic_id=cid, guarantor_id=p.guarantor_id)
        assert (row.status, row.reason) == ("suppressed", "opted_out")  # STOP honoured before the next send
        inbound("help", "in-3")
        replies = [text for _, (to, text) in ns.sms_sent().items() if to == p.mobile]
        assert len(replies) == 2 and "(555) 555-0100" in replies[1] and "STOP" in replies[1]
        inbound("START", "in-4")
        replies = [text for _, (to, text) in ns.sms_sent().items() if to == p.mobile]
        assert len(replies) == 3 and "Msg & data rates may apply" in replies[2]
        clock.move(days=1)
        services.notification_on_demand(clinic_id=cid, guarantor_id=p.guarantor_id, channel="sms",
                                        staff_user_id="u_1")
        ns.sqs_drain(url)
        assert len([1 for _, (to, _) in ns.sms_sent().items() if to == p.mobile]) == 4
        other = ns.clinic()
        assert services.inbound_sms_handle(payload=ns.inbound(p.mobile, "STOP", to=ns.number_of(other))).clinics == (
            other,)  # a STOP to another clinic's number applies to that clinic only


def test_sms_delivery_status_updates_the_outbox(client):
    with ns.aws() as url:
        ns.Clock(ns.utc(2026, 12, 1, 17, 0))
        cid = ns.clinic()
        payers = [ns.payer(cid, email=False) for _ in range(2)]
        for p in payers:
            services.balance_notification_queue(clinic_id=cid, guarantor_id=p.guarantor_id,
                                                statement_id=ns.statement_id(p))
        ns.sqs_drain(url)
        rows = [selectors.outbox_list(clinic_id=cid, guarantor_id=p.guarantor_id)[0] for p in payers]
        delivered = {"eventType": "TEXT_DELIVERED", "messageStatus": "DELIVERED", "messageId": rows[0].provider_id,
                     "originationPhoneNumber": ns.number_of(cid), "destinationPhoneNumber": payers[0].mobile}
        failed = {"notification": {"messageId": rows[1].provider_id}, "status": "FAILURE",
                  "delivery": {"destination": payers[1].mobile, "originationPhoneNumber": ns.number_of(cid),
                               "providerResponse": "Phone is currently opted out"}}
        for payload in (delivered, failed):
            client.lambda_.invoke("notify_sms_status", client.events.generate_sns_event(message=json.dumps(payload)))
        rows = [selectors.outbox_list(clinic_id=cid, guarantor_id=p.guarantor_id)[0] for p in payers]
        assert (rows[0].status, rows[1].status, rows[1].reason) == ("delivered", "failed", "opted_out")
        assert selectors.contact_get(clinic_id=cid, channel="sms", destination=payers[1].mobile).suppressed == \
            "opted_out"
        assert MessageRef.parse(cid, rows[0].owner, rows[0].message_id) == rows[0].ref
