"""SECURITY.md T17 / R41-R43: a simulated year of reminders, stepped hour by hour through the
clock seam, over guarantors in every US time zone (Hawaii, Alaska, Arizona without DST), one
with no zone on file (the clinic's applies) and one with a zone that is not a zone (the window
valid in every US zone applies), across both DST changes.

Statements every other month plan balance notices and reminders (some at 07:00, 20:45, 21:30
and 02:30 local: before, at the edge of, after the window and inside the spring-forward gap);
guarantors grant consent, text STOP and START at random minutes, and pay at random times
(usually followed by ``reminders_cancel``, as payments will call it; sometimes not, so the
send-time balance check must catch it). The scheduler is down for a few hours now and then,
so overdue messages are delivered late, at night too.

Checked on every message the console channel accepted: 0 non-code messages outside 08:00-21:00
recipient-local, 0 sends without consent, 0 sends after a STOP until a START, 0 balance
notices or reminders while the amount due is 0, at most one confirmation per STOP.
"""

from __future__ import annotations

import json
import random
from collections import defaultdict
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from chalicelib.accounts import services as accounts
from chalicelib.ledger.accounts import ResponsibilityKind
from chalicelib.notify import rules, selectors, services
from tests import notify_support as ns

pytestmark = pytest.mark.usefixtures("dynamodb_endpoint")

ZONES: tuple[str | None, ...] = (
    "America/New_York", "America/Chicago", "America/Denver", "America/Phoenix", "America/Los_Angeles",
    "America/Anchorage", "Pacific/Honolulu", None, "Mars/Olympus",
)
CLINIC_ZONE = "America/Chicago"
START = ns.utc(2025, 12, 1, 0, 0)
HOURS = 365 * 24
MONTHS = (1, 3, 5, 7, 9, 11)
RULES = [
    {"rule_id": "b3", "when": "before", "days": 3, "time_of_day": "07:00", "channel": "email"},
    {"rule_id": "on", "when": "on", "days": 0, "time_of_day": "20:45", "channel": "sms"},
    {"rule_id": "a2", "when": "after", "days": 2, "time_of_day": "21:30", "channel": "email"},
    {"rule_id": "a5", "when": "after", "days": 5, "time_of_day": "02:30", "channel": "sms"},
    {"rule_id": "a9", "when": "after", "days": 9, "time_of_day": "12:00", "channel": "sms"},
]


def _due(month: int, i: int) -> date:
    if i % 3 == 0 and month in (3, 11):
        return date(2026, month, 8 if month == 3 else 1)  # the DST change days
    return date(2026, month, 1 + (7 * i) % 27)


def _zones_of(zone: str | None) -> tuple[ZoneInfo, ...]:
    return rules.candidate_zones(zone, CLINIC_ZONE)


def test_t17_a_year_of_reminders_respects_quiet_hours_consent_stop_and_paid_balances(tmp_path):
    rng = random.Random(17)
    with ns.console(tmp_path):
        clock = ns.Clock(START)
        cid = ns.clinic(time_zone=CLINIC_ZONE, caps={"sms": {"per_day": 2, "per_week": 6}})
        services.reminder_schedule_set(clinic_id=cid, rules=RULES)
        number = ns.number_of(cid)
        payers = []
        for i, zone in enumerate(ZONES):
            consent = {"email": True, "sms": i % 2 == 0}
            payers.append(ns.payer(cid, owes=0, statement=False, consent=consent, time_zone=zone))
        by_id = {p.guarantor_id: p for p in payers}
        by_phone = {p.mobile: p for p in payers}

        events: dict[int, list] = defaultdict(list)
        sms_events: dict[str, list[tuple[datetime, str]]] = defaultdict(list)  # guarantor -> (at, state)
        paid_intervals: dict[str, list[tuple[datetime, datetime]]] = defaultdict(list)
        statements: dict[str, list[datetime]] = defaultdict(list)

        def at_hour(when: datetime) -> int:
            return int((when - START).total_seconds() // 3600)

        for i, p in enumerate(payers):
            for n, month in enumerate(MONTHS):
                due = _due(month, i)
                created = datetime.combine(due - timedelta(days=20), datetime.min.time(), tzinfo=START.tzinfo) \
                    + timedelta(hours=13 + i)
                statements[p.guarantor_id].append(created)
                events[at_hour(created)].append(("statement", p, n, due))
                if rng.random() < 0.5:
                    paid = created + timedelta(hours=rng.randint(2, 24 * 30), minutes=rng.randint(1, 59))
                    events[at_hour(paid)].append(("pay", p, n, rng.random() < 0.7))
            if i % 2 == 1:
                grant = START + timedelta(hours=rng.randint(24, HOURS // 2), minutes=rng.randint(1, 59))
                events[at_hour(grant)].append(("grant", p))
                sms_events[p.guarantor_id].append((grant, "granted"))
            for _ in range(2):
                stop = START + timedelta(hours=rng.randint(48, HOURS - 48), minutes=rng.randint(1, 59))
                events[at_hour(stop)].append(("inbound", p, rng.choice(["STOP", "stop", "Unsubscribe", "END"])))
                sms_events[p.guarantor_id].append((stop, "revoked"))
                if rng.random() < 0.6:
                    start = stop + timedelta(hours=rng.randint(24 * 10, 24 * 40), minutes=rng.randint(1, 59))
                    events[at_hour(start)].append(("inbound", p, "START"))
                    sms_events[p.guarantor_id].append((start, "granted"))
        outages = {h for base in range(300, HOURS, 700) for h in range(base, base + rng.randint(3, 9))}

        queued: dict[str, list[tuple[datetime, selectors.MessageView]]] = {}

        def refresh(gid: str) -> None:
            queued[gid] = [(datetime.fromisoformat(r.due_at), r)
                           for r in selectors.outbox_list(clinic_id=cid, guarantor_id=gid) if r.status == "queued"]

        for p in payers:
            refresh(p.guarantor_id)
        pay_started: dict[tuple[str, int], datetime] = {}
        for hour in range(HOURS):
            now = START + timedelta(hours=hour)
            for event in sorted(events.get(hour, []), key=lambda e: e[0]):
                kind, p = event[0], event[1]
                clock.set(now + timedelta(minutes=rng.randint(1, 59)))
                if kind == "statement":
                    n, due = event[2], event[3]
                    enc = f"Y{n}"
                    accounts.service_line_charge(clinic_id=cid, guarantor_id=p.guarantor_id, encounter_number=enc,
                                                 line_number=1, patient_id=p.patient_id, date_of_service="2026-01-02",
                                                 procedure_code="99213", billed_cents=30_000)
                    accounts.patient_responsibility_post(clinic_id=cid, guarantor_id=p.guarantor_id,
                                                         line_id=f"{enc}-1", amount_cents=10_000 + n,
                                                         kind=ResponsibilityKind.COINSURANCE, source_key=f"pr:{enc}")
                    accounts.statement_create(clinic_id=cid, guarantor_id=p.guarantor_id,
                                              statement_date=(due - timedelta(days=20)).isoformat(),
                                              due_date=due.isoformat(), statement_id=f"s{n}")
                    services.statement_notifications_queue(clinic_id=cid, guarantor_id=p.guarantor_id,
                                                           statement_id=f"s{n}")
                    for (gid, m), paid_at in list(pay_started.items()):
                        if gid == p.guarantor_id:  # the paid interval ends when a new balance is billed
                            paid_intervals[gid].append((paid_at, clock.at))
                            del pay_started[(gid, m)]
                elif kind == "pay":
                    n, cancel = event[2], event[3]
                    due_cents = _amount_due(cid, p.guarantor_id)
                    if due_cents > 0:  # paid into unapplied funds: the amount due drops to 0 all the same
                        accounts.patient_payment_post(clinic_id=cid, guarantor_id=p.guarantor_id,
                                                      amount_cents=due_cents, applications={}, source_key=f"pay:{n}")
                        if _amount_due(cid, p.guarantor_id) == 0:
                            pay_started[(p.guarantor_id, n)] = clock.at
                        if cancel:
                            services.reminders_cancel(clinic_id=cid, guarantor_id=p.guarantor_id, reason="payment")
                elif kind == "grant":
                    services.guarantor_consent_record(clinic_id=cid, guarantor_id=p.guarantor_id, channel="sms",
                                                      granted=True, source="portal", actor="ip-hash")
                elif kind == "inbound":
                    services.inbound_sms_handle(payload=ns.inbound(p.mobile, event[2], to=number))
                refresh(p.guarantor_id)
            if hour in outages:
                continue
            clock.set(now)
            for gid, rows in queued.items():
                due_rows = [r for due_at, r in rows if due_at <= now]
                for row in due_rows:
                    services.message_send(clinic_id=cid, owner=row.owner, message_id=row.message_id)
                if due_rows:
                    refresh(gid)
        for gid, paid_at in ((g, t) for (g, _), t in pay_started.items()):
            paid_intervals[gid].append((paid_at, START + timedelta(hours=HOURS + 1)))

        lines = [json.loads(x) for x in (tmp_path / "outbox.jsonl").read_text().splitlines()]
        assert len(lines) > 150, len(lines)
        violations: list[str] = []
        confirmations: dict[str, int] = defaultdict(int)
        for line in lines:
            at = datetime.fromisoformat(line["at"])
            kind, owner = line["meta"]["kind"], line["meta"]["owner"]
            p = by_id[owner[2:]] if owner.startswith("G#") else by_phone[line["to"]]
            zone = ZONES[payers.index(p)]
            if kind == "reply":
                if "unsubscribed" in line["text"]:
                    confirmations[p.guarantor_id] += 1
                continue
            if not rules.within_quiet_window(at, _zones_of(zone)):
                violations.append(f"quiet hours: {kind} {line['channel']} at {at} for zone {zone}")
            if line["channel"] == "sms":
                base = "granted" if payers.index(p) % 2 == 0 else "none"
                state = next((s for t, s in sorted(sms_events[p.guarantor_id], reverse=True) if t < at), base)
                if state != "granted":
                    violations.append(f"sms without consent ({state}) at {at}")
            if kind in ("balance", "reminder") and any(a <= at < b for a, b in paid_intervals[p.guarantor_id]):
                violations.append(f"{kind} for a paid balance at {at}")
        assert violations == []
        stops = {g: sum(1 for _, s in evs if s == "revoked") for g, evs in sms_events.items()}
        assert all(confirmations[g] <= stops.get(g, 0) for g in confirmations)
        assert sum(confirmations.values()) >= 1
        histories = [h for p in payers for r in selectors.outbox_list(clinic_id=cid, guarantor_id=p.guarantor_id)
                     for h in r.history]
        reasons = {h[2] for h in histories}
        assert {"quiet_hours", "paid", "opted_out"} <= reasons, reasons  # every guard was exercised
        sent_zones = {ZONES[payers.index(by_id[x["meta"]["owner"][2:]])] for x in lines
                      if x["meta"]["owner"].startswith("G#")}
        assert sent_zones == set(ZONES)


def _amount_due(clinic_id: str, guarantor_id: str) -> int:
    from chalicelib.ledger.selectors import guarantor_figures

    return guarantor_figures(clinic_id=clinic_id, guarantor_id=guarantor_id).balances.amount_due

