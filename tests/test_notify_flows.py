"""Notification flows on the embedded default (console channel, in-process queue) against
DynamoDB Local: queueing once per logical message, the send-time rules (consent, STOP,
quiet hours, caps, paid balance), reminders from a schedule, on-demand, receipts, plan
notices and sign-in codes (PRODUCT.md §8, SECURITY.md R40-R43)."""

from __future__ import annotations

import json
import logging

import pytest

from chalicelib.core.errors import InvalidInput
from chalicelib.notify import local, selectors, services
from tests import notify_support as ns

pytestmark = pytest.mark.usefixtures("dynamodb_endpoint")


@pytest.fixture
def outbox(tmp_path):
    with ns.console(tmp_path):
        yield tmp_path


def test_balance_notification_is_queued_once_and_sent_once_per_channel(outbox):
    ns.Clock(ns.utc(2026, 11, 30, 16, 0))  # 10:00 in Chicago
    cid = ns.clinic()
    p = ns.payer(cid)
    sid = ns.statement_id(p)
    first = services.balance_notification_queue(clinic_id=cid, guarantor_id=p.guarantor_id, statement_id=sid)
    again = services.balance_notification_queue(clinic_id=cid, guarantor_id=p.guarantor_id, statement_id=sid)
    assert [q.created for q in first] == [True, True] and [q.created for q in again] == [False, False]
    result = local.drain()
    assert result.sent == 2
    local.drain()
    rows = selectors.outbox_list(clinic_id=cid, guarantor_id=p.guarantor_id)
    assert sorted(r.channel for r in rows) == ["email", "sms"]
    for row in rows:
        assert row.status == "sent" and [h[0] for h in row.history] == ["queued", "sending", "sent"]
        assert row.body_text and "$125.40" in row.body_text
    sms = next(r for r in rows if r.channel == "sms")
    assert sms.body_text.startswith("Riverside Family: new bill $125.40. Pay: http") and "Pat" not in sms.body_text
    lines = ns.console_lines(outbox)
    assert len(lines) == 2 and {x["channel"] for x in lines} == {"email", "sms"}




def test_a_statements_messages_are_read_once_and_written_in_one_transaction(outbox, request_log):
    """A statement run queues this per statement: profile and statement read once, the balance
    notification and the reminders written together; again, nothing is written twice."""
    ns.Clock(ns.utc(2026, 11, 30, 16, 0))
    cid = ns.clinic()
    p = ns.payer(cid)
    sid = ns.statement_id(p)
    request_log.reset()
    first = services.statement_notifications_queue(clinic_id=cid, guarantor_id=p.guarantor_id, statement_id=sid)
    assert len(first) > 2 and all(q.created for q in first)
    ops = request_log.operations
    assert ops["TransactWriteItems"] == 1 and ops.get("PutItem", 0) == 0 and ops["GetItem"] <= 5, ops
    again = services.statement_notifications_queue(clinic_id=cid, guarantor_id=p.guarantor_id, statement_id=sid)
    assert [q.ref for q in again] == [q.ref for q in first] and not any(q.created for q in again)
    assert len(selectors.outbox_list(clinic_id=cid, guarantor_id=p.guarantor_id)) == len(first)

def _send_all(cid: str, gid: str) -> dict[str, services.SendOutcome]:
    out = {}
    for row in selectors.outbox_list(clinic_id=cid, guarantor_id=gid):
        out[f"{row.kind}/{row.channel}/{row.rule_id}"] = services.message_send(
            clinic_id=cid, owner=row.owner, message_id=row.message_id)
    return out


def test_reminders_follow_the_schedule_in_the_recipients_zone_and_plan_once(outbox):
    ns.Clock(ns.utc(2026, 11, 25, 15, 0))
    cid = ns.clinic(time_zone="America/Chicago")
    services.reminder_schedule_set(clinic_id=cid, rules=[
        {"rule_id": "b2", "when": "before", "days": 2, "time_of_day": "09:30", "channel": "email"},
        {"rule_id": "on", "when": "on", "days": 0, "time_of_day": "10:00", "channel": "sms"},
        {"rule_id": "a7", "when": "after", "days": 7, "time_of_day": "18:00", "channel": "email"},
        {"rule_id": "a7x", "when": "after", "days": 7, "time_of_day": "19:00", "channel": "email",
         "dunning_level": 3},
    ])
    p = ns.payer(cid, time_zone="America/Los_Angeles", due_date="2026-12-15")
    sid = ns.statement_id(p)
    planned = services.reminders_plan(clinic_id=cid, guarantor_id=p.guarantor_id, statement_id=sid)
    assert [q.created for q in planned] == [True, True, True]
    assert not any(q.created for q in services.reminders_plan(clinic_id=cid, guarantor_id=p.guarantor_id,
                                                                statement_id=sid))
    rows = {r.rule_id: r for r in selectors.outbox_list(clinic_id=cid, guarantor_id=p.guarantor_id)}
    assert set(rows) == {"b2", "on", "a7"}  # the level-3 rule is not for a guarantor at level 0
    assert rows["b2"].due_at == "2026-12-13T17:30:00+00:00"  # 09:30 PST
    assert rows["on"].due_at == "2026-12-15T18:00:00+00:00"
    assert rows["a7"].due_at == "2026-12-23T02:00:00+00:00"
    outcome = services.message_send(clinic_id=cid, owner=rows["b2"].owner, message_id=rows["b2"].message_id)
    assert outcome.reason == "not_due"


def test_reminder_for_a_paid_balance_is_suppressed_and_a_payment_cancels_pending_ones(outbox):
    c = ns.Clock(ns.utc(2026, 12, 1, 17, 0))
    cid = ns.clinic()
    paid, owing = ns.payer(cid), ns.payer(cid)
    for p in (paid, owing):
        services.reminders_plan(clinic_id=cid, guarantor_id=p.guarantor_id, statement_id=ns.statement_id(p))
    ns.pay(paid, 12_540, "pay-1")
    c.set(ns.utc(2026, 12, 12, 16, 0))  # the before-3-days email is due for both
    out_paid, out_owing = _send_all(cid, paid.guarantor_id), _send_all(cid, owing.guarantor_id)
    assert out_paid["reminder/email/before-3-email"].reason == "paid"
    assert out_owing["reminder/email/before-3-email"].status == "sent"
    assert services.reminders_cancel(clinic_id=cid, guarantor_id=owing.guarantor_id, reason="payment") == 3
    statuses = {r.rule_id: (r.status, r.reason) for r in selectors.outbox_list(clinic_id=cid,
                                                                               guarantor_id=owing.guarantor_id)}
    assert statuses["on-sms"] == ("cancelled", "cancelled:payment")
    assert statuses["before-3-email"] == ("sent", None)


def test_consent_rules_per_channel(outbox):
    ns.Clock(ns.utc(2026, 12, 1, 17, 0))
    cid = ns.clinic()
    none = ns.payer(cid, consent={})  # email default "in", sms default "unset" (= out)
    out = ns.payer(cid, consent={"email": False, "sms": False})
    for p in (none, out):
        services.balance_notification_queue(clinic_id=cid, guarantor_id=p.guarantor_id,
                                            statement_id=ns.statement_id(p))
    local.drain()
    got = {(p.guarantor_id, r.channel): (r.status, r.reason) for p in (none, out)
           for r in selectors.outbox_list(clinic_id=cid, guarantor_id=p.guarantor_id)}
    assert got[(none.guarantor_id, "email")] == ("sent", None)
    assert got[(none.guarantor_id, "sms")] == ("suppressed", "no_consent")
    # Declined at registration is not a STOP (the demo's new user read "opted_out" as one).
    assert got[(out.guarantor_id, "email")] == ("suppressed", "declined")
    assert got[(out.guarantor_id, "sms")] == ("suppressed", "declined")
    # A recorded grant (R41: source, disclosure version) opens SMS and sends the confirmation.
    assert services.guarantor_consent_record(clinic_id=cid, guarantor_id=none.guarantor_id, channel="sms",
                                             granted=True, source="portal", actor="ip-hash")
    lines = [x for x in ns.console_lines(outbox) if x["meta"]["kind"] == "reply"]
    assert len(lines) == 1 and "Msg & data rates may apply" in lines[0]["text"]
    view = selectors.contact_get(clinic_id=cid, channel="sms", destination=none.mobile)
    assert (view.consent, view.consent_source) == ("granted", "portal")


def test_quiet_hours_hold_messages_until_eight_local_but_not_codes(outbox):
    c = ns.Clock(ns.utc(2026, 12, 2, 4, 30))  # 22:30 in Chicago on Dec 1
    cid = ns.clinic(time_zone="America/Chicago")
    p = ns.payer(cid)
    services.balance_notification_queue(clinic_id=cid, guarantor_id=p.guarantor_id,
                                        statement_id=ns.statement_id(p))
    local.drain()
    rows = selectors.outbox_list(clinic_id=cid, guarantor_id=p.guarantor_id)
    assert {(r.status, r.reason, r.due_at) for r in rows} == {
        ("queued", "quiet_hours", "2026-12-02T14:00:00+00:00")}
    code = services.code_send(clinic_id=cid, request_id="req_1", channel="sms", destination=p.mobile,
                              code="024680")
    assert code.status == "sent"
    c.set(ns.utc(2026, 12, 2, 13, 59))
    assert local.tick(clinic_ids=[cid]).sent == 0
    c.set(ns.utc(2026, 12, 2, 14, 0))
    assert local.tick(clinic_ids=[cid]).sent == 2
    sent_at = [r.sent_at for r in selectors.outbox_list(clinic_id=cid, guarantor_id=p.guarantor_id)]
    assert sent_at == ["2026-12-02T14:00:00+00:00"] * 2


def test_frequency_caps_defer_automated_messages_to_the_next_day(outbox):
    ns.Clock(ns.utc(2026, 12, 1, 17, 0))
    cid = ns.clinic(caps={"email": {"per_day": 1, "per_week": 5}})
    p = ns.payer(cid, mobile=False)
    for n in range(3):
        services.message_queue(clinic_id=cid, guarantor_id=p.guarantor_id, kind="balance", channel="email",
                               logical_key=f"k{n}", statement_id=ns.statement_id(p),
                               fields={"due_date": "2026-12-15"})
    outcomes = [services.message_send(clinic_id=cid, owner=r.owner, message_id=r.message_id)
                for r in selectors.outbox_list(clinic_id=cid, guarantor_id=p.guarantor_id)]
    assert sorted(o.status for o in outcomes) == ["deferred", "deferred", "sent"]
    assert {o.due_at.isoformat() for o in outcomes if o.status == "deferred"} == {"2026-12-02T00:00:00+00:00"}


def test_on_demand_needs_a_statement_skips_quiet_hours_and_records_spoken_consent(outbox):
    ns.Clock(ns.utc(2026, 12, 2, 4, 30))  # 22:30 Chicago: staff may still send while on the phone
    cid = ns.clinic()
    never_billed = ns.payer(cid, statement=False)
    with pytest.raises(InvalidInput):
        services.notification_on_demand(clinic_id=cid, guarantor_id=never_billed.guarantor_id, channel="sms",
                                         staff_user_id="u_1")
    p = ns.payer(cid, consent={})
    q1 = services.notification_on_demand(clinic_id=cid, guarantor_id=p.guarantor_id, channel="sms",
                                         staff_user_id="u_1", request_key="call-1", consent_given=True)
    q2 = services.notification_on_demand(clinic_id=cid, guarantor_id=p.guarantor_id, channel="sms",
                                         staff_user_id="u_1", request_key="call-1")
    assert q1.ref == q2.ref and q1.created and not q2.created
    local.drain()
    row = selectors.message_get(clinic_id=cid, owner=q1.ref.owner, message_id=q1.ref.message_id)
    assert row.status == "sent" and "pay $125.40 here" in (row.body_text or "")
    assert selectors.contact_get(clinic_id=cid, channel="sms", destination=p.mobile).consent_source == "staff"


def test_sign_in_codes_are_never_stored_or_logged(outbox, caplog):
    caplog.set_level(logging.DEBUG)
    ns.Clock(ns.utc(2026, 12, 2, 9, 0))  # 03:00 in Chicago
    cid = ns.clinic()
    p = ns.payer(cid, consent={"sms": False})  # opted out of texts: codes still go (H7)
    outcome = services.code_send(clinic_id=cid, request_id="req_9", channel="sms", destination=p.mobile,
                                 code="135791")
    assert outcome.status == "sent"
    again = services.code_send(clinic_id=cid, request_id="req_9", channel="sms", destination=p.mobile,
                               code="135791")
    assert again.status == "skipped"
    [line] = [x for x in ns.console_lines(outbox) if x["meta"]["kind"] == "code"]
    assert "135791" in line["text"] and line["sensitive"] is True
    row = selectors.message_get(clinic_id=cid, owner=line["meta"]["owner"], message_id=line["meta"]["message_id"])
    assert row.status == "sent" and row.body_text is None and row.body_subject is None
    from chalicelib.store.db import clinic_scope
    from chalicelib.store.models_notify import MessageItem

    with clinic_scope(cid):
        raw = MessageItem.get(row.ref.pk, row.ref.sk).serialize()
    assert "135791" not in json.dumps(raw) and "body_sha256" not in raw
    assert "135791" not in caplog.text


def test_receipts_and_plan_notices(outbox):
    ns.Clock(ns.utc(2026, 12, 2, 18, 0))
    cid = ns.clinic()
    p = ns.payer(cid, language="es")
    receipt = services.receipt_email_queue(
        clinic_id=cid, guarantor_id=p.guarantor_id, receipt_id="r_1", receipt_number="R-000042",
        paid_on="2026-12-02", transaction_number="txn_1", card_brand="Visa", card_last4="4242",
        amount_cents=4_000)
    assert receipt is not None
    plans = services.plan_notice_queue(clinic_id=cid, guarantor_id=p.guarantor_id, plan_id="plan_1",
                                       notice="plan_upcoming", occurrence="2026-12-05", amount_cents=5_000,
                                       charge_date="2026-12-05")
    assert len(plans) == 2
    local.drain()
    rows = {(r.kind, r.channel): r for r in selectors.outbox_list(clinic_id=cid, guarantor_id=p.guarantor_id)}
    assert rows[("receipt", "email")].body_subject == "Riverside Family Medicine: recibo de pago R-000042"
    assert "Monto: $40.00" in (rows[("receipt", "email")].body_text or "")
    assert "$50.00 se cobrara el 05/12/2026" in (rows[("plan_upcoming", "sms")].body_text or "")
    assert all(r.status == "sent" for r in rows.values())


def test_the_receipt_email_prints_the_practices_account_number_else_the_guarantor_id(outbox):
    """The receipt's "Account" is the number the billing office knows (the roster's
    guarantor_id, stored on the profile); a guarantor without one shows our id."""
    from chalicelib.accounts import services as accounts

    ns.Clock(ns.utc(2026, 12, 2, 18, 0))
    cid = ns.clinic()
    numbered, plain = ns.payer(cid), ns.payer(cid)
    assert accounts.guarantor_account_number_set(clinic_id=cid, guarantor_id=numbered.guarantor_id,
                                                 account_number="ACC-7731")
    for p, n in ((numbered, 1), (plain, 2)):
        services.receipt_email_queue(
            clinic_id=cid, guarantor_id=p.guarantor_id, receipt_id=f"r_{n}", receipt_number=f"R-00000{n}",
            paid_on="2026-12-02", transaction_number=f"txn_{n}", card_brand="Visa", card_last4="4242",
            amount_cents=1_000)
    local.drain()
    [mine], [theirs] = ([r for r in selectors.outbox_list(clinic_id=cid, guarantor_id=p.guarantor_id)
                         if r.kind == "receipt"] for p in (numbered, plain))
    assert "Account: ACC-7731" in (mine.body_text or "") and numbered.guarantor_id not in (mine.body_text or "")
    assert f"Account: {plain.guarantor_id}" in (theirs.body_text or "")


def test_an_invalid_contact_is_a_permanent_failure_recorded_on_the_contact_point(outbox):
    ns.Clock(ns.utc(2026, 12, 2, 18, 0))
    cid = ns.clinic()
    p = ns.payer(cid)
    from chalicelib.store import keys
    from chalicelib.store.db import clinic_scope
    from chalicelib.store.models import GuarantorItem

    with clinic_scope(cid):
        GuarantorItem(keys.guarantor_pk(cid, p.guarantor_id), keys.PROFILE).update(
            actions=[GuarantorItem.email.set("not-an-address"), GuarantorItem.mobile.set("12")])
    services.balance_notification_queue(clinic_id=cid, guarantor_id=p.guarantor_id,
                                        statement_id=ns.statement_id(p))
    local.drain()
    rows = selectors.outbox_list(clinic_id=cid, guarantor_id=p.guarantor_id)
    assert {(r.status, r.reason) for r in rows} == {("failed", "invalid_address")}
    assert selectors.contact_get(clinic_id=cid, channel="email", destination="x@y.org").suppressed is None
    from chalicelib.notify import contacts

    with clinic_scope(cid):
        point = contacts.get(cid, "email", contacts.destination_hash("not-an-address"))
    assert point is not None and point.suppressed == "invalid"


def test_statement_delivery_moves_to_paper_days_after_a_hard_bounce(outbox):
    c = ns.Clock(ns.utc(2026, 12, 2, 18, 0))
    cid = ns.clinic(paper_after_days=10)
    p = ns.payer(cid)
    services.balance_notification_queue(clinic_id=cid, guarantor_id=p.guarantor_id, statement_id=ns.statement_id(p))
    local.drain()
    email_row = next(r for r in selectors.outbox_list(clinic_id=cid, guarantor_id=p.guarantor_id)
                     if r.channel == "email")
    result = services.provider_event_record(payload=ns.ses_event(email_row.ref, "Bounce", to=p.email))
    assert result.status == "bounced" and result.suppressed == 1
    assert selectors.statement_delivery_get(clinic_id=cid, guarantor_id=p.guarantor_id).reason == "bounced_grace"
    c.move(days=10)
    assert selectors.statement_delivery_get(clinic_id=cid, guarantor_id=p.guarantor_id).mode == "paper"
