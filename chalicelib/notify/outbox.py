"""The outbox row's life: logical ids, the status machine, transitions with history, the due
index. Internal to ``chalicelib.notify`` (services compose these; nothing else writes messages).

Status machine (SECURITY.md R40, SERVERLESS.md §2.5-2.6)::

    queued   -> sending | cancelled | suppressed | failed
    sending  -> sent | failed | suppressed | queued | unknown | delivered | bounced
    unknown  -> sent | delivered | bounced | failed | queued
    sent     -> delivered | bounced | failed
    delivered-> bounced
    (failed, bounced, suppressed, cancelled are final)

A transition is one conditional UpdateItem on the status read (compare-and-set) that appends
to ``history``; a lost race raises :class:`TransitionLost` and the caller re-reads.
"""

from __future__ import annotations

import base64
import hashlib
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from pynamodb.exceptions import PutError, UpdateError
from pynamodb.expressions.condition import Condition
from pynamodb.expressions.update import Action

from chalicelib.core import clock
from chalicelib.core.errors import InvalidInput
from chalicelib.core.ids import require_id
from chalicelib.store import keys
from chalicelib.store.db import Tx, TxFailed
from chalicelib.store.models import Item
from chalicelib.store.models_notify import MessageItem, StatusMap

TRANSITIONS: dict[str, frozenset[str]] = {
    "queued": frozenset({"sending", "cancelled", "suppressed", "failed"}),
    "sending": frozenset({"sent", "failed", "suppressed", "queued", "unknown", "delivered", "bounced"}),
    "unknown": frozenset({"sent", "delivered", "bounced", "failed", "queued"}),
    "sent": frozenset({"delivered", "bounced", "failed"}),
    "delivered": frozenset({"bounced"}),
    "failed": frozenset(),
    "bounced": frozenset(),
    "suppressed": frozenset(),
    "cancelled": frozenset(),
}
FINAL = frozenset(s for s, nxt in TRANSITIONS.items() if not nxt)
KINDS = ("balance", "reminder", "on_demand", "receipt", "code", "plan_upcoming", "plan_processed",
         "plan_failed", "reply")
_OWNER = re.compile(r"^(G#[A-Za-z0-9][A-Za-z0-9._-]{0,63}|CP#(email|sms)#[0-9a-f]{32})$")
_MESSAGE_ID = re.compile(r"^[0-9a-f]{32}$")


def iso(at: datetime) -> str:
    """A UTC time as a sortable key string, ``2026-01-31T13:00:00Z``."""
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def hour_of(at: datetime) -> str:
    """The UTC hour bucket of ``at``: ``2026-01-31T13``."""
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H")


def message_id_for(clinic_id: str, owner: str, kind: str, channel: str, logical_key: str) -> str:
    """The deterministic id of a logical message (R40 "unique key (tenant, kind, subject,
    period)"): a SHA-256 prefix, so the same logical message always gets the same row."""
    raw = "|".join((clinic_id, owner, kind, channel, logical_key))
    return hashlib.sha256(raw.encode()).hexdigest()[:32]


@dataclass(frozen=True)
class MessageRef:
    """Where a message lives: clinic, owner (``G#<guarantor>`` or ``CP#<channel>#<hash>``) and
    id. Its queue body carries these ids only, never PHI."""

    clinic_id: str
    owner: str
    message_id: str

    @property
    def pk(self) -> str:
        return keys.message_owner_pk(self.clinic_id, self.owner)

    @property
    def sk(self) -> str:
        return keys.message_sk(self.message_id)

    def body(self) -> dict[str, str]:
        return {"op": "send", "clinic_id": self.clinic_id, "owner": self.owner, "message_id": self.message_id}

    def tags(self) -> dict[str, str]:
        """SES message tags (letters, digits, ``_`` and ``-`` only): the ref, url-safe base64."""
        def b64(value: str) -> str:
            return base64.urlsafe_b64encode(value.encode()).decode().rstrip("=")

        return {"fd_c": b64(self.clinic_id), "fd_o": b64(self.owner), "fd_m": self.message_id}

    @classmethod
    def parse(cls, clinic_id: object, owner: object, message_id: object) -> MessageRef:
        """Validate ids from a queue body or event. Raises InvalidInput."""
        cid = require_id(clinic_id, field="clinic_id")
        if not isinstance(owner, str) or not _OWNER.match(owner):
            raise InvalidInput("owner is not a message owner")
        if not isinstance(message_id, str) or not _MESSAGE_ID.match(message_id):
            raise InvalidInput("message_id is not a message id")
        return cls(cid, owner, message_id)

    @classmethod
    def from_tags(cls, tags: dict[str, list[str]]) -> MessageRef | None:
        """The ref from an SES event's ``mail.tags``, or None when the mail is not ours."""
        def unb64(value: str) -> str:
            return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)).decode()

        try:
            return cls.parse(unb64(tags["fd_c"][0]), unb64(tags["fd_o"][0]), tags["fd_m"][0])
        except (KeyError, IndexError, ValueError, InvalidInput):
            return None


def due_keys(message_id: str, clinic_id: str, at: datetime) -> tuple[str, str]:
    """gsi3 key pair placing a message in the due index at ``at``."""
    return keys.due_gsi3pk(clinic_id, hour_of(at), keys.due_shard(message_id)), keys.due_gsi3sk(iso(at), message_id)


def new_item(ref: MessageRef, *, kind: str, channel: str, template: str, language: str, due_at: datetime,
             guarantor_id: str | None = None, statement_id: str | None = None, rule_id: str | None = None,
             dunning_level: int | None = None, fields: dict[str, Any] | None = None,
             destination: str | None = None, destination_hash: str | None = None, sensitive: bool = False,
             ttl_days: int | None = None) -> MessageItem:
    """A ``queued`` message item, in the due index at ``due_at``."""
    now = clock.now()
    gsi3pk, gsi3sk = due_keys(ref.message_id, ref.clinic_id, due_at)
    return MessageItem(
        ref.pk, ref.sk, message_id=ref.message_id, owner=ref.owner, guarantor_id=guarantor_id,
        message_kind=kind, channel=channel, template=template, language=language, status="queued",
        history=[StatusMap(status="queued", at=now)], due_at=due_at, created_at=now,
        statement_id=statement_id, rule_id=rule_id, dunning_level=dunning_level, fields=fields or None,
        destination=destination, destination_hash=destination_hash, sensitive=sensitive,
        expires_at_epoch=int((now + timedelta(days=ttl_days)).timestamp()) if ttl_days else None,
        gsi3pk=gsi3pk, gsi3sk=gsi3sk,
    )


def put_new(item: MessageItem) -> bool:
    """Write a new message once (``attribute_not_exists``); False when it already existed.

    Not ``store.db.put_new``: a message built twice at one instant is identical to a retried
    write of itself, and a second queueing must read as "existed" (a write whose answer was
    lost reads so too: the sweeper, not this call, then sends it)."""
    try:
        item.save(condition=MessageItem.pk.does_not_exist())
        return True
    except PutError as exc:
        if exc.cause_response_code == "ConditionalCheckFailedException":
            return False
        raise


class TransitionLost(Exception):
    """The message was not in the expected status (someone else moved it)."""


def transition_update(ref: MessageRef, *, to: str, expect: tuple[str, ...], reason: str | None = None,
                      actions: list[Action] | None = None, condition: Condition | None = None,
                      due_at: datetime | None = None, index_at: datetime | None = None,
                      review: bool = False) -> tuple[MessageItem, list[Action], Condition]:
    """The conditional update that moves a message from one of ``expect`` to ``to``: (item
    key, actions, condition), for :func:`transition` or a caller's own transaction. Arguments
    as :func:`transition`. Raises ValueError for a move the status machine does not allow."""
    for status in expect:
        if to not in TRANSITIONS[status] and to != status:
            raise ValueError(f"{status} -> {to} is not a transition")
    now = clock.now()
    acts: list[Action] = [
        MessageItem.status.set(to),
        MessageItem.history.set(MessageItem.history.append([StatusMap(status=to, at=now, reason=reason)])),
        *(actions or []),
    ]
    if reason is not None:
        acts.append(MessageItem.reason.set(reason))
    if to in FINAL:
        acts.append(MessageItem.final_at.set(now))
    if due_at is not None:
        acts.append(MessageItem.due_at.set(due_at))
        index_at = due_at
    if index_at is not None:
        gsi3pk, gsi3sk = due_keys(ref.message_id, ref.clinic_id, index_at)
        acts += [MessageItem.gsi3pk.set(gsi3pk), MessageItem.gsi3sk.set(gsi3sk)]
    elif review:
        acts += [MessageItem.gsi3pk.set(keys.review_gsi3pk(ref.clinic_id)),
                 MessageItem.gsi3sk.set(keys.due_gsi3sk(iso(now), ref.message_id))]
    else:
        acts += [MessageItem.gsi3pk.remove(), MessageItem.gsi3sk.remove()]
    cond = MessageItem.status.is_in(*expect)
    if condition is not None:
        cond = cond & condition
    return MessageItem(ref.pk, ref.sk), acts, cond


def transition(ref: MessageRef, *, to: str, expect: tuple[str, ...], reason: str | None = None,
               actions: list[Action] | None = None, condition: Condition | None = None,
               due_at: datetime | None = None, index_at: datetime | None = None,
               review: bool = False, also_put: list[Item] | None = None,
               also_update: list[tuple[Item, list[Action], Condition]] | None = None) -> MessageItem:
    """Move a message from one of ``expect`` to ``to`` in one conditional update, appending the
    history step. ``due_at`` (back to ``queued``) sets the due time and re-enters the due index
    there; ``index_at`` puts it in the due index at that time without changing ``due_at`` (a
    send lease); ``review`` puts it in the clinic's review list (``unknown``); otherwise the
    message leaves the index. ``also_put`` (new items, ``attribute_not_exists``) and
    ``also_update`` (item, actions, condition) join the move in one TransactWriteItems.
    Returns the updated item (only its key when in a transaction). Raises TransitionLost when
    the message was not in ``expect``; TxFailed when only another item's condition failed."""
    item, acts, cond = transition_update(ref, to=to, expect=expect, reason=reason, actions=actions,
                                         condition=condition, due_at=due_at, index_at=index_at, review=review)
    if also_put or also_update:
        tx = Tx()
        tx.update(item, acts, condition=cond, versioned=False)
        for extra in also_put or []:
            tx.put(extra, condition=type(extra).pk.does_not_exist())
        for other, other_actions, other_condition in also_update or []:
            tx.update(other, other_actions, condition=other_condition, versioned=False)
        try:
            tx.commit()
        except TxFailed as exc:
            if (ref.pk, ref.sk) in exc.failed:
                raise TransitionLost(f"message not in {expect}") from exc
            raise
        return item
    try:
        item.update(actions=acts, condition=cond)
    except UpdateError as exc:
        if exc.cause_response_code == "ConditionalCheckFailedException":
            raise TransitionLost(f"message not in {expect}") from exc
        raise
    return item


def note(ref: MessageRef, *, event: str, reason: str | None = None) -> None:
    """Append a history step that is not a status change (a complaint, a soft bounce)."""
    item = MessageItem(ref.pk, ref.sk)
    item.update(actions=[MessageItem.history.set(MessageItem.history.append(
        [StatusMap(status=event, at=clock.now(), reason=reason)]))], condition=MessageItem.pk.exists())
