"""SES and SNS through moto with injected provider faults (SERVERLESS-PERF-REL.md R10-R13):
throttling, daily quota and rejections never lose or double a message; the limiter keeps
every one-second window at or under N; opted-out publishes are terminal; spend limits pause;
an ambiguous timeout is never resent; bounces and complaints suppress and raise alerts."""

from __future__ import annotations

import json
import random
from collections import Counter

import pytest
from botocore.exceptions import ReadTimeoutError

from chalicelib.notify import selectors, services
from tests import notify_support as ns

pytestmark = pytest.mark.usefixtures("dynamodb_endpoint")


def _payers(cid: str, n: int, **kw) -> list[ns.Payer]:
    return [ns.payer(cid, **kw) for _ in range(n)]


def _statuses(cid: str, payers: list[ns.Payer]) -> dict[tuple[str, str], selectors.MessageView]:
    return {(p.guarantor_id, r.channel): r for p in payers
            for r in selectors.outbox_list(clinic_id=cid, guarantor_id=p.guarantor_id)}


def test_r10_ses_throttling_quota_and_rejections_lose_nothing_and_send_nothing_twice():
    rng = random.Random(10)
    with ns.aws() as url:
        clock = ns.Clock(ns.utc(2026, 12, 2, 17, 0))
        cid = ns.clinic(caps={"email": {"per_day": 50, "per_week": 50}})
        payers = _payers(cid, 30, mobile=False)
        ses, _ = ns.taps()
        rejected: set[str] = set()

        def fault(params):
            to = params["Destination"]["ToAddresses"][0]
            if to in rejected:
                return None  # a rejection is permanent: it is never tried again anyway
            roll = rng.random()
            if roll < 0.10:
                return "Throttling", "Maximum sending rate exceeded.", 400
            if roll < 0.15:
                return "Throttling", "Daily message quota exceeded.", 400
            if roll < 0.20:
                rejected.add(to)
                return "MessageRejected", "Email address is not verified.", 400
            return None

        ses.fault = fault
        for p in payers:
            services.balance_notification_queue(clinic_id=cid, guarantor_id=p.guarantor_id,
                                                statement_id=ns.statement_id(p))
        ns.sqs_drain(url)
        for _ in range(30):
            rows = _statuses(cid, payers)
            if not any(r.status == "queued" for r in rows.values()):
                break
            clock.move(hours=1, minutes=1)
            services.messages_due_fanout(clinic_id=cid, at=clock.at)
            ns.sqs_drain(url)
        rows = _statuses(cid, payers)
        sent_to = Counter(params["Destination"]["ToAddresses"][0] for _, params, _ in ses.accepted)
        assert max(sent_to.values()) == 1  # 0 sent twice
        for p in payers:
            row = rows[(p.guarantor_id, "email")]
            if row.status == "sent":
                assert sent_to[p.email] == 1 and row.provider_id
            else:
                assert (row.status, row.reason) == ("failed", "rejected") and sent_to[p.email] == 0
        assert {r.status for r in rows.values()} <= {"sent", "failed"}  # 0 lost
        assert any("throttled" in {h[2] for h in r.history} or r.attempts > 1 for r in rows.values()) or \
            ses.calls > len(payers)  # throttles happened and were retried


def test_r10_r13_the_limiter_keeps_every_one_second_window_at_or_under_n():
    with ns.aws(ses_rate="5", sms_rate="5") as url:
        ns.Clock(ns.utc(2026, 12, 2, 17, 0))
        cid = ns.clinic(caps={"email": {"per_day": 50, "per_week": 50}, "sms": {"per_day": 50, "per_week": 50}})
        payers = _payers(cid, 14)
        ses, sns = ns.taps()
        for p in payers:
            services.balance_notification_queue(clinic_id=cid, guarantor_id=p.guarantor_id,
                                                statement_id=ns.statement_id(p))
        ns.sqs_drain(url)
        assert len(ses.accepted) == 14 and len(sns.accepted) == 14
        assert ses.max_in_any_second() == 5 and sns.max_in_any_second() == 5
        attrs = sns.accepted[0][1]["MessageAttributes"]
        assert attrs["AWS.MM.SMS.OriginationNumber"]["StringValue"] == ns.number_of(cid)
        assert attrs["AWS.SNS.SMS.SMSType"]["StringValue"] == "Transactional"
        email = ses.accepted[0][1]
        assert email["ConfigurationSetName"] == "frontdesk-notify"
        assert {t["Name"] for t in email["Tags"]} == {"fd_c", "fd_o", "fd_m"}
        assert "Riverside Family Medicine" in email["Source"]


def test_r12_publish_to_an_opted_out_number_is_terminal_and_suppresses_it():
    with ns.aws() as url:
        ns.Clock(ns.utc(2026, 12, 2, 17, 0))
        cid = ns.clinic()
        p = ns.payer(cid, email=False)
        _, sns = ns.taps()
        sns.fault = lambda params: ("InvalidParameter", "Phone number is opted out", 400)
        services.balance_notification_queue(clinic_id=cid, guarantor_id=p.guarantor_id,
                                            statement_id=ns.statement_id(p))
        ns.sqs_drain(url)
        row = _statuses(cid, [p])[(p.guarantor_id, "sms")]
        assert (row.status, row.reason, sns.calls) == ("failed", "opted_out", 1)  # 0 retries
        assert selectors.contact_get(clinic_id=cid, channel="sms", destination=p.mobile).suppressed == "opted_out"
        sns.fault = None
        services.notification_on_demand(clinic_id=cid, guarantor_id=p.guarantor_id, channel="sms",
                                        staff_user_id="u_1")
        ns.sqs_drain(url)
        assert sns.calls == 1 and not ns.sms_sent()


def test_r13_spend_limit_pauses_sms_and_drops_nothing():
    with ns.aws() as url:
        clock = ns.Clock(ns.utc(2026, 12, 2, 17, 0))
        cid = ns.clinic()
        payers = _payers(cid, 5, email=False)
        _, sns = ns.taps()
        sns.fault = lambda params: ("InvalidParameter", "No quota left for account", 400)
        for p in payers:
            services.balance_notification_queue(clinic_id=cid, guarantor_id=p.guarantor_id,
                                                statement_id=ns.statement_id(p))
        ns.sqs_drain(url)
        rows = _statuses(cid, payers)
        assert {(r.status, r.reason) for r in rows.values()} == {("queued", "spend_limit")}
        sns.fault = None
        clock.move(hours=1, minutes=5)
        services.messages_due_fanout(clinic_id=cid, at=clock.at)
        ns.sqs_drain(url)
        rows = _statuses(cid, payers)
        assert {r.status for r in rows.values()} == {"sent"} and len(ns.sms_sent()) == 5


def test_an_ambiguous_timeout_is_never_resent_and_an_ses_event_resolves_it():
    with ns.aws() as url:
        clock = ns.Clock(ns.utc(2026, 12, 2, 17, 0))
        cid = ns.clinic()
        p = ns.payer(cid, mobile=False)
        ses, _ = ns.taps()

        def timeout(params):
            raise ReadTimeoutError(endpoint_url="https://email.us-east-1.amazonaws.com")

        ses.fault = timeout
        services.balance_notification_queue(clinic_id=cid, guarantor_id=p.guarantor_id,
                                            statement_id=ns.statement_id(p))
        ns.sqs_drain(url)
        row = _statuses(cid, [p])[(p.guarantor_id, "email")]
        assert (row.status, row.reason, ses.calls) == ("unknown", "provider_timeout", 1)
        assert [m.message_id for m in selectors.messages_review_list(clinic_id=cid)] == [row.message_id]
        ses.fault = None
        clock.move(hours=2)
        services.messages_due_fanout(clinic_id=cid, at=clock.at)
        services.message_send(clinic_id=cid, owner=row.owner, message_id=row.message_id)
        assert ses.calls == 1  # never resent
        result = services.provider_event_record(payload=ns.ses_event(row.ref, "Send", to=p.email))
        assert result.status == "sent"
        assert selectors.messages_review_list(clinic_id=cid) == []


def test_r11_bounces_and_complaints_through_the_sns_handler_suppress_within_one_cycle_and_alert():
    from chalice.test import Client

    from app import app

    with ns.aws() as url, Client(app) as client:
        ns.Clock(ns.utc(2026, 12, 2, 17, 0))
        cid = ns.clinic()
        payers = _payers(cid, 20, mobile=False)
        ses, _ = ns.taps()
        for p in payers:
            services.balance_notification_queue(clinic_id=cid, guarantor_id=p.guarantor_id,
                                                statement_id=ns.statement_id(p))
        ns.sqs_drain(url)
        rows = _statuses(cid, payers)
        bounced, complained = payers[0], payers[1]
        for p in payers:
            ref = rows[(p.guarantor_id, "email")].ref
            kind = "Bounce" if p is bounced else "Delivery"
            for event in ([ns.ses_event(ref, kind, to=p.email)]
                          + ([ns.ses_event(ref, "Complaint", to=p.email)] if p is complained else [])):
                sns_event = client.events.generate_sns_event(message=json.dumps(event))
                client.lambda_.invoke("notify_ses_events", sns_event)
        rows = _statuses(cid, payers)
        assert rows[(bounced.guarantor_id, "email")].status == "bounced"
        assert rows[(complained.guarantor_id, "email")].status == "delivered"
        assert "complained" in [h[0] for h in rows[(complained.guarantor_id, "email")].history]
        day = "2026-12-02"
        rep = selectors.reputation_get(clinic_id=cid, day=day)
        assert (rep.delivered, rep.bounced, rep.complained) == (19, 1, 1)
        assert services.reputation_alerts(cid, day) == ("bounce_rate", "complaint_rate")  # 5% >= 2%, 5% >= 0.05%
        before = ses.calls
        for p in payers:
            services.notification_on_demand(clinic_id=cid, guarantor_id=p.guarantor_id, channel="email",
                                            staff_user_id="u_1")
        ns.sqs_drain(url)
        assert ses.calls - before == len(payers) - 2  # later sends to them = 0
        sent_to = {params["Destination"]["ToAddresses"][0] for _, params, _ in ses.accepted[-(len(payers) - 2):]}
        assert bounced.email not in sent_to and complained.email not in sent_to
