"""Notification reads: a guarantor's outbox, one message, the review list, the local console
outbox, settings and schedules, contact state, email reputation, statement delivery mode.

Selectors take ``clinic_id`` and return frozen dataclasses; nothing here writes. Bodies are
returned only where they were kept (the embedded default); sign-in codes never are.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta

from chalicelib.core import clock
from chalicelib.core.errors import NotFound, UnknownGuarantor
from chalicelib.core.ids import require_id
from chalicelib.notify import config, contacts
from chalicelib.notify.context import settings_read
from chalicelib.notify.outbox import MessageRef
from chalicelib.notify.settings import DEFAULT_RULES, NotifySettings, ReminderRule, rules_parse
from chalicelib.store import keys
from chalicelib.store.db import clinic_scoped
from chalicelib.store.models import GuarantorItem, Item
from chalicelib.store.models_notify import MessageItem, NotifyStatItem, ReminderScheduleItem

#: Shards of the daily email outcome counters (a counter item per clinic-day would be hot).
STAT_SHARDS = 4


@dataclass(frozen=True)
class MessageView:
    """One outbox row. ``history`` is ``(status, UTC ISO time, reason)`` oldest first;
    ``body_*`` are None unless bodies are kept (embedded default) and it is not a code."""

    clinic_id: str
    owner: str
    message_id: str
    guarantor_id: str | None
    kind: str
    channel: str
    template: str
    language: str
    status: str
    reason: str | None
    history: tuple[tuple[str, str, str | None], ...]
    due_at: str
    created_at: str
    statement_id: str | None
    rule_id: str | None
    provider_id: str | None
    sent_at: str | None
    attempts: int
    body_subject: str | None
    body_text: str | None

    @property
    def ref(self) -> MessageRef:
        return MessageRef(self.clinic_id, self.owner, self.message_id)


def _view(clinic_id: str, m: MessageItem) -> MessageView:
    return MessageView(
        clinic_id=clinic_id, owner=m.owner, message_id=m.message_id, guarantor_id=m.guarantor_id,
        kind=m.message_kind, channel=m.channel, template=m.template, language=m.language, status=m.status,
        reason=m.reason,
        history=tuple((h.status, h.at.isoformat(), h.reason) for h in (m.history or [])),
        due_at=m.due_at.isoformat(), created_at=m.created_at.isoformat(), statement_id=m.statement_id,
        rule_id=m.rule_id, provider_id=m.provider_id, sent_at=m.sent_at.isoformat() if m.sent_at else None,
        attempts=int(m.attempts or 0), body_subject=m.body_subject, body_text=m.body_text,
    )


@clinic_scoped
def outbox_list(*, clinic_id: str, guarantor_id: str) -> list[MessageView]:
    """Every message of a guarantor, newest first (one Query on the guarantor's collection)."""
    pk = keys.guarantor_pk(clinic_id, require_id(guarantor_id, field="guarantor_id"))
    items = MessageItem.query(pk, MessageItem.sk.startswith(keys.MESSAGE_PREFIX), consistent_read=True)
    return sorted((_view(clinic_id, m) for m in items), key=lambda v: (v.created_at, v.message_id), reverse=True)


@clinic_scoped
def message_get(*, clinic_id: str, owner: str, message_id: str) -> MessageView:
    """One message by its ref. Raises NotFound (also for another clinic's ids), InvalidInput."""
    ref = MessageRef.parse(clinic_id, owner, message_id)
    try:
        return _view(clinic_id, MessageItem.get(ref.pk, ref.sk, consistent_read=True))
    except MessageItem.DoesNotExist:
        raise NotFound("message not found") from None


@clinic_scoped
def messages_review_list(*, clinic_id: str) -> list[MessageView]:
    """Messages whose outcome is ``unknown`` (a claim that may have sent), oldest first, for the
    staff review task (SECURITY.md R40)."""
    items = Item.gsi3.query(keys.review_gsi3pk(clinic_id))
    return [_view(clinic_id, m) for m in items if isinstance(m, MessageItem) and m.status == "unknown"]


def console_outbox_read(*, clinic_id: str | None = None, limit: int = 50) -> list[dict[str, object]]:
    """The latest messages the console channel wrote (embedded default only), newest first;
    ``clinic_id`` filters. Sign-in codes are included: the file never leaves the machine."""
    from chalicelib.notify.channels.console import FILE_NAME

    path = config.settings().outbox_dir / FILE_NAME
    if not path.exists():
        return []
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        row = json.loads(line)
        if clinic_id is None or row.get("meta", {}).get("clinic_id") == clinic_id:
            rows.append(row)
    return list(reversed(rows))[:limit]


@clinic_scoped
def notify_settings_get(*, clinic_id: str) -> NotifySettings:
    """The clinic's notification settings (defaults when none are stored)."""
    return settings_read(require_id(clinic_id, field="clinic_id"))


@clinic_scoped
def reminder_schedule_get(*, clinic_id: str, schedule_id: str = "default") -> tuple[ReminderRule, ...]:
    """A reminder schedule's rules; the built-in default schedule when none is stored."""
    try:
        item = ReminderScheduleItem.get(keys.clinic_pk(clinic_id),
                                        keys.reminder_schedule_sk(require_id(schedule_id, field="schedule_id")))
    except ReminderScheduleItem.DoesNotExist:
        return DEFAULT_RULES
    return rules_parse(json.loads(item.rules_json))


@dataclass(frozen=True)
class ContactView:
    """A contact point's state: consent (``granted``/``revoked``/None) and suppression."""

    channel: str
    consent: str | None
    consent_source: str | None
    suppressed: str | None
    bounced_at: str | None


@clinic_scoped
def contact_get(*, clinic_id: str, channel: str, destination: str) -> ContactView:
    """The state of one email address or mobile number (nothing recorded: all None)."""
    dest = contacts.normalize(channel, destination)
    if dest is None:
        return ContactView(channel, None, None, "invalid", None)
    point = contacts.get(clinic_id, channel, contacts.destination_hash(dest))
    if point is None:
        return ContactView(channel, None, None, None, None)
    return ContactView(channel, point.consent, point.consent_source, point.suppressed,
                       point.bounced_at.isoformat() if point.bounced_at else None)


@dataclass(frozen=True)
class Reputation:
    """A clinic's email outcomes on one UTC day and the rates over delivered + bounced."""

    delivered: int
    bounced: int
    complained: int

    @property
    def bounce_rate(self) -> float:
        total = self.delivered + self.bounced
        return self.bounced / total if total else 0.0

    @property
    def complaint_rate(self) -> float:
        total = self.delivered + self.bounced
        return self.complained / total if total else 0.0


@clinic_scoped
def reputation_get(*, clinic_id: str, day: str) -> Reputation:
    """Sum the day's sharded outcome counters (one BatchGetItem)."""
    wanted = [(keys.notify_stats_pk(clinic_id, day, s), keys.SINGLE) for s in range(STAT_SHARDS)]
    found = list(NotifyStatItem.batch_get(wanted, consistent_read=True))
    return Reputation(sum(int(i.delivered or 0) for i in found), sum(int(i.bounced or 0) for i in found),
                      sum(int(i.complained or 0) for i in found))


@dataclass(frozen=True)
class StatementDelivery:
    """How the next statement goes out: ``electronic`` or ``paper``, and why."""

    mode: str
    reason: str


@clinic_scoped
def statement_delivery_get(*, clinic_id: str, guarantor_id: str, at: datetime | None = None) -> StatementDelivery:
    """Electronic unless the guarantor has no usable email: none on file, declined at
    registration or import, opted out, or a hard
    bounce or complaint older than the clinic's ``paper_after_days`` when
    ``opt_out_on_error`` is on (REFERENCE-PORTAL H4, §3.3). Raises UnknownGuarantor."""
    at = at or clock.now()
    try:
        profile = GuarantorItem.get(keys.guarantor_pk(clinic_id, require_id(guarantor_id, field="guarantor_id")),
                                    keys.PROFILE)
    except GuarantorItem.DoesNotExist:
        raise UnknownGuarantor(f"guarantor {guarantor_id} not found") from None
    email = contacts.normalize_email(profile.email)
    if email is None:
        return StatementDelivery("paper", "no_email")
    if contacts.profile_flag(profile.consent, "email") is False:
        return StatementDelivery("paper", "declined")
    settings = settings_read(clinic_id)
    point = contacts.get(clinic_id, "email", contacts.destination_hash(email))
    if point is not None and point.consent == "revoked":
        return StatementDelivery("paper", "opted_out")
    if point is not None and point.suppressed in ("bounced", "complained") and settings.opt_out_on_error:
        since = point.bounced_at or point.suppressed_at or at
        if at >= since + timedelta(days=settings.paper_after_days):
            return StatementDelivery("paper", point.suppressed)
        return StatementDelivery("electronic", f"{point.suppressed}_grace")
    return StatementDelivery("electronic", "ok")
