"""CSRF on every state-changing view (SECURITY.md R46) through Chalice's test client on DynamoDB
Local: every POST route of the app is found by introspection (``app.routes``) and each one that
is not a signature-verified webhook refuses a request without its token with 403, changing
nothing; the pre-session forms (sign-in, its code, "is this bill genuine?") use a login-CSRF
double-submit cookie set under the session cookie's rules (R23)."""

from __future__ import annotations

import re
from urllib.parse import urlencode

import pytest
from chalice.test import Client

from chalicelib.accounts import selectors as account_selectors
from chalicelib.core import config
from chalicelib.links import services as links
from chalicelib.notify import selectors as notify_selectors
from chalicelib.tenants import services as tenants
from chalicelib.web import pages
from tests import factories

pytestmark = pytest.mark.usefixtures("dynamodb_endpoint")
FORM = {"Content-Type": "application/x-www-form-urlencoded"}

#: The only POSTs without a CSRF token: processor webhooks, verified by their signature (R32).
#: (Inbound SMS arrives through SNS, not an HTTP route of this app.)
SIGNED_WEBHOOKS = {"/webhooks/{processor}"}
#: Posted before there is a session: checked against the ``fd_csrf`` cookie.
PRE_SESSION = {"/signin", "/signin/code", "/verify"}


@pytest.fixture(scope="module")
def app():
    from app import app as chalice_app

    return chalice_app


@pytest.fixture(scope="module")
def client(app):
    with Client(app) as c:
        yield c


@pytest.fixture
def outbox(tmp_path, monkeypatch):
    monkeypatch.setenv("FRONTDESK_OUTBOX_DIR", str(tmp_path))
    config.reset()
    yield lambda clinic_id: notify_selectors.console_outbox_read(clinic_id=clinic_id, limit=200)
    monkeypatch.undo()
    config.reset()


def _body(response) -> str:
    return response.body.decode() if isinstance(response.body, bytes) else response.body


def _find(pattern: str, text: str) -> str:
    match = re.search(pattern, text)
    assert match is not None, pattern
    return match.group(1)


def _post_routes(app) -> dict[str, str]:
    """Every POST route of the app: path -> the module of its view."""
    return {path: methods["POST"].view_function.__module__
            for path, methods in app.routes.items() if "POST" in methods}


def _concrete(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "x_0123456789abcdef", path)


def _signed_in(client):
    """A signed-in guarantor (one-time code session) who has also opened a sign-in page, so the
    browser holds both a session cookie and a login-CSRF cookie."""
    f = factories.family(tenants.clinic_create(name="Riverside", time_zone="America/Chicago",
                                               phone="(555) 555-0100"))
    gid = tenants.group_create(clinic_id=f.clinic_id, name="Riverside", settings={"stored_cards": True})
    session = links.session_start(clinic_id=f.clinic_id, guarantor_id=f.guarantor_id, group_id=gid, method="code",
                                  origin="website")
    signin = client.http.get(f"/signin?clinic={f.clinic_id}&group={gid}")
    login_cookie = signin.headers["Set-Cookie"][0].split(";")[0]
    cookie = f"fd_session={session}; {login_cookie}"
    return f, gid, session, cookie, _find(r'name="csrf" value="([^"]+)"', _body(signin))


def _fields(f, gid: str) -> dict[str, str]:
    """Everything the forms of the app post, with values that would otherwise do something."""
    return {"clinic": f.clinic_id, "group": gid, "first_name": "Jane", "last_name": "Doe",
            "contact": "jane@example.com", "request": "req_0123456789abcdef", "code": "123456",
            "c": f.clinic_id, "preferred_name": "Mallory", "channel": "email", "value": "mallory@example.org",
            "email": "on", "sms": "on", "card": "card_0123456789abcdef", "guarantor": f.guarantor_id,
            "choice": "amount_due", "method": "card", "attempt_key": "k" * 22}


def test_every_post_route_but_the_signed_webhooks_refuses_a_post_without_its_token(app, client, outbox):
    routes = _post_routes(app)
    api_key = {p for p in routes if p.startswith("/v1/")}
    processor_pages = {p for p, module in routes.items() if module == "chalicelib.api.sandbox_processor"}
    portal = {p for p, module in routes.items() if module.startswith("chalicelib.web.")}
    # every POST route is in exactly one class: a new one fails here until it is classified
    assert SIGNED_WEBHOOKS | api_key | processor_pages | portal == set(routes)
    assert len(SIGNED_WEBHOOKS) + len(api_key) + len(processor_pages) + len(portal) == len(routes)
    assert PRE_SESSION <= portal and len(portal) >= 10
    f, gid, session, cookie, login_token = _signed_in(client)
    session_token = pages.csrf_token(session)
    for path in sorted(portal):
        for token in (None, "", "0" * 32, login_token if path not in PRE_SESSION else session_token):
            fields = _fields(f, gid) | ({} if token is None else {"csrf": token})
            r = client.http.post(_concrete(path), headers={**FORM, "cookie": cookie}, body=urlencode(fields).encode())
            assert r.status_code == 403, (path, token, r.status_code)
            assert "Nothing was changed" in _body(r), path
        # without any cookie at all: refused too (a session form sends the browser to sign in)
        bare = client.http.post(_concrete(path), headers=FORM, body=urlencode(_fields(f, gid)).encode())
        assert bare.status_code in (403, 303), path
        if bare.status_code == 303:
            assert bare.headers["Location"].startswith("/signin") and path not in PRE_SESSION
    # nothing changed: no code sent, no name, contact or consent changed, still signed in
    assert outbox(f.clinic_id) == []
    summary = account_selectors.guarantor_summary(clinic_id=f.clinic_id, guarantor_id=f.guarantor_id)
    assert (summary.preferred_name, summary.email) == (None, "jane@example.com")
    assert client.http.get("/profile", headers={"cookie": cookie}).status_code == 200
    # a GET to a POST-only endpoint is 405, never an action (R46)
    for path in sorted(p for p in portal if "GET" not in app.routes[p]):
        assert client.http.get(_concrete(path), headers={"cookie": cookie}).status_code == 405, path
    # the others: the JSON API takes a clinic API key in a header (no cookie: nothing for another
    # site to ride on), webhooks their signature, and the sandbox processor stands for the
    # processor's own domain (a cloud stage does not serve it)
    for path in sorted(api_key):
        r = client.http.post(path, headers={"Content-Type": "application/json"}, body=b"{}")
        assert r.status_code == 401, path
    for path in sorted(SIGNED_WEBHOOKS):
        r = client.http.post(path.replace("{processor}", "sandbox"), headers={"Content-Type": "application/json"},
                             body=b'{"id": "evt_1"}')
        assert r.status_code == 400, path


def test_the_sandbox_processor_pages_do_not_exist_outside_the_sandbox(app, client, monkeypatch):
    monkeypatch.setenv("FRONTDESK_PROCESSOR", "stripe")
    config.reset()
    try:
        for path in sorted(p for p, m in _post_routes(app).items() if m == "chalicelib.api.sandbox_processor"):
            assert client.http.post(_concrete(path), headers=FORM, body=b"action=complete").status_code == 404
    finally:
        monkeypatch.undo()
        config.reset()


def test_a_sign_in_without_the_login_token_sends_no_code(client, outbox):
    f = factories.family(tenants.clinic_create(name="Riverside", time_zone="America/Chicago"))
    gid = tenants.group_create(clinic_id=f.clinic_id, name="Riverside")
    signin = client.http.get(f"/signin?clinic={f.clinic_id}&group={gid}")
    cookie = signin.headers["Set-Cookie"][0].split(";")[0]
    token = _find(r'name="csrf" value="([^"]+)"', _body(signin))
    other = client.http.get(f"/signin?clinic={f.clinic_id}&group={gid}")  # another browser
    other_token = _find(r'name="csrf" value="([^"]+)"', _body(other))
    form = {"clinic": f.clinic_id, "group": gid, "first_name": "Jane", "last_name": "Doe",
            "contact": "jane@example.com"}
    for headers, csrf in (({}, token),  # the token without its cookie
                          ({"cookie": cookie}, None), ({"cookie": cookie}, other_token),
                          ({"cookie": cookie}, token[:-1] + ("0" if token[-1] != "0" else "1")),
                          ({"cookie": "fd_csrf=short"}, pages.login_csrf("short")[0])):
        body = urlencode(form | ({"csrf": csrf} if csrf else {})).encode()
        r = client.http.post("/signin", headers={**FORM, **headers}, body=body)
        assert r.status_code == 403 and "Nothing was changed" in _body(r)
    assert outbox(f.clinic_id) == []
    for _ in range(3):  # the refusals took nothing from the send caps (3 per 15 min, R20)
        ok = client.http.post("/signin", headers={**FORM, "cookie": cookie},
                              body=urlencode(form | {"csrf": token}).encode())
        assert ok.status_code == 200 and "Enter your code" in _body(ok)
    assert len(outbox(f.clinic_id)) == 3


def test_the_login_cookie_is_set_once_and_follows_the_session_cookies_rules(client, monkeypatch):
    first = client.http.get("/verify")
    [set_cookie] = first.headers["Set-Cookie"]
    assert set_cookie.startswith("fd_csrf=") and "HttpOnly" in set_cookie and "SameSite=Lax" in set_cookie
    assert "Path=/" in set_cookie and "Secure" not in set_cookie  # local http: no Secure, no __Host-
    value = set_cookie.split(";")[0].split("=", 1)[1]
    again = client.http.get("/verify", headers={"cookie": f"fd_csrf={value}"})
    assert "Set-Cookie" not in again.headers  # kept: several open tabs keep working
    assert _find(r'name="csrf" value="([^"]+)"', _body(again)) == _find(r'name="csrf" value="([^"]+)"', _body(first))
    assert _body(first).count('name="csrf"') == 1 and value not in _body(first)  # the HMAC, never the cookie
    monkeypatch.setenv("FRONTDESK_PORTAL_URL", "https://pay.example.org")
    config.reset()
    try:
        secure = client.http.get("/verify")
        [set_cookie] = secure.headers["Set-Cookie"]
        assert set_cookie.startswith("__Host-fd_csrf=") and "Secure" in set_cookie and "Domain" not in set_cookie
        value = set_cookie.split(";")[0].split("=", 1)[1]
        token = _find(r'name="csrf" value="([^"]+)"', _body(secure))
        plain = client.http.post("/verify", headers={**FORM, "cookie": f"fd_csrf={value}"},
                                 body=urlencode({"csrf": token, "code": "ABCD-EFGH"}).encode())
        assert plain.status_code == 403  # over HTTPS only the __Host- cookie counts
        hosted = client.http.post("/verify", headers={**FORM, "cookie": f"__Host-fd_csrf={value}"},
                                  body=urlencode({"csrf": token, "code": "ABCD-EFGH"}).encode())
        assert hosted.status_code == 400  # through the check: no practice named
    finally:
        monkeypatch.undo()
        config.reset()


def test_login_tokens_and_session_tokens_do_not_stand_in_for_each_other():
    value = "A" * 43
    login, cookies = pages.login_csrf(value)
    assert cookies == [] and pages.login_csrf_ok(value, login)
    assert not pages.csrf_ok(value, login) and not pages.login_csrf_ok(value, pages.csrf_token(value))
    assert not pages.login_csrf_ok(None, login) and not pages.login_csrf_ok(value, None)
    assert not pages.login_csrf_ok("A" * 42, pages.login_csrf("A" * 42)[0])  # malformed cookies never pass
    fresh, [set_cookie] = pages.login_csrf("A" * 42)
    assert pages.login_csrf_ok(set_cookie.split(";")[0].split("=", 1)[1], fresh)
