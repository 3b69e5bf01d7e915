"""The Profile page (REFERENCE-PORTAL.md G7): preferred name; email and mobile changed only after
a one-time code sent to the NEW contact is confirmed, the old contact told (SECURITY.md R22);
notification preferences per channel recorded as consent (R41); stored cards with removal.

Plain forms (no JavaScript), each with the session's CSRF token (R46, checked by
``portal.session_page``); each post redirects back to ``/profile`` (post/redirect/get), so
reloading the page posts nothing twice, and each handler is safe to run twice anyway.
"""

from __future__ import annotations

from typing import Any

from chalice import Blueprint, Response

from chalicelib.accounts import services as account_services
from chalicelib.core.errors import CodeRefused, InvalidInput, NotFound, TooManyRequests
from chalicelib.core.ids import new_id
from chalicelib.links import services as links
from chalicelib.links import tokens
from chalicelib.links.services import Session
from chalicelib.payments import selectors as payment_selectors
from chalicelib.payments import services as payment_services
from chalicelib.web import context, pages
from chalicelib.web.portal import FORM, _address_hash, _language, _page_context, _render, session_page

profile_pages = Blueprint(__name__)
DONE = ("name", "email", "sms", "notifications", "card")


def _request() -> Any:
    return profile_pages.current_request


def _form() -> dict[str, str]:
    return pages.form(_request().raw_body)


def _profile(session: Session, *, status: int = 200, error: str | None = None, done: str | None = None,
             **extra: Any) -> Response:
    """The Profile page with the guarantor's contacts, preferences and stored cards."""
    ctx = _page_context(session)
    g = ctx["page"].guarantor
    prefs = context.notification_preferences(clinic_id=session.clinic_id, guarantor_id=session.guarantor_id,
                                             email=g.email, mobile=g.mobile)
    cards = payment_selectors.stored_cards_list(clinic_id=session.clinic_id, guarantor_id=session.guarantor_id)
    return pages.render("profile.html", language=_language(g.language), status=status, **ctx, prefs=prefs,
                        cards=cards, error=error, done=done, **extra)


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


@profile_pages.route("/profile/contact", methods=["POST"], content_types=FORM)
@session_page("profile", full_portal=True)
def contact_start(session: Session) -> Response:
    """Ask to change the email (``channel=email``) or mobile (``channel=sms``): send a code to
    the new contact and ask for it. Send caps as sign-in's: 3 per destination per 15 min and
    10 per 24 h (shared with sign-in codes to that destination), the same per guarantor, 20 per
    source address per hour (R20)."""
    data = _form()
    channel = data.get("channel", "")
    if channel not in account_services.CONTACT_CHANNELS:
        return _profile(session, status=400, error="email")
    try:
        value = account_services.contact_normalize(channel, data.get("value", ""))
        links.rate_take(clinic_id=session.clinic_id, subject=f"addr-{_address_hash()}", minutes=60,
                        limit=links.ADDRESS_CAP_PER_HOUR)
        for subject in (f"send-{tokens.subject_hash(value)}", f"change-{tokens.subject_hash(session.guarantor_id)}"):
            for _, minutes, limit in links.SEND_CAPS:
                links.rate_take(clinic_id=session.clinic_id, subject=subject, minutes=minutes, limit=limit)
        code, request_id = tokens.new_code(), new_id("req")
        change = account_services.contact_change_start(
            clinic_id=session.clinic_id, guarantor_id=session.guarantor_id, channel=channel, value=value,
            request_id=request_id, code_hash=tokens.code_hash(code, request_id))
    except InvalidInput as exc:
        already = "already on file" in str(exc)
        return _profile(session, status=400, error=f"{channel}_same" if already else channel)
    except TooManyRequests:
        return _profile(session, status=429, error="too_many")
    language = _language(_page_context(session)["page"].guarantor.language)
    context.code_deliver(clinic_id=session.clinic_id, request_id=change.request_id, channel=channel,
                         destination=change.value, code=code, language=language)
    return _render("profile_code.html", session, change=change, error=None)


@profile_pages.route("/profile/contact/verify", methods=["POST"], content_types=FORM)
@session_page("profile", full_portal=True)
def contact_confirm(session: Session) -> Response:
    """Confirm the code: the new contact replaces the old one, which is told (R22). A wrong,
    expired, reused or superseded code, or the 6th try, is refused alike (R17-R19)."""
    data = _form()
    request_id, code = data.get("request", ""), data.get("code", "").strip()
    try:
        if not (len(code) == 6 and code.isdigit()):
            raise CodeRefused("code invalid or expired")
        changed = account_services.contact_change_confirm(
            clinic_id=session.clinic_id, guarantor_id=session.guarantor_id, request_id=request_id,
            code_hash=tokens.code_hash(code, request_id))
    except (CodeRefused, InvalidInput):
        pending = {"request_id": request_id, "channel": data.get("channel", ""), "value": data.get("value", "")}
        return _render("profile_code.html", session, status=400, change=pending, error="code")
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
