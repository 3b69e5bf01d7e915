"""The patient portal's routes: link exchange, QuickPay, sign-in with a one-time code, the full
portal pages, language switch and logout (PRODUCT.md §6, REFERENCE-PORTAL.md A, B, G, I).

Every refusal of a link or session renders one neutral page with the practice's phone number
(SECURITY.md R25); nothing on a page or in a URL says whether a guarantor exists.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import weakref
from collections.abc import Callable
from functools import wraps
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from chalice import Blueprint, Response

from chalicelib.core import lazy
from chalicelib.core.errors import (
    CodeRefused,
    InvalidAmount,
    InvalidInput,
    LinkInvalid,
    NotFound,
    TooManyRequests,
    TryAgainLater,
)
from chalicelib.core.ids import require_id
from chalicelib.core.money import parse_cents
from chalicelib.links.tokens import split_token
from chalicelib.payments.errors import IdempotencyConflict, PaymentInProgress
from chalicelib.web import i18n

if TYPE_CHECKING:
    from chalicelib.accounts import selectors as account_selectors
    from chalicelib.links import services as links
    from chalicelib.links.services import Session
    from chalicelib.payments import selectors as payment_selectors
    from chalicelib.payments import services as payment_services
    from chalicelib.statements import selectors as statement_selectors
    from chalicelib.statements import services as statement_services
    from chalicelib.tenants import selectors as tenant_selectors
    from chalicelib.web import context, pages
else:
    account_selectors = lazy.module("chalicelib.accounts.selectors")
    links = lazy.module("chalicelib.links.services")
    payment_selectors = lazy.module("chalicelib.payments.selectors")
    payment_services = lazy.module("chalicelib.payments.services")
    statement_selectors = lazy.module("chalicelib.statements.selectors")
    statement_services = lazy.module("chalicelib.statements.services")
    tenant_selectors = lazy.module("chalicelib.tenants.selectors")
    context = lazy.module("chalicelib.web.context")
    pages = lazy.module("chalicelib.web.pages")

portal = Blueprint(__name__)
FORM = ["application/x-www-form-urlencoded"]
LANDING = {"home": "/home", "account": "/account", "pay": "/pay"}


def _request() -> Any:
    return portal.current_request


_parsed_cookies: weakref.WeakKeyDictionary[Any, dict[str, str]] = weakref.WeakKeyDictionary()


def _cookies() -> dict[str, str]:
    """This request's cookies, parsed once per request (a page reads them up to three times)."""
    request = _request()
    found = _parsed_cookies.get(request)
    if found is None:
        found = _parsed_cookies[request] = pages.read_cookies(request.headers)
    return found


def _language(on_file: str | None = None) -> str:
    """An explicit ``?lang=``, the language cookie, the guarantor's language, the browser's."""
    return i18n.choose(requested=(_request().query_params or {}).get("lang"),
                       cookie=_cookies().get(pages.cookie_name(pages.LANG_COOKIE)),
                       on_file=on_file, accept=_request().headers.get("accept-language"))


def _session_cookie() -> str | None:
    return _cookies().get(pages.cookie_name(pages.SESSION_COOKIE))


def _is_id(value: str) -> bool:
    try:
        require_id(value, field="clinic")
        return True
    except InvalidInput:
        return False


def _clinic_of(token: str | None) -> str | None:
    try:
        return split_token(token)[0] if token else None
    except LinkInvalid:
        return None


def neutral(clinic_id: str | None, *, status: int = 404, reason: str = "invalid", clear: bool = True) -> Response:
    """The one page for every invalid link or session: the practice's phone, nothing else.
    ``clear`` drops the session cookie (not for a POST with an ended session: a double-submitted
    form whose twin just rotated the session would sign the browser out of the new one)."""
    phone, name = None, None
    if clinic_id:
        try:
            clinic = tenant_selectors.clinic_get(clinic_id=clinic_id)
            phone, name = clinic.phone, clinic.name
        except NotFound:
            pass
    return pages.render("invalid.html", language=_language(), status=status, phone=phone, practice=name,
                        reason=reason, cookies=[pages.clear_cookie(pages.SESSION_COOKIE)] if clear else [])


View = Callable[..., Response]


def session_page(page: str, *, full_portal: bool = False) -> Callable[[View], View]:
    """Resolve the session cookie (idle/absolute limits, usage log) and pass it to the view.

    ``full_portal`` pages need a one-time-code session; a QuickPay session is sent to sign in.
    """

    def decorate(view: View) -> View:
        @wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Response:
            cookie = _session_cookie()
            if not cookie:
                return pages.redirect(f"/signin?next={page_path(page)}")
            try:
                session = links.session_resolve(cookie=cookie, page=page)
            except LinkInvalid:
                return neutral(_clinic_of(cookie), status=401, reason="expired", clear=_request().method != "POST")
            if full_portal and session.method != "code":
                return pages.redirect(f"/signin?next={page_path(page)}")
            if _request().method == "POST" and not pages.csrf_ok(cookie, pages.form(_request().raw_body).get("csrf")):
                return form_expired(session)
            return view(session, *args, **kwargs)

        return wrapper

    return decorate


def form_expired(session: Session) -> Response:
    """A post without this session's CSRF token (another site's form, or a page kept open
    across a new sign-in): refused with 403, nothing changed (SECURITY.md R46)."""
    return _render("invalid.html", session, status=403, reason="form", phone=None)


def _public_render(template: str, *, status: int = 200, **context_: Any) -> Response:
    """Render a page whose form is posted without a session (sign-in, its code, verify) with
    the login-CSRF token as ``csrf``, setting the ``fd_csrf`` cookie when the browser has none
    (SECURITY.md R46). A page naming its clinic and group (sign-in, its code) wears the group's
    name, logo, theme and footer, as the pages after it do (PRODUCT.md §7)."""
    token, cookies = pages.login_csrf(_cookies().get(pages.cookie_name(pages.LOGIN_CSRF_COOKIE)))
    clinic_id, group_id = context_.get("clinic_id"), context_.get("group_id")
    if clinic_id and group_id and "practice" not in context_:
        try:
            group = tenant_selectors.group_get(clinic_id=clinic_id, group_id=group_id)
        except (NotFound, InvalidInput):
            pass  # no branding; the post is refused with the neutral page
        else:
            context_.update(practice=group.name, settings=group.settings,
                            theme_css=context.theme_css(group.settings))
    return pages.render(template, language=_language(), status=status, cookies=cookies, csrf=token, **context_)


def login_form(view: View) -> View:
    """For POSTs made before there is a session: refuse, with 403 and before anything is read
    or written, a post whose ``csrf`` field is not the HMAC of the browser's ``fd_csrf``
    cookie (another site's form: login CSRF, SECURITY.md R46)."""

    @wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Response:
        cookie = _cookies().get(pages.cookie_name(pages.LOGIN_CSRF_COOKIE))
        if not pages.login_csrf_ok(cookie, pages.form(_request().raw_body).get("csrf")):
            return pages.render("invalid.html", language=_language(), status=403, reason="form", phone=None,
                                practice=None)
        return view(*args, **kwargs)

    return wrapper


def page_path(page: str) -> str:
    return "/" + page.split(":")[0]


def _page_context(session: Session, cookie: str | None = None) -> dict[str, Any]:
    """What every session page renders with; ``cookie`` is the session cookie the page's forms
    will be posted with (default: this request's; a new one after a session rotation)."""
    data = account_selectors.guarantor_page(clinic_id=session.clinic_id, guarantor_id=session.guarantor_id,
                                            group_id=session.group_id)
    return {"page": data, "settings": data.group.settings, "session": session,
            "theme_css": context.theme_css(data.group.settings), "full": session.method == "code",
            "csrf": pages.csrf_token(cookie or _session_cookie() or "")}


def _render(template: str, session: Session, *, status: int = 200, new_cookie: str | None = None,
            **extra: Any) -> Response:
    """Render a session page; with ``new_cookie`` (a rotated session, R23) the cookie is set
    and the page's forms carry its CSRF token."""
    ctx = _page_context(session, new_cookie)
    language = _language(ctx["page"].guarantor.language)
    cookies = [pages.set_cookie(pages.SESSION_COOKIE, new_cookie)] if new_cookie else None
    return pages.render(template, language=language, status=status, cookies=cookies, **ctx, **extra)


# --- entry points ------------------------------------------------------------------------------


@portal.route("/l/{token}", methods=["GET"])
def link_open(token: str) -> Response:
    """Exchange a payment link for a session cookie and a redirect to a token-free URL (R26).

    GET consumes nothing: the link stays valid until it expires or is revoked.
    """
    try:
        link = links.link_resolve(token=token)
    except LinkInvalid:
        return neutral(_clinic_of(token))
    cookie = links.session_start(clinic_id=link.clinic_id, guarantor_id=link.guarantor_id, group_id=link.group_id,
                                 method="quickpay", origin=links.SESSION_ORIGINS[link.kind], purpose=link.purpose,
                                 first_page="quickpay")
    # Every link lands on QuickPay: the account pages a purpose names need a one-time code first.
    return pages.redirect("/pay", cookies=[pages.set_cookie(pages.SESSION_COOKIE, cookie)])


@portal.route("/pay", methods=["GET"])
@session_page("quickpay")
def quickpay(session: Session) -> Response:
    """QuickPay: practice branding, first name, Amount Due and Current Balance (as the group
    allows), amount and method choice, and the processor-hosted card step (PRODUCT.md §6)."""
    return _render("quickpay.html", session, error=None, attempt_key=secrets.token_urlsafe(16))


# --- sign-in -----------------------------------------------------------------------------------


def _clinic_from_query() -> tuple[str | None, str | None]:
    q = _request().query_params or {}
    return q.get("clinic"), q.get("group")


@portal.route("/signin", methods=["GET"])
def signin_form() -> Response:
    """Step 1: name and an email or mobile number already on file (PRODUCT.md §6, R21)."""
    clinic_id, group_id = _signin_target()
    if clinic_id is None or group_id is None:
        return neutral(None, status=404)
    return _public_render("signin.html", clinic_id=clinic_id, group_id=group_id,
                          next=pages.safe_next((_request().query_params or {}).get("next"), "/home"), error=None)


def _signin_target() -> tuple[str | None, str | None]:
    """The clinic and group to sign in to: from the query, else from the current session."""
    clinic_id, group_id = _clinic_from_query()
    if clinic_id and group_id:
        return clinic_id, group_id
    cookie = _session_cookie()
    if cookie:
        try:
            s = links.session_resolve(cookie=cookie)
            return s.clinic_id, s.group_id
        except LinkInvalid:
            return _clinic_of(cookie), None
    return None, None


def _address_hash() -> str:
    ident = (_request().context or {}).get("identity", {}) or {}
    source = str(ident.get("sourceIp") or "unknown")
    return hashlib.sha256(source.encode()).hexdigest()[:24]


@portal.route("/signin", methods=["POST"], content_types=FORM)
@login_form
def signin_request() -> Response:
    """Ask for a code. The same page follows whether or not anyone matched (R21)."""
    data = pages.form(_request().raw_body)
    clinic_id, group_id = data.get("clinic", ""), data.get("group", "")
    language = _language()
    try:
        tenant_selectors.group_get(clinic_id=clinic_id, group_id=group_id)
        request = links.code_request(clinic_id=clinic_id, group_id=group_id, first_name=data.get("first_name", ""),
                                     last_name=data.get("last_name", ""), contact=data.get("contact", ""),
                                     address_hash=_address_hash())
    except InvalidInput as exc:
        return _public_render("signin.html", status=400, clinic_id=clinic_id, group_id=group_id,
                              next=pages.safe_next(data.get("next")), error=str(exc))
    except TooManyRequests:
        return _public_render("signin.html", status=429, clinic_id=clinic_id, group_id=group_id,
                              next=pages.safe_next(data.get("next")), error="too_many")
    except NotFound:
        return neutral(None)
    if request.send is not None:
        context.code_deliver(clinic_id=clinic_id, request_id=request.request_id, channel=request.send[0],
                             destination=request.send[1], code=request.send[2], language=language)
    return _public_render("code.html", clinic_id=clinic_id, request_id=request.request_id, group_id=group_id,
                          next=pages.safe_next(data.get("next")), error=None)


@portal.route("/signin/code", methods=["POST"], content_types=FORM)
@login_form
def signin_verify() -> Response:
    """Step 2: the code. A new session key on sign-in (R23); several accounts → switcher."""
    data = pages.form(_request().raw_body)
    clinic_id, group_id, request_id = data.get("clinic", ""), data.get("group", ""), data.get("request", "")
    try:
        guarantor_ids = links.code_verify(clinic_id=clinic_id, request_id=request_id, code=data.get("code", ""))
    except (CodeRefused, InvalidInput):
        return _public_render("code.html", status=400, clinic_id=clinic_id, group_id=group_id,
                              request_id=request_id, next=pages.safe_next(data.get("next")), error="code")
    old = _session_cookie()
    if old:
        links.session_end(cookie=old)
    first = sorted(guarantor_ids)[0]
    cookie = links.session_start(clinic_id=clinic_id, guarantor_id=first, group_id=group_id, method="code",
                                 origin="website", guarantor_ids=guarantor_ids)
    target = "/switch" if len(guarantor_ids) > 1 else pages.safe_next(data.get("next"), "")
    if not target:
        settings = tenant_selectors.group_get(clinic_id=clinic_id, group_id=group_id).settings
        target = LANDING[settings.landing_page]
    return pages.redirect(target, cookies=[pages.set_cookie(pages.SESSION_COOKIE, cookie)])


@portal.route("/switch", methods=["GET"])
@session_page("switch", full_portal=True)
def switch_form(session: Session) -> Response:
    """The account switcher for a contact shared by several guarantors (a family)."""
    names = account_selectors.guarantor_names(clinic_id=session.clinic_id, guarantor_ids=list(session.guarantor_ids))
    return _render("switch.html", session, accounts=sorted(names.items(), key=lambda kv: kv[1]))


@portal.route("/switch", methods=["POST"], content_types=FORM)
@session_page("switch", full_portal=True)
def switch_to(session: Session) -> Response:
    """Move to another of the contact's accounts with a fresh session key (R23)."""
    target = pages.form(_request().raw_body).get("guarantor", "")
    if target not in session.guarantor_ids:
        return neutral(session.clinic_id, status=403)
    old = _session_cookie()
    assert old is not None
    links.session_end(cookie=old)
    cookie = links.session_start(clinic_id=session.clinic_id, guarantor_id=target, group_id=session.group_id,
                                 method="code", origin=session.origin, guarantor_ids=session.guarantor_ids)
    settings = tenant_selectors.group_get(clinic_id=session.clinic_id, group_id=session.group_id).settings
    return pages.redirect(LANDING[settings.landing_page], cookies=[pages.set_cookie(pages.SESSION_COOKIE, cookie)])


@portal.route("/logout", methods=["POST"], content_types=FORM)
def logout() -> Response:
    """End the session server-side and clear the cookie. Refused with 403, nothing ended,
    without the session's CSRF token (R46): another site cannot log the guarantor out, and
    with no session there is nothing to end."""
    cookie = _session_cookie()
    clinic_id = _clinic_of(cookie)
    if not pages.csrf_ok(cookie, pages.form(_request().raw_body).get("csrf")):
        return pages.render("invalid.html", language=_language(), status=403, reason="form", phone=None,
                            practice=None)
    assert cookie is not None
    links.session_end(cookie=cookie)
    return pages.render("logged_out.html", language=_language(), practice=None, clinic_id=clinic_id,
                        cookies=[pages.clear_cookie(pages.SESSION_COOKIE)])


@portal.route("/lang/{code}", methods=["GET"])
def language_switch(code: str) -> Response:
    """Remember the chosen language and go back to the page (same site only)."""
    if code not in i18n.LANGUAGES:
        code = "en"
    target = pages.safe_next((_request().query_params or {}).get("next"), "/pay")
    return pages.redirect(target, cookies=[pages.set_cookie(pages.LANG_COOKIE, code, max_age=365 * 86400)])


# --- full portal -------------------------------------------------------------------------------


@portal.route("/home", methods=["GET"])
@session_page("home", full_portal=True)
def home(session: Session) -> Response:
    """Home: name, amount due, unapplied funds, pay now, current statement, new statement flag."""
    statements = account_selectors.statements_list(clinic_id=session.clinic_id, guarantor_id=session.guarantor_id)
    return _render("home.html", session, statement=statements[0] if statements else None)


@portal.route("/account", methods=["GET"])
@session_page("account", full_portal=True)
def account(session: Session) -> Response:
    """Account: summary, visits since the last statement grouped by facility, provider and
    patient, visit history, statement history, collections panel (G2)."""
    ctx = _page_context(session)
    if not ctx["settings"].account_dashboard:
        return pages.redirect("/home")
    visits = context.account_visits(clinic_id=session.clinic_id, guarantor_id=session.guarantor_id)
    language = _language(ctx["page"].guarantor.language)
    return pages.render("account.html", language=language, **ctx, visits=visits)


@portal.route("/statements", methods=["GET"])
@session_page("statements", full_portal=True)
def statements(session: Session) -> Response:
    """Statements newest due date first with paid/unpaid; ``?hide_paid=1`` hides paid ones (G3),
    from ``statements.selectors.statement_history``."""
    hide_paid = (_request().query_params or {}).get("hide_paid") == "1"
    rows = statement_selectors.statement_history(clinic_id=session.clinic_id, guarantor_id=session.guarantor_id,
                                                 hide_paid=hide_paid)
    return _render("statements.html", session, rows=rows, hide_paid=hide_paid)


@portal.route("/statements/{statement_id}", methods=["GET"])
@session_page("statement", full_portal=True)
def statement_detail(session: Session, statement_id: str) -> Response:
    """A printable statement; another guarantor's statement id is the neutral page (R16)."""
    try:
        row = statement_selectors.statement_detail(clinic_id=session.clinic_id, guarantor_id=session.guarantor_id,
                                                   statement_id=statement_id)
    except (NotFound, InvalidInput):
        return neutral(session.clinic_id, status=404)
    return _render("statement.html", session, row=row)


@portal.route("/statements/{statement_id}/pdf", methods=["GET"])
@session_page("statement_pdf", full_portal=True)
def statement_pdf(session: Session, statement_id: str) -> Response:
    """The statement's PDF while it is kept (REFERENCE-PORTAL.md J6): a 303 to a short-lived
    presigned URL, or the bytes themselves from the embedded default's local folder (never a
    ``file://`` address). Another guarantor's statement, or none kept, is the neutral page."""
    try:
        pdf = statement_services.statement_pdf(clinic_id=session.clinic_id, guarantor_id=session.guarantor_id,
                                               statement_id=statement_id)
    except (NotFound, InvalidInput):
        return neutral(session.clinic_id, status=404)
    if pdf.url is not None:
        return pages.redirect(pdf.url)
    return pages.pdf(pdf.body or b"", filename="statement.pdf")


# --- is this bill genuine? --------------------------------------------------------------------

VERIFY_PER_HOUR = 20  # per source address and clinic, as sign-in (R20, R28)


def _verify_clinic(value: str | None) -> str | None:
    """The clinic named by the statement's verification address (``/verify?c=<clinic id>``),
    or the signed-in session's clinic; None when neither names one."""
    if value and _is_id(value):
        return value
    return _clinic_of(_session_cookie())


@portal.route("/verify", methods=["GET"])
def verify_form() -> Response:
    """Public (no sign-in): a form for the verification code printed on a paper statement."""
    clinic_id = _verify_clinic((_request().query_params or {}).get("c"))
    return _public_render("verify.html", clinic_id=clinic_id, result=None, error=None)


@portal.route("/verify", methods=["POST"], content_types=FORM)
@login_form
def verify_check() -> Response:
    """Answer genuine or not genuine for a code (``statements.selectors.statement_verify``) and,
    when genuine, only the practice's name and phone and the statement date(s): no name,
    amount or health data (PRODUCT.md §11). An unknown practice, a malformed code and an
    unknown code get the same answer. 20 checks per source address per hour (R20, R28); a
    post without the login-CSRF token is refused first (R46)."""
    data = pages.form(_request().raw_body)
    clinic_id = _verify_clinic(data.get("c"))
    if clinic_id is None:
        return _public_render("verify.html", status=400, clinic_id=None, result=None, error="no_practice")
    try:
        clinic = tenant_selectors.clinic_get(clinic_id=clinic_id)
        links.rate_take(clinic_id=clinic_id, subject=f"verify-{_address_hash()}", minutes=60, limit=VERIFY_PER_HOUR)
    except NotFound:
        clinic = None
    except TooManyRequests:
        return _public_render("verify.html", status=429, clinic_id=clinic_id, result=None, error="too_many")
    result = statement_selectors.statement_verify(clinic_id=clinic_id, code=data.get("code", ""))
    genuine = clinic is not None and result.genuine
    return _public_render("verify.html", clinic_id=clinic_id, error=None,
                          result={"genuine": genuine, "practice": result.practice if genuine else None,
                                "phone": clinic.phone if genuine and clinic else None,
                                "dates": result.statement_dates if genuine else ()})


_DOLLARS = re.compile(r"\$?\s*(?:[0-9]{1,3}(?:,[0-9]{3})+|[0-9]+)(?:\.[0-9]+)?")


def parse_amount(text: str) -> int:
    """Dollars typed by a guarantor (``42``, ``$42.00``, ``1,250.50``) to cents. A comma is
    only a thousands separator, so ``4,2`` is refused rather than read as 42; no exponents.
    Raises InvalidInput (InvalidAmount)."""
    raw = text.strip()
    if not _DOLLARS.fullmatch(raw):
        raise InvalidAmount(f"amount: {raw[:40]!r} is not an amount in dollars")
    return parse_cents(raw.replace("$", "").replace(",", ""), field="amount")


# --- paying --------------------------------------------------------------------------------------

CHOICES = ("amount_due", "current_balance", "other")


@portal.route("/pay", methods=["POST"], content_types=FORM)
@session_page("quickpay")
def pay_submit(session: Session) -> Response:
    """Start the payment and send the browser to the processor's hosted card page.

    The amount is decided on the server from the ledger (R29): the form only says which
    figure, or dollars for "other". The attempt key from the page makes a double click or a
    resubmitted form the same attempt (R30).
    """
    data = pages.form(_request().raw_body)
    choice = data.get("choice", "")
    try:
        if choice not in CHOICES:
            raise InvalidInput("choose how much to pay")
        cents = parse_amount(data.get("other_amount", "")) if choice == "other" else None
        view = payment_services.payment_attempt_start(
            clinic_id=session.clinic_id, guarantor_id=session.guarantor_id,
            attempt_key=data.get("attempt_key", ""), amount_choice=choice, amount_cents=cents,
            method=data.get("method", "card"), group_id=session.group_id)
    except (IdempotencyConflict, PaymentInProgress):
        return _render("quickpay.html", session, status=409, attempt_key=secrets.token_urlsafe(16), error="busy")
    except InvalidInput:
        return _render("quickpay.html", session, status=400, attempt_key=secrets.token_urlsafe(16), error="amount")
    except TryAgainLater:
        return _render("quickpay.html", session, status=503, attempt_key=secrets.token_urlsafe(16),
                       error="unavailable")
    if view.redirect_url:
        return pages.redirect(view.redirect_url)
    return pages.redirect(f"/pay/done?a={view.attempt_key}")


@portal.route("/pay/done", methods=["GET"])
def pay_done() -> Response:
    """Where the processor's page returns the browser: finish the attempt and show the receipt,
    the decline with a way to retry, or "still confirming" (R34). The attempt key (random,
    unguessable) names the attempt; with the guarantor's session the page also carries the
    portal's navigation, without it only the outcome (no names)."""
    q = _request().query_params or {}
    clinic_id, guarantor_id, attempt_key = q.get("c", ""), q.get("g", ""), q.get("a", "")
    try:
        view = payment_services.payment_attempt_complete(clinic_id=clinic_id, guarantor_id=guarantor_id,
                                                         attempt_key=attempt_key)
    except (NotFound, InvalidInput):
        return neutral(clinic_id if _is_id(clinic_id) else None)
    except TryAgainLater:
        view = None
    session = None
    cookie = _session_cookie()
    if cookie:
        try:
            session = links.session_resolve(cookie=cookie, page="receipt")
        except LinkInvalid:
            session = None
    if session is not None and session.guarantor_id != guarantor_id:
        session = None
    if session is not None and view is not None and cookie:
        links.session_record_payment(cookie=cookie, attempted=True, outcome=view.status)
    receipt = None
    if view is not None and view.receipt_id and view.status == "succeeded":
        receipt = payment_selectors.receipt_get(clinic_id=clinic_id, guarantor_id=guarantor_id,
                                                receipt_id=view.receipt_id)
    status = 200 if view is not None and view.status in ("succeeded", "failed", "canceled") else 202
    here = "/pay/done?" + urlencode({"c": clinic_id, "g": guarantor_id, "a": attempt_key})  # language switch
    if session is not None:
        return _render("paid.html", session, status=status, view=view, receipt=receipt, here=here)
    clinic = tenant_selectors.clinic_get(clinic_id=clinic_id)
    return pages.render("paid.html", language=_language(), status=status, view=view, receipt=receipt,
                        practice=clinic.name, here=here)


@portal.route("/receipts", methods=["GET"])
@session_page("receipts", full_portal=True)
def receipts(session: Session) -> Response:
    """Receipts: number, date, status (Paid / Unsuccessful at $0), method, amount (E5)."""
    rows = payment_selectors.receipts_list(clinic_id=session.clinic_id, guarantor_id=session.guarantor_id)
    return _render("receipts.html", session, rows=rows)


@portal.route("/receipts/{receipt_id}", methods=["GET"])
@session_page("receipt", full_portal=True)
def receipt_detail(session: Session, receipt_id: str) -> Response:
    """A printable receipt; another guarantor's receipt id is the neutral page (R16)."""
    try:
        receipt = payment_selectors.receipt_get(clinic_id=session.clinic_id, guarantor_id=session.guarantor_id,
                                                receipt_id=receipt_id)
    except (NotFound, InvalidInput):
        return neutral(session.clinic_id, status=404)
    return _render("receipt.html", session, receipt=receipt)
