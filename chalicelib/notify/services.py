"""Notification services: queue, plan, send, sweep, cancel; provider events and inbound SMS.

How a message goes out at most once (SECURITY.md R40, SERVERLESS.md §2.5):

1. It is an outbox row whose id is a digest of its logical key (clinic, owner, kind, channel,
   statement / rule / request), written with ``attribute_not_exists``: planning twice queues once.
2. A send (:func:`message_send` for one, :func:`work_items_handle` for an SQS delivery of up
   to ten, whose storage calls are shared) reads the row, the guarantor's profile and balance,
   the contact point and the cap item (one consistent BatchGetItem) and decides: suppressed
   (no consent, STOP, bounce, paid, superseded), deferred (quiet hours, frequency cap) or send.
   Then it renders and **claims** the row ``queued → sending`` with a conditional update (a
   lease and a claim token) before the provider call; the pay link and the frequency-cap
   count are written in the claim's transaction (one transaction for the delivery's claims),
   so a lost claim leaves neither behind. A duplicate delivery, a second worker or a retried
   Lambda loses the claim and does nothing.
3. After the call the row becomes ``sent`` (conditioned on the claim token; one transaction
   for the delivery), ``failed`` (permanent refusal), ``queued`` again (a refusal that proves
   nothing was accepted: throttling, quotas; its cap slot given back in the same write) or
   ``unknown`` (a timeout: it may have gone out).
4. A process killed between claim and mark leaves ``sending`` (at most its delivery's ten);
   after the lease the sweeper moves it to ``unknown`` for review, never back to ``queued`` by
   itself (SES and SNS take no idempotency key). SES events (tags carry our ids) move
   ``unknown`` to ``sent``/``delivered``; staff may resolve it ``sent``, ``failed`` or
   ``resend`` (:func:`message_review_resolve`).

Every service takes ``clinic_id`` and is ``@clinic_scoped``; times are UTC from
``core.clock``; amounts are integer cents. No service logs a body, an address or a code.
"""

from __future__ import annotations

import contextvars
import hashlib
import json
import logging
import re
import threading
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from pynamodb.exceptions import PutError, UpdateError
from pynamodb.expressions.condition import Condition
from pynamodb.expressions.update import Action

from chalicelib.accounts import selectors as account_selectors
from chalicelib.accounts.selectors import account_number_of
from chalicelib.core import clock
from chalicelib.core import config as core_config
from chalicelib.core.errors import InvalidInput, NotFound, TryAgainLater, UnknownGuarantor
from chalicelib.core.ids import new_id, require_id
from chalicelib.core.money import format_cents, require_cents
from chalicelib.ledger import verify
from chalicelib.ledger.selectors import GuarantorFigures, figures_from_item
from chalicelib.links import services as links
from chalicelib.links.services import LinkKind
from chalicelib.notify import channels, config, contacts, context, queue, rules, selectors, templates
from chalicelib.notify.channels.base import Outgoing, SendPermanent, SendRetryable, SendUnknown
from chalicelib.notify.outbox import (
    TRANSITIONS,
    MessageRef,
    TransitionLost,
    hour_of,
    iso,
    message_id_for,
    new_item,
    put_new,
    transition,
    transition_update,
)
from chalicelib.notify.outbox import note as outbox_note
from chalicelib.notify.settings import NotifySettings, ReminderRule, rules_for_level, rules_parse, rules_to_json
from chalicelib.notify.settings import settings_parse as notify_settings_parse
from chalicelib.store import keys
from chalicelib.store.db import RETRYABLE_REASONS, Tx, TxFailed, clinic_scope, clinic_scoped
from chalicelib.store.models import BalanceItem, GuarantorItem, Item, StatementItem
from chalicelib.store.models_notify import (
    ContactPointItem,
    InboundItem,
    MessageItem,
    NotifySettingsItem,
    NotifyStatItem,
    ProviderRefItem,
    ReminderScheduleItem,
    SendCapItem,
    SweepMarkItem,
)
from chalicelib.tenants import selectors as tenant_selectors

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 8
LOOKBACK = timedelta(days=7)
FIRST_LOOKBACK = timedelta(hours=24)
STAT_SHARDS = selectors.STAT_SHARDS
CODE_MINUTES = links.CODE_MINUTES
#: Bounce and complaint alarms fire well below SES's review thresholds (5% / 0.1%; R11).
BOUNCE_ALERT = 0.02
COMPLAINT_ALERT = 0.0005


@dataclass(frozen=True)
class Policy:
    """What a kind of message is subject to: consent (else exempt), quiet hours, frequency caps,
    the paid-balance re-check, and whether it carries a pay link."""

    consent: bool
    quiet: bool
    capped: bool
    paid_check: bool
    link: bool


POLICIES: dict[str, Policy] = {
    "balance": Policy(consent=True, quiet=True, capped=True, paid_check=True, link=True),
    "reminder": Policy(consent=True, quiet=True, capped=True, paid_check=True, link=True),
    "on_demand": Policy(consent=True, quiet=False, capped=False, paid_check=False, link=True),
    "receipt": Policy(consent=False, quiet=False, capped=False, paid_check=False, link=False),
    "code": Policy(consent=False, quiet=False, capped=False, paid_check=False, link=False),
    "contact_changed": Policy(consent=False, quiet=False, capped=False, paid_check=False, link=False),
    "plan_upcoming": Policy(consent=True, quiet=True, capped=False, paid_check=False, link=False),
    "plan_processed": Policy(consent=True, quiet=True, capped=False, paid_check=False, link=False),
    "plan_failed": Policy(consent=True, quiet=True, capped=False, paid_check=False, link=False),
    "reply": Policy(consent=False, quiet=False, capped=False, paid_check=False, link=False),
}


@dataclass(frozen=True)
class SendOutcome:
    """What one :func:`message_send` did: ``sent``, ``failed``, ``suppressed``, ``deferred``
    (waits until ``due_at``), ``retry`` (not accepted; queued again), ``unknown`` (may have
    gone out; review) or ``skipped`` (not queued, not due, or another worker has it)."""

    status: str
    reason: str | None = None
    due_at: datetime | None = None


@dataclass(frozen=True)
class Queued:
    """A queued message: its ref, whether this call created it (False: it existed), and its
    work-queue body (ids and the contact's keyed hash only)."""

    ref: MessageRef
    created: bool
    body: dict[str, str]


# --- settings and schedules ----------------------------------------------------------------------


@clinic_scoped
def notify_settings_set(*, clinic_id: str, settings: Mapping[str, Any]) -> NotifySettings:
    """Validate and store the clinic's notification settings (REFERENCE-PORTAL §3.3); return them.

    Raises InvalidInput naming the field.
    """
    parsed = notify_settings_parse(dict(settings))
    pk = keys.clinic_pk(require_id(clinic_id, field="clinic_id"))
    try:
        item = NotifySettingsItem.get(pk, keys.NOTIFY_SETTINGS, consistent_read=True)
        item.settings_json = parsed.to_json()
    except NotifySettingsItem.DoesNotExist:
        item = NotifySettingsItem(pk, keys.NOTIFY_SETTINGS, settings_json=parsed.to_json())
    item.save()  # conditioned on the version read (VersionAttribute)
    context.invalidate(clinic_id)
    numbers_forget()
    return parsed


@clinic_scoped
def reminder_schedule_set(*, clinic_id: str, rules: list[dict[str, Any]],
                          schedule_id: str = "default") -> tuple[ReminderRule, ...]:
    """Store a reminder schedule (before / on / after the due date, days, time of day, channel,
    dunning level: REFERENCE-PORTAL §3.2, H2) under ``schedule_id``; statement profiles name it.

    Raises InvalidInput naming the rule and field.
    """
    parsed = rules_parse(rules)
    require_id(schedule_id, field="schedule_id")
    pk = keys.clinic_pk(clinic_id)
    try:
        item = ReminderScheduleItem.get(pk, keys.reminder_schedule_sk(schedule_id), consistent_read=True)
        item.rules_json = rules_to_json(parsed)
    except ReminderScheduleItem.DoesNotExist:
        item = ReminderScheduleItem(pk, keys.reminder_schedule_sk(schedule_id), schedule_id=schedule_id,
                                    rules_json=rules_to_json(parsed))
    item.save()
    return parsed


# --- queueing -------------------------------------------------------------------------------------


def _profile(clinic_id: str, guarantor_id: str) -> GuarantorItem:
    try:
        return GuarantorItem.get(keys.guarantor_pk(clinic_id, require_id(guarantor_id, field="guarantor_id")),
                                 keys.PROFILE, consistent_read=True)
    except GuarantorItem.DoesNotExist:
        raise UnknownGuarantor(f"guarantor {guarantor_id} not found") from None


def _channels_on_file(profile: GuarantorItem, wanted: Iterable[str] = ("email", "sms")) -> list[str]:
    return [c for c in wanted if _contact(profile, c)]


def _contact(profile: GuarantorItem, channel: str) -> str | None:
    return profile.email if channel == "email" else profile.mobile


@clinic_scoped
def message_queue(*, clinic_id: str, guarantor_id: str, kind: str, channel: str, logical_key: str,
                  language: str = "en", due_at: datetime | None = None, template: str | None = None,
                  statement_id: str | None = None, rule_id: str | None = None,
                  dunning_level: int | None = None, fields: Mapping[str, Any] | None = None,
                  contact: str | None = None) -> Queued:
    """Queue one logical message for a guarantor; idempotent per (kind, channel, logical_key).

    ``due_at`` (UTC; default now; a past time is clamped to now) places it in the due index.
    ``fields`` hold template values that are not read at send time (due date, receipt facts,
    plan amounts in cents): ids, dates and amounts only, never clinical detail. ``contact`` is
    the address on file when queued: only its keyed hash is kept, so the send reads the contact
    point in the same request as the message (the send still uses the profile's address then).
    Raises InvalidInput for an unknown kind or channel.
    """
    ref, item = _message_item(clinic_id=clinic_id, guarantor_id=guarantor_id, kind=kind, channel=channel,
                              logical_key=logical_key, language=language, due_at=due_at, template=template,
                              statement_id=statement_id, rule_id=rule_id, dunning_level=dunning_level,
                              fields=fields, contact=contact)
    return Queued(ref, put_new(item), _body(ref, channel, item.destination_hash))


def _message_item(*, clinic_id: str, guarantor_id: str, kind: str, channel: str, logical_key: str,
                  language: str = "en", due_at: datetime | None = None, template: str | None = None,
                  statement_id: str | None = None, rule_id: str | None = None,
                  dunning_level: int | None = None, fields: Mapping[str, Any] | None = None,
                  contact: str | None = None) -> tuple[MessageRef, MessageItem]:
    """The item :func:`message_queue` writes (same arguments), not written."""
    if kind not in POLICIES or kind in ("code", "reply", "contact_changed"):
        raise InvalidInput(f"kind must be one of {sorted(set(POLICIES) - {'code', 'reply', 'contact_changed'})}")
    tpl = template or kind
    if channel not in templates.TEMPLATES[tpl].channels:
        raise InvalidInput(f"{kind} messages are not sent by {channel}")
    owner = keys.guarantor_owner(require_id(guarantor_id, field="guarantor_id"))
    ref = MessageRef(clinic_id, owner, message_id_for(clinic_id, owner, kind, channel, logical_key))
    now = clock.now()
    when = max(due_at, now) if due_at is not None else now
    normalized = contacts.normalize(channel, contact)
    item = new_item(ref, kind=kind, channel=channel, template=tpl, language=language, due_at=when,
                    guarantor_id=guarantor_id, statement_id=statement_id, rule_id=rule_id,
                    dunning_level=dunning_level, fields=dict(fields or {}),
                    destination_hash=contacts.destination_hash(normalized) if normalized else None)
    return ref, item


def _put_all(items: list[tuple[MessageRef, MessageItem]]) -> list[Queued]:
    """Write new messages: one transaction when none exists yet (a new statement's set), else
    each on its own (``put_new``: those already there are left as they are)."""
    if 1 < len(items) <= 100:
        tx = Tx()
        for _, item in items:
            tx.put(item, condition=MessageItem.pk.does_not_exist())
        try:
            tx.commit()
            return [Queued(ref, True, _body(ref, item.channel, item.destination_hash)) for ref, item in items]
        except TxFailed as exc:
            if exc.retryable:
                raise
    return [Queued(ref, put_new(item), _body(ref, item.channel, item.destination_hash)) for ref, item in items]


def _send_now(queued: list[Queued]) -> None:
    """Hand newly queued, due-now messages to the worker (the sweeper is the backstop)."""
    fresh = [q.body for q in queued if q.created]
    if fresh:
        try:
            queue.enqueue(fresh)
        except Exception:
            log.warning("notify: enqueue failed; the sweeper will pick the messages up", exc_info=True)


def _statement(clinic_id: str, guarantor_id: str, statement_id: str) -> StatementItem:
    try:
        return StatementItem.get(keys.guarantor_pk(clinic_id, guarantor_id),
                                 keys.statement_sk(require_id(statement_id, field="statement_id")))
    except StatementItem.DoesNotExist:
        raise NotFound(f"statement {statement_id} not found") from None


@clinic_scoped
def balance_notification_queue(*, clinic_id: str, guarantor_id: str, statement_id: str) -> list[Queued]:
    """Queue the balance notification for a newly billed statement on every channel on file
    (PRODUCT.md §8 "sent at once"), and hand it to the worker. Consent, quiet hours and the
    balance are checked at send time. Raises UnknownGuarantor, NotFound (statement)."""
    profile = _profile(clinic_id, guarantor_id)
    statement = _statement(clinic_id, guarantor_id, statement_id)
    queued = _put_all(_balance_items(clinic_id, guarantor_id, statement_id, profile, statement))
    _send_now(queued)
    return queued


def _balance_items(clinic_id: str, guarantor_id: str, statement_id: str, profile: GuarantorItem,
                   statement: StatementItem) -> list[tuple[MessageRef, MessageItem]]:
    return [
        _message_item(clinic_id=clinic_id, guarantor_id=guarantor_id, kind="balance", channel=channel,
                      logical_key=f"statement:{statement_id}", language=profile.language,
                      statement_id=statement_id, fields={"due_date": statement.due_date},
                      contact=_contact(profile, channel))
        for channel in _channels_on_file(profile)
    ]


@clinic_scoped
def reminders_plan(*, clinic_id: str, guarantor_id: str, statement_id: str,
                   schedule_id: str = "default") -> list[Queued]:
    """Queue the statement's reminders from the clinic's reminder schedule (PRODUCT.md §8,
    REFERENCE-PORTAL H2): each rule's day relative to the due date, at its time of day in the
    guarantor's time zone (else the clinic's), on its channel, for the guarantor's dunning
    level. A time already passed by more than 12 hours is skipped; planning twice queues once.
    The hourly scheduler sends them. Raises UnknownGuarantor, NotFound (statement)."""
    profile = _profile(clinic_id, guarantor_id)
    statement = _statement(clinic_id, guarantor_id, statement_id)
    schedule = selectors.reminder_schedule_get(clinic_id=clinic_id, schedule_id=schedule_id)
    return _put_all(_reminder_items(clinic_id, guarantor_id, statement_id, profile, statement, schedule,
                                    int(profile.dunning_count or 0)))


def _reminder_items(clinic_id: str, guarantor_id: str, statement_id: str, profile: GuarantorItem,
                    statement: StatementItem, schedule: tuple[ReminderRule, ...],
                    dunning_count: int) -> list[tuple[MessageRef, MessageItem]]:
    """The reminders of ``schedule`` for a guarantor at ``dunning_count`` (the count with this
    statement), from the profile's contacts, language and time zone (else the clinic's)."""
    ctx = context.clinic_context(clinic_id)
    zone = rules.zone_or_none(profile.time_zone) or rules.zone_or_none(ctx.time_zone) or ZoneInfo("UTC")
    due = date.fromisoformat(statement.due_date)
    now = clock.now()
    on_file = set(_channels_on_file(profile))
    out: list[tuple[MessageRef, MessageItem]] = []
    for rule in rules_for_level(schedule, dunning_count):
        if rule.channel not in on_file:
            continue
        at = rules.local_time_to_utc(due + timedelta(days=rule.offset_days()), rule.time_of_day, zone)
        if at < now - timedelta(hours=12):
            continue
        out.append(_message_item(
            clinic_id=clinic_id, guarantor_id=guarantor_id, kind="reminder", channel=rule.channel,
            logical_key=f"statement:{statement_id}:rule:{rule.rule_id}", language=profile.language,
            due_at=at, statement_id=statement_id, rule_id=rule.rule_id, dunning_level=rule.dunning_level,
            fields={"due_date": statement.due_date, "when": rule.when}, contact=_contact(profile, rule.channel)))
    return out


@clinic_scoped
def statement_notifications_queue(*, clinic_id: str, guarantor_id: str, statement_id: str,
                                  schedule_id: str = "default") -> list[Queued]:
    """What a new statement sets off: its balance notification and its reminders. The profile
    and the statement are read once, and a new statement's messages are written in one
    transaction; messages already there are left as they are (so calling it again queues
    nothing twice). The statement run writes them in the statement's own transaction instead
    (:class:`StatementNotices`) and calls this only for a statement it finds already issued.
    The reminders follow the dunning count the statement was issued with (a run's record keeps
    it), not the profile's now: a count raised since must not add another level's reminders to
    an old statement. Raises UnknownGuarantor, NotFound (statement)."""
    profile = _profile(clinic_id, guarantor_id)
    statement = _statement(clinic_id, guarantor_id, statement_id)
    issued_at = getattr(statement, "dunning_count", None) if getattr(statement, "source", None) == "run" else None
    dunning = int(issued_at) if issued_at is not None else int(profile.dunning_count or 0)
    prepared = StatementNotices(clinic_id).prepare(guarantor=profile, statement=statement, dunning_count=dunning,
                                                   schedule_id=schedule_id)
    queued = _put_all(list(prepared.items))
    _send_now(queued[:prepared.balance_count])
    return queued


@dataclass(frozen=True)
class PreparedNotices:
    """A new statement's messages, built and not written: ``items`` (message ref and item) with
    the balance notification (one per channel on file) first, ``balance_count`` of them, then
    the reminders."""

    items: tuple[tuple[MessageRef, MessageItem], ...]
    balance_count: int


class StatementNotices:
    """Builds the balance notification and reminders of many new statements of one clinic (a
    page of a statement run) without a request per statement, for the caller to write in the
    statement's own snapshot transaction: the messages then exist if and only if the statement
    does, so each is queued exactly once (PRODUCT.md §1.3, §8; their ids are keyed by the
    statement, so a later :func:`statement_notifications_queue` for it adds nothing).

    The messages are :func:`statement_notifications_queue`'s, built from the caller's items
    instead of a re-read: the guarantor's profile as read for the statement, with the dunning
    count the snapshot writes, and the new statement (its id and due date). Each reminder
    schedule is read once for the builder's life (configuration, read at its start like
    :class:`~chalicelib.links.services.LinkIssuer`'s groups); the clinic's context is cached
    per process (``notify.context``). Make one per invocation. Thread-safe.
    """

    def __init__(self, clinic_id: str) -> None:
        self.clinic_id = require_id(clinic_id, field="clinic_id")
        self._schedules: dict[str, tuple[ReminderRule, ...]] = {}
        self._lock = threading.Lock()

    def _schedule(self, schedule_id: str) -> tuple[ReminderRule, ...]:
        with self._lock:  # held through a miss's read, so concurrent callers read a schedule once
            known = self._schedules.get(schedule_id)
            if known is None:
                known = selectors.reminder_schedule_get(clinic_id=self.clinic_id, schedule_id=schedule_id)
                self._schedules[schedule_id] = known
            return known

    def prepare(self, *, guarantor: GuarantorItem, statement: StatementItem, dunning_count: int,
                schedule_id: str = "default") -> PreparedNotices:
        """The messages of ``statement``, a new statement of ``guarantor`` whose dunning count
        becomes ``dunning_count`` with it. Nothing is written; no request, except a schedule's
        GetItem the first time it is named (and the clinic context's, once per process). No
        email or mobile on file: no messages. Raises InvalidInput (bad ids)."""
        if not _channels_on_file(guarantor):
            return PreparedNotices((), 0)
        gid, sid = guarantor.guarantor_id, statement.statement_id
        balance = _balance_items(self.clinic_id, gid, sid, guarantor, statement)
        reminders = _reminder_items(self.clinic_id, gid, sid, guarantor, statement, self._schedule(schedule_id),
                                    dunning_count)
        return PreparedNotices(tuple(balance + reminders), len(balance))

    @staticmethod
    def add_to(tx: Tx, prepared: PreparedNotices) -> None:
        """Put the messages into ``tx``, each only where nothing is stored under its key."""
        for _, item in prepared.items:
            tx.put(item, condition=MessageItem.pk.does_not_exist())

    @staticmethod
    def committed(prepared: PreparedNotices) -> list[Queued]:
        """Once the transaction that wrote ``prepared`` committed: hand the balance notification
        to the worker now (reminders wait for their time; the sweeper is the backstop if this
        process dies first). Returns the messages as queued."""
        queued = [Queued(ref, True, _body(ref, item.channel, item.destination_hash)) for ref, item in prepared.items]
        _send_now(queued[:prepared.balance_count])
        return queued


@clinic_scoped
def reminders_cancel(*, clinic_id: str, guarantor_id: str, reason: str) -> int:
    """Cancel every pending (queued) reminder of a guarantor at once; return how many.

    Called when a payment arrives by any channel (PRODUCT.md §8: "a payment by any channel
    cancels pending reminders at once"); the next statement plans new ones. A reminder being
    sent at this instant is not cancelled, but its send re-checks the live balance. ``reason``
    is a short code (``payment``), stored on each cancelled row.
    """
    pk = keys.guarantor_pk(clinic_id, require_id(guarantor_id, field="guarantor_id"))
    cancelled = 0
    for item in MessageItem.query(pk, MessageItem.sk.startswith(keys.MESSAGE_PREFIX),
                                  filter_condition=(MessageItem.status == "queued")
                                  & (MessageItem.message_kind == "reminder"), consistent_read=True):
        try:
            transition(MessageRef(clinic_id, item.owner, item.message_id), to="cancelled", expect=("queued",),
                       reason=f"cancelled:{reason}"[:60])
            cancelled += 1
        except TransitionLost:
            continue
    return cancelled


@clinic_scoped
def notification_on_demand(*, clinic_id: str, guarantor_id: str, channel: str, staff_user_id: str,
                           request_key: str | None = None, consent_given: bool = False) -> Queued:
    """Send a QuickPay message now, from staff, while the guarantor is on the phone
    (REFERENCE-PORTAL H3). Does not raise the dunning count (nothing here does). Not held by
    quiet hours or caps; consent still applies, and ``consent_given`` records the guarantor's
    spoken consent for this channel (source ``staff``, actor the staff user) first. The same
    ``request_key`` sends once (a double click). Raises UnknownGuarantor, InvalidInput (no
    statement ever billed, no contact on file for the channel)."""
    require_id(staff_user_id, field="staff_user_id")
    profile = _profile(clinic_id, guarantor_id)
    if not account_selectors.statements_list(clinic_id=clinic_id, guarantor_id=guarantor_id):
        raise InvalidInput("a notification needs a statement billed to this guarantor first")
    if channel not in _channels_on_file(profile, (channel,)):
        raise InvalidInput(f"no {channel} contact on file for this guarantor")
    if consent_given:
        guarantor_consent_record(clinic_id=clinic_id, guarantor_id=guarantor_id, channel=channel, granted=True,
                                 source="staff", actor=staff_user_id)
    key = request_key or new_id("od")
    queued = message_queue(clinic_id=clinic_id, guarantor_id=guarantor_id, kind="on_demand", channel=channel,
                           logical_key=f"on_demand:{key}", language=profile.language,
                           fields={"requested_by": staff_user_id}, contact=_contact(profile, channel))
    _send_now([queued])
    return queued


@clinic_scoped
def receipt_email_queue(*, clinic_id: str, guarantor_id: str, receipt_id: str, receipt_number: str,
                        paid_on: str, transaction_number: str, card_brand: str, card_last4: str,
                        amount_cents: int, group_id: str | None = None) -> Queued | None:
    """Queue the payment receipt email (PRODUCT.md §5: when the group's email receipts option
    is on and an email is known; never by SMS). ``paid_on`` is an ISO date; amount in cents.
    Returns None when no receipt is due. Raises UnknownGuarantor, InvalidInput."""
    require_cents(amount_cents)
    profile = _profile(clinic_id, guarantor_id)
    if group_id is not None:
        if not tenant_selectors.group_get(clinic_id=clinic_id, group_id=group_id).settings.email_receipts:
            return None
    if not profile.email:
        return None
    queued = message_queue(
        clinic_id=clinic_id, guarantor_id=guarantor_id, kind="receipt", channel="email",
        logical_key=f"receipt:{require_id(receipt_id, field='receipt_id')}", language=profile.language,
        fields={"receipt_number": receipt_number, "paid_on": date.fromisoformat(paid_on).isoformat(),
                "transaction_number": transaction_number, "card_brand": card_brand,
                "card_last4": card_last4[-4:], "amount_paid_cents": amount_cents,
                "account_number": account_number_of(profile)}, contact=profile.email)
    _send_now([queued])
    return queued


PLAN_NOTICES = ("plan_upcoming", "plan_processed", "plan_failed")


@clinic_scoped
def plan_notice_queue(*, clinic_id: str, guarantor_id: str, plan_id: str, notice: str, occurrence: str,
                      amount_cents: int, charge_date: str) -> list[Queued]:
    """Queue a payment-plan notice (REFERENCE-PORTAL H5: upcoming, processed, not processed) on
    every channel on file; the guarantor's consent per channel is respected at send time, and
    SMS needs an origination number. ``occurrence`` names the charge (e.g. its date) so each is
    sent once. Raises InvalidInput, UnknownGuarantor."""
    if notice not in PLAN_NOTICES:
        raise InvalidInput(f"notice must be one of {PLAN_NOTICES}")
    require_cents(amount_cents)
    profile = _profile(clinic_id, guarantor_id)
    ctx = context.clinic_context(clinic_id)
    wanted = [c for c in _channels_on_file(profile)
              if c == "email" or ctx.origination_number or config.settings().is_console]
    queued = [
        message_queue(clinic_id=clinic_id, guarantor_id=guarantor_id, kind=notice, channel=channel,
                      logical_key=f"plan:{require_id(plan_id, field='plan_id')}:{notice}:{occurrence}",
                      language=profile.language,
                      fields={"plan_amount_cents": amount_cents,
                              "charge_date": date.fromisoformat(charge_date).isoformat()},
                      contact=_contact(profile, channel))
        for channel in wanted
    ]
    _send_now(queued)
    return queued


# --- consent ----------------------------------------------------------------------------------------


@clinic_scoped
def consent_record(*, clinic_id: str, channel: str, destination: str, granted: bool, source: str,
                   actor: str | None = None, disclosure_version: str | None = None) -> bool:
    """Record consent for one email address or mobile number of the clinic (SECURITY.md R41:
    per contact, practice and program, with time, source, disclosure version and actor); the
    record is immutable. A new SMS grant sends the opt-in confirmation (brand, purpose,
    frequency, rates, HELP, STOP). Returns True when the state changed. Raises InvalidInput."""
    dest = contacts.normalize(channel, destination)
    if dest is None:
        raise InvalidInput(f"that is not a valid {channel} contact")
    ctx = context.clinic_context(clinic_id)
    now = clock.now()
    dhash = contacts.destination_hash(dest)
    changed = contacts.consent_set(clinic_id, channel, dhash, granted=granted, source=source[:40], at=now,
                                   event_id=uuid.uuid4().hex[:12], actor=actor,
                                   disclosure_version=disclosure_version or ctx.settings.disclosure_version)
    if changed and granted and channel == "sms":
        _reply(clinic_id, dest, dhash, "consent_confirm", f"grant:{iso(now)}")
    return changed


@clinic_scoped
def guarantor_consent_record(*, clinic_id: str, guarantor_id: str, channel: str, granted: bool, source: str,
                             actor: str | None = None) -> bool:
    """:func:`consent_record` for the guarantor's email or mobile on file (portal preferences,
    staff). Raises UnknownGuarantor, InvalidInput (no such contact on file)."""
    profile = _profile(clinic_id, guarantor_id)
    value = profile.email if channel == "email" else profile.mobile
    if not value:
        raise InvalidInput(f"no {channel} contact on file for this guarantor")
    return consent_record(clinic_id=clinic_id, channel=channel, destination=value, granted=granted,
                          source=source, actor=actor)


# --- sending ----------------------------------------------------------------------------------------


def _format_phone(value: str | None) -> str:
    mobile = contacts.normalize_mobile(value)
    if mobile is None:
        return value or ""
    d = mobile[2:]
    return f"({d[:3]}) {d[3:6]}-{d[6:]}"


def _fields(item: MessageItem, ctx: context.ClinicContext, profile: GuarantorItem | None,
            figures: GuarantorFigures | None, secret: Mapping[str, Any] | None) -> dict[str, Any]:
    lang = item.language
    out: dict[str, Any] = item.fields.as_dict() if item.fields is not None else {}
    out["practice_name"] = ctx.sms_name if item.channel == "sms" else ctx.name
    out["practice_phone"] = _format_phone(ctx.phone)
    if profile is not None:
        out["guarantor_name"] = profile.preferred_name or profile.first_name
    if figures is not None:
        out["amount_due"] = format_cents(figures.balances.amount_due)
        out["current_balance"] = format_cents(figures.balances.current_balance)
    for name in ("due_date", "charge_date", "paid_on"):
        if name in out:
            out[name] = templates.format_date(str(out[name]), lang)
    for cents_name in ("plan_amount_cents", "amount_paid_cents"):
        if cents_name in out:
            out[cents_name.removesuffix("_cents")] = format_cents(int(out.pop(cents_name)))
    out.setdefault("when", "on")
    out["final_notice"] = int(item.dunning_level or 0) >= 2
    if secret:
        out.update(secret.get("fields", {}))
    return out


def _pay_link(item: MessageItem, ctx: context.ClinicContext,
              guarantor_id: str) -> tuple[str, links.PreparedLink | None]:
    """The message's pay link and the link item to store with the claim (None: the clinic has
    no group yet, the portal's address is sent). No request: the group and its link lifetimes
    come with the cached clinic context; the link is written only if the claim commits."""
    if ctx.group is None:
        return core_config.settings().portal_url, None
    kind = LinkKind.TEXT if item.channel == "sms" else LinkKind.EMAIL
    issuer = links.LinkIssuer(ctx.clinic_id, [ctx.group])
    prepared = issuer.prepare(guarantor_id=guarantor_id, group_id=ctx.group.group_id, kind=kind,
                              statement_id=item.statement_id)
    return prepared.link.url, prepared


def _cap_plan(pk: str, channel: str, settings: NotifySettings, current: SendCapItem | None,
              now: datetime) -> tuple[SendCapItem, list[Action], Condition] | datetime:
    """Frequency caps (per guarantor and channel: per UTC day and ISO week). From the cap item
    read with the message, either when the message may try again (next day or next week), or
    the compare-and-set update that counts this send, to commit with the claim."""
    cap = settings.caps[channel]
    week, day = rules.cap_windows(now)
    used_week = int(current.week_used or 0) if current is not None else 0
    same_day = current is not None and current.day == day
    used_day = int(current.day_used or 0) if current is not None and same_day else 0
    if used_week >= cap.per_week:
        return rules.cap_retry_at(now, week_full=True)
    if used_day >= cap.per_day:
        return rules.cap_retry_at(now, week_full=False)
    item = SendCapItem(pk, keys.send_cap_sk(channel, week))
    actions: list[Action] = [SendCapItem.day.set(day), SendCapItem.day_used.set(used_day + 1),
                             SendCapItem.week_used.set(used_week + 1)]
    condition: Condition
    if current is None:
        actions += [SendCapItem.item_kind.set(SendCapItem),
                    SendCapItem.expires_at_epoch.set(int((now + timedelta(days=15)).timestamp()))]
        condition = SendCapItem.pk.does_not_exist()
    else:
        condition = (SendCapItem.week_used == used_week) & (SendCapItem.day == current.day) \
            & (SendCapItem.day_used == int(current.day_used or 0))
    return item, actions, condition


def _cap_refund(clinic_id: str, guarantor_id: str, channel: str,
                taken_at: datetime) -> tuple[SendCapItem, list[Action], Condition]:
    """The update that gives back a cap slot taken for a send the provider did not accept
    (throttled, refused), so a retry is not held back by its own failed attempt. Committed with
    the message's own status change (:func:`_finish`, :func:`_not_accepted`): one transaction,
    whose request token makes an SDK retry after a lost answer refund once, not twice."""
    week, day = rules.cap_windows(taken_at)
    item = SendCapItem(keys.guarantor_pk(clinic_id, guarantor_id), keys.send_cap_sk(channel, week))
    return (item, [SendCapItem.day_used.set(SendCapItem.day_used - 1),
                   SendCapItem.week_used.set(SendCapItem.week_used - 1)],
            (SendCapItem.day == day) & (SendCapItem.day_used > 0) & (SendCapItem.week_used > 0))


def _transition_refunding(ref: MessageRef, refund: tuple[SendCapItem, list[Action], Condition] | None,
                          **kw: Any) -> None:
    """``transition(ref, **kw)`` with the cap ``refund`` in the same transaction; without it
    when only the refund's condition failed (the day rolled over: nothing left to give back).
    Raises TransitionLost."""
    if refund is None:
        transition(ref, **kw)
        return
    try:
        transition(ref, also_update=[refund], **kw)
    except TxFailed as exc:
        if exc.retryable:
            raise
        transition(ref, **kw)


def _finish(ref: MessageRef, status: str, reason: str, *, expect: tuple[str, ...] = ("queued",),
            token: str | None = None,
            refund: tuple[SendCapItem, list[Action], Condition] | None = None) -> SendOutcome:
    try:
        _transition_refunding(ref, refund, to=status, expect=expect, reason=reason,
                              condition=(MessageItem.claim_token == token) if token else None,
                              review=status == "unknown")
    except TransitionLost:
        return SendOutcome("skipped", "lost_race")
    return SendOutcome(status, reason)


def _defer(ref: MessageRef, until: datetime, reason: str) -> SendOutcome:
    try:
        transition(ref, to="queued", expect=("queued",), reason=reason, due_at=until)
    except TransitionLost:
        return SendOutcome("skipped", "lost_race")
    return SendOutcome("deferred", reason, until)


@clinic_scoped
def message_send(*, clinic_id: str, owner: str, message_id: str, contact: str | None = None) -> SendOutcome:
    """Send one queued message at most once (the module docstring has the protocol).

    Re-checked at send time, in this order: the row is queued and due; the contact on file is
    valid; consent and suppression (R41, R42: a STOP recorded a moment ago is seen: the contact
    point is read consistently); a reminder's statement is still the latest and its amount
    due is not zero (PRODUCT.md §8); quiet hours 08:00-21:00 recipient local (R43; the row
    waits until the window opens); frequency caps. ``contact`` is the work item's hint
    (``<channel>#<keyed hash>``) that lets the contact point be read with the message in one
    request. Raises InvalidInput for malformed ids; storage errors propagate (the SQS record is
    retried and the claim keeps it single).
    """
    return _send(MessageRef.parse(clinic_id, owner, message_id), secret=None, hint=_hint_parse(contact))


_HINT = re.compile(r"^(email|sms)#[0-9a-f]{32}$")


def _hint_parse(value: object) -> tuple[str, str] | None:
    """A work item's contact hint ``<channel>#<keyed hash>`` (no PHI), or None."""
    if isinstance(value, str) and _HINT.match(value):
        channel, _, dhash = value.partition("#")
        return channel, dhash
    return None


def _body(ref: MessageRef, channel: str, destination_hash: str | None) -> dict[str, str]:
    body = ref.body()
    if destination_hash:
        body["contact"] = f"{channel}#{destination_hash}"
    return body


@dataclass
class _Claim:
    """A message that passed every send-time check, rendered and ready to claim and send."""

    ref: MessageRef
    item: MessageItem
    token: str
    dhash: str
    guarantor_id: str | None
    cap_update: tuple[SendCapItem, list[Action], Condition] | None
    link: links.PreparedLink | None
    outgoing: Outgoing
    rendered: templates.Rendered

    def claim_update(self, now: datetime, lease_seconds: int) -> tuple[MessageItem, list[Action], Condition]:
        """The claim ``queued → sending`` (lease, claim token, attempt count), as one update."""
        lease = now + timedelta(seconds=lease_seconds)
        return transition_update(self.ref, to="sending", expect=("queued",), condition=MessageItem.due_at <= now,
                                 index_at=lease,
                                 actions=[MessageItem.claim_token.set(self.token), MessageItem.lease_until.set(lease),
                                          MessageItem.attempts.set((MessageItem.attempts | 0) + 1),
                                          MessageItem.destination_hash.set(self.dhash)])

    def keys(self) -> list[tuple[str, str]]:
        """Every item the claim writes (message, pay link, frequency-cap count)."""
        out = [(self.ref.pk, self.ref.sk)]
        if self.link is not None:
            out.append((self.link.item.pk, self.link.item.sk))
        if self.cap_update is not None:
            out.append((self.cap_update[0].pk, self.cap_update[0].sk))
        return out


def _wanted(ref: MessageRef, hint: tuple[str, str] | None, now: datetime) -> list[tuple[str, str]]:
    """The keys one send reads: the message, the guarantor's profile and balance, and with a
    contact hint the contact point and this week's frequency-cap item."""
    wanted = [(ref.pk, ref.sk)]
    if ref.owner.startswith("G#"):
        wanted += [(ref.pk, keys.PROFILE), (ref.pk, keys.BALANCE)]
    if hint is not None:
        wanted.append(contacts.state_key(ref.clinic_id, hint[0], hint[1]))
        if ref.owner.startswith("G#"):  # the channel is known: read its frequency-cap item too
            wanted.append((ref.pk, keys.send_cap_sk(hint[0], rules.cap_windows(now)[0])))
    return wanted


def _send(ref: MessageRef, *, secret: Mapping[str, Any] | None,
          hint: tuple[str, str] | None = None) -> SendOutcome:
    [outcome] = _send_many([(ref, hint)], secret=secret)
    if isinstance(outcome, Exception):
        raise outcome
    return outcome


#: Messages claimed in one transaction (3 items each at most: message, link, cap; ≤ 100 items).
CLAIM_BATCH = 10


def _send_many(batch: list[tuple[MessageRef, tuple[str, str] | None]], *,
               secret: Mapping[str, Any] | None = None) -> list[SendOutcome | Exception]:
    """Send a batch of one clinic's messages, each at most once (the module docstring has the
    protocol), with the storage calls shared: one consistent BatchGetItem for every message's
    row, profile, balance, contact point and cap item; one TransactWriteItems claiming every
    message that passed its checks (a claim whose condition fails drops out, the rest retry);
    the provider calls; one TransactWriteItems marking them sent (per message if that fails).
    A kill between claim and mark leaves at most this batch ``sending`` (swept to ``unknown``).
    Outcomes in the order given; a message whose own checks, rendering or provider call raised
    has that exception as its outcome, so one poison message fails alone. Errors of the shared
    calls (read, claim, mark) propagate: the SQS records are retried and the claims keep every
    message single."""
    if len(batch) > CLAIM_BATCH:
        return [o for i in range(0, len(batch), CLAIM_BATCH)
                for o in _send_many(batch[i:i + CLAIM_BATCH], secret=secret)]
    now = clock.now()
    cfg = config.settings()
    wanted = list(dict.fromkeys(k for ref, hint in batch for k in _wanted(ref, hint, now)))
    found = {(it.pk, it.sk): it for it in Item.batch_get(wanted, consistent_read=True)}
    outcomes: dict[int, SendOutcome | Exception] = {}
    claims: dict[int, _Claim] = {}
    later: list[int] = []
    writes: set[tuple[str, str]] = set()
    for n, (ref, hint) in enumerate(batch):
        if (ref.pk, ref.sk) in writes:
            outcomes[n] = SendOutcome("skipped", "duplicate")  # the same message twice in one batch
            continue
        try:
            prepared = _prepare(ref, found, wanted, hint, secret, now)
        except Exception as exc:  # this message alone: the others of the batch go on
            log.warning("notify: message could not be prepared: %s", type(exc).__name__)
            outcomes[n] = exc
            writes.add((ref.pk, ref.sk))
            continue
        if isinstance(prepared, SendOutcome):
            outcomes[n] = prepared
            writes.add((ref.pk, ref.sk))
        elif writes & set(prepared.keys()):
            later.append(n)  # shares a cap item with a claim here: its own read and claim after
        else:
            claims[n] = prepared
            writes.update(prepared.keys())
    outcomes.update(_claim_all(claims, now, cfg.lease_seconds))
    sent: dict[int, str] = {}
    for n, claim in claims.items():
        if n not in outcomes:
            try:
                result = _deliver(claim, now)
            except Exception as exc:  # claimed, call state unknown: the lease sweeps it to review
                log.warning("notify: send raised: %s", type(exc).__name__)
                outcomes[n] = exc
                continue
            if isinstance(result, SendOutcome):
                outcomes[n] = result
            else:
                sent[n] = result
    outcomes.update(_mark_all({n: (claims[n], pid) for n, pid in sent.items()}, keep=cfg.keep_bodies))
    for n in later:
        [outcomes[n]] = _send_many([batch[n]], secret=secret)
    return [outcomes[n] for n in range(len(batch))]


def _prepare(ref: MessageRef, found: Mapping[tuple[str, str], Item], wanted: list[tuple[str, str]],
             hint: tuple[str, str] | None, secret: Mapping[str, Any] | None,
             now: datetime) -> SendOutcome | _Claim:
    """One message's send-time checks, in this order: the row is queued and due; the contact
    on file is valid; consent and suppression (R41, R42: a STOP recorded a moment ago is seen:
    the contact point is read consistently); a reminder's statement is still the latest and
    its amount due is not zero (PRODUCT.md §8); quiet hours 08:00-21:00 recipient local (R43;
    the row waits until the window opens); frequency caps. Returns the outcome (the row already
    moved: failed, suppressed, deferred) or the rendered claim to commit."""
    ctx = context.clinic_context(ref.clinic_id)
    guarantor_id = ref.owner[2:] if ref.owner.startswith("G#") else None
    item = found.get((ref.pk, ref.sk))
    if not isinstance(item, MessageItem):
        return SendOutcome("skipped", "missing")
    if item.status != "queued":
        return SendOutcome("skipped", f"status_{item.status}")
    if item.due_at > now:
        return SendOutcome("skipped", "not_due")
    policy = POLICIES[item.message_kind]
    profile = found.get((ref.pk, keys.PROFILE)) if guarantor_id else None
    balance = found.get((ref.pk, keys.BALANCE)) if guarantor_id else None
    if guarantor_id and not (isinstance(profile, GuarantorItem) and isinstance(balance, BalanceItem)):
        return _finish(ref, "failed", "unknown_guarantor")
    assert profile is None or isinstance(profile, GuarantorItem)
    raw = (profile.email if item.channel == "email" else profile.mobile) if profile else (
        (secret or {}).get("destination") or item.destination)
    if not raw:
        return _finish(ref, "suppressed", "no_contact")
    destination = contacts.normalize(item.channel, raw)
    if destination is None:
        contacts.suppress(ref.clinic_id, item.channel, contacts.destination_hash(raw), "invalid", now)
        return _finish(ref, "failed", "invalid_address")
    dhash = contacts.destination_hash(destination)
    if hint is not None and hint == (item.channel, dhash):
        hinted = found.get(contacts.state_key(ref.clinic_id, *hint))  # read with the message, consistently
        point = hinted if isinstance(hinted, ContactPointItem) else None  # None: nothing recorded yet
    else:
        point = contacts.get(ref.clinic_id, item.channel, dhash)
    flag = contacts.profile_flag(profile.consent, item.channel) if profile is not None else None
    decision = rules.consent_decide(
        channel=item.channel, exempt=not policy.consent, suppressed=point.suppressed if point else None,
        recorded=point.consent if point else None, profile=flag,
        clinic_default=ctx.settings.consent_defaults.get(item.channel, "unset"))
    if not decision.allowed:
        return _finish(ref, "failed" if decision.reason == "invalid_address" else "suppressed", decision.reason)
    figures = figures_from_item(balance, include_new_charges=ctx.include_new_charges) \
        if isinstance(balance, BalanceItem) else None
    if policy.paid_check and figures is not None:
        if item.statement_id and figures.statement_id and figures.statement_id != item.statement_id:
            return _finish(ref, "suppressed", "superseded")
        if figures.balances.amount_due <= 0:
            return _finish(ref, "suppressed", "paid")
    if policy.quiet:
        zones = rules.candidate_zones(profile.time_zone if profile else None, ctx.time_zone)
        if not rules.within_quiet_window(now, zones):
            return _defer(ref, rules.next_send_time(now, zones), "quiet_hours")
    cap_update: tuple[SendCapItem, list[Action], Condition] | None = None
    if policy.capped and guarantor_id:
        cap_key = (ref.pk, keys.send_cap_sk(item.channel, rules.cap_windows(now)[0]))
        if cap_key in wanted:
            current = found.get(cap_key)
        else:
            try:
                current = SendCapItem.get(*cap_key, consistent_read=True)
            except SendCapItem.DoesNotExist:
                current = None
        plan = _cap_plan(ref.pk, item.channel, ctx.settings, current if isinstance(current, SendCapItem) else None,
                         now)
        if isinstance(plan, datetime):
            return _defer(ref, plan, "frequency_cap")
        cap_update = plan
    fields = _fields(item, ctx, profile, figures, secret)
    link: links.PreparedLink | None = None
    if policy.link and guarantor_id:
        fields["pay_link"], link = _pay_link(item, ctx, guarantor_id)
    rendered = templates.render(item.template, item.channel, item.language, fields)
    outgoing = Outgoing(
        channel=item.channel, to=destination, text=rendered.text, subject=rendered.subject, html=rendered.html,
        sender=ctx.sender_email if item.channel == "email" else ctx.origination_number,
        sender_name=ctx.name if item.channel == "email" else None, tags=ref.tags(),
        meta={"clinic_id": ref.clinic_id, "owner": ref.owner, "message_id": ref.message_id,
              "kind": item.message_kind}, sensitive=bool(item.sensitive))
    return _Claim(ref, item, uuid.uuid4().hex, dhash, guarantor_id, cap_update, link, outgoing, rendered)


def _claim_all(claims: dict[int, _Claim], now: datetime, lease_seconds: int) -> dict[int, SendOutcome]:
    """Claim every message in ``claims`` (the last write before its provider call, R40): one
    TransactWriteItems with each claim's pay link (written only if the claim commits) and cap
    count (the claim counts the send); a lone claim that writes nothing else is a plain
    conditional update. A claim whose message was taken meanwhile (another worker, a
    redelivery) drops out as ``lost_claim``; one whose cap item moved (another send to the
    guarantor) is queued again (``cap_race``); the rest are claimed again together. Returns
    the outcomes of the claims that dropped out (removed from ``claims``). Raises TxFailed
    (retryable) and storage errors."""
    dropped: dict[int, SendOutcome] = {}
    while claims:
        if len(claims) == 1 and all(c.link is None and c.cap_update is None for c in claims.values()):
            n, claim = next(iter(claims.items()))
            message, actions, condition = claim.claim_update(now, lease_seconds)
            try:
                message.update(actions=actions, condition=condition)
            except UpdateError as exc:
                if exc.cause_response_code != "ConditionalCheckFailedException":
                    raise
                dropped[n] = SendOutcome("skipped", "lost_claim")
                del claims[n]
            return dropped
        tx = Tx()
        for claim in claims.values():
            message, actions, condition = claim.claim_update(now, lease_seconds)
            tx.update(message, actions, condition=condition, versioned=False)
            if claim.link is not None:
                tx.put(claim.link.item, condition=type(claim.link.item).pk.does_not_exist())
            if claim.cap_update is not None:
                tx.update(claim.cap_update[0], claim.cap_update[1], condition=claim.cap_update[2], versioned=False)
        try:
            tx.commit()
            return dropped
        except TxFailed as exc:
            # Only condition failures say who lost; a conflict on any item retries the delivery.
            if exc.retryable or set(exc.failed.values()) & RETRYABLE_REASONS \
                    or not any(set(c.keys()) & set(exc.failed) for c in claims.values()):
                raise
            for n, claim in list(claims.items()):
                failed = set(claim.keys()) & set(exc.failed)
                if (claim.ref.pk, claim.ref.sk) in failed:
                    dropped[n] = SendOutcome("skipped", "lost_claim")
                elif failed:
                    # Another send to this guarantor moved the cap meanwhile: nothing was claimed.
                    queue.enqueue([_body(claim.ref, claim.item.channel, claim.dhash)])
                    dropped[n] = SendOutcome("skipped", "cap_race")
                else:
                    continue
                del claims[n]
    return dropped


def _deliver(claim: _Claim, now: datetime) -> SendOutcome | str:
    """The one provider call of a claimed message: the provider's message id, or the outcome
    when it was not accepted (failed, queued again with the cap slot given back) or may have
    been (``unknown``, for review)."""
    ref, item = claim.ref, claim.item
    try:
        return channels.get(item.channel).send(claim.outgoing)
    except (SendRetryable, SendPermanent) as exc:
        refund = _cap_refund(ref.clinic_id, claim.guarantor_id, item.channel, now) \
            if claim.cap_update is not None and claim.guarantor_id else None
        return _not_accepted(ref, item, claim.token, claim.dhash, exc, refund)
    except SendUnknown as exc:
        return _finish(ref, "unknown", exc.reason, expect=("sending",), token=claim.token)


def _not_accepted(ref: MessageRef, item: MessageItem, token: str, dhash: str,
                  exc: SendRetryable | SendPermanent,
                  refund: tuple[SendCapItem, list[Action], Condition] | None = None) -> SendOutcome:
    """The provider did not take the message: ``failed`` for good, or ``queued`` again; the
    cap slot it took (``refund``) is given back in the same write."""
    if isinstance(exc, SendPermanent):
        if exc.contact:
            contacts.suppress(ref.clinic_id, item.channel, dhash, exc.contact, clock.now())
        return _finish(ref, "failed", exc.reason, expect=("sending",), token=token, refund=refund)
    if item.sensitive or int(item.attempts or 0) + 1 >= MAX_ATTEMPTS:
        return _finish(ref, "failed", f"gave_up_{exc.reason}"[:60], expect=("sending",), token=token, refund=refund)
    until = clock.now() + timedelta(seconds=exc.retry_after)
    try:
        _transition_refunding(ref, refund, to="queued", expect=("sending",), reason=exc.reason, due_at=until,
                              condition=MessageItem.claim_token == token)
    except TransitionLost:
        return SendOutcome("skipped", "lost_race")
    if exc.retry_after <= 900:
        queue.enqueue([_body(ref, item.channel, dhash)], delay_seconds=int(exc.retry_after))
    return SendOutcome("retry", exc.reason, until)


def _sent_actions(ref: MessageRef, provider_id: str, rendered: templates.Rendered, item: MessageItem, *,
                  keep: bool) -> tuple[list[Action], list[Item]]:
    """What marking a message sent writes: its actions (provider id, sent time, the body's
    digest, the body itself when ``keep``; never for a sensitive message) and, for SMS, the
    provider-id item that SNS delivery status finds the message by."""
    now = clock.now()
    actions: list[Action] = [MessageItem.provider_id.set(provider_id), MessageItem.sent_at.set(now),
                             MessageItem.lease_until.remove()]
    if not item.sensitive:
        actions.append(MessageItem.body_sha256.set(hashlib.sha256(rendered.text.encode()).hexdigest()))
        if keep:
            actions += [MessageItem.body_text.set(rendered.text)]
            if rendered.subject:
                actions.append(MessageItem.body_subject.set(rendered.subject))
            if rendered.html:
                actions.append(MessageItem.body_html.set(rendered.html))
    also: list[Item] = []
    if item.channel == "sms":  # SNS delivery status names only its own id: keep the way back
        also.append(ProviderRefItem(keys.provider_ref_pk(ref.clinic_id, _safe_id(provider_id)), keys.SINGLE,
                                    owner=ref.owner, message_id=ref.message_id,
                                    expires_at_epoch=int((now + timedelta(days=30)).timestamp())))
    return actions, also


def _mark_sent(ref: MessageRef, token: str, provider_id: str, rendered: templates.Rendered, item: MessageItem,
               *, keep: bool) -> SendOutcome:
    actions, also = _sent_actions(ref, provider_id, rendered, item, keep=keep)
    try:
        transition(ref, to="sent", expect=("sending", "unknown"), actions=actions,
                   condition=MessageItem.claim_token == token, also_put=also)
    except TransitionLost:
        pass  # a provider event got there first (delivered/bounced): the row already says so
    except TxFailed as exc:
        if exc.retryable:
            raise
        with suppress(TransitionLost):  # the provider id was recorded before: mark without it
            transition(ref, to="sent", expect=("sending", "unknown"), actions=actions,
                       condition=MessageItem.claim_token == token)
    return SendOutcome("sent")


def _mark_all(sent: dict[int, tuple[_Claim, str]], *, keep: bool) -> dict[int, SendOutcome]:
    """Mark the provider-accepted messages ``sent`` in one TransactWriteItems (each conditioned
    on its claim token); if any condition fails (a provider event got there first) or the
    database is busy, each is marked on its own by :func:`_mark_sent`."""
    if len(sent) > 1:
        tx = Tx()
        for claim, provider_id in sent.values():
            actions, also = _sent_actions(claim.ref, provider_id, claim.rendered, claim.item, keep=keep)
            message, acts, condition = transition_update(claim.ref, to="sent", expect=("sending", "unknown"),
                                                          actions=actions,
                                                          condition=MessageItem.claim_token == claim.token)
            tx.update(message, acts, condition=condition, versioned=False)
            for extra in also:
                tx.put(extra, condition=type(extra).pk.does_not_exist())
        with suppress(TxFailed, TryAgainLater):
            tx.commit()
            return {n: SendOutcome("sent") for n in sent}
    return {n: _mark_sent(claim.ref, claim.token, provider_id, claim.rendered, claim.item, keep=keep)
            for n, (claim, provider_id) in sent.items()}


def _safe_id(provider_id: str) -> str:
    return "".join(c for c in provider_id if c.isalnum() or c in "-_.")[:100]


@clinic_scoped
def code_send(*, clinic_id: str, request_id: str, channel: str, destination: str, code: str,
              language: str = "en") -> SendOutcome:
    """Send a sign-in code now (``links.code_request``'s ``send``). Not held by quiet hours,
    opt-outs or caps (REFERENCE-PORTAL H7; SECURITY.md R40: codes are exempt, the user asks
    again); once per request id. The code is never stored or logged: the row keeps no body
    (``sensitive``), only the console channel's local file shows it. Raises InvalidInput."""
    if channel not in ("email", "sms"):
        raise InvalidInput("channel must be email or sms")
    dest = contacts.normalize(channel, destination)
    if dest is None:
        raise InvalidInput(f"that is not a valid {channel} contact")
    if not (len(code) == 6 and code.isdigit()):
        raise InvalidInput("a code is six digits")
    owner = keys.contact_owner(channel, contacts.destination_hash(dest))
    ref = MessageRef(clinic_id, owner, message_id_for(clinic_id, owner, "code", channel,
                                                      require_id(request_id, field="request_id")))
    put_new(new_item(ref, kind="code", channel=channel, template="code", language=language,
                     due_at=clock.now(), sensitive=True, ttl_days=7))
    return _send(ref, secret={"destination": dest, "fields": {"code": code, "code_minutes": CODE_MINUTES}})


@clinic_scoped
def contact_change_notice(*, clinic_id: str, guarantor_id: str, channel: str, destination: str,
                          language: str = "en") -> SendOutcome:
    """Tell a replaced email address or mobile number that it was replaced (SECURITY.md R22:
    "notifies the old contact"), now and once per (guarantor, channel, old contact).
    Transactional like a code: not held by consent, quiet hours or caps; names the practice and
    its phone only. The row keeps the contact's keyed hash, never the address. Raises
    InvalidInput for a bad channel or contact."""
    if channel not in ("email", "sms"):
        raise InvalidInput("channel must be email or sms")
    dest = contacts.normalize(channel, destination)
    if dest is None:
        raise InvalidInput(f"that is not a valid {channel} contact")
    dhash = contacts.destination_hash(dest)
    owner = keys.contact_owner(channel, dhash)
    logical = f"{require_id(guarantor_id, field='guarantor_id')}:{dhash}"
    ref = MessageRef(clinic_id, owner, message_id_for(clinic_id, owner, "contact_changed", channel, logical))
    put_new(new_item(ref, kind="contact_changed", channel=channel, template="contact_changed", language=language,
                     due_at=clock.now(), destination_hash=dhash, ttl_days=400))
    return _send(ref, secret={"destination": dest})


def _reply(clinic_id: str, destination: str, dhash: str, template: str, logical_key: str) -> SendOutcome:
    """Send a keyword reply (HELP, STOP or opt-in confirmation) once per logical key."""
    owner = keys.contact_owner("sms", dhash)
    ref = MessageRef(clinic_id, owner, message_id_for(clinic_id, owner, "reply", "sms", f"{template}:{logical_key}"))
    put_new(new_item(ref, kind="reply", channel="sms", template=template, language="en",
                     due_at=clock.now(), destination=destination, destination_hash=dhash, ttl_days=400))
    return _send(ref, secret=None)


@clinic_scoped
def message_review_resolve(*, clinic_id: str, owner: str, message_id: str, outcome: str,
                           staff_user_id: str) -> SendOutcome:
    """Resolve an ``unknown`` message after checking the provider's records (R40 "resolved by
    provider status lookup or by a human"): ``sent``, ``failed``, or ``resend`` when the
    records show the provider never took it (a worker stopped between its claim and the call):
    queued again now, to be sent by the worker like any due message. Recorded with the staff
    user. Raises InvalidInput."""
    if outcome not in ("sent", "failed", "resend"):
        raise InvalidInput("outcome must be sent, failed or resend")
    ref = MessageRef.parse(clinic_id, owner, message_id)
    reason = f"review:{require_id(staff_user_id, field='staff_user_id')}"
    if outcome != "resend":
        return _finish(ref, outcome, reason, expect=("unknown",))
    try:
        transition(ref, to="queued", expect=("unknown",), reason=reason, due_at=clock.now())
    except TransitionLost:
        return SendOutcome("skipped", "lost_race")
    queue.enqueue([ref.body()])
    return SendOutcome("queued", reason)


# --- the scheduler: due messages by hour --------------------------------------------------------------


@dataclass(frozen=True)
class FanoutResult:
    """One clinic's sweep: messages handed to the worker, claims found expired (moved to
    ``unknown``), and the UTC hours covered."""

    enqueued: int
    expired: int
    hours: tuple[str, ...]


def _hours(start: datetime, end: datetime) -> list[datetime]:
    first = start.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    out = []
    while first <= end:
        out.append(first)
        first += timedelta(hours=1)
    return out


@clinic_scoped
def messages_due_fanout(*, clinic_id: str, at: datetime) -> FanoutResult:
    """Find the clinic's messages due by ``at`` (the scheduled event's time, UTC) through the
    sharded due index, and hand their ids to the worker in batches of ten.

    Covers every hour from the clinic's sweep mark (the last hour swept; 24 hours back the first
    time, 7 days at most) to ``at``'s hour, so a late or skipped run catches up and a run fired
    twice only re-enqueues what is still queued (the claim makes the duplicate a no-op). Claims
    whose lease expired become ``unknown`` (never resent). Decides on the base item by
    condition, never on the index read alone (GSIs are eventually consistent).
    """
    at = at.astimezone(UTC)
    now = clock.now()
    pk = keys.clinic_pk(require_id(clinic_id, field="clinic_id"))
    try:
        mark: SweepMarkItem | None = SweepMarkItem.get(pk, keys.NOTIFY_SWEEP, consistent_read=True)
    except SweepMarkItem.DoesNotExist:
        mark = None
    if mark is not None:
        start = max(datetime.strptime(mark.through_hour, "%Y-%m-%dT%H").replace(tzinfo=UTC), at - LOOKBACK)
    else:
        start = at - FIRST_LOOKBACK
    hours = _hours(start, at)
    upper = keys.due_gsi3sk(iso(at), "~")
    buckets = [keys.due_gsi3pk(clinic_id, hour_of(h), s) for h in hours for s in range(keys.DUE_SHARDS)]

    def read(bucket: str) -> list[Item]:
        return list(Item.gsi3.query(bucket, Item.gsi3sk <= upper))

    # Shards are read in parallel, each in a copy of this context (the clinic scope, R16).
    tasks = [(contextvars.copy_context(), bucket) for bucket in buckets]
    with ThreadPoolExecutor(max_workers=8) as pool:
        found = [it for items in pool.map(lambda t: t[0].run(read, t[1]), tasks) for it in items]
    bodies: list[dict[str, str]] = []
    expired = 0
    seen: set[str] = set()
    for item in found:
        if not isinstance(item, MessageItem) or item.message_id in seen:
            continue
        seen.add(item.message_id)
        ref = MessageRef(clinic_id, item.owner, item.message_id)
        if item.status == "queued" and item.due_at <= at:
            bodies.append(_body(ref, item.channel, item.destination_hash))
        elif item.status == "sending" and item.lease_until is not None and item.lease_until < now:
            try:
                transition(ref, to="unknown", expect=("sending",), reason="lease_expired", review=True,
                           condition=MessageItem.claim_token == item.claim_token)
                expired += 1
            except TransitionLost:
                continue
    enqueued = queue.enqueue(bodies)
    through = hour_of(at)
    try:
        SweepMarkItem(pk, keys.NOTIFY_SWEEP).update(
            actions=[SweepMarkItem.through_hour.set(through), SweepMarkItem.updated_at.set(now),
                     SweepMarkItem.item_kind.set(SweepMarkItem)],
            condition=SweepMarkItem.through_hour.does_not_exist() | (SweepMarkItem.through_hour < through))
    except UpdateError as exc:
        if exc.cause_response_code != "ConditionalCheckFailedException":
            raise
    return FanoutResult(enqueued, expired, tuple(hour_of(h) for h in hours))


def clinics_sweep_enqueue(*, at: datetime) -> int:
    """The hourly schedule's work: one sweep item per clinic (from the operator index) on the
    queue, keyed by the event time ``at`` (UTC); return how many. Firing twice enqueues twice,
    and both sweeps converge (see :func:`messages_due_fanout`)."""
    stamp = at.astimezone(UTC).isoformat()
    return queue.enqueue({"op": "sweep", "clinic_id": cid, "at": stamp} for cid in verify.clinic_ids())


def work_items_handle(*, bodies: Sequence[Mapping[str, Any]]) -> list[object]:
    """Run queue work items (``send`` or ``sweep``; ids only), an SQS batch at a time. The sends
    of one clinic share their storage calls (:func:`_send_many`: one read, one claim, one mark
    for up to ten messages; SERVERLESS-PERF-REL.md B7). Returns one result per body, in order:
    its SendOutcome or FanoutResult, or the exception it raised (InvalidInput for a malformed
    body; a storage error for every send of the clinic group it struck). The worker reports
    those records failed and only they are redelivered; the claims make a redelivery a no-op."""
    results: list[object] = [None] * len(bodies)
    sends: dict[str, list[tuple[int, MessageRef, tuple[str, str] | None]]] = {}
    for n, body in enumerate(bodies):
        try:
            op = body.get("op")
            if op == "send":
                ref = MessageRef.parse(body.get("clinic_id"), body.get("owner"), body.get("message_id"))
                sends.setdefault(ref.clinic_id, []).append((n, ref, _hint_parse(body.get("contact"))))
            elif op == "sweep":
                try:
                    at = datetime.fromisoformat(str(body.get("at")))
                except ValueError:
                    raise InvalidInput("sweep needs an ISO time") from None
                if at.tzinfo is None:
                    raise InvalidInput("sweep time must carry its zone")
                results[n] = messages_due_fanout(clinic_id=require_id(body.get("clinic_id"), field="clinic_id"),
                                                 at=at)
            else:
                raise InvalidInput("unknown work item")
        except Exception as exc:  # reported per record: the others of the batch go on
            results[n] = exc
    for clinic_id, group in sends.items():
        outcomes: list[object]
        try:
            with clinic_scope(clinic_id):
                outcomes = list(_send_many([(ref, hint) for _, ref, hint in group]))
        except Exception as exc:  # every send of the group is redelivered; claimed ones skip then
            outcomes = [exc] * len(group)
        for (n, _, _), outcome in zip(group, outcomes, strict=True):
            results[n] = outcome
    return results


# --- provider events -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class EventResult:
    """What a provider event did: the message status it set (or None), contact suppressions
    recorded, and reputation alerts raised (R11)."""

    status: str | None
    suppressed: int = 0
    alerts: tuple[str, ...] = ()


def _stat_bump(clinic_id: str, field: str, now: datetime) -> None:
    shard = uuid.uuid4().int % STAT_SHARDS
    attr = getattr(NotifyStatItem, field)
    NotifyStatItem(keys.notify_stats_pk(clinic_id, now.date().isoformat(), shard), keys.SINGLE).update(
        actions=[attr.set((attr | 0) + 1), NotifyStatItem.item_kind.set(NotifyStatItem),
                 NotifyStatItem.expires_at_epoch.set(int((now + timedelta(days=60)).timestamp()))])


def reputation_alerts(clinic_id: str, day: str) -> tuple[str, ...]:
    """``bounce_rate`` / ``complaint_rate`` when the day's rates reach 2% / 0.05% (R11)."""
    rep = selectors.reputation_get(clinic_id=clinic_id, day=day)
    alerts = []
    if rep.bounce_rate >= BOUNCE_ALERT:
        alerts.append("bounce_rate")
    if rep.complaint_rate >= COMPLAINT_ALERT:
        alerts.append("complaint_rate")
    return tuple(alerts)


def _move(ref: MessageRef, to: str, reason: str | None, provider_id: str | None = None) -> str | None:
    """Move a message forward on a provider event; None when the event is stale or repeated."""
    expect = tuple(s for s, nxt in TRANSITIONS.items() if to in nxt)
    actions: list[Action] = [MessageItem.provider_id.set(MessageItem.provider_id | provider_id)] if provider_id else []
    try:
        transition(ref, to=to, expect=expect, reason=reason, actions=actions)
        return to
    except TransitionLost:
        return None


def _ses_event(payload: Mapping[str, Any]) -> EventResult:
    mail = payload.get("mail") or {}
    ref = MessageRef.from_tags(mail.get("tags") or {})
    if ref is None:
        return EventResult(None)
    etype = str(payload.get("eventType") or payload.get("notificationType") or "")
    provider_id = str(mail.get("messageId") or "") or None
    now = clock.now()
    with clinic_scope(ref.clinic_id):
        if etype == "Send":
            return EventResult(_move(ref, "sent", "ses_send", provider_id))
        if etype == "Delivery":
            _stat_bump(ref.clinic_id, "delivered", now)
            return EventResult(_move(ref, "delivered", None, provider_id))
        if etype in ("Reject", "Rendering Failure", "RenderingFailure"):
            return EventResult(_move(ref, "failed", "ses_reject", provider_id))
        if etype == "Bounce":
            bounce = payload.get("bounce") or {}
            if bounce.get("bounceType") != "Permanent":
                outbox_note(ref, event="soft_bounce", reason=str(bounce.get("bounceSubType", ""))[:40])
                return EventResult(None)
            recipients = [r.get("emailAddress", "") for r in bounce.get("bouncedRecipients") or []]
            status = _move(ref, "bounced", "hard_bounce", provider_id)
            suppressed = _suppress_emails(ref.clinic_id, recipients, "bounced", now)
            _stat_bump(ref.clinic_id, "bounced", now)
            return EventResult(status, suppressed, reputation_alerts(ref.clinic_id, now.date().isoformat()))
        if etype == "Complaint":
            recipients = [r.get("emailAddress", "") for r in (payload.get("complaint") or {}).get(
                "complainedRecipients") or []]
            outbox_note(ref, event="complained")
            suppressed = _suppress_emails(ref.clinic_id, recipients, "complained", now)
            _stat_bump(ref.clinic_id, "complained", now)
            return EventResult(None, suppressed, reputation_alerts(ref.clinic_id, now.date().isoformat()))
    return EventResult(None)


def _suppress_emails(clinic_id: str, recipients: list[str], reason: str, now: datetime) -> int:
    done = 0
    for raw in recipients:
        email = contacts.normalize_email(raw)
        if email:
            contacts.suppress(clinic_id, "email", contacts.destination_hash(email), reason, now)
            done += 1
    return done


_numbers_lock = threading.Lock()
_numbers: dict[str, Any] = {"at": -1e9, "map": {}}
NUMBERS_TTL = 300.0


def _number_map(*, refresh: bool = False) -> dict[str | None, list[str]]:
    """Origination number -> clinics sending from it (``None``: clinics without their own
    number, who use the deployment's). Read from the operator index and one BatchGetItem of
    settings per 100 clinics; cached per process for 5 minutes (configuration, not state)."""
    now = time.monotonic()
    with _numbers_lock:
        if not refresh and now - _numbers["at"] < NUMBERS_TTL:
            return dict(_numbers["map"])
    ids = verify.clinic_ids()
    mapping: dict[str | None, list[str]] = {}
    for start in range(0, len(ids), 100):
        chunk = ids[start:start + 100]
        stored = {it.pk: it for it in NotifySettingsItem.batch_get([(keys.clinic_pk(c), keys.NOTIFY_SETTINGS)
                                                                    for c in chunk])}
        for cid in chunk:
            item = stored.get(keys.clinic_pk(cid))
            own = json.loads(item.settings_json).get("sms_origination_number") if item else None
            mapping.setdefault(own, []).append(cid)
    with _numbers_lock:
        _numbers["at"], _numbers["map"] = now, mapping
    return dict(mapping)


def clinics_for_number(number: str | None) -> list[str]:
    """Clinics whose SMS go out from ``number`` (E.164): the clinic whose own origination
    number it is, or, for the deployment's default number (or no number), every clinic
    without one. A number not in the cached map forces one refresh (a newly configured clinic)."""
    target = contacts.normalize_mobile(number) if number else None
    default = config.settings().sms_origination_number
    key = None if target is None or target == default else target
    found = _number_map().get(key)
    if found is None:
        found = _number_map(refresh=True).get(key)
    return list(found or [])


def numbers_forget() -> None:
    """Drop the cached number map (after a clinic's number changes; tests)."""
    with _numbers_lock:
        _numbers["at"] = -1e9


_SMS_FINAL = {"DELIVERED": "delivered", "SUCCESSFUL": "delivered", "SUCCESS": "delivered",
              "FAILED": "failed", "FAILURE": "failed", "UNREACHABLE": "failed", "INVALID": "failed",
              "CARRIER_UNREACHABLE": "failed", "BLOCKED": "failed", "SPAM": "failed", "OPTED_OUT": "failed",
              "TTL_EXPIRED": "failed", "UNKNOWN": None, "PENDING": None, "QUEUED": None, "SENT": None}


def _sms_status(payload: Mapping[str, Any]) -> EventResult:
    if "messageStatus" in payload:  # End User Messaging SMS event destination (SNS)
        provider_id = str(payload.get("messageId") or "")
        state = str(payload.get("messageStatus") or "").upper()
        origination = payload.get("originationPhoneNumber")
        description = str(payload.get("messageStatusDescription") or "")
    else:  # SNS SMS delivery status log record
        provider_id = str((payload.get("notification") or {}).get("messageId") or "")
        state = str(payload.get("status") or "").upper()
        delivery = payload.get("delivery") or {}
        origination = delivery.get("originationPhoneNumber") or payload.get("originationPhoneNumber")
        description = str(delivery.get("providerResponse") or "")
    to = _SMS_FINAL.get(state)
    if not provider_id or to is None:
        return EventResult(None)
    opted_out = state == "OPTED_OUT" or "opted out" in description.lower()
    for clinic_id in clinics_for_number(origination):
        with clinic_scope(clinic_id):
            try:
                pref = ProviderRefItem.get(keys.provider_ref_pk(clinic_id, _safe_id(provider_id)), keys.SINGLE)
            except ProviderRefItem.DoesNotExist:
                continue
            ref = MessageRef(clinic_id, pref.owner, pref.message_id)
            reason = "opted_out" if opted_out else (f"carrier_{state.lower()}"[:40] if to == "failed" else None)
            status = _move(ref, to, reason, provider_id)
            suppressed = 0
            if opted_out:
                item = MessageItem.get(ref.pk, ref.sk)
                if item.destination_hash:
                    contacts.suppress(clinic_id, "sms", item.destination_hash, "opted_out", clock.now())
                    suppressed = 1
            return EventResult(status, suppressed)
    return EventResult(None)


def provider_event_record(*, payload: Mapping[str, Any]) -> EventResult:
    """Apply one provider event to the outbox (PRODUCT.md §8, R11):

    - SES events from the configuration set (``eventType`` Send, Delivery, Bounce, Complaint,
      Reject): the message is found by its tags; a permanent bounce marks it ``bounced`` and
      suppresses the address, a complaint suppresses it; a soft bounce is only noted; Send and
      Delivery also resolve an ``unknown`` row (the provider did accept it).
    - SMS delivery status (End User Messaging event or SNS delivery log): found through the
      provider id recorded at send; an opted-out failure suppresses the number.

    Transitions only move forward (a late Delivery after a Bounce changes nothing). Events that
    are not ours are ignored.
    """
    if "mail" in payload:
        return _ses_event(payload)
    if "messageStatus" in payload or "delivery" in payload:
        return _sms_status(payload)
    return EventResult(None)


# --- inbound SMS -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class InboundResult:
    """An inbound SMS: its keyword (``stop``, ``help``, ``start``, ``other``), the clinics it
    applied to, and how many replies went out."""

    keyword: str
    clinics: tuple[str, ...]
    replies: int


def inbound_sms_handle(*, payload: Mapping[str, Any]) -> InboundResult:
    """Handle an inbound SMS (two-way SMS through SNS: ``originationNumber`` is the sender,
    ``destinationNumber`` our number, ``messageBody``, ``inboundMessageId``).

    STOP and its synonyms (STOPALL, UNSUBSCRIBE, CANCEL, END, QUIT, REVOKE, OPT OUT, and "please
    stop texting"-style messages) revoke consent for the number in every clinic sending from
    that number, before this handler returns, so the next send sees it (R42); one confirmation
    per opt-out. HELP/INFO answer with the program, the practice's phone and how to opt out.
    START/UNSTOP/YES re-open consent and confirm. The message text is never stored or logged;
    a redelivered inbound message is answered once. Raises InvalidInput for a malformed event.
    """
    sender = contacts.normalize_mobile(str(payload.get("originationNumber") or ""))
    inbound_id = str(payload.get("inboundMessageId") or "")
    if sender is None or not inbound_id:
        raise InvalidInput("inbound SMS needs originationNumber and inboundMessageId")
    keyword = rules.keyword_classify(str(payload.get("messageBody") or ""))
    dhash = contacts.destination_hash(sender)
    now = clock.now()
    applied: list[str] = []
    replies = 0
    for clinic_id in clinics_for_number(str(payload.get("destinationNumber") or "") or None):
        with clinic_scope(clinic_id):
            marker = InboundItem(keys.inbound_pk(clinic_id, _safe_id(inbound_id)), keys.SINGLE, keyword=keyword,
                                 destination_hash=dhash, received_at=now,
                                 expires_at_epoch=int((now + timedelta(days=400)).timestamp()))
            try:
                marker.save(condition=InboundItem.pk.does_not_exist())
            except PutError as exc:
                if exc.cause_response_code == "ConditionalCheckFailedException":
                    continue  # redelivered: already handled
                raise
            applied.append(clinic_id)
            if keyword == "stop":
                if contacts.consent_set(clinic_id, "sms", dhash, granted=False, source="sms_keyword", at=now,
                                        event_id=_safe_id(inbound_id)[:40], actor=dhash):
                    replies += _reply(clinic_id, sender, dhash, "stop_confirm", inbound_id).status == "sent"
            elif keyword == "start":
                version = context.clinic_context(clinic_id).settings.disclosure_version
                if contacts.consent_set(clinic_id, "sms", dhash, granted=True, source="sms_keyword", at=now,
                                        event_id=_safe_id(inbound_id)[:40], actor=dhash,
                                        disclosure_version=version):
                    replies += _reply(clinic_id, sender, dhash, "consent_confirm", inbound_id).status == "sent"
            elif keyword == "help":
                replies += _reply(clinic_id, sender, dhash, "help", inbound_id).status == "sent"
    return InboundResult(keyword, tuple(applied), replies)
