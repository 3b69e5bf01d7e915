"""The Profile page (REFERENCE-PORTAL.md G7): preferred name; email and mobile changed only after
a step-up code sent to the CURRENT contact (else the other channel on file) and then a code
sent to the NEW contact are confirmed, with a new session key after the step-up, and the old
contact told (SECURITY.md R22, R23);
notification preferences per channel recorded as consent (R41); stored cards with removal.

Plain forms (no JavaScript), each with the session's CSRF token (R46, checked by
``portal.session_page``); each post redirects back to ``/profile`` (post/redirect/get), so
reloading the page posts nothing twice, and each handler is safe to run twice anyway.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from chalice import Blueprint, Response

from chalicelib.core import lazy
from chalicelib.core.errors import CodeRefused, InvalidInput, NotFound, TooManyRequests
from chalicelib.core.ids import new_id
from chalicelib.links import tokens
from chalicelib.web.portal import (
    FORM,
    _address_hash,
    _language,
    _page_context,
    _render,
    _session_cookie,
    session_page,
)

if TYPE_CHECKING:
    from chalicelib.accounts import services as account_services
    from chalicelib.links import services as links
    from chalicelib.links.services import Session
    from chalicelib.payments import selectors as payment_selectors
    from chalicelib.payments import services as payment_services
    from chalicelib.web import context, pages
else:
    account_services = lazy.module("chalicelib.accounts.services")
    links = lazy.module("chalicelib.links.services")
    payment_selectors = lazy.module("chalicelib.payments.selectors")
    payment_services = lazy.module("chalicelib.payments.services")
    context = lazy.module("chalicelib.web.context")
    pages = lazy.module("chalicelib.web.pages")

profile_pages = Blueprint(__name__)
DONE = ("name", "email", "sms", "notifications", "card")


def _request() -> Any:
    return profile_pages.current_request


def _form() -> dict[str, str]:
    return pages.form(_request().raw_body)


def _profile(session: Session, *, status: int = 200, error: str | None = None, done: str | None = None,
             new_cookie: str | None = None, **extra: Any) -> Response:
    """The Profile page with the guarantor's contacts, preferences and stored cards (with
    ``new_cookie``: after a session rotation, set and used for the forms' CSRF token)."""
    ctx = _page_context(session, new_cookie)
    g = ctx["page"].guarantor
    prefs = context.notification_preferences(clinic_id=session.clinic_id, guarantor_id=session.guarantor_id,
                                             email=g.email, mobile=g.mobile)
    cards = payment_selectors.stored_cards_list(clinic_id=session.clinic_id, guarantor_id=session.guarantor_id)
    cookies = [pages.set_cookie(pages.SESSION_COOKIE, new_cookie)] if new_cookie else None
    return pages.render("profile.html", language=_language(g.language), status=status, cookies=cookies, **ctx,
                        prefs=prefs, cards=cards, error=error, done=done, **extra)


@profile_pages.route("/profile", methods=["GET"])
@session_page("profile", full_portal=True)
def profile(session: Session) -> Response:
    """Profile: name, preferred name, email, mobile, notification preferences, stored cards."""
    done = (_request().query_params or {}).get("done")
    return _profile(session, done=done if done in DONE else None)


@profile_pages.route("/profile/name", methods=["POST"], content_types=FORM)
@session_page("profile", full_portal=True)
def name_save(session: Session) -> Response:
    """Set or clear the preferred name (at most 40 characters)."""
    try:
        account_services.preferred_name_set(clinic_id=session.clinic_id, guarantor_id=session.guarantor_id,
                                            preferred_name=_form().get("preferred_name", ""))
    except InvalidInput:
        return _profile(session, status=400, error="name")
    return pages.redirect("/profile?done=name")


def _send_caps(session: Session, destination: str, kind: str) -> None:
    """Code-send caps, as sign-in's (R20): 20 per source address per hour; 3 per destination
    per 15 min and 10 per 24 h (shared with sign-in codes to that destination); the same per
    guarantor for each kind of code (``stepup``, ``change``). Raises TooManyRequests."""
    links.rate_take(clinic_id=session.clinic_id, subject=f"addr-{_address_hash()}", minutes=60,
                    limit=links.ADDRESS_CAP_PER_HOUR)
    for subject in (f"send-{tokens.subject_hash(destination)}", f"{kind}-{tokens.subject_hash(session.guarantor_id)}"):
        for _, minutes, limit in links.SEND_CAPS:
            links.rate_take(clinic_id=session.clinic_id, subject=subject, minutes=minutes, limit=limit)


def _code_page(session: Session, change: dict[str, str], *, status: int = 200, error: str | None = None,
               new_cookie: str | None = None) -> Response:
    return _render("profile_code.html", session, status=status, change=change, error=error, new_cookie=new_cookie)


def _pending(change: account_services.ContactChange) -> dict[str, str]:
    return {"request_id": change.request_id, "stage": change.stage, "channel": change.channel,
            "value": change.value, "stepup_channel": change.stepup_channel, "stepup_to": change.stepup_to}


@profile_pages.route("/profile/contact", methods=["POST"], content_types=FORM)
@session_page("profile", full_portal=True)
def contact_start(session: Session) -> Response:
    """Ask to change the email (``channel=email``) or mobile (``channel=sms``) to ``value``.
    Step-up first (SECURITY.md R22): a code goes to the CURRENT contact of that channel (else to
    the other channel on file), never yet to the new one; :func:`contact_stepup` takes it."""
    data = _form()
    channel = data.get("channel", "")
    if channel not in account_services.CONTACT_CHANNELS:
        return _profile(session, status=400, error="email")
    g = _page_context(session)["page"].guarantor
    try:
        value = account_services.contact_normalize(channel, data.get("value", ""))
        _, stepup_to = account_services.stepup_contact(channel, email=g.email, mobile=g.mobile)
        _send_caps(session, stepup_to, "stepup")
        code, request_id = tokens.new_code(), new_id("req")
        change = account_services.contact_change_start(
            clinic_id=session.clinic_id, guarantor_id=session.guarantor_id, channel=channel, value=value,
            request_id=request_id, code_hash=tokens.code_hash(code, request_id))
    except account_services.StepUpRequired:
        return _profile(session, status=403, error="no_contact")
    except InvalidInput as exc:
        already = "already on file" in str(exc)
        return _profile(session, status=400, error=f"{channel}_same" if already else channel)
    except TooManyRequests:
        return _profile(session, status=429, error="too_many")
    context.code_deliver(clinic_id=session.clinic_id, request_id=change.request_id, channel=change.stepup_channel,
                         destination=change.stepup_to, code=code, language=_language(g.language))
    return _code_page(session, _pending(change))


def _posted_change(data: dict[str, str], stage: str) -> dict[str, str]:
    """The pending change as the code page posted it back (only re-displayed, never trusted)."""
    fields = ("request_id", "channel", "value", "stepup_channel", "stepup_to")
    return {"stage": stage, **{k: data.get("request" if k == "request_id" else k, "") for k in fields}}


def _code_hash(code: str, request_id: str) -> str:
    """The hash of a typed code; anything but 6 digits hashes to nothing, a wrong guess."""
    code = code.strip()
    return tokens.code_hash(code, request_id) if len(code) == 6 and code.isdigit() else ""


@profile_pages.route("/profile/contact/stepup", methods=["POST"], content_types=FORM)
@session_page("profile", full_portal=True)
def contact_stepup(session: Session) -> Response:
    """Take the step-up code sent to the current contact (R22); then a new session key (R23)
    and a code to the NEW contact, whose page :func:`contact_confirm` takes. A wrong, expired,
    reused or superseded code, or the 6th try, is refused alike (R17-R19)."""
    data = _form()
    request_id = data.get("request", "")
    new_code = tokens.new_code()
    try:
        change = account_services.contact_change_stepup(
            clinic_id=session.clinic_id, guarantor_id=session.guarantor_id, request_id=request_id,
            code_hash=_code_hash(data.get("code", ""), request_id),
            new_code_hash=tokens.code_hash(new_code, request_id))
    except (CodeRefused, InvalidInput):
        return _code_page(session, _posted_change(data, account_services.STAGE_STEPUP), status=400, error="code")
    cookie = _rotate(session)
    try:
        _send_caps(session, change.value, "change")
    except TooManyRequests:
        return _profile(session, status=429, error="too_many", new_cookie=cookie)
    language = _language(_page_context(session)["page"].guarantor.language)
    context.code_deliver(clinic_id=session.clinic_id, request_id=change.request_id, channel=change.channel,
                         destination=change.value, code=new_code, language=language)
    return _code_page(session, _pending(change), new_cookie=cookie)


def _rotate(session: Session) -> str:
    """End this session and start its twin under a new key (R23: a new key on step-up)."""
    old = _session_cookie()
    assert old is not None  # session_page resolved it
    links.session_end(cookie=old)
    return links.session_start(clinic_id=session.clinic_id, guarantor_id=session.guarantor_id,
                               group_id=session.group_id, method=session.method, origin=session.origin,
                               purpose=session.purpose, guarantor_ids=session.guarantor_ids,
                               language=session.language, first_page="profile")


@profile_pages.route("/profile/contact/verify", methods=["POST"], content_types=FORM)
@session_page("profile", full_portal=True)
def contact_confirm(session: Session) -> Response:
    """Confirm the code sent to the new contact: it replaces the old one, which is told (R22).
    Without a confirmed step-up for this change: 403, nothing changed (R22). A wrong, expired,
    reused or superseded code, or the 6th try, is refused alike (R17-R19)."""
    data = _form()
    request_id = data.get("request", "")
    try:
        changed = account_services.contact_change_confirm(
            clinic_id=session.clinic_id, guarantor_id=session.guarantor_id, request_id=request_id,
            code_hash=_code_hash(data.get("code", ""), request_id))
    except account_services.StepUpRequired:
        return _profile(session, status=403, error="stepup")
    except (CodeRefused, InvalidInput):
        return _code_page(session, _posted_change(data, account_services.STAGE_NEW), status=400, error="code")
    if changed.old_value:
        language = _language(_page_context(session)["page"].guarantor.language)
        context.contact_change_notice(clinic_id=session.clinic_id, guarantor_id=session.guarantor_id,
                                      channel=changed.channel, old_destination=changed.old_value, language=language)
    return pages.redirect(f"/profile?done={changed.channel}")


@profile_pages.route("/profile/notifications", methods=["POST"], content_types=FORM)
@session_page("profile", full_portal=True)
def notifications_save(session: Session) -> Response:
    """Balance notifications by email and/or text: each change is a consent record with time and
    source ``portal`` (R41); an SMS opt-in gets notify's confirmation text."""
    data = _form()
    ctx = _page_context(session)
    g = ctx["page"].guarantor
    current = context.notification_preferences(clinic_id=session.clinic_id, guarantor_id=session.guarantor_id,
                                               email=g.email, mobile=g.mobile)
    wanted = {"email": data.get("email") == "on", "sms": data.get("sms") == "on"}
    context.consent_save(clinic_id=session.clinic_id, guarantor_id=session.guarantor_id, wanted=wanted,
                         current=current)
    return pages.redirect("/profile?done=notifications")


@profile_pages.route("/profile/cards/remove", methods=["POST"], content_types=FORM)
@session_page("profile", full_portal=True)
def card_remove(session: Session) -> Response:
    """Remove one of the guarantor's stored cards. Removing it again is harmless; another
    guarantor's card id is refused as unknown (404), and that card stays (R16)."""
    try:
        payment_services.card_remove(clinic_id=session.clinic_id, guarantor_id=session.guarantor_id,
                                     card_id=_form().get("card", ""))
    except (NotFound, InvalidInput):
        return _profile(session, status=404, error="card")
    return pages.redirect("/profile?done=card")
