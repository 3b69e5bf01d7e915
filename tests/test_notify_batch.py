"""One SQS delivery of work items handled as a batch (SERVERLESS-PERF-REL.md B7): the sends of
a clinic share one read, one claim transaction and one mark transaction, and every message is
still sent at most once when the batch repeats a message, shares a cap item, or meets a claim
taken by another worker; a failed item is reported alone; staff can send again a message the
provider never took (R40 review)."""

from __future__ import annotations

from datetime import timedelta

import pytest
import urllib3

from chalicelib.notify import context, queue, selectors, services
from chalicelib.notify.outbox import MessageRef, transition
from chalicelib.store.models_notify import MessageItem
from tests import notify_support as ns

pytestmark = pytest.mark.usefixtures("dynamodb_endpoint")


@pytest.fixture
def outbox(tmp_path):
    with ns.console(tmp_path):
        yield tmp_path


def _queue(cid: str, p: ns.Payer, channel: str, key: str, kind: str = "on_demand") -> services.Queued:
    fields = {"due_date": "2026-12-15", "when": "before"} if kind == "reminder" else None
    return services.message_queue(clinic_id=cid, guarantor_id=p.guarantor_id, kind=kind, channel=channel,
                                  logical_key=key, contact=p.email if channel == "email" else p.mobile,
                                  statement_id=ns.statement_id(p) if kind == "reminder" else None, fields=fields)


def test_ten_messages_of_one_delivery_share_one_read_one_claim_and_one_mark(outbox, request_log):
    ns.Clock(ns.utc(2026, 11, 30, 16, 0))
    cid = ns.clinic()
    payers = [ns.payer(cid) for _ in range(5)]
    bodies = [_queue(cid, p, ch, "k1").body for p in payers for ch in ("email", "sms")]
    queue.LOCAL.clear()
    context.clinic_context(cid)  # the clinic's settings and group, cached per worker (read once)
    request_log.reset()
    results = services.work_items_handle(bodies=bodies)
    assert [getattr(r, "status", r) for r in results] == ["sent"] * 10
    assert request_log.operations == {"BatchGetItem": 1, "TransactWriteItems": 2}, request_log.operations
    assert len(ns.console_lines(outbox)) == 10
    request_log.reset()
    again = services.work_items_handle(bodies=bodies)  # the whole delivery redelivered
    assert {(r.status, r.reason) for r in again} == {("skipped", "status_sent")}
    assert request_log.operations == {"BatchGetItem": 1} and len(ns.console_lines(outbox)) == 10


def test_a_message_twice_in_one_delivery_is_sent_once(outbox):
    ns.Clock(ns.utc(2026, 11, 30, 16, 0))
    cid = ns.clinic()
    p, other = ns.payer(cid), ns.payer(cid)
    one, two = _queue(cid, p, "email", "k1"), _queue(cid, other, "email", "k1")
    results = services.work_items_handle(bodies=[one.body, two.body, one.body])
    assert [(r.status, r.reason) for r in results] == [("sent", None), ("sent", None), ("skipped", "duplicate")]
    assert len(ns.console_lines(outbox)) == 2


def test_two_capped_messages_to_one_guarantor_in_one_delivery_are_both_counted(outbox):
    """Both count against the same frequency-cap item: one claim transaction cannot write it
    twice, so the second is read and claimed after the first (and sees its count)."""
    ns.Clock(ns.utc(2026, 11, 30, 16, 0))
    cid = ns.clinic(caps={"email": {"per_day": 2, "per_week": 5}})
    p = ns.payer(cid)
    sid = ns.statement_id(p)
    first = _queue(cid, p, "email", "rem-1", kind="reminder")
    second = services.message_queue(clinic_id=cid, guarantor_id=p.guarantor_id, kind="balance", channel="email",
                                     logical_key=sid, statement_id=sid, contact=p.email,
                                     fields={"due_date": "2026-12-15"})
    third = _queue(cid, p, "email", "rem-3", kind="reminder")
    results = services.work_items_handle(bodies=[first.body, second.body, third.body])
    assert [r.status for r in results] == ["sent", "sent", "deferred"]
    assert results[2].reason == "frequency_cap"
    assert len(ns.console_lines(outbox)) == 2


def test_a_claim_taken_meanwhile_drops_out_and_the_rest_of_the_batch_is_sent(outbox, monkeypatch):
    """Another worker claims one message between this batch's read and its claim: the claim
    transaction is cancelled for that message alone; the others are claimed again and sent."""
    ns.Clock(ns.utc(2026, 11, 30, 16, 0))
    cid = ns.clinic()
    payers = [ns.payer(cid) for _ in range(3)]
    queued = [_queue(cid, p, "email", "k1") for p in payers]
    taken = queued[1].ref
    real = services._claim_all

    def race(claims, now, lease_seconds):
        transition(taken, to="sending", expect=("queued",), reason="other worker")
        return real(claims, now, lease_seconds)

    monkeypatch.setattr(services, "_claim_all", race)
    results = services.work_items_handle(bodies=[q.body for q in queued])
    assert [(r.status, r.reason) for r in results] == [("sent", None), ("skipped", "lost_claim"), ("sent", None)]
    assert len(ns.console_lines(outbox)) == 2


def test_a_message_that_cannot_be_rendered_fails_alone(outbox):
    """A poison message (here a balance notice queued without its template's due date) raises for
    itself; the batch's other messages are claimed and sent, so a redelivery cannot take them
    down with it."""
    ns.Clock(ns.utc(2026, 11, 30, 16, 0))
    cid = ns.clinic()
    p, other = ns.payer(cid), ns.payer(cid)
    poison = services.message_queue(clinic_id=cid, guarantor_id=p.guarantor_id, kind="balance", channel="email",
                                    logical_key="no-fields", statement_id=ns.statement_id(p), contact=p.email)
    good = _queue(cid, other, "email", "k1")
    results = services.work_items_handle(bodies=[poison.body, good.body])
    assert isinstance(results[0], Exception) and results[1].status == "sent"
    assert len(ns.console_lines(outbox)) == 1
    assert selectors.outbox_list(clinic_id=cid, guarantor_id=p.guarantor_id)[0].status == "queued"


def test_a_bad_item_fails_alone_and_another_clinics_sends_go_on(outbox):
    ns.Clock(ns.utc(2026, 11, 30, 16, 0))
    a, b = ns.clinic(), ns.clinic()
    pa, pb = ns.payer(a), ns.payer(b)
    bodies = [_queue(a, pa, "email", "k1").body, {"op": "send", "clinic_id": a, "owner": "G#x", "message_id": "no"},
              {"op": "teleport"}, _queue(b, pb, "sms", "k1").body]
    results = services.work_items_handle(bodies=bodies)
    assert getattr(results[0], "status", None) == "sent" and getattr(results[3], "status", None) == "sent"
    assert "message id" in str(results[1]) and "unknown work item" in str(results[2])
    assert len(ns.console_lines(outbox)) == 2


def test_review_resend_queues_again_a_message_the_provider_never_took(outbox):
    """A worker stopped between a batch's claim and its provider call: after the lease the row
    is ``unknown``; staff who find no trace of it at the provider send it again, once."""
    clock = ns.Clock(ns.utc(2026, 11, 30, 16, 0))
    cid = ns.clinic()
    p = ns.payer(cid)
    q = _queue(cid, p, "email", "k1")
    queue.LOCAL.clear()
    lease = clock.at + timedelta(minutes=5)  # claimed (as _claim_all does), then the worker died
    transition(q.ref, to="sending", expect=("queued",), index_at=lease,
               actions=[MessageItem.claim_token.set("t" * 32), MessageItem.lease_until.set(lease)])
    clock.move(minutes=6)
    services.messages_due_fanout(clinic_id=cid, at=clock.at)
    [row] = selectors.messages_review_list(clinic_id=cid)
    with pytest.raises(Exception, match="sent, failed or resend"):
        services.message_review_resolve(clinic_id=cid, owner=row.owner, message_id=row.message_id,
                                        outcome="retry", staff_user_id="u_staff")
    resolved = services.message_review_resolve(clinic_id=cid, owner=row.owner, message_id=row.message_id,
                                               outcome="resend", staff_user_id="u_staff")
    assert resolved.status == "queued"
    again = services.message_review_resolve(clinic_id=cid, owner=row.owner, message_id=row.message_id,
                                            outcome="resend", staff_user_id="u_staff")
    assert (again.status, again.reason) == ("skipped", "lost_race")
    assert [b["message_id"] for b in queue.LOCAL] == [q.ref.message_id]
    results = services.work_items_handle(bodies=list(queue.LOCAL))
    assert [r.status for r in results] == ["sent"] and len(ns.console_lines(outbox)) == 1
    assert selectors.outbox_list(clinic_id=cid, guarantor_id=p.guarantor_id)[0].status == "sent"
    assert MessageRef.parse(cid, row.owner, row.message_id) == q.ref


# --- adversarial batches (review of the batched send) ----------------------------------------------


def _cap_used(cid: str, p: ns.Payer, channel: str, at) -> tuple[int, int]:
    from chalicelib.notify import rules
    from chalicelib.store import keys
    from chalicelib.store.db import clinic_scope
    from chalicelib.store.models_notify import SendCapItem

    with clinic_scope(cid):
        try:
            item = SendCapItem.get(keys.guarantor_pk(cid, p.guarantor_id),
                                   keys.send_cap_sk(channel, rules.cap_windows(at)[0]), consistent_read=True)
        except SendCapItem.DoesNotExist:
            return 0, 0
    return int(item.day_used or 0), int(item.week_used or 0)


def _status(q: services.Queued) -> str:
    from chalicelib.store.db import clinic_scope

    with clinic_scope(q.ref.clinic_id):
        return MessageItem.get(q.ref.pk, q.ref.sk, consistent_read=True).status


class _Faulty:
    """Wraps the console channels: ``plan[message_id]`` is an exception to raise instead of
    sending, or a callable run after the send (a provider event arriving before the mark)."""

    def __init__(self, monkeypatch) -> None:
        from chalicelib.notify import channels

        self.plan: dict[str, object] = {}
        real_get = channels.get

        def get(name):
            channel = real_get(name)
            outer = self

            class Wrapped:
                def send(self, message):
                    todo = outer.plan.get(message.meta.get("message_id", ""))
                    if isinstance(todo, Exception):
                        raise todo
                    provider_id = channel.send(message)
                    if callable(todo):
                        todo(provider_id)
                    return provider_id

            return Wrapped()

        monkeypatch.setattr(services.channels, "get", get)


def test_a_mixed_delivery_sends_each_once_and_counts_each_cap_once(outbox):
    """Two clinics, email and SMS of one guarantor, two capped messages sharing a cap item plus a
    third on another channel, a duplicate, a sweep item: every message once, caps exact."""
    clock = ns.Clock(ns.utc(2026, 11, 30, 16, 0))
    a, b = ns.clinic(), ns.clinic()
    pa, pb = ns.payer(a), ns.payer(b)
    r1 = _queue(a, pa, "email", "r1", kind="reminder")
    r2 = _queue(a, pa, "email", "r2", kind="reminder")
    r3 = _queue(a, pa, "sms", "r3", kind="reminder")
    o1 = _queue(b, pb, "sms", "o1")
    r4 = _queue(b, pb, "email", "r4", kind="reminder")
    bodies = [r1.body, o1.body, r2.body, {"op": "sweep", "clinic_id": b, "at": clock.at.isoformat()},
              r3.body, r1.body, r4.body, o1.body]
    results = services.work_items_handle(bodies=bodies)
    statuses = [getattr(r, "status", type(r).__name__) for r in results]
    assert statuses == ["sent", "sent", "sent", "FanoutResult", "sent", "skipped", "sent", "skipped"], statuses
    assert len(ns.console_lines(outbox)) == 5
    assert _cap_used(a, pa, "email", clock.at) == (2, 2)
    assert _cap_used(a, pa, "sms", clock.at) == (1, 1)
    assert _cap_used(b, pb, "email", clock.at) == (1, 1)
    assert _cap_used(b, pb, "sms", clock.at) == (0, 0)  # on demand: not capped


def test_a_throttled_send_mid_batch_is_requeued_and_gives_its_cap_slot_back(outbox, monkeypatch):
    from chalicelib.notify.channels.base import SendRetryable

    clock = ns.Clock(ns.utc(2026, 11, 30, 16, 0))
    cid = ns.clinic()
    p, other = ns.payer(cid), ns.payer(cid)
    first = _queue(cid, p, "email", "r1", kind="reminder")
    throttled = _queue(cid, p, "sms", "r2", kind="reminder")
    last = _queue(cid, other, "email", "r3", kind="reminder")
    faulty = _Faulty(monkeypatch)
    faulty.plan[throttled.ref.message_id] = SendRetryable("throttled", retry_after=60)
    queue.LOCAL.clear()
    results = services.work_items_handle(bodies=[first.body, throttled.body, last.body])
    assert [r.status for r in results] == ["sent", "retry", "sent"]
    assert [_status(q) for q in (first, throttled, last)] == ["sent", "queued", "sent"]
    assert _cap_used(cid, p, "sms", clock.at) == (0, 0) and _cap_used(cid, p, "email", clock.at) == (1, 1)
    assert not queue.LOCAL  # the local queue has no delays: the due sweep finds it again
    del faulty.plan[throttled.ref.message_id]
    clock.move(minutes=2)
    assert [r.status for r in services.work_items_handle(bodies=[throttled.body])] == ["sent"]
    assert _cap_used(cid, p, "sms", clock.at) == (1, 1) and len(ns.console_lines(outbox)) == 3


def test_an_unknown_send_mid_batch_goes_to_review_and_the_rest_are_marked(outbox, monkeypatch):
    from chalicelib.notify.channels.base import SendUnknown

    ns.Clock(ns.utc(2026, 11, 30, 16, 0))
    cid = ns.clinic()
    payers = [ns.payer(cid) for _ in range(3)]
    qs = [_queue(cid, p, "sms", "k1") for p in payers]
    faulty = _Faulty(monkeypatch)
    faulty.plan[qs[1].ref.message_id] = SendUnknown("timeout")
    results = services.work_items_handle(bodies=[q.body for q in qs])
    assert [r.status for r in results] == ["sent", "unknown", "sent"]
    assert [_status(q) for q in qs] == ["sent", "unknown", "sent"]
    assert [r.message_id for r in selectors.messages_review_list(clinic_id=cid)] == [qs[1].ref.message_id]
    again = services.work_items_handle(bodies=[q.body for q in qs])  # redelivered: nothing resent
    assert {r.status for r in again} == {"skipped"} and len(ns.console_lines(outbox)) == 2


def test_a_delivery_event_before_the_mark_is_kept_and_the_others_are_marked(outbox, monkeypatch):
    ns.Clock(ns.utc(2026, 11, 30, 16, 0))
    cid = ns.clinic()
    payers = [ns.payer(cid) for _ in range(3)]
    qs = [_queue(cid, p, "email", "k1") for p in payers]
    faulty = _Faulty(monkeypatch)
    faulty.plan[qs[0].ref.message_id] = lambda pid: services.provider_event_record(
        payload=ns.ses_event(qs[0].ref, "Delivery", provider_id=pid))
    results = services.work_items_handle(bodies=[q.body for q in qs])
    assert [r.status for r in results] == ["sent"] * 3
    assert [_status(q) for q in qs] == ["delivered", "sent", "sent"]
    assert len(ns.console_lines(outbox)) == 3


def _settle(bodies_list: list[list[dict]], rounds: int = 5) -> None:
    """Handle each delivery in its own thread at once; then redeliver what failed and drain what
    was queued again, until nothing is left (SQS would)."""
    import threading

    from chalicelib.notify import local

    pending = bodies_list
    for _ in range(rounds):
        failed: list[dict] = []
        lock = threading.Lock()
        barrier = threading.Barrier(len(pending))

        def run(bodies, failed=failed, lock=lock, barrier=barrier):
            barrier.wait()
            results = services.work_items_handle(bodies=bodies)
            with lock:
                failed.extend(b for b, r in zip(bodies, results, strict=True) if isinstance(r, Exception))

        threads = [threading.Thread(target=run, args=(b,)) for b in pending]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        local.drain()
        if not failed:
            return
        pending = [failed]
    raise AssertionError("deliveries kept failing")


@pytest.mark.parametrize("seed", range(3))
def test_concurrent_workers_on_overlapping_deliveries_send_each_message_once(outbox, seed):
    """Two workers get overlapping deliveries at once (SQS at-least-once): a message in both is
    sent once, and two sends of one guarantor's channel in different workers both count."""
    clock = ns.Clock(ns.utc(2026, 11, 30, 16, 0))
    cid = ns.clinic(caps={"email": {"per_day": 5, "per_week": 10}, "sms": {"per_day": 5, "per_week": 10}})
    p, q2 = ns.payer(cid), ns.payer(cid)
    a = _queue(cid, p, "email", f"a{seed}", kind="reminder")
    b = _queue(cid, p, "sms", f"b{seed}", kind="reminder")
    c = _queue(cid, q2, "email", f"c{seed}", kind="reminder")
    d = _queue(cid, p, "email", f"d{seed}", kind="reminder")  # shares a's cap item, in the other worker
    e = _queue(cid, q2, "sms", f"e{seed}")
    queue.LOCAL.clear()
    x = [a.body, b.body, c.body]
    y = [c.body, d.body, b.body, e.body] if seed % 2 else [d.body, e.body, c.body, b.body]
    _settle([x, y, x] if seed == 2 else [x, y])
    sent = [line["meta"]["message_id"] for line in ns.console_lines(outbox)]
    assert sorted(sent) == sorted(m.ref.message_id for m in (a, b, c, d, e)), sent
    assert _cap_used(cid, p, "email", clock.at) == (2, 2)
    assert _cap_used(cid, p, "sms", clock.at) == (1, 1)
    assert _cap_used(cid, q2, "email", clock.at) == (1, 1)


@pytest.mark.parametrize(("nth", "code"), [(1, "TransactionConflict"), (2, "TransactionConflict"),
                                           (1, "ThrottlingException"), (2, "InternalServerError")])
def test_a_storage_fault_on_the_claim_or_mark_transaction_sends_nothing_twice(outbox, nth, code):
    """The ``nth`` TransactWriteItems of a delivery (1: the claim, 2: the mark) is answered with
    ``code`` on every try: the delivery's records fail or are marked one by one; redelivered,
    nothing is sent twice and every message ends sent (or in review, never resent)."""
    import json as _json

    from chalicelib.store import db
    from tests.payments_support import _FakeHttp

    ns.Clock(ns.utc(2026, 11, 30, 16, 0))
    cid = ns.clinic()
    payers = [ns.payer(cid) for _ in range(3)]
    qs = [_queue(cid, p, "sms", "k1") for p in payers]
    seen = [0]

    def handler(model, params, **_):
        if model.name != "TransactWriteItems":
            return None
        body = _json.loads(params.get("body") or b"{}")
        if len(body.get("TransactItems", [])) < 3:
            return None
        seen[0] += 1
        if seen[0] != nth and not (seen[0] > nth and seen[0] <= nth + 3):
            return None
        if code == "TransactionConflict":
            reasons = [{"Code": "None"} for _ in body["TransactItems"]]
            reasons[0] = {"Code": "TransactionConflict", "Message": "injected"}
            return (_FakeHttp(400), {"Error": {"Code": "TransactionCanceledException", "Message": "injected"},
                                     "CancellationReasons": reasons, "ResponseMetadata": {}})
        return (_FakeHttp(500 if code == "InternalServerError" else 400),
                {"Error": {"Code": code, "Message": "injected"}, "ResponseMetadata": {}})

    events = db.connection().client.meta.events
    events.register("before-call.dynamodb", handler, unique_id="batch-fault")
    try:
        first = services.work_items_handle(bodies=[q.body for q in qs])
    finally:
        events.unregister("before-call.dynamodb", unique_id="batch-fault")
    again = services.work_items_handle(bodies=[q.body for q, r in zip(qs, first, strict=True)
                                               if isinstance(r, Exception)])
    assert not any(isinstance(r, Exception) for r in again), again
    sent = [line["meta"]["message_id"] for line in ns.console_lines(outbox)]
    assert sorted(sent) == sorted(q.ref.message_id for q in qs)
    assert {_status(q) for q in qs} <= {"sent", "unknown"}
    if nth == 2:
        assert {_status(q) for q in qs} == {"sent"}, [_status(q) for q in qs]  # marked one by one


def test_a_claim_cancelled_for_one_lost_race_and_one_conflict_retries_the_conflicted_message(outbox):
    """One claim transaction cancelled with a ConditionalCheckFailed on one claim's item and a
    TransactionConflict on another's message: the conflicted message did not lose its claim
    (nothing says so), so the delivery is retried rather than the message dropped as lost."""
    import json as _json

    from chalicelib.store import db
    from tests.payments_support import _FakeHttp

    ns.Clock(ns.utc(2026, 11, 30, 16, 0))
    cid = ns.clinic()
    payers = [ns.payer(cid) for _ in range(3)]
    qs = [_queue(cid, p, "sms", "k1") for p in payers]
    injected = [False]

    def handler(model, params, **_):
        if model.name != "TransactWriteItems" or injected[0]:
            return None
        injected[0] = True
        items = _json.loads(params.get("body") or b"{}")["TransactItems"]
        reasons = [{"Code": "None"} for _ in items]
        reasons[0] = {"Code": "ConditionalCheckFailed", "Message": "injected"}
        reasons[-1] = {"Code": "TransactionConflict", "Message": "injected"}
        return (_FakeHttp(400), {"Error": {"Code": "TransactionCanceledException", "Message": "injected"},
                                 "CancellationReasons": reasons, "ResponseMetadata": {}})

    events = db.connection().client.meta.events
    events.register("before-call.dynamodb", handler, unique_id="mixed-fault")
    try:
        first = services.work_items_handle(bodies=[q.body for q in qs])
    finally:
        events.unregister("before-call.dynamodb", unique_id="mixed-fault")
    assert all(isinstance(r, Exception) for r in first), first  # redelivered, none dropped as lost
    again = services.work_items_handle(bodies=[q.body for q in qs])
    assert [r.status for r in again] == ["sent"] * 3
    assert len(ns.console_lines(outbox)) == 3


def test_a_cap_refund_whose_answer_is_lost_gives_back_one_slot_not_two(outbox, monkeypatch):
    """A throttled send gives its cap slot back in the same transaction as its status change;
    DynamoDB applies it, the answer is lost and the SDK retries: the transaction's request token
    makes the retry a no-op (a separate decrement would run twice and free a slot the sent
    message still holds)."""
    from botocore.exceptions import ReadTimeoutError

    from chalicelib.notify.channels.base import SendRetryable
    from chalicelib.store import db
    from chalicelib.store.keys import SEND_CAP_PREFIX

    clock = ns.Clock(ns.utc(2026, 11, 30, 16, 0))
    cid = ns.clinic()
    p = ns.payer(cid)
    sent = _queue(cid, p, "email", "r1", kind="reminder")
    throttled = _queue(cid, p, "email", "r2", kind="reminder")
    queue.LOCAL.clear()
    assert [r.status for r in services.work_items_handle(bodies=[sent.body])] == ["sent"]
    assert _cap_used(cid, p, "email", clock.at) == (1, 1)
    http = urllib3.PoolManager()
    lost = [0]

    def lose_answer(request, **_):  # armed once the provider refused: the next cap write is the refund
        if lost[0] or SEND_CAP_PREFIX.encode() not in (request.body or b""):
            return None
        lost[0] += 1
        http.request(request.method, request.url, body=request.body, headers=dict(request.headers))
        raise ReadTimeoutError(endpoint_url=request.url)

    events = db.connection().client.meta.events

    faulty = _Faulty(monkeypatch)
    faulty.plan[throttled.ref.message_id] = SendRetryable("throttled", retry_after=60)
    real_not_accepted = services._not_accepted

    def arm(*args, **kwargs):
        events.register("before-send.dynamodb", lose_answer, unique_id="refund-lost")
        return real_not_accepted(*args, **kwargs)

    monkeypatch.setattr(services, "_not_accepted", arm)
    try:
        [result] = services.work_items_handle(bodies=[throttled.body])
    finally:
        events.unregister("before-send.dynamodb", unique_id="refund-lost")
    assert lost == [1] and result.status == "retry"
    assert _cap_used(cid, p, "email", clock.at) == (1, 1)  # the sent reminder still holds its slot
    assert _status(throttled) == "queued"
