"""A clinic's notification settings and reminder schedule: shapes, defaults and validation.

Pure data (no storage): services store them as JSON on the clinic collection. Sources:
REFERENCE-PORTAL.md §3.2 (statement profile notifications: before / on / after the due date,
days, time, mode) and §3.3 (opt-in defaults per channel, NotificationOptOutOnError and the
days before a paper statement), PRODUCT.md §8, SECURITY.md R41 (disclosure version).
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from typing import Any

from chalicelib.core.errors import InvalidInput

CHANNELS = ("email", "sms")
CONSENT_DEFAULTS = ("in", "out", "unset")
WHEN = ("before", "on", "after")
_TIME = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")
_E164 = re.compile(r"^\+1\d{10}$")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_RULE_ID = re.compile(r"^[A-Za-z0-9_-]{1,32}$")
#: The longest practice name an SMS carries (templates are linted with it, R13).
SMS_NAME_MAX = 24


@dataclass(frozen=True)
class FrequencyCap:
    """At most ``per_day`` automated messages a UTC day and ``per_week`` an ISO week, per
    guarantor and channel (balance notices and reminders; codes, receipts, replies and staff
    sends are not capped)."""

    per_day: int
    per_week: int


@dataclass(frozen=True)
class NotifySettings:
    """Everything a clinic configures about notifications.

    - ``sender_email``: SES ``From`` (a verified identity); ``None`` uses the deployment's.
    - ``sms_origination_number``: E.164 number SMS go out from and STOP/HELP come in to.
    - ``sms_name``: the practice name in SMS bodies (≤ 24 GSM-7 characters); default the
      clinic name, shortened.
    - ``consent_defaults``: per channel ``in`` / ``out`` / ``unset`` for guarantors with no
      recorded choice; ``unset`` behaves as out (REFERENCE-PORTAL §3.3).
    - ``disclosure_version``: the SMS consent disclosure shown to guarantors (R41).
    - ``opt_out_on_error`` / ``paper_after_days``: a hard bounce moves the guarantor back to
      paper statements after that many days (H4).
    - ``caps``: frequency caps per channel.
    """

    sender_email: str | None = None
    sender_name: str | None = None
    sms_origination_number: str | None = None
    sms_name: str | None = None
    consent_defaults: dict[str, str] = field(default_factory=lambda: {"email": "in", "sms": "unset"})
    disclosure_version: str = "sms-v1"
    opt_out_on_error: bool = True
    paper_after_days: int = 10
    caps: dict[str, FrequencyCap] = field(default_factory=lambda: {
        "email": FrequencyCap(per_day=2, per_week=6), "sms": FrequencyCap(per_day=1, per_week=4)})

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)


def settings_parse(data: dict[str, Any]) -> NotifySettings:
    """Validate a settings mapping (unknown keys refused). Raises InvalidInput naming the field."""
    allowed = set(NotifySettings.__dataclass_fields__)
    unknown = set(data) - allowed
    if unknown:
        raise InvalidInput(f"unknown notification settings: {sorted(unknown)}")
    base = NotifySettings()
    values: dict[str, Any] = {k: data.get(k, getattr(base, k)) for k in allowed}
    if values["sender_email"] is not None and not _EMAIL.match(str(values["sender_email"])):
        raise InvalidInput("sender_email is not an email address")
    number = values["sms_origination_number"]
    if number is not None and not _E164.match(str(number)):
        raise InvalidInput("sms_origination_number must be a US number in E.164 (+1XXXXXXXXXX)")
    name = values["sms_name"]
    if name is not None:
        from chalicelib.notify.templates import gsm7_length

        if not str(name).strip() or len(str(name)) > SMS_NAME_MAX or gsm7_length(str(name)) is None:
            raise InvalidInput(f"sms_name must be 1-{SMS_NAME_MAX} GSM-7 characters")
    defaults = dict(values["consent_defaults"])
    for channel, value in defaults.items():
        if channel not in CHANNELS or value not in CONSENT_DEFAULTS:
            raise InvalidInput(f"consent_defaults: {channel!r} must be one of {CONSENT_DEFAULTS}")
    values["consent_defaults"] = {**base.consent_defaults, **defaults}
    days = values["paper_after_days"]
    if isinstance(days, bool) or not isinstance(days, int) or not 0 <= days <= 365:
        raise InvalidInput("paper_after_days must be 0-365")
    caps: dict[str, FrequencyCap] = {}
    for channel, cap in dict(values["caps"]).items():
        if channel not in CHANNELS:
            raise InvalidInput(f"caps: unknown channel {channel!r}")
        cap = cap if isinstance(cap, FrequencyCap) else FrequencyCap(**dict(cap))
        if not 1 <= cap.per_day <= cap.per_week <= 50:
            raise InvalidInput("caps: need 1 <= per_day <= per_week <= 50")
        caps[channel] = cap
    values["caps"] = {**base.caps, **caps}
    values["opt_out_on_error"] = bool(values["opt_out_on_error"])
    return NotifySettings(**values)


def settings_load(text: str) -> NotifySettings:
    """Settings from their stored JSON."""
    return settings_parse(json.loads(text))


@dataclass(frozen=True)
class ReminderRule:
    """One reminder of a schedule (REFERENCE-PORTAL §3.2 "Notifications: Send, Days, Time").

    ``when`` before / on / after the statement due date by ``days``; sent at ``time_of_day``
    (``HH:MM``) in the recipient's time zone (quiet hours still apply at send time); on
    ``channel``; for guarantors whose dunning count is at least ``dunning_level`` (``None``:
    every level; of rules with the same timing and channel the highest matching level wins).
    ``rule_id`` names the rule in message keys, so it must stay stable.
    """

    rule_id: str
    when: str
    days: int
    time_of_day: str
    channel: str
    dunning_level: int | None = None

    def offset_days(self) -> int:
        """Days from the due date (negative before it)."""
        return {"before": -self.days, "on": 0, "after": self.days}[self.when]


DEFAULT_RULES: tuple[ReminderRule, ...] = (
    ReminderRule("before-3-email", "before", 3, "10:00", "email"),
    ReminderRule("on-sms", "on", 0, "10:00", "sms"),
    ReminderRule("after-7-email", "after", 7, "10:00", "email"),
    ReminderRule("after-14-sms", "after", 14, "12:00", "sms"),
    ReminderRule("after-30-final", "after", 30, "10:00", "email", dunning_level=2),
)


def rules_parse(data: list[dict[str, Any]]) -> tuple[ReminderRule, ...]:
    """Validate reminder rules. Raises InvalidInput naming the rule and field."""
    rules: list[ReminderRule] = []
    seen: set[str] = set()
    for raw in data:
        try:
            rule = ReminderRule(**raw)
        except TypeError:
            raise InvalidInput(f"reminder rule has unknown or missing fields: {sorted(raw)}") from None
        where = f"reminder rule {rule.rule_id!r}"
        if not isinstance(rule.rule_id, str) or not _RULE_ID.match(rule.rule_id) or rule.rule_id in seen:
            raise InvalidInput(f"{where}: rule_id must be unique, 1-32 letters, digits, '_' or '-'")
        seen.add(rule.rule_id)
        if rule.when not in WHEN:
            raise InvalidInput(f"{where}: when must be one of {WHEN}")
        if isinstance(rule.days, bool) or not isinstance(rule.days, int) or not 0 <= rule.days <= 365:
            raise InvalidInput(f"{where}: days must be 0-365")
        if rule.when == "on" and rule.days != 0:
            raise InvalidInput(f"{where}: 'on' the due date takes days 0")
        if not _TIME.match(str(rule.time_of_day)):
            raise InvalidInput(f"{where}: time_of_day must be HH:MM")
        if rule.channel not in CHANNELS:
            raise InvalidInput(f"{where}: channel must be one of {CHANNELS}")
        level = rule.dunning_level
        if level is not None and (isinstance(level, bool) or not isinstance(level, int) or not 0 <= level <= 20):
            raise InvalidInput(f"{where}: dunning_level must be 0-20 or null")
        rules.append(rule)
    return tuple(rules)


def rules_to_json(rules: tuple[ReminderRule, ...]) -> str:
    return json.dumps([asdict(r) for r in rules])


def rules_for_level(rules: tuple[ReminderRule, ...], dunning_count: int) -> tuple[ReminderRule, ...]:
    """The rules that apply to a guarantor at ``dunning_count``: the highest matching level per
    (when, days, channel), as REFERENCE-PORTAL H2 says messages follow the highest level."""
    best: dict[tuple[str, int, str], ReminderRule] = {}
    for rule in rules:
        level = rule.dunning_level if rule.dunning_level is not None else -1
        if level > dunning_count:
            continue
        key = (rule.when, rule.days, rule.channel)
        current = best.get(key)
        if current is None or level > (current.dunning_level if current.dunning_level is not None else -1):
            best[key] = rule
    return tuple(r for r in rules if best.get((r.when, r.days, r.channel)) is r)
