"""Models of notifications (``chalicelib.notify``): outbox rows, contact points and their
consent log, clinic notification settings and reminder schedules, and small helper items.

Discriminator values are permanent. No attribute is named ``kind`` or ``count`` (PynamoDB and
the base item use them). Times are aware UTC datetimes; nothing here holds a clinical detail.
"""

from __future__ import annotations

from typing import Any

from pynamodb.attributes import (
    BooleanAttribute,
    ListAttribute,
    MapAttribute,
    NumberAttribute,
    UnicodeAttribute,
    UTCDateTimeAttribute,
    VersionAttribute,
)

from chalicelib.store import schema
from chalicelib.store.models import Item


class StatusMap(MapAttribute[str, Any]):
    """One step of a message's status history: status, UTC time, optional reason."""

    status = UnicodeAttribute()
    at = UTCDateTimeAttribute()
    reason = UnicodeAttribute(null=True)


class MessageItem(Item, discriminator="notify_message"):
    """One logical message (an outbox row), pk ``C#<c>#G#<g>`` or ``C#<c>#CP#<ch>#<hash>``,
    sk ``M#<message id>``. ``message_id`` is a digest of its logical key, so queueing it twice
    writes it once. While it needs attention (queued and due, or leased for sending) gsi3 holds
    ``C#<c>#DUE#<hour>#<shard>`` / ``<due or lease end>#<id>``; otherwise gsi3 is removed.

    ``body_*`` are kept only on the embedded default (console channel), never for codes
    (``sensitive``); in the cloud the item keeps ``body_sha256`` only.
    """

    message_id = UnicodeAttribute()
    owner = UnicodeAttribute()
    guarantor_id = UnicodeAttribute(null=True)
    message_kind = UnicodeAttribute()
    channel = UnicodeAttribute()
    template = UnicodeAttribute()
    language = UnicodeAttribute(default="en")
    status = UnicodeAttribute()
    reason = UnicodeAttribute(null=True)
    history = ListAttribute[StatusMap](of=StatusMap, default=list)
    due_at = UTCDateTimeAttribute()
    created_at = UTCDateTimeAttribute()
    statement_id = UnicodeAttribute(null=True)
    rule_id = UnicodeAttribute(null=True)
    dunning_level = NumberAttribute(null=True)
    fields = MapAttribute[str, Any](null=True)
    destination = UnicodeAttribute(null=True)
    destination_hash = UnicodeAttribute(null=True)
    attempts = NumberAttribute(default=0)
    claim_token = UnicodeAttribute(null=True)
    lease_until = UTCDateTimeAttribute(null=True)
    provider_id = UnicodeAttribute(null=True)
    sent_at = UTCDateTimeAttribute(null=True)
    final_at = UTCDateTimeAttribute(null=True)
    body_subject = UnicodeAttribute(null=True)
    body_text = UnicodeAttribute(null=True)
    body_html = UnicodeAttribute(null=True)
    body_sha256 = UnicodeAttribute(null=True)
    sensitive = BooleanAttribute(default=False)
    expires_at_epoch = NumberAttribute(null=True, attr_name=schema.TTL)


class ContactPointItem(Item, discriminator="notify_contact"):
    """An email address or mobile number of a clinic, pk ``C#<c>#CP#<channel>#<keyed hash>``,
    sk ``CP``: consent (``granted``/``revoked``) and suppression (``invalid``, ``bounced``,
    ``complained``, ``opted_out``) shared by every guarantor using it (SECURITY.md R41-R42)."""

    channel = UnicodeAttribute()
    destination_hash = UnicodeAttribute()
    consent = UnicodeAttribute(null=True)
    consent_source = UnicodeAttribute(null=True)
    consent_at = UTCDateTimeAttribute(null=True)
    suppressed = UnicodeAttribute(null=True)
    suppressed_at = UTCDateTimeAttribute(null=True)
    bounced_at = UTCDateTimeAttribute(null=True)
    updated_at = UTCDateTimeAttribute()


class ConsentEventItem(Item, discriminator="notify_consent_event"):
    """An immutable consent record (R41): granted or revoked, when, by what source, with the
    disclosure version shown and the actor (staff user id or a hash of the address). Never
    updated or deleted; sk ``CE#<recorded at>#<id>`` in the contact point's collection."""

    channel = UnicodeAttribute()
    granted = BooleanAttribute()
    source = UnicodeAttribute()
    program = UnicodeAttribute(default="billing")
    disclosure_version = UnicodeAttribute(null=True)
    actor = UnicodeAttribute(null=True)
    recorded_at = UTCDateTimeAttribute()


class NotifySettingsItem(Item, discriminator="notify_settings"):
    """A clinic's notification settings (validated JSON), pk ``C#<c>``, sk ``NOTIFY#SETTINGS``."""

    settings_json = UnicodeAttribute()
    version = VersionAttribute()


class ReminderScheduleItem(Item, discriminator="notify_reminder_schedule"):
    """A reminder schedule (rules relative to a statement due date), pk ``C#<c>``, sk
    ``NOTIFY#SCHED#<id>``; statement profiles name one by id (``default`` when none)."""

    schedule_id = UnicodeAttribute()
    rules_json = UnicodeAttribute()
    version = VersionAttribute()


class SweepMarkItem(Item, discriminator="notify_sweep"):
    """The last UTC hour (``yyyy-mm-ddThh``) the due sweeper covered for a clinic."""

    through_hour = UnicodeAttribute()
    updated_at = UTCDateTimeAttribute()


class SendCapItem(Item, discriminator="notify_send_cap"):
    """A guarantor's automated sends on one channel in one ISO week and on its latest day."""

    week_used = NumberAttribute(default=0)
    day = UnicodeAttribute(null=True)
    day_used = NumberAttribute(default=0)
    expires_at_epoch = NumberAttribute(null=True, attr_name=schema.TTL)


class ProviderRefItem(Item, discriminator="notify_provider_ref"):
    """Provider message id -> our message (SNS SMS delivery status carries no tags)."""

    owner = UnicodeAttribute()
    message_id = UnicodeAttribute()
    expires_at_epoch = NumberAttribute(null=True, attr_name=schema.TTL)


class InboundItem(Item, discriminator="notify_inbound"):
    """One inbound SMS, recorded before it is acted on (keyword only, never the text)."""

    keyword = UnicodeAttribute()
    destination_hash = UnicodeAttribute()
    received_at = UTCDateTimeAttribute()
    expires_at_epoch = NumberAttribute(null=True, attr_name=schema.TTL)


class NotifyStatItem(Item, discriminator="notify_stat"):
    """Email outcomes of one clinic on one UTC day (one of several shards)."""

    delivered = NumberAttribute(default=0)
    bounced = NumberAttribute(default=0)
    complained = NumberAttribute(default=0)
    expires_at_epoch = NumberAttribute(null=True, attr_name=schema.TTL)
