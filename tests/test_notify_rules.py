"""The sending rules as pure functions: quiet hours in every US zone and across DST
(SECURITY.md R43), unknown zones, inbound keywords (R42), consent decisions (R41, H4, H7),
cap windows, reminder rules and settings validation."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from chalicelib.core.errors import InvalidInput
from chalicelib.notify import rules
from chalicelib.notify.settings import DEFAULT_RULES, rules_for_level, rules_parse, settings_parse

ZONES = (*rules.US_ZONES, "America/Indiana/Indianapolis", "America/Puerto_Rico", "America/Boise")
DST_DAYS = (date(2026, 3, 8), date(2026, 11, 1), date(2027, 3, 14))


@pytest.mark.parametrize("zone", ZONES)
def test_next_send_time_is_inside_the_window_every_quarter_hour_of_the_dst_days(zone):
    tz = ZoneInfo(zone)
    for day in (*DST_DAYS, date(2026, 7, 4), date(2026, 12, 31)):
        start = datetime.combine(day - timedelta(days=1), datetime.min.time(), tzinfo=UTC)
        for step in range(0, 3 * 24 * 4):
            at = start + timedelta(minutes=15 * step)
            nxt = rules.next_send_time(at, (tz,))
            local = nxt.astimezone(tz)
            assert nxt >= at and 8 <= local.hour < 21, (zone, at, local)
            if rules.within_quiet_window(at, (tz,)):
                assert nxt == at
            else:
                assert (local.hour, local.minute) == (8, 0), (zone, at, local)


def test_the_window_is_local_not_a_fixed_offset():
    ny = ZoneInfo("America/New_York")
    # 12:30 UTC is 07:30 EST in winter (too early) and 08:30 EDT in summer (fine).
    assert not rules.within_quiet_window(datetime(2026, 1, 15, 12, 30, tzinfo=UTC), (ny,))
    assert rules.within_quiet_window(datetime(2026, 7, 15, 12, 30, tzinfo=UTC), (ny,))
    # Arizona keeps MST all year; Hawaii HST.
    phx, hnl = ZoneInfo("America/Phoenix"), ZoneInfo("Pacific/Honolulu")
    assert rules.next_send_time(datetime(2026, 7, 15, 14, 0, tzinfo=UTC), (phx,)) == datetime(
        2026, 7, 15, 15, 0, tzinfo=UTC)
    assert rules.next_send_time(datetime(2026, 7, 15, 7, 0, tzinfo=UTC), (hnl,)) == datetime(
        2026, 7, 15, 18, 0, tzinfo=UTC)


def test_unknown_zone_uses_the_clinic_and_an_invalid_one_the_window_of_every_us_zone():
    assert [str(z) for z in rules.candidate_zones(None, "America/Denver")] == ["America/Denver"]
    assert [str(z) for z in rules.candidate_zones("Europe/Paris", "America/Denver")] == ["Europe/Paris"]
    zones = rules.candidate_zones("Mars/Olympus", "America/Denver")
    assert len(zones) == len(rules.US_ZONES)
    for hour in range(24):
        at = datetime(2026, 1, 15, hour, tzinfo=UTC)
        ok = rules.within_quiet_window(at, zones)
        assert ok == all(8 <= at.astimezone(z).hour < 21 for z in map(ZoneInfo, rules.US_ZONES))
    # Winter: 08:00 in Honolulu is 18:00 UTC; 21:00 in New York is 02:00 UTC.
    assert {h for h in range(24) if rules.within_quiet_window(datetime(2026, 1, 15, h, tzinfo=UTC), zones)} == {
        18, 19, 20, 21, 22, 23, 0, 1}
    assert rules.next_send_time(datetime(2026, 1, 15, 3, 0, tzinfo=UTC), zones) == datetime(
        2026, 1, 15, 18, 0, tzinfo=UTC)


def test_a_wall_time_skipped_by_dst_resolves_forward():
    ny = ZoneInfo("America/New_York")
    assert rules.local_time_to_utc(date(2026, 3, 8), "02:30", ny) == datetime(2026, 3, 8, 7, 30, tzinfo=UTC)
    assert rules.local_time_to_utc(date(2026, 3, 8), "10:00", ny) == datetime(2026, 3, 8, 14, 0, tzinfo=UTC)
    assert rules.local_time_to_utc(date(2026, 11, 1), "10:00", ny) == datetime(2026, 11, 1, 15, 0, tzinfo=UTC)


@pytest.mark.parametrize(("body", "keyword"), [
    ("STOP", "stop"), ("stop", "stop"), (" Stop ", "stop"), ("STOP ALL", "stop"), ("stopall", "stop"),
    ("Unsubscribe", "stop"), ("CANCEL", "stop"), ("end", "stop"), ("Quit.", "stop"), ("REVOKE", "stop"),
    ("opt out", "stop"), ("OPT-OUT", "stop"), ("pls stop texting me", "stop"), ("Please stop sending messages", "stop"),
    ("parar", "stop"), ("stop please", "stop"),
    ("HELP", "help"), ("help", "help"), ("Info", "help"), ("ayuda", "help"),
    ("START", "start"), ("unstop", "start"), ("Yes", "start"), ("sí", "start"),
    ("what is my balance", "other"), ("", "other"), ("cancel my appointment tomorrow", "other"),
    ("thanks", "other"),
])
def test_inbound_keywords_table(body, keyword):
    assert rules.keyword_classify(body) == keyword


@pytest.mark.parametrize(("kw", "expected"), [
    ({"exempt": True, "suppressed": "opted_out"}, (True, "exempt")),
    ({"exempt": True, "suppressed": "invalid"}, (False, "invalid_address")),
    ({"exempt": True, "suppressed": "bounced"}, (False, "bounced")),
    ({"suppressed": "opted_out", "recorded": "granted"}, (False, "opted_out")),
    ({"recorded": "revoked", "profile": True}, (False, "opted_out")),
    ({"recorded": "granted", "profile": False}, (True, "recorded")),
    ({"profile": True}, (True, "profile")),
    ({"profile": False, "clinic_default": "in"}, (False, "declined")),
    ({"clinic_default": "in"}, (True, "clinic_default")),
    ({"clinic_default": "unset"}, (False, "no_consent")),
    ({"clinic_default": "out"}, (False, "no_consent")),
])
def test_consent_decisions(kw, expected):
    args = {"channel": "sms", "exempt": False, "suppressed": None, "recorded": None, "profile": None,
            "clinic_default": "unset", **kw}
    decision = rules.consent_decide(**args)
    assert (decision.allowed, decision.reason) == expected


def test_cap_windows():
    at = datetime(2026, 12, 31, 23, 0, tzinfo=UTC)  # a Thursday in ISO week 2026-W53
    assert rules.cap_windows(at) == ("2026-W53", "2026-12-31")
    assert rules.cap_retry_at(at, week_full=False) == datetime(2027, 1, 1, tzinfo=UTC)
    assert rules.cap_retry_at(at, week_full=True) == datetime(2027, 1, 4, tzinfo=UTC)


def test_reminder_rules_validate_and_follow_the_highest_dunning_level():
    assert rules_parse([]) == ()
    for bad in ([{"rule_id": "x", "when": "during", "days": 1, "time_of_day": "10:00", "channel": "email"}],
                [{"rule_id": "x", "when": "on", "days": 3, "time_of_day": "10:00", "channel": "email"}],
                [{"rule_id": "x", "when": "after", "days": 1, "time_of_day": "25:00", "channel": "email"}],
                [{"rule_id": "x", "when": "after", "days": 1, "time_of_day": "10:00", "channel": "fax"}],
                [{"rule_id": "x", "when": "after", "days": 1, "time_of_day": "10:00", "channel": "sms"}] * 2,
                [{"rule_id": "x#y", "when": "after", "days": 1, "time_of_day": "10:00", "channel": "sms"}],
                [{"when": "after"}]):
        with pytest.raises(InvalidInput):
            rules_parse(bad)
    plain = {r.rule_id for r in rules_for_level(DEFAULT_RULES, 0)}
    assert "after-30-final" not in plain
    assert "after-30-final" in {r.rule_id for r in rules_for_level(DEFAULT_RULES, 2)}
    levels = rules_parse([
        {"rule_id": "a", "when": "after", "days": 5, "time_of_day": "10:00", "channel": "email"},
        {"rule_id": "b", "when": "after", "days": 5, "time_of_day": "11:00", "channel": "email", "dunning_level": 2},
    ])
    assert [r.rule_id for r in rules_for_level(levels, 1)] == ["a"]
    assert [r.rule_id for r in rules_for_level(levels, 3)] == ["b"]


def test_settings_validation():
    s = settings_parse({"consent_defaults": {"sms": "in"}, "caps": {"sms": {"per_day": 2, "per_week": 3}}})
    assert s.consent_defaults == {"email": "in", "sms": "in"} and s.caps["sms"].per_day == 2
    assert settings_parse({}).consent_defaults["sms"] == "unset"
    for bad in ({"nope": 1}, {"sender_email": "x"}, {"sms_origination_number": "5555550100"},
                {"consent_defaults": {"sms": "maybe"}}, {"paper_after_days": -1},
                {"caps": {"sms": {"per_day": 5, "per_week": 2}}}):
        with pytest.raises(InvalidInput):
            settings_parse(bad)
