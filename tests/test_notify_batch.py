"""One SQS delivery of work items handled as a batch (SERVERLESS-PERF-REL.md B7): the sends of
a clinic share one read, one claim transaction and one mark transaction, and every message is
still sent at most once when the batch repeats a message, shares a cap item, or meets a claim
taken by another worker; a failed item is reported alone; staff can send again a message the
provider never took (R40 review)."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from chalicelib.notify import context, queue, selectors, services
from chalicelib.notify.outbox import MessageRef, transition
from chalicelib.store.models_notify import MessageItem
from tests import notify_support as ns

pytestmark = pytest.mark.usefixtures("dynamodb_endpoint")


@pytest.fixture
def outbox(tmp_path):
    with ns.console(tmp_path):
        yield tmp_path


def _sent_lines(outbox) -> list[dict]:
    path = outbox / "outbox.jsonl"
    return [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []


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
    assert len(_sent_lines(outbox)) == 10
    request_log.reset()
    again = services.work_items_handle(bodies=bodies)  # the whole delivery redelivered
    assert {(r.status, r.reason) for r in again} == {("skipped", "status_sent")}
    assert request_log.operations == {"BatchGetItem": 1} and len(_sent_lines(outbox)) == 10


def test_a_message_twice_in_one_delivery_is_sent_once(outbox):
    ns.Clock(ns.utc(2026, 11, 30, 16, 0))
    cid = ns.clinic()
    p, other = ns.payer(cid), ns.payer(cid)
    one, two = _queue(cid, p, "email", "k1"), _queue(cid, other, "email", "k1")
    results = services.work_items_handle(bodies=[one.body, two.body, one.body])
    assert [(r.status, r.reason) for r in results] == [("sent", None), ("sent", None), ("skipped", "duplicate")]
    assert len(_sent_lines(outbox)) == 2


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
    assert len(_sent_lines(outbox)) == 2


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
    assert len(_sent_lines(outbox)) == 2


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
    assert len(_sent_lines(outbox)) == 1
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
    assert len(_sent_lines(outbox)) == 2


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
    assert [r.status for r in results] == ["sent"] and len(_sent_lines(outbox)) == 1
    assert selectors.outbox_list(clinic_id=cid, guarantor_id=p.guarantor_id)[0].status == "sent"
    assert MessageRef.parse(cid, row.owner, row.message_id) == q.ref
