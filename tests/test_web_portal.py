"""The portal through Chalice's test client on DynamoDB Local: links, QuickPay, sessions,
languages, headers, and who may see what (SECURITY.md R16, R23, R25, R26)."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import unquote

import pytest
from chalice.test import Client

from chalicelib.accounts import services as accounts
from chalicelib.links import services as links
from chalicelib.links.services import LinkKind
from chalicelib.tenants import services as tenants
from chalicelib.web import i18n
from tests import factories

pytestmark = pytest.mark.usefixtures("dynamodb_endpoint")


@pytest.fixture(scope="module")
def client():
    from app import app

    with Client(app) as c:
        yield c


def _cookie(response) -> str:
    return response.headers["Set-Cookie"][0].split(";")[0]


def _portal_family(last_name: str = "Doe", owes: int = 4_200, **settings):
    f = factories.family(tenants.clinic_create(name="Riverside", time_zone="America/Chicago",
                                               phone="(555) 555-0100"), last_name=last_name)
    tenants_phone = "(555) 555-0100"
    gid = tenants.group_create(clinic_id=f.clinic_id, name="Riverside Family Medicine",
                               settings={"footer_phone": tenants_phone, **settings})
    factories.patient_owes(f, owes)
    accounts.statement_create(clinic_id=f.clinic_id, guarantor_id=f.guarantor_id, statement_date="2026-11-01",
                              due_date="2026-11-30")
    return f, gid


def _find(pattern: str, text: str) -> str:
    match = re.search(pattern, text)
    assert match is not None, pattern
    return match.group(1)


def _body(response) -> str:
    return response.body.decode() if isinstance(response.body, bytes) else response.body


def test_link_sets_a_cookie_and_redirects_to_a_token_free_quickpay(client):
    f, gid = _portal_family()
    link = links.link_issue(clinic_id=f.clinic_id, guarantor_id=f.guarantor_id, group_id=gid, kind=LinkKind.EMAIL)
    r = client.http.get(f"/l/{link.token}")
    assert r.status_code == 303 and r.headers["Location"] == "/pay"
    assert r.headers["Referrer-Policy"] == "no-referrer" and r.headers["Cache-Control"] == "no-store"
    set_cookie = r.headers["Set-Cookie"][0]
    assert "HttpOnly" in set_cookie and "SameSite=Lax" in set_cookie and link.token not in set_cookie
    page = client.http.get("/pay", headers={"cookie": _cookie(r)})
    html = _body(page)
    assert page.status_code == 200
    assert "Hello, Jane" in html and "$42.00" in html and "Riverside Family Medicine" in html
    assert "99213" not in html  # QuickPay shows no clinical detail
    csp = page.headers["Content-Security-Policy"]
    nonce = _find(r"'nonce-([^']+)'", csp)
    assert f'nonce="{nonce}"' in html and "default-src 'none'" in csp and "https://" not in csp.split("img-src")[0]
    assert "<script" not in html  # core pages work without JavaScript
    assert 'name="card' not in html and "cardnumber" not in html.lower()  # no card field on our pages


def test_every_bad_link_is_the_same_neutral_page_with_the_practice_phone(client):
    f, gid = _portal_family()
    good = links.link_issue(clinic_id=f.clinic_id, guarantor_id=f.guarantor_id, group_id=gid, kind=LinkKind.TEXT)
    links.links_revoke(clinic_id=f.clinic_id, guarantor_id=f.guarantor_id)
    bodies = set()
    for token in [good.token, good.token[:-2] + "xx", f"{f.clinic_id}.{'A' * 43}"]:
        r = client.http.get(f"/l/{token}")
        assert r.status_code == 404
        bodies.add(re.sub(r'nonce[-=]"?[\w-]+', "", _body(r)))
    assert len(bodies) == 1
    [html] = bodies
    assert "Please call Riverside at" in html and "(555) 555-0100" in html
    assert "Jane" not in html and "42.00" not in html


def test_no_cookie_or_an_ended_session_never_shows_the_account(client):
    f, gid = _portal_family()
    assert client.http.get("/pay").status_code == 303
    cookie = links.session_start(clinic_id=f.clinic_id, guarantor_id=f.guarantor_id, group_id=gid,
                                 method="quickpay", origin="email_link")
    links.session_end(cookie=cookie)
    r = client.http.get("/pay", headers={"cookie": f"fd_session={cookie}"})
    assert r.status_code == 401 and "Jane" not in _body(r)


def test_quickpay_sessions_cannot_open_full_portal_pages(client):
    f, gid = _portal_family()
    cookie = links.session_start(clinic_id=f.clinic_id, guarantor_id=f.guarantor_id, group_id=gid,
                                 method="quickpay", origin="email_link")
    for path in ("/home", "/account", "/statements", "/profile"):
        r = client.http.get(path, headers={"cookie": f"fd_session={cookie}"})
        assert r.status_code == 303 and r.headers["Location"].startswith("/signin")


def test_full_portal_pages_render_for_a_code_session(client):
    f, gid = _portal_family(show_collections=True)
    cookie = links.session_start(clinic_id=f.clinic_id, guarantor_id=f.guarantor_id, group_id=gid,
                                 method="code", origin="website")
    headers = {"cookie": f"fd_session={cookie}"}
    home = _body(client.http.get("/home", headers=headers))
    assert "$42.00" in home and "Statement of 2026-11-01" in home
    account = _body(client.http.get("/account", headers=headers))
    assert "Visit history" in account and "99213" in account
    statements = client.http.get("/statements", headers=headers)
    assert statements.status_code == 200 and "Unpaid" in _body(statements)
    sid = _find(r'/statements/(st_\w+)', _body(statements))
    assert "Account number" in _body(client.http.get(f"/statements/{sid}", headers=headers))
    assert f.guarantor_id in _body(client.http.get(f"/statements/{sid}", headers=headers))
    detail = _body(client.http.get(f"/statements/{sid}", headers=headers))
    assert _find(r'href="/lang/es\?next=([^"]+)"', detail) == f"/statements/{sid}"
    assert "jane@example.com" in _body(client.http.get("/profile", headers=headers))


def test_the_statement_page_shows_the_practices_account_number(client):
    """The "Account number" a patient quotes to the billing office is the practice's own (the
    roster's guarantor_id), not our guarantor id (found by a new-user trial)."""
    f = factories.family(tenants.clinic_create(name="Riverside", time_zone="America/Chicago"))
    gid = tenants.group_create(clinic_id=f.clinic_id, name="Riverside Family Medicine")
    accounts.guarantor_account_number_set(clinic_id=f.clinic_id, guarantor_id=f.guarantor_id,
                                          account_number="RFM-20417")
    factories.patient_owes(f, 4_200)
    sid = accounts.statement_create(clinic_id=f.clinic_id, guarantor_id=f.guarantor_id,
                                    statement_date="2026-11-01", due_date="2026-11-30")
    cookie = links.session_start(clinic_id=f.clinic_id, guarantor_id=f.guarantor_id, group_id=gid,
                                 method="code", origin="website")
    page = _body(client.http.get(f"/statements/{sid}", headers={"cookie": f"fd_session={cookie}"}))
    assert re.search(r"Account number</span><span>RFM-20417<", page) and f.guarantor_id not in page


def test_home_flags_a_new_statement_only_while_something_is_due(client):
    """REFERENCE-PORTAL.md G1 "a flag when there is a new statement": a statement with new
    charges was flagged "(new)" even after it was paid (new-user helper)."""
    from chalicelib.accounts import selectors

    f, gid = _portal_family()
    cookie = links.session_start(clinic_id=f.clinic_id, guarantor_id=f.guarantor_id, group_id=gid,
                                 method="code", origin="website")
    headers = {"cookie": f"fd_session={cookie}"}
    assert "(new)" in _body(client.http.get("/home", headers=headers))
    [line] = selectors.service_lines_list(clinic_id=f.clinic_id, guarantor_id=f.guarantor_id)
    accounts.patient_payment_post(clinic_id=f.clinic_id, guarantor_id=f.guarantor_id, amount_cents=4_200,
                                  applications={line.line_id: 4_200}, source_key="receipt:home-new")
    home = _body(client.http.get("/home", headers=headers))
    assert "$0.00" in home and "(new)" not in home


def test_visits_since_the_last_statement_are_only_those_after_it_and_on_no_statement(client):
    """REFERENCE-PORTAL.md G2. The panel listed every line off the newest statement, so a line
    with nothing for the patient to pay (never on a statement) stayed there for ever, and lines
    billed on an older statement came back (new-user helper)."""
    f, gid = _portal_family()  # a $42.00 line (2026-10-01) on the statement of 2026-11-01
    factories.line(f, billed=5_100, dos="2026-09-15", encounter="E-ZERO")  # before it, $0 for the patient
    factories.line(f, billed=7_300, dos="2026-11-12", encounter="E-NEW")  # after it
    factories.line(f, billed=6_400, dos="2026-10-20", encounter="E-LATE", responsibility_date="2026-11-15")
    cookie = links.session_start(clinic_id=f.clinic_id, guarantor_id=f.guarantor_id, group_id=gid,
                                 method="code", origin="website")
    account = _body(client.http.get("/account", headers={"cookie": f"fd_session={cookie}"}))
    since = account.split("Visits since your last statement")[1].split("Visit history")[0]
    assert "2026-11-12" in since and "2026-10-20" in since  # after it; an insurance answer after it
    assert "2026-09-15" not in since and "2026-10-01" not in since  # before it; on it
    history = account.split("Visit history")[1]
    assert all(d in history for d in ("2026-09-15", "2026-10-01", "2026-10-20", "2026-11-12"))


def test_authorization_matrix_owner_other_guarantor_other_clinic_anonymous(client):
    owner, gid = _portal_family(last_name="Ownerson")
    sibling = factories.family(owner.clinic_id, last_name="Other")
    factories.patient_owes(sibling, 999)
    accounts.statement_create(clinic_id=sibling.clinic_id, guarantor_id=sibling.guarantor_id,
                              statement_date="2026-11-02", due_date="2026-12-01")
    stranger, stranger_gid = _portal_family(last_name="Stranger", owes=7_700)
    from chalicelib.accounts import selectors
    owner_stmt = selectors.statements_list(clinic_id=owner.clinic_id, guarantor_id=owner.guarantor_id)[0]
    visitors = {
        "owner": links.session_start(clinic_id=owner.clinic_id, guarantor_id=owner.guarantor_id, group_id=gid,
                                     method="code", origin="website"),
        "sibling": links.session_start(clinic_id=sibling.clinic_id, guarantor_id=sibling.guarantor_id,
                                       group_id=gid, method="code", origin="website"),
        "stranger": links.session_start(clinic_id=stranger.clinic_id, guarantor_id=stranger.guarantor_id,
                                        group_id=stranger_gid, method="code", origin="website"),
        "anonymous": None,
    }
    routes = ["/pay", "/home", "/account", "/statements", "/profile", f"/statements/{owner_stmt.statement_id}"]
    for who, cookie in visitors.items():
        headers = {"cookie": f"fd_session={cookie}"} if cookie else {}
        for route in routes:
            r = client.http.get(route, headers=headers)
            body = _body(r)
            marker = "Ownerson" if route == "/profile" else "$42.00"
            sees_owner = r.status_code == 200 and marker in body
            assert sees_owner == (who == "owner"), (who, route, r.status_code)
            if who == "anonymous":
                assert r.status_code == 303
        forged = client.http.get("/pay", headers={"cookie": f"fd_session={owner.clinic_id}.{'x' * 43}"})
        assert forged.status_code == 401


def test_language_follows_the_guarantor_then_the_switch(client):
    f = factories.family()
    es_guarantor = accounts.guarantor_create(clinic_id=f.clinic_id, first_name="Lucía", last_name="Pérez",
                                             language="es")
    gid = tenants.group_create(clinic_id=f.clinic_id, name="Clínica")
    cookie = links.session_start(clinic_id=f.clinic_id, guarantor_id=es_guarantor, group_id=gid,
                                 method="quickpay", origin="email_link")
    html = _body(client.http.get("/pay", headers={"cookie": f"fd_session={cookie}"}))
    assert 'lang="es"' in html and "Hola, Lucía" in html and "Monto a pagar" in html
    r = client.http.get("/lang/en?next=/pay")
    assert r.status_code == 303 and r.headers["Location"] == "/pay"
    lang_cookie = _cookie(r)
    html = _body(client.http.get("/pay", headers={"cookie": f"fd_session={cookie}; {lang_cookie}"}))
    assert "Hello, Lucía" in html
    assert client.http.get("/lang/es?next=//evil.example").headers["Location"] == "/pay"


def test_every_template_message_has_a_spanish_translation_and_the_catalog_is_compiled():
    import io

    from babel.messages.mofile import write_mo
    from babel.messages.pofile import read_po

    po = i18n.LOCALE_DIR / "es/LC_MESSAGES/messages.po"
    catalog = read_po(po.open("rb"))
    translated = {m.id: m.string for m in catalog if m.id}
    missing = [m for m in i18n.template_messages() if not translated.get(m)]
    assert missing == []
    compiled = io.BytesIO()
    write_mo(compiled, catalog)
    assert compiled.getvalue() == Path(po.with_suffix(".mo")).read_bytes(), "run python -m chalicelib.web.i18n"


FORM = {"Content-Type": "application/x-www-form-urlencoded"}


def _path(url: str) -> str:
    return "/" + url.split("://", 1)[1].split("/", 1)[1] if "://" in url else url


def _pay_form(page_html: str, **fields: str) -> bytes:
    from urllib.parse import urlencode

    key = _find(r'name="attempt_key" value="([^"]+)"', page_html)
    csrf = _find(r'name="csrf" value="([^"]+)"', page_html)
    return urlencode({"attempt_key": key, "csrf": csrf, "method": "card", **fields}).encode()


def test_quickpay_pays_through_the_processor_page_and_shows_the_receipt(client):
    from chalicelib.accounts import selectors as account_selectors
    from chalicelib.ledger.verify import ledger_verify

    f, gid = _portal_family()
    accounts.guarantor_account_number_set(clinic_id=f.clinic_id, guarantor_id=f.guarantor_id, account_number="A-7731")
    link = links.link_issue(clinic_id=f.clinic_id, guarantor_id=f.guarantor_id, group_id=gid, kind=LinkKind.EMAIL)
    cookie = _cookie(client.http.get(f"/l/{link.token}"))
    headers = {"cookie": cookie}
    page = _body(client.http.get("/pay", headers=headers))
    body = _pay_form(page, choice="amount_due")
    first = client.http.post("/pay", headers={**headers, **FORM}, body=body)
    again = client.http.post("/pay", headers={**headers, **FORM}, body=body)  # a double click
    assert first.status_code == again.status_code == 303
    assert first.headers["Location"] == again.headers["Location"]
    assert "/sandbox-processor/pay/" in first.headers["Location"]
    card_page = client.http.get(_path(first.headers["Location"]))
    assert "$42.00" in _body(card_page)
    done = client.http.post(_path(first.headers["Location"]), headers=FORM,
                            body=b"card_number=4242424242424242&expiry=12%2F39&cvc=123")
    assert "/pay/done?" in done.headers["Location"]
    receipt_page = client.http.get(_path(done.headers["Location"]), headers=headers)
    html = _body(receipt_page)
    assert "Account number</span><span>A-7731<" in html  # the result page as the receipt page
    assert receipt_page.status_code == 200 and "Payment received" in html and "$42.00" in html and "4242" in html
    assert "4242424242424242" not in html
    summary = account_selectors.guarantor_summary(clinic_id=f.clinic_id, guarantor_id=f.guarantor_id)
    assert summary.figures.balances.current_balance == 0
    assert ledger_verify(clinic_id=f.clinic_id).ok
    full = links.session_start(clinic_id=f.clinic_id, guarantor_id=f.guarantor_id, group_id=gid, method="code",
                               origin="website")
    receipts = _body(client.http.get("/receipts", headers={"cookie": f"fd_session={full}"}))
    rid = _find(r'/receipts/(\w+)"', receipts)
    detail = _body(client.http.get(f"/receipts/{rid}", headers={"cookie": f"fd_session={full}"}))
    assert "$42.00" in detail and "Transaction number" in detail
    assert "Account number</span><span>A-7731<" in detail  # the practice's, not our id
    other, other_gid = _portal_family(last_name="Else")
    theirs = links.session_start(clinic_id=other.clinic_id, guarantor_id=other.guarantor_id, group_id=other_gid,
                                 method="code", origin="website")
    assert client.http.get(f"/receipts/{rid}", headers={"cookie": f"fd_session={theirs}"}).status_code == 404


def test_declined_card_shows_the_failure_and_charges_nothing(client):
    f, gid = _portal_family()
    cookie = links.session_start(clinic_id=f.clinic_id, guarantor_id=f.guarantor_id, group_id=gid,
                                 method="quickpay", origin="email_link")
    headers = {"cookie": f"fd_session={cookie}"}
    page = _body(client.http.get("/pay", headers=headers))
    start = client.http.post("/pay", headers={**headers, **FORM}, body=_pay_form(page, choice="current_balance"))
    done = client.http.post(_path(start.headers["Location"]), headers=FORM,
                            body=b"card_number=4000000000000002&expiry=12%2F39&cvc=123")
    html = _body(client.http.get(_path(done.headers["Location"]), headers=headers))
    assert "Payment failed" in html and "You were not charged." in html and 'href="/pay"' in html


@pytest.mark.parametrize("fields", [{"choice": "other", "other_amount": "9999.00"},
                                    {"choice": "other", "other_amount": "-5"},
                                    {"choice": "other", "other_amount": "0.50"},
                                    {"choice": "other", "other_amount": "abc"},
                                    {"choice": "other", "other_amount": "1e999999"},
                                    {"choice": "other", "other_amount": "4,2"},
                                    {"choice": "other", "other_amount": "1_0"},
                                    {"choice": "other", "other_amount": "٤٢"},
                                    {"choice": "other", "other_amount": "4.2e1"},
                                    {"choice": "everything"}])
def test_tampered_or_out_of_range_amounts_are_refused_on_the_server(client, fields):
    f, gid = _portal_family()
    cookie = links.session_start(clinic_id=f.clinic_id, guarantor_id=f.guarantor_id, group_id=gid,
                                 method="quickpay", origin="email_link")
    headers = {"cookie": f"fd_session={cookie}"}
    page = _body(client.http.get("/pay", headers=headers))
    r = client.http.post("/pay", headers={**headers, **FORM}, body=_pay_form(page, **fields))
    assert r.status_code == 400 and "Please check the amount" in _body(r)


def test_a_payment_cancels_pending_reminders_and_queues_the_emailed_receipt(client):
    from chalicelib.accounts import selectors as account_selectors
    from chalicelib.notify import selectors as notify_selectors
    from chalicelib.notify import services as notify

    f, gid = _portal_family(email_receipts=True)
    [statement] = account_selectors.statements_list(clinic_id=f.clinic_id, guarantor_id=f.guarantor_id)
    notify.reminder_schedule_set(clinic_id=f.clinic_id, rules=[
        {"rule_id": "after7", "when": "after", "days": 7, "time_of_day": "10:00", "channel": "email"}])
    planned = notify.reminders_plan(clinic_id=f.clinic_id, guarantor_id=f.guarantor_id,
                                    statement_id=statement.statement_id)
    assert planned
    cookie = links.session_start(clinic_id=f.clinic_id, guarantor_id=f.guarantor_id, group_id=gid,
                                 method="quickpay", origin="email_link")
    headers = {"cookie": f"fd_session={cookie}"}
    page = _body(client.http.get("/pay", headers=headers))
    start = client.http.post("/pay", headers={**headers, **FORM}, body=_pay_form(page, choice="amount_due"))
    done = client.http.post(_path(start.headers["Location"]), headers=FORM,
                            body=b"card_number=4242424242424242&expiry=12%2F39&cvc=123")
    paid = _body(client.http.get(_path(done.headers["Location"]), headers=headers))
    assert "Payment received" in paid
    # the language switch comes back to this receipt, not to /pay (new-user helper)
    here = unquote(_find(r'href="/lang/es\?next=([^"]+)"', paid))
    assert here.startswith("/pay/done?") and "Payment received" in _body(client.http.get(here, headers=headers))
    outbox = notify_selectors.outbox_list(clinic_id=f.clinic_id, guarantor_id=f.guarantor_id)
    reminders = [m for m in outbox if m.kind == "reminder"]
    assert reminders and all(m.status == "cancelled" for m in reminders), [(m.kind, m.status) for m in outbox]
    assert [m.status for m in outbox if m.kind == "receipt"] == ["queued"]


def test_sign_in_pages_wear_the_groups_branding(client):
    """PRODUCT.md §7: the group decides what its guarantors see, from the first page. The sign-in
    and code pages showed "Patient billing" and the default colours (new-user helper)."""
    f, gid = _portal_family(theme={"primary": "#0b5394"}, footer_text="Riverside billing office")
    first = client.http.get(f"/signin?clinic={f.clinic_id}&group={gid}")
    signin = _body(first)
    assert "Riverside Family Medicine" in signin and "Patient billing" not in signin
    assert "<title>Sign in · Riverside Family Medicine</title>" in signin
    assert "#0b5394" in signin and "Riverside billing office" in signin and "(555) 555-0100" in signin
    login = {"cookie": _cookie(first), **FORM}
    csrf = _find(r'name="csrf" value="([^"]+)"', signin)
    form = f"csrf={csrf}&clinic={f.clinic_id}&group={gid}&first_name=x&last_name=y&contact=n%40example.com"
    code_page = _body(client.http.post("/signin", headers=login, body=form.encode()))
    assert "Enter your code" in code_page and "Riverside Family Medicine" in code_page
    unknown = _body(client.http.get(f"/signin?clinic={f.clinic_id}&group=grp_unknown0000000"))
    assert "Riverside" not in unknown  # an unknown group: no branding, nothing said about it


def test_sign_in_with_a_code_read_from_the_outbox_then_switch_accounts(client, tmp_path, monkeypatch):
    from chalicelib.core import config
    from chalicelib.notify import selectors as notify_selectors

    monkeypatch.setenv("FRONTDESK_OUTBOX_DIR", str(tmp_path))
    config.reset()
    f, gid = _portal_family(last_name="Signin")
    sibling = accounts.guarantor_create(clinic_id=f.clinic_id, first_name="Jane", last_name="Signin",
                                        email="jane@example.com")
    signin = client.http.get(f"/signin?clinic={f.clinic_id}&group={gid}")
    login = {"cookie": _cookie(signin), **FORM}  # the login-CSRF cookie and its token (R46)
    assert login["cookie"].startswith("fd_csrf=")
    csrf = _find(r'name="csrf" value="([^"]+)"', _body(signin))
    form = f"csrf={csrf}&clinic={f.clinic_id}&group={gid}&first_name=JANE&last_name=signin&contact=jane%40example.com"
    sent = client.http.post("/signin", headers=login, body=form.encode())
    assert sent.status_code == 200 and "Enter your code" in _body(sent)
    request_id = _find(r'name="request" value="([^"]+)"', _body(sent))
    [row] = notify_selectors.console_outbox_read(clinic_id=f.clinic_id, limit=1)
    assert row["to"] == "jane@example.com" and row["sensitive"] is True
    code = _find(r"\b(\d{6})\b", str(row["text"]))
    assert _find(r'name="csrf" value="([^"]+)"', _body(sent)) == csrf and "Set-Cookie" not in sent.headers
    wrong = client.http.post("/signin/code", headers=login,
                             body=f"csrf={csrf}&clinic={f.clinic_id}&group={gid}&request={request_id}&code=000000".encode())
    assert wrong.status_code == 400 or code == "000000"
    ok = client.http.post("/signin/code", headers=login,
                          body=f"csrf={csrf}&clinic={f.clinic_id}&group={gid}&request={request_id}&code={code}".encode())
    assert ok.status_code == 303 and ok.headers["Location"] == "/switch"
    cookie = {"cookie": _cookie(ok)}
    switcher = _body(client.http.get("/switch", headers=cookie))
    assert f.guarantor_id in switcher and sibling in switcher
    csrf = _find(r'name="csrf" value="([^"]+)"', switcher)
    forged = client.http.post("/switch", headers={**cookie, **FORM}, body=f"guarantor={f.guarantor_id}".encode())
    assert forged.status_code == 403 and "Nothing was changed" in _body(forged)  # no CSRF token (R46)
    moved = client.http.post("/switch", headers={**cookie, **FORM},
                             body=f"guarantor={f.guarantor_id}&csrf={csrf}".encode())
    assert moved.status_code == 303
    assert "$42.00" in _body(client.http.get("/home", headers={"cookie": _cookie(moved)}))
    unknown = client.http.post("/signin", headers=login, body=form.replace("jane%40", "nobody%40").encode())
    assert unknown.status_code == 200 and "Enter your code" in _body(unknown)  # the same answer (R21)
    config.reset()


def test_dollars_typed_by_a_guarantor():
    from chalicelib.web.portal import parse_amount

    assert [parse_amount(t) for t in ("42", " $42.00 ", "$1,250.50", "0.5")] == [4_200, 4_200, 125_050, 50]


def test_the_favicon_request_every_browser_makes_is_answered_not_refused(client):
    response = client.http.get("/favicon.ico")
    headers = {k.lower(): v for k, v in response.headers.items()}
    assert response.status_code == 204 and "max-age" in headers["cache-control"]


def test_a_post_on_an_ended_session_does_not_clear_the_cookie_a_twin_request_just_set(client):
    """A double-submitted form: one post rotated the session (new cookie), the other finds the
    old one ended. Its 401 must not carry a Set-Cookie that signs the browser out of the new
    session; a GET with an ended session still clears the cookie."""
    f, gid = _portal_family()
    cookie = links.session_start(clinic_id=f.clinic_id, guarantor_id=f.guarantor_id, group_id=gid,
                                 method="code", origin="website")
    links.session_end(cookie=cookie)
    posted = client.http.post("/profile/name", headers={"cookie": f"fd_session={cookie}",
                                                        "content-type": "application/x-www-form-urlencoded"},
                              body="preferred_name=Jo&csrf=x")
    assert posted.status_code == 401
    assert "fd_session=" not in str({k.lower(): v for k, v in posted.headers.items()}.get("set-cookie", ""))
    got = client.http.get("/home", headers={"cookie": f"fd_session={cookie}"})
    assert got.status_code == 401 and "fd_session=" in str({k.lower(): v for k, v in got.headers.items()}["set-cookie"])
