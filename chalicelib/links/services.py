"""Payment links, patient sessions and one-time codes (PRODUCT.md §6, SECURITY.md R14-R27).

Expiry is checked on every read against ``expires_at``; the TTL attribute only tidies (R14).
Every refusal of a link or session is the same :class:`LinkInvalid`, every refusal of a code
the same :class:`CodeRefused`, so responses never reveal what exists.
"""

from __future__ import annotations

import secrets
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from pynamodb.exceptions import UpdateError
from pynamodb.expressions.update import Action

from chalicelib.core import clock, config
from chalicelib.core.errors import CodeRefused, InvalidInput, LinkInvalid, TooManyRequests, UnknownGuarantor
from chalicelib.core.ids import new_id, require_id
from chalicelib.links import tokens
from chalicelib.store import db, keys
from chalicelib.store.db import Tx, TxFailed, clinic_scope, clinic_scoped
from chalicelib.store.models import BalanceItem, GuarantorItem, Item
from chalicelib.store.models_links import CodeCurrentItem, CodeItem, LinkItem, RateItem, SessionItem
from chalicelib.tenants import selectors as tenant_selectors
from chalicelib.tenants.groups import LinkLifetimes
from chalicelib.tenants.selectors import Group


class LinkKind(StrEnum):
    """Where a link is used; decides its default lifetime and the session's origin."""

    EMAIL = "email"
    TEXT = "text"
    STATEMENT_QR = "statement_qr"
    STATEMENT_URL = "statement_url"
    OFFICE_QR = "office_qr"
    WEBSITE = "website"
    SCHEDULING = "scheduling"


#: The session origin (Session Usage report) of a link's kind.
SESSION_ORIGINS = {LinkKind.EMAIL: "email_link", LinkKind.TEXT: "text_link", LinkKind.STATEMENT_QR: "statement_qr",
                   LinkKind.STATEMENT_URL: "statement_url", LinkKind.OFFICE_QR: "office_qr",
                   LinkKind.WEBSITE: "website", LinkKind.SCHEDULING: "scheduling_link"}

PURPOSES = ("pay", "account", "statements", "receipts", "scheduling")
#: Session limits in minutes (PRODUCT.md §6): (idle, absolute).
SESSION_LIMITS = {"quickpay": (15, 60), "code": (30, 12 * 60)}
CODE_MINUTES = 10  # R17
CODE_ATTEMPTS = 5  # R19
SEND_CAPS = (("15m", 15, 3), ("24h", 24 * 60, 10))  # R20 per destination
ADDRESS_CAP_PER_HOUR = 20  # R20 per source address
TOUCH_EVERY = timedelta(minutes=1)


def _epoch(at: datetime) -> int:
    return int(at.timestamp())


def _minutes(lifetimes: LinkLifetimes, kind: LinkKind) -> int:
    """A kind's lifetime in minutes from its group's settings (PRODUCT.md §6 defaults)."""
    return {
        LinkKind.EMAIL: lifetimes.email_text, LinkKind.TEXT: lifetimes.email_text,
        LinkKind.STATEMENT_QR: lifetimes.statement_qr, LinkKind.STATEMENT_URL: lifetimes.statement_qr,
        LinkKind.OFFICE_QR: lifetimes.office_qr, LinkKind.WEBSITE: lifetimes.email_text,
        LinkKind.SCHEDULING: lifetimes.email_text,
    }[kind]


@dataclass(frozen=True)
class IssuedLink:
    """A link as issued: the bearer ``token`` (give it out once; never log it), its ``url``
    built from the configured portal host (R26), and its UTC expiry."""

    token: str
    url: str
    link_id: str
    expires_at: datetime


@dataclass(frozen=True)
class PreparedLink:
    """A link made but not yet stored: ``link`` to hand out once the caller's write commits,
    ``item`` to put in that write (with ``attribute_not_exists(pk)``)."""

    link: IssuedLink
    item: LinkItem


def _checked(kind: LinkKind, purpose: str, guarantor_id: str) -> LinkKind:
    kind = LinkKind(kind)
    if purpose not in PURPOSES:
        raise InvalidInput(f"purpose must be one of {PURPOSES}")
    require_id(guarantor_id, field="guarantor_id")
    return kind


def _prepare(clinic_id: str, guarantor_id: str, group_id: str, lifetimes: LinkLifetimes, kind: LinkKind,
             purpose: str, statement_id: str | None) -> PreparedLink:
    """The one place a link item is made: only the token's SHA-256 is stored (R25), expiry per
    kind from the group (R14), gsi1 under the guarantor so :func:`links_revoke` finds it."""
    kind = _checked(kind, purpose, guarantor_id)
    now = clock.now()
    expires = now + timedelta(minutes=_minutes(lifetimes, kind))
    token = tokens.new_token(clinic_id)
    _, token_hash = tokens.split_token(token)
    item = LinkItem(keys.link_pk(clinic_id, token_hash), keys.SINGLE, guarantor_id=guarantor_id,
                    group_id=group_id, link_kind=kind.value, purpose=purpose, statement_id=statement_id,
                    created_at=now, expires_at=expires, expires_at_epoch=_epoch(expires),
                    gsi1pk=keys.guarantor_links_gsi1pk(clinic_id, guarantor_id),
                    gsi1sk=f"{now.isoformat()}#{token_hash[:16]}")
    url = f"{config.settings().portal_url}/l/{token}"
    return PreparedLink(IssuedLink(token=token, url=url, link_id=token_hash[:16], expires_at=expires), item)


@clinic_scoped
def link_issue(*, clinic_id: str, guarantor_id: str, group_id: str, kind: LinkKind,
               purpose: str = "pay", statement_id: str | None = None, supersede: bool = False) -> IssuedLink:
    """Issue a payment link for a guarantor into a group; lifetime from the group (per kind).

    ``supersede`` revokes the guarantor's earlier links of the same purpose (the practice's
    choice, PRODUCT.md §6). Raises UnknownGuarantor, NotFound (group), InvalidInput.
    Two requests (the group, then a transaction checking the guarantor); callers issuing many
    links use :class:`LinkIssuer`.
    """
    _checked(kind, purpose, guarantor_id)
    group = tenant_selectors.group_get(clinic_id=clinic_id, group_id=group_id)
    prepared = _prepare(clinic_id, guarantor_id, group_id, group.settings.link_lifetimes, kind, purpose,
                        statement_id)
    if supersede:
        links_revoke(clinic_id=clinic_id, guarantor_id=guarantor_id, purpose=purpose)
    tx = Tx()
    tx.check(BalanceItem, keys.guarantor_pk(clinic_id, guarantor_id), keys.BALANCE, BalanceItem.pk.exists())
    tx.put(prepared.item, condition=LinkItem.pk.does_not_exist())
    try:
        tx.commit()
    except TxFailed as exc:
        raise UnknownGuarantor(f"guarantor {guarantor_id} not found") from exc
    return prepared.link


class LinkIssuer:
    """Issues many links of one clinic (a batch of notifications, a page of a statement run)
    without a request per link: each group is read once for the issuer's life (groups the
    caller already holds are passed in and not read at all), and :meth:`prepare` returns the
    item for the caller to write in its own transaction, so a link exists only if the write
    that uses it (a message's claim, a statement's snapshot) commits.

    The links are the same as :func:`link_issue`'s (same item, hash, expiry per kind and group,
    found and revoked by :func:`links_revoke`), except that the caller's transaction, not a
    condition check here, proves the guarantor exists: it must write or condition on an item
    of that guarantor. Make one issuer per invocation (group settings are configuration read
    at its start). Thread-safe.
    """

    def __init__(self, clinic_id: str, groups: Iterable[Group] = ()) -> None:
        self.clinic_id = require_id(clinic_id, field="clinic_id")
        self._lifetimes: dict[str, LinkLifetimes] = {g.group_id: g.settings.link_lifetimes for g in groups}
        self._lock = threading.Lock()

    def _group_lifetimes(self, group_id: str) -> LinkLifetimes:
        with self._lock:  # held through a miss's read, so concurrent callers read a group once
            known = self._lifetimes.get(group_id)
            if known is None:
                known = tenant_selectors.group_get(clinic_id=self.clinic_id, group_id=group_id).settings.link_lifetimes
                self._lifetimes[group_id] = known
            return known

    def prepare(self, *, guarantor_id: str, group_id: str, kind: LinkKind, purpose: str = "pay",
                statement_id: str | None = None) -> PreparedLink:
        """A link for ``guarantor_id`` into ``group_id`` (nothing written; at most one GetItem,
        the first time a group is named). Raises NotFound (group), InvalidInput."""
        kind = _checked(kind, purpose, guarantor_id)
        return _prepare(self.clinic_id, guarantor_id, group_id, self._group_lifetimes(group_id), kind, purpose,
                        statement_id)

    @staticmethod
    def add_to(tx: Tx, prepared: PreparedLink) -> None:
        """Put a prepared link into ``tx`` as :func:`link_issue` writes it (never over an item)."""
        tx.put(prepared.item, condition=LinkItem.pk.does_not_exist())


@dataclass(frozen=True)
class ResolvedLink:
    """What a valid link grants: one guarantor, in one group, for one purpose."""

    clinic_id: str
    guarantor_id: str
    group_id: str
    kind: LinkKind
    purpose: str
    statement_id: str | None


def link_resolve(*, token: str) -> ResolvedLink:
    """Look a link up by its token (one GetItem). GET-safe: consumes nothing.

    Raises LinkInvalid for unknown, expired (checked here, not left to TTL), revoked or
    malformed tokens, all alike (R25).
    """
    clinic_id, token_hash = tokens.split_token(token)
    with clinic_scope(clinic_id):
        try:
            item = LinkItem.get(keys.link_pk(clinic_id, token_hash), keys.SINGLE)
        except LinkItem.DoesNotExist:
            raise LinkInvalid("link not valid") from None
    if item.revoked_at is not None or item.expires_at <= clock.now():
        raise LinkInvalid("link not valid")
    return ResolvedLink(clinic_id, item.guarantor_id, item.group_id, LinkKind(item.link_kind), item.purpose,
                        item.statement_id)


@clinic_scoped
def links_revoke(*, clinic_id: str, guarantor_id: str, purpose: str | None = None) -> int:
    """Revoke the guarantor's live links (of one purpose, or all); return how many."""
    now = clock.now()
    revoked = 0
    for item in LinkItem.gsi1.query(keys.guarantor_links_gsi1pk(clinic_id, guarantor_id)):
        if not isinstance(item, LinkItem) or item.revoked_at is not None:
            continue
        if purpose is not None and item.purpose != purpose:
            continue
        try:
            item.update(actions=[LinkItem.revoked_at.set(now)], condition=LinkItem.revoked_at.does_not_exist())
            revoked += 1
        except UpdateError as exc:
            if exc.cause_response_code != "ConditionalCheckFailedException":
                raise
    return revoked


# --- sessions -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Session:
    """A live patient session. ``guarantor_ids`` are the accounts the signed-in contact may
    switch between (a family sharing an email or phone)."""

    clinic_id: str
    guarantor_id: str
    guarantor_ids: frozenset[str]
    group_id: str
    method: str
    origin: str
    purpose: str | None
    language: str | None
    pages: tuple[str, ...]


def _session_view(clinic_id: str, stored: dict[str, Any]) -> Session:
    """A session's view from its stored attributes (names of :data:`_SESSION_FIELDS`)."""
    guarantor_id = stored["guarantor_id"]
    return Session(clinic_id, guarantor_id, frozenset(stored["guarantor_ids"] or {guarantor_id}), stored["group_id"],
                   stored["method"], stored["origin"], stored["purpose"], stored["language"],
                   tuple(stored["pages"] or ()))


@clinic_scoped
def session_start(*, clinic_id: str, guarantor_id: str, group_id: str, method: str, origin: str,
                  purpose: str | None = None, guarantor_ids: Iterable[str] = (), first_page: str | None = None,
                  language: str | None = None) -> str:
    """Start a session; return the cookie value (a bearer token; only its hash is stored).

    ``method``: ``quickpay`` (15 min idle / 60 min absolute) or ``code`` (30 min / 12 h).
    Logged for the Session Usage report: date, group, origin, guarantor, method (PRODUCT.md §6).
    """
    if method not in SESSION_LIMITS:
        raise InvalidInput(f"method must be one of {sorted(SESSION_LIMITS)}")
    require_id(guarantor_id, field="guarantor_id")
    idle, absolute = SESSION_LIMITS[method]
    now = clock.now()
    cookie = tokens.new_token(clinic_id)
    _, session_hash = tokens.split_token(cookie)
    expires = now + timedelta(minutes=absolute)
    ids = set(guarantor_ids) | {guarantor_id}
    SessionItem(keys.session_pk(clinic_id, session_hash), keys.SINGLE, guarantor_id=guarantor_id,
                guarantor_ids=ids, group_id=group_id, method=method, origin=origin, purpose=purpose,
                language=language, created_at=now, last_seen_at=now, idle_minutes=idle, expires_at=expires,
                pages=[first_page] if first_page else [], expires_at_epoch=_epoch(expires),
                gsi1pk=keys.sessions_by_day_gsi1pk(clinic_id, now.date().isoformat()),
                gsi1sk=f"{now.isoformat()}#{session_hash[:16]}").save(condition=SessionItem.pk.does_not_exist())
    return cookie


_SESSION_KIND = Item.item_kind.get_discriminator(SessionItem)
_SESSION_FIELDS = ("guarantor_id", "guarantor_ids", "group_id", "method", "origin", "purpose", "language", "pages",
                   "last_seen_at", "idle_minutes", "expires_at", "ended_at")


def session_resolve(*, cookie: str, page: str | None = None) -> Session:
    """The session behind a cookie, enforcing idle and absolute limits server-side.

    Writes only when needed: the first view of each page (the usage log) and at most one
    idle-timer touch a minute, so a repeated page view is one consistent GetItem and no write
    (B2), whose answer is deserialised only for the attributes checked and shown (B1).
    Raises LinkInvalid for a missing, ended or expired session.
    """
    clinic_id, session_hash = tokens.split_token(cookie)
    now = clock.now()
    pk = keys.session_pk(clinic_id, session_hash)
    with clinic_scope(clinic_id):
        raw = db.raw_get(pk, keys.SINGLE, consistent=True)
        if not raw or raw.get(SessionItem.item_kind.attr_name, {}).get("S") != _SESSION_KIND:
            raise LinkInvalid("session not valid")
        stored = dict(zip(_SESSION_FIELDS, db.stored_values(SessionItem, raw, _SESSION_FIELDS), strict=True))
        last_seen_at = stored["last_seen_at"]
        idle_deadline = last_seen_at + timedelta(minutes=int(stored["idle_minutes"]))
        if stored["ended_at"] is not None or stored["expires_at"] <= now or idle_deadline <= now:
            raise LinkInvalid("session not valid")
        actions: list[Action] = []
        if now - last_seen_at >= TOUCH_EVERY:
            actions.append(SessionItem.last_seen_at.set(now))
        if page and page not in (stored["pages"] or []):
            actions.append(SessionItem.pages.set(SessionItem.pages.append([page])))
        if actions:  # the session as the update left it (ALL_NEW)
            item = SessionItem(pk, keys.SINGLE)
            item.update(actions=actions, condition=SessionItem.ended_at.does_not_exist())
            stored = {name: getattr(item, name) for name in _SESSION_FIELDS}
    return _session_view(clinic_id, stored)


def session_end(*, cookie: str) -> None:
    """End a session (logout); ending an unknown or ended session is not an error."""
    try:
        clinic_id, session_hash = tokens.split_token(cookie)
    except LinkInvalid:
        return
    with clinic_scope(clinic_id):
        try:
            SessionItem(keys.session_pk(clinic_id, session_hash), keys.SINGLE).update(
                actions=[SessionItem.ended_at.set(clock.now())],
                condition=SessionItem.pk.exists() & SessionItem.ended_at.does_not_exist())
        except UpdateError as exc:
            if exc.cause_response_code != "ConditionalCheckFailedException":
                raise


def session_record_payment(*, cookie: str, attempted: bool, outcome: str) -> None:
    """Note on the session that a payment was attempted and how it ended (usage report)."""
    clinic_id, session_hash = tokens.split_token(cookie)
    with clinic_scope(clinic_id):
        SessionItem(keys.session_pk(clinic_id, session_hash), keys.SINGLE).update(
            actions=[SessionItem.payment.set({"attempted": attempted, "outcome": outcome[:40]})],
            condition=SessionItem.pk.exists())


# --- one-time codes ----------------------------------------------------------------------------


def _window(now: datetime, minutes: int) -> str:
    return str(int(now.timestamp()) // (minutes * 60))


@clinic_scoped
def rate_take(*, clinic_id: str, subject: str, minutes: int, limit: int) -> None:
    """Take one from ``subject``'s fixed window of ``minutes``; TooManyRequests at ``limit``.

    One conditional update (``used < limit``), so concurrent callers never pass the cap
    (R19, R20). ``subject`` is a keyed hash, never a raw email, phone or address.
    """
    now = clock.now()
    item = RateItem(keys.rate_pk(clinic_id, subject, f"{minutes}m{_window(now, minutes)}"), keys.SINGLE)
    try:
        item.update(actions=[RateItem.used.set((RateItem.used | 0) + 1),
                             RateItem.expires_at_epoch.set(_epoch(now) + minutes * 120)],
                    condition=RateItem.used.does_not_exist() | (RateItem.used < limit))
    except UpdateError as exc:
        if exc.cause_response_code == "ConditionalCheckFailedException":
            raise TooManyRequests("too many requests; try again later") from exc
        raise


def _normalize_contact(value: str) -> tuple[str, str]:
    """``(channel, normalized)``: an email (casefolded) or a US/CA mobile in E.164 (R20)."""
    text = value.strip()
    if "@" in text:
        if len(text) > 254 or " " in text:
            raise InvalidInput("that is not an email address")
        return "email", text.casefold()
    digits = "".join(c for c in text if c.isdigit())
    if len(digits) == 10:
        digits = "1" + digits
    if len(digits) != 11 or not digits.startswith("1"):
        raise InvalidInput("that is not a US or Canadian mobile number")
    return "sms", f"+{digits}"


@dataclass(frozen=True)
class CodeRequest:
    """The outcome of asking for a code. ``request_id`` is returned in every case (R21);
    ``send`` is ``(channel, destination, code)`` only when the contact is on file for a
    guarantor of that name: the caller sends it through notify, never shows it."""

    request_id: str
    send: tuple[str, str, str] | None


@clinic_scoped
def code_request(*, clinic_id: str, group_id: str, first_name: str, last_name: str, contact: str,
                 address_hash: str) -> CodeRequest:
    """Start a sign-in: match the name (case- and accent-insensitive, first or preferred name,
    through gsi2, no Scan) and the contact against guarantors on file, and issue a code.

    Send caps are counted before matching, so they say nothing about who exists: 3 per
    destination per 15 min, 10 per 24 h, 20 per source address per hour (R20). A newer
    request supersedes the older ones for that destination (R18). The same work is done
    whether or not anyone matched (R21). Raises InvalidInput (contact format), TooManyRequests.
    """
    channel, destination = _normalize_contact(contact)
    dest_hash = tokens.subject_hash(destination)
    rate_take(clinic_id=clinic_id, subject=f"addr-{address_hash}", minutes=60, limit=ADDRESS_CAP_PER_HOUR)
    for _, minutes, limit in SEND_CAPS:
        rate_take(clinic_id=clinic_id, subject=f"send-{dest_hash}", minutes=minutes, limit=limit)
    first = keys.fold_name(first_name)
    matches: set[str] = set()
    for item in GuarantorItem.gsi2.query(keys.last_name_gsi2pk(clinic_id, last_name)):
        if not isinstance(item, GuarantorItem):
            continue
        names = {keys.fold_name(item.first_name), keys.fold_name(item.preferred_name or "")}
        on_file = (item.email or "").strip().casefold() if channel == "email" else _mobile_or_none(item.mobile)
        if first in names and on_file == destination:
            matches.add(item.guarantor_id)
    request_id = new_id("req")
    code = tokens.new_code()
    now = clock.now()
    expires = now + timedelta(minutes=CODE_MINUTES)
    CodeItem(keys.code_pk(clinic_id, request_id), keys.SINGLE, destination_hash=dest_hash, channel=channel,
             guarantor_ids=matches or {"-"}, group_id=group_id,
             code_hash=tokens.code_hash(code if matches else secrets.token_hex(8), request_id),
             created_at=now, expires_at=expires, expires_at_epoch=_epoch(expires)).save()
    # The newest request for a destination is the only live one (R18).
    CodeCurrentItem(keys.code_destination_pk(clinic_id, dest_hash), keys.SINGLE, request_id=request_id,
                    expires_at_epoch=_epoch(expires)).save()
    return CodeRequest(request_id, (channel, destination, code) if matches else None)


def _mobile_or_none(value: str | None) -> str | None:
    try:
        return _normalize_contact(value)[1] if value else None
    except InvalidInput:
        return None


@clinic_scoped
def code_verify(*, clinic_id: str, request_id: str, code: str) -> frozenset[str]:
    """Redeem a code for its request; return the guarantor ids it signs in to.

    Single use and atomic: one conditional update sets ``used_at`` only if unused, unexpired
    and under 5 attempts, so 50 concurrent right answers make one session (R18); a wrong
    code burns an attempt, and the 6th try fails even when right (R19). Expiry is checked
    here, not left to TTL (R14, R17). Raises CodeRefused for every refusal.
    """
    refused = CodeRefused("code invalid or expired")
    try:
        require_id(request_id, field="request")
    except InvalidInput:
        raise refused from None
    if not (len(code) == 6 and code.isdigit()):
        raise refused
    now = clock.now()
    key = (keys.code_pk(clinic_id, request_id), keys.SINGLE)
    try:
        item = CodeItem.get(*key, consistent_read=True)
    except CodeItem.DoesNotExist:
        raise refused from None
    try:
        current = CodeCurrentItem.get(keys.code_destination_pk(clinic_id, item.destination_hash), keys.SINGLE,
                                      consistent_read=True)
    except CodeCurrentItem.DoesNotExist:
        raise refused from None
    superseded = current.request_id != request_id
    live = (CodeItem.used_at.does_not_exist() & (CodeItem.attempts < CODE_ATTEMPTS)
            & (CodeItem.expires_at > now))
    right = (secrets.compare_digest(item.code_hash, tokens.code_hash(code, request_id))
             and "-" not in item.guarantor_ids and not superseded)
    try:
        if right:
            item.update(actions=[CodeItem.used_at.set(now), CodeItem.attempts.set(CodeItem.attempts + 1)],
                        condition=live)
        else:
            item.update(actions=[CodeItem.attempts.set(CodeItem.attempts + 1)], condition=live)
    except UpdateError as exc:
        if exc.cause_response_code == "ConditionalCheckFailedException":
            raise refused from exc
        raise
    if not right:
        raise refused
    return frozenset(item.guarantor_ids)
