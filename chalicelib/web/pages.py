"""Rendering and response helpers shared by the portal's routes.

- One Jinja2 environment per language, built once per process (autoescape on), whose
  templates are compiled once (no file checks per view) with their literal ``_("...")``
  messages already translated (:class:`PretranslatedEnvironment`): a page view makes no
  gettext call for a fixed message.
- Every page gets security headers: a strict CSP with a per-response nonce (no third-party
  origins, no inline script without the nonce), ``Referrer-Policy: no-referrer``,
  ``Cache-Control: no-store``, frame and type-sniffing protection (SECURITY.md R3, R14, R26).
- Cookies: HttpOnly, SameSite=Lax, Path=/; ``__Host-`` prefixed and Secure when the portal is
  served over HTTPS (R23). Locally (http://127.0.0.1) the plain name is used.
- Every form posted with a session carries a CSRF token bound to that session (R46).
- Forms posted before there is a session (sign-in, its code, the "is this bill genuine?" check)
  carry a login-CSRF token instead: a double-submit cookie (``fd_csrf``, random, set with the
  form's page under the same rules as the session cookie) and, in a hidden field, its HMAC
  under the pepper (R46).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from functools import lru_cache
from http.cookies import SimpleCookie
from typing import Any
from urllib.parse import parse_qs

from chalice import Response
from jinja2 import Environment, FileSystemLoader, Template, nodes, select_autoescape
from jinja2.visitor import NodeTransformer

from chalicelib.core import config
from chalicelib.core.money import format_cents
from chalicelib.web import i18n

TEMPLATES = i18n.LOCALE_DIR.parent / "templates"
SESSION_COOKIE = "fd_session"
LANG_COOKIE = "fd_lang"
LOGIN_CSRF_COOKIE = "fd_csrf"
_LOGIN_CSRF_VALUE = re.compile(r"[A-Za-z0-9_-]{43}")


class _Translate(NodeTransformer):
    """Replace ``_("literal", k=v)`` / ``gettext("literal", k=v)`` by the translated literal.

    The result is what jinja2.ext.i18n's newstyle gettext returns at run time: the translation
    marked safe when autoescaping (``Markup``) and always %-formatted, with the keyword values
    escaped by ``Markup.__mod__``. A message whose formatting would fail (``%`` without
    arguments) is left to fail at run time, as before."""

    def __init__(self, environment: Environment, gettext: Any) -> None:
        self.environment, self.gettext = environment, gettext

    def visit_Call(self, call: nodes.Call) -> nodes.Node:
        node = self.generic_visit(call)
        assert isinstance(node, nodes.Call)
        callee, args = node.node, node.args
        if not (isinstance(callee, nodes.Name) and callee.name in ("_", "gettext") and callee.ctx == "load"
                and len(args) == 1 and isinstance(args[0], nodes.Const) and isinstance(args[0].value, str)
                and node.dyn_args is None and node.dyn_kwargs is None):
            return node
        text = self.gettext(args[0].value)
        out: nodes.Expr
        if node.kwargs:
            values = nodes.Dict([nodes.Pair(nodes.Const(k.key), k.value) for k in node.kwargs])
            out = nodes.Mod(nodes.MarkSafeIfAutoescape(nodes.Const(text)), values)
        else:
            try:
                text = text % {}
            except (ValueError, TypeError, KeyError):
                return node
            out = nodes.MarkSafeIfAutoescape(nodes.Const(text))
        return out.set_lineno(node.lineno).set_environment(self.environment)


class PretranslatedEnvironment(Environment):
    """A Jinja2 environment for one language that translates literal messages when a template
    is compiled (Jinja's public ``parse`` and ``compile``): the same HTML as jinja2.ext.i18n's
    run-time gettext, without ~20 gettext calls per page. Messages built at run time
    (``_(variable)``) still go through the installed gettext callables. Templates must not
    assign ``_`` or ``gettext`` (none does; tests/test_web_render.py checks every template)."""

    def __init__(self, translations: Any, **options: Any) -> None:
        super().__init__(**options)
        self._translate = _Translate(self, translations.gettext)

    def compile(self, source: Any, name: str | None = None, filename: str | None = None,
                raw: bool = False, defer_init: bool = False) -> Any:
        tree = self.parse(source, name, filename) if isinstance(source, str) else source
        return super().compile(self._translate.visit(tree), name, filename,  # type: ignore[call-overload]
                               raw=raw, defer_init=defer_init)


def environment_options() -> dict[str, Any]:
    """The options every page environment is built with (also the tests' reference)."""
    return {"loader": FileSystemLoader(TEMPLATES), "autoescape": select_autoescape(["html"]),
            "extensions": ["jinja2.ext.i18n"], "trim_blocks": True, "lstrip_blocks": True}


@lru_cache(maxsize=4)
def environment(language: str) -> Environment:
    """The Jinja2 environment for ``language`` with its gettext catalog installed.

    ``auto_reload`` is off: a template is read and compiled once per process (a Lambda never
    sees its templates change; restart ``chalice local`` after editing one)."""
    translations = i18n.translations(language)
    env = PretranslatedEnvironment(translations, auto_reload=False, **environment_options())
    env.install_gettext_translations(translations, newstyle=True)  # type: ignore[attr-defined]
    env.filters["money"] = format_cents
    return env


@lru_cache(maxsize=64)
def page_template(name: str, language: str) -> Template:
    """A compiled page template (kept for the process: no loader lookup per view)."""
    return environment(language).get_template(name)


def secure() -> bool:
    return config.settings().portal_url.startswith("https://")


def cookie_name(base: str) -> str:
    return f"__Host-{base}" if secure() else base


def read_cookies(headers: dict[str, str]) -> dict[str, str]:
    jar: SimpleCookie = SimpleCookie()
    try:
        jar.load(headers.get("cookie", ""))
    except Exception:
        return {}
    return {k: m.value for k, m in jar.items()}


def set_cookie(name: str, value: str, *, max_age: int | None = None) -> str:
    parts = [f"{cookie_name(name)}={value}", "Path=/", "HttpOnly", "SameSite=Lax"]
    if secure():
        parts.append("Secure")
    if max_age is not None:
        parts.append(f"Max-Age={max_age}")
    return "; ".join(parts)


def clear_cookie(name: str) -> str:
    return set_cookie(name, "", max_age=0)


def form(raw_body: bytes | None) -> dict[str, str]:
    """Decode an urlencoded form (first value of each field, at most 4 KB)."""
    text = (raw_body or b"")[:4096].decode("utf-8", errors="replace")
    return {k: v[0] for k, v in parse_qs(text, keep_blank_values=True).items()}


def _mac(purpose: str, value: str) -> str:
    key = config.settings().code_pepper.encode()
    return hmac.new(key, f"{purpose}|{value}".encode(), hashlib.sha256).hexdigest()[:32]


def csrf_token(session_cookie: str) -> str:
    """The CSRF token of a session: HMAC-SHA256(pepper, "csrf" | session cookie), 32 hex.

    Bound to the session (a new session on sign-in or switch gets a new token, R23) and
    unguessable without the HttpOnly cookie, so a page of another site cannot forge a post
    (SECURITY.md R46). Nothing is stored.
    """
    return _mac("csrf", session_cookie)


def csrf_ok(session_cookie: str | None, token: str | None) -> bool:
    """Whether ``token`` (from the posted form) is the session's CSRF token (constant time)."""
    if not session_cookie or not token:
        return False
    return hmac.compare_digest(csrf_token(session_cookie), token)


def login_csrf(cookie_value: str | None) -> tuple[str, list[str]]:
    """The login-CSRF token for a page with a pre-session form, and the Set-Cookie values to
    send with it (SECURITY.md R46, double-submit cookie).

    ``cookie_value`` is the browser's ``fd_csrf`` cookie: kept when well formed (43 URL-safe
    characters), so several open tabs keep working; otherwise a new random one is set
    (HttpOnly, SameSite=Lax, ``__Host-`` and Secure over HTTPS, as the session cookie, R23).
    The token is HMAC-SHA256(pepper, "login-csrf" | cookie), 32 hex, so another site can
    neither read nor forge it, and a session's token does not pass for it.
    """
    if cookie_value and _LOGIN_CSRF_VALUE.fullmatch(cookie_value):
        return _mac("login-csrf", cookie_value), []
    fresh = secrets.token_urlsafe(32)
    return _mac("login-csrf", fresh), [set_cookie(LOGIN_CSRF_COOKIE, fresh)]


def login_csrf_ok(cookie_value: str | None, token: str | None) -> bool:
    """Whether a pre-session form's ``token`` matches the browser's ``fd_csrf`` cookie
    (constant time). False when either is missing or the cookie is malformed (R46)."""
    if not cookie_value or not token or not _LOGIN_CSRF_VALUE.fullmatch(cookie_value):
        return False
    return hmac.compare_digest(_mac("login-csrf", cookie_value), token)


def headers(nonce: str) -> dict[str, str]:
    csp = ("default-src 'none'; img-src 'self' data: https:; "
           f"style-src 'self' 'nonce-{nonce}'; script-src 'nonce-{nonce}'; form-action 'self'; "
           "base-uri 'none'; frame-ancestors 'none'")
    return {
        "Content-Type": "text/html; charset=utf-8",
        "Content-Security-Policy": csp,
        "Referrer-Policy": "no-referrer",
        "Cache-Control": "no-store",
        "X-Content-Type-Options": "nosniff",
        "X-Frame-Options": "DENY",
    }


def render(template: str, *, language: str, status: int = 200, cookies: list[str] | None = None,
           **context: Any) -> Response:
    """Render ``template`` in ``language`` with security headers and optional Set-Cookie values."""
    nonce = secrets.token_urlsafe(16)
    body = page_template(template, language).render(
        nonce=nonce, lang=language, languages=i18n.LANGUAGE_NAMES, **context)
    hdrs: dict[str, Any] = headers(nonce)
    if cookies:
        hdrs["Set-Cookie"] = cookies
    return Response(body=body, status_code=status, headers=hdrs)


def pdf(body: bytes, *, filename: str) -> Response:
    """A PDF shown in the browser (``inline``), never cached, with the no-referrer/nosniff
    headers; its type must be in the app's binary types (``app.py``)."""
    return Response(body=body, status_code=200, headers={
        "Content-Type": "application/pdf", "Content-Disposition": f'inline; filename="{filename}"',
        "Cache-Control": "no-store", "Referrer-Policy": "no-referrer", "X-Content-Type-Options": "nosniff"})


def redirect(location: str, *, cookies: list[str] | None = None) -> Response:
    """303 See Other to ``location`` (a path on this site, or a presigned storage URL the server
    made), with the same no-referrer/no-store headers."""
    hdrs: dict[str, Any] = {"Location": location, "Referrer-Policy": "no-referrer", "Cache-Control": "no-store"}
    if cookies:
        hdrs["Set-Cookie"] = cookies
    return Response(body="", status_code=303, headers=hdrs)


def safe_next(path: str | None, default: str = "/home") -> str:
    """Only same-site relative paths are followed after a language switch or sign-in."""
    if path and path.startswith("/") and not path.startswith("//") and "\\" not in path:
        return path
    return default
