"""Contact points: an email address or mobile number of a clinic, keyed by a keyed hash (never
in the clear in a key), holding consent and suppression shared by every guarantor who uses it
(a family sharing a phone). Internal to ``chalicelib.notify``.

Consent changes are an update of the state item plus an immutable ``ConsentEventItem``
(SECURITY.md R41: timestamp, source, disclosure version, actor; never edited).
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from pynamodb.exceptions import PutError, UpdateError
from pynamodb.expressions.update import Action

from chalicelib.links import tokens
from chalicelib.store import keys
from chalicelib.store.models_notify import ConsentEventItem, ContactPointItem

_EMAIL = re.compile(r"^[^@\s]{1,64}@[A-Za-z0-9.-]{1,252}\.[A-Za-z]{2,}$")
#: Suppressions a consent grant clears (a re-confirmed address); ``invalid`` and
#: ``complained`` stay until the address changes.
CLEARED_BY_GRANT = ("opted_out", "bounced")


def normalize_email(value: str | None) -> str | None:
    """A casefolded email address, or None if it is not one."""
    if not value:
        return None
    text = value.strip().casefold()
    return text if _EMAIL.match(text) and ".." not in text else None


def normalize_mobile(value: str | None) -> str | None:
    """A US/Canadian mobile in E.164 (``+1XXXXXXXXXX``), or None if it is not one."""
    if not value:
        return None
    digits = "".join(c for c in value if c.isdigit())
    if len(digits) == 10:
        digits = "1" + digits
    if len(digits) != 11 or not digits.startswith("1") or digits[1] in "01":
        return None
    return f"+{digits}"


def normalize(channel: str, value: str | None) -> str | None:
    return normalize_email(value) if channel == "email" else normalize_mobile(value)


def destination_hash(value: str) -> str:
    """The keyed hash naming a contact point (32 hex, as links' rate keys)."""
    return tokens.subject_hash(value)


def state_key(clinic_id: str, channel: str, dest_hash: str) -> tuple[str, str]:
    return keys.contact_pk(clinic_id, channel, dest_hash), keys.CONTACT_STATE


def suppress(clinic_id: str, channel: str, dest_hash: str, reason: str, at: datetime) -> None:
    """Record a suppression (``invalid``, ``bounced``, ``complained``, ``opted_out``) on the
    contact point, creating it if needed; the first bounce time is kept (paper fallback)."""
    pk, sk = state_key(clinic_id, channel, dest_hash)
    actions: list[Action] = [
        ContactPointItem.channel.set(channel), ContactPointItem.destination_hash.set(dest_hash),
        ContactPointItem.suppressed.set(reason), ContactPointItem.suppressed_at.set(at),
        ContactPointItem.updated_at.set(at),
        ContactPointItem.item_kind.set(ContactPointItem),
    ]
    if reason == "bounced":
        actions.append(ContactPointItem.bounced_at.set(ContactPointItem.bounced_at | at))
    # "invalid" and "complained" are never downgraded by a later, milder suppression.
    condition = (ContactPointItem.suppressed.does_not_exist()
                 | ~ContactPointItem.suppressed.is_in("invalid", "complained")
                 | (ContactPointItem.suppressed == reason))
    if reason in ("invalid", "complained"):
        condition = None
    try:
        ContactPointItem(pk, sk).update(actions=actions, condition=condition)
    except UpdateError as exc:
        if exc.cause_response_code != "ConditionalCheckFailedException":
            raise


def consent_set(clinic_id: str, channel: str, dest_hash: str, *, granted: bool, source: str, at: datetime,
                event_id: str, disclosure_version: str | None = None, actor: str | None = None) -> bool:
    """Record a consent event and move the state; return True when the state changed (a STOP
    on an already opted-out number returns False, so it is confirmed at most once, R42)."""
    pk, sk = state_key(clinic_id, channel, dest_hash)
    value = "granted" if granted else "revoked"
    actions: list[Action] = [
        ContactPointItem.channel.set(channel), ContactPointItem.destination_hash.set(dest_hash),
        ContactPointItem.consent.set(value), ContactPointItem.consent_source.set(source),
        ContactPointItem.consent_at.set(at), ContactPointItem.updated_at.set(at),
        ContactPointItem.item_kind.set(ContactPointItem),
    ]
    if granted:
        cleared = ContactPointItem.suppressed.is_in(*CLEARED_BY_GRANT)
        condition = ContactPointItem.consent.does_not_exist() | (ContactPointItem.consent != value) | cleared
    else:
        actions += [ContactPointItem.suppressed.set("opted_out"), ContactPointItem.suppressed_at.set(at)]
        condition = ContactPointItem.consent.does_not_exist() | (ContactPointItem.consent != value)
    changed = True
    try:
        item = ContactPointItem(pk, sk)
        item.update(actions=actions, condition=condition)
        if granted and item.suppressed in CLEARED_BY_GRANT:
            item.update(actions=[ContactPointItem.suppressed.remove(), ContactPointItem.suppressed_at.remove()],
                        condition=ContactPointItem.suppressed.is_in(*CLEARED_BY_GRANT))
    except UpdateError as exc:
        if exc.cause_response_code != "ConditionalCheckFailedException":
            raise
        changed = False
    event = ConsentEventItem(pk, keys.consent_event_sk(at.isoformat(), event_id), channel=channel,
                             granted=granted, source=source, disclosure_version=disclosure_version,
                             actor=actor, recorded_at=at)
    try:
        event.save(condition=ConsentEventItem.pk.does_not_exist())
    except PutError as exc:
        if exc.cause_response_code != "ConditionalCheckFailedException":
            raise
    return changed


def get(clinic_id: str, channel: str, dest_hash: str) -> ContactPointItem | None:
    """The contact point's state (consistent read), or None if nothing was ever recorded."""
    pk, sk = state_key(clinic_id, channel, dest_hash)
    try:
        return ContactPointItem.get(pk, sk, consistent_read=True)
    except ContactPointItem.DoesNotExist:
        return None


def profile_flag(consent: Any, channel: str) -> object:
    """The guarantor profile's consent flag for ``channel`` (``True``/``False``/None), from the
    profile's consent map as accounts stores it (``{"email": True, "sms": False}``)."""
    if consent is None:
        return None
    values = consent.as_dict() if hasattr(consent, "as_dict") else dict(consent)
    return values.get(channel)
