"""SECURITY.md T6 / R40 on this stack: 1,000 queued messages, the sending worker killed at
random points (before and after DynamoDB writes, before the provider call, after the provider
accepted but before the mark, mid-batch), redelivered and re-run, swept after the lease.

Ends with every message ``sent`` exactly once (counted in moto's SES and SNS) or ``failed``
with a reason, after the ``unknown`` rows are resolved the two ways the design allows: SES
events (our tags name the message) and staff review against the provider's records (rows the
provider never took are sent again; a worker claims ten at a time, so a kill strands up to ten)."""

from __future__ import annotations

import random
from collections import Counter, deque
from concurrent.futures import ThreadPoolExecutor

import pytest

from chalicelib.notify import channels, context, queue, selectors, services
from chalicelib.notify.outbox import MessageRef
from chalicelib.store import db
from tests import notify_support as ns

pytestmark = pytest.mark.usefixtures("dynamodb_endpoint")


class Killed(BaseException):
    """SIGKILL: nothing after it runs (BaseException: no ``except Exception`` catches it)."""


PAYERS = 250
PER_PAYER = (("email", "a"), ("email", "b"), ("sms", "a"), ("sms", "b"))
WORKERS = 4


def _worker(pending: deque[dict]) -> None:
    """One Lambda's life: take ten records, handle them; a kill returns the whole batch to the
    queue (nothing was reported), and the next invocation starts cold."""
    while True:
        batch = []
        try:
            for _ in range(10):
                batch.append(pending.popleft())
        except IndexError:
            if not batch:
                return
        try:
            services.work_items_handle(bodies=batch)
        except Killed:
            pending.extend(batch)
            context.invalidate()


def test_t6_a_thousand_messages_with_random_kills_end_sent_once_or_failed_with_a_reason(monkeypatch):
    rng = random.Random(6)
    pending: deque[dict] = deque()
    monkeypatch.setattr(queue, "enqueue", lambda bodies, delay_seconds=0: (pending.extend(bodies), 0)[1])
    with ns.aws():
        clock = ns.Clock(ns.utc(2026, 12, 1, 17, 0))
        cid = ns.clinic()
        with ThreadPoolExecutor(max_workers=8) as pool:
            payers = list(pool.map(lambda _: ns.payer(cid), range(PAYERS)))
        refs = [services.message_queue(clinic_id=cid, guarantor_id=p.guarantor_id, kind="on_demand", channel=ch,
                                       logical_key=key).ref for p in payers for ch, key in PER_PAYER]
        assert len(refs) == 1000
        ses, _ = ns.taps()  # the SMS tap only counts; moto's own record is checked below
        armed = {"on": True}
        kills = Counter()

        def maybe(where: str, p: float) -> None:
            if armed["on"] and rng.random() < p:
                kills[where] += 1
                raise Killed(where)

        def ddb(op, params):
            if op in ("UpdateItem", "PutItem", "TransactWriteItems"):
                maybe(f"ddb-{op}", 0.01)

        for channel, op in (("email", "SendEmail"), ("sms", "Publish")):
            client = channels.get(channel).client  # type: ignore[attr-defined]
            service = client.meta.service_model.service_id.hyphenize()
            client.meta.events.register(f"before-call.{service}.{op}", lambda **_: maybe("before-provider", 0.008))
            client.meta.events.register(f"after-call.{service}.{op}", lambda **_: maybe("after-provider", 0.01))
        db.add_request_hook(ddb)
        try:
            services.messages_due_fanout(clinic_id=cid, at=clock.at)
            for _ in range(12):
                with ThreadPoolExecutor(max_workers=WORKERS) as pool:  # concurrent Lambda invocations
                    list(pool.map(lambda _: _worker(pending), range(WORKERS)))
                clock.move(minutes=6)  # past the 5-minute lease
                try:
                    services.messages_due_fanout(clinic_id=cid, at=clock.at)
                except Killed:
                    continue
                if not pending:
                    break
        finally:
            armed["on"] = False
            db.remove_request_hook(ddb)
        assert kills["after-provider"] and kills["before-provider"] and kills["ddb-UpdateItem"]
        services.messages_due_fanout(clinic_id=cid, at=clock.at)
        assert not pending

        # Resolve the unknown rows. Email: SES publishes a Send event for every accepted message,
        # carrying our tags; the rest of the review is a person reading the provider's records.
        for _, params, provider_id in ses.accepted:
            tags = {t["Name"]: [t["Value"]] for t in params["Tags"]}
            services.provider_event_record(payload={"eventType": "Send", "mail": {
                "messageId": provider_id, "tags": tags, "destination": params["Destination"]["ToAddresses"]}})
        rows = {(r.guarantor_id, r.channel, r.message_id): r for p in payers
                for r in selectors.outbox_list(clinic_id=cid, guarantor_id=p.guarantor_id)}
        sms_by_phone = Counter(to for to, _ in ns.sms_sent().values())
        for p in payers:
            unknown_sms = [r for (g, ch, _), r in rows.items() if g == p.guarantor_id and ch == "sms"
                           and r.status == "unknown"]
            sent_sms = sum(1 for (g, ch, _), r in rows.items() if g == p.guarantor_id and ch == "sms"
                           and r.status == "sent")
            accepted_unmarked = sms_by_phone[p.mobile] - sent_sms
            for n, row in enumerate(unknown_sms):
                services.message_review_resolve(clinic_id=cid, owner=row.owner, message_id=row.message_id,
                                                outcome="sent" if n < accepted_unmarked else "resend",
                                                staff_user_id="u_review")
        for row in selectors.messages_review_list(clinic_id=cid):
            assert row.channel == "email"  # never reached SES: no Send event will ever come
            services.message_review_resolve(clinic_id=cid, owner=row.owner, message_id=row.message_id,
                                            outcome="resend", staff_user_id="u_review")
        resent = len(pending)
        _worker(pending)  # the resends go out once, like any due message
        assert not pending and not selectors.messages_review_list(clinic_id=cid)
        sms_by_phone = Counter(to for to, _ in ns.sms_sent().values())

        rows = {r.message_id: r for p in payers for r in selectors.outbox_list(clinic_id=cid,
                                                                             guarantor_id=p.guarantor_id)}
        assert set(rows) == {r.message_id for r in refs}  # 0 silent losses
        per_message = Counter(MessageRef.from_tags({t["Name"]: [t["Value"]] for t in params["Tags"]}).message_id
                              for _, params, _ in ses.accepted)
        from moto.ses.models import ses_backends

        assert len(ses_backends[ns.ACCOUNT][ns.REGION].sent_messages) == len(ses.accepted)
        for row in rows.values():
            assert row.status in ("sent", "failed"), (row.status, row.reason)
            if row.status == "failed":
                assert row.reason
            if row.channel == "email":
                assert per_message[row.message_id] == (1 if row.status == "sent" else 0), row
        sent_rows_by_phone = Counter(next(p.mobile for p in payers if p.guarantor_id == r.guarantor_id)
                                     for r in rows.values() if r.channel == "sms" and r.status == "sent")
        assert sms_by_phone == sent_rows_by_phone  # every SMS moto received is one sent row, no more
        sent = sum(r.status == "sent" for r in rows.values())
        assert resent, kills  # a kill between a batch's claim and its calls leaves rows to resend
        assert sent >= 980, (sent, kills)
