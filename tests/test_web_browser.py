"""Real Chromium against ``chalice local`` on DynamoDB Local: QuickPay from a link at phone and
desktop widths, every portal page in English and Spanish, axe-core with zero violations."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from chalicelib.accounts import selectors as account_selectors
from chalicelib.accounts import services as accounts
from chalicelib.ledger.verify import ledger_verify
from chalicelib.links import services as links
from chalicelib.links.services import LinkKind
from chalicelib.tenants import services as tenants
from tests import factories
from tests.browser import axe_violations

pytestmark = pytest.mark.usefixtures("dynamodb_endpoint")


def _family():
    cid = tenants.clinic_create(name="Riverside", time_zone="America/Chicago", phone="(555) 555-0100")
    f = factories.family(cid)
    gid = tenants.group_create(clinic_id=cid, name="Riverside Family Medicine",
                               settings={"footer_phone": "(555) 555-0100", "show_collections": True})
    factories.patient_owes(f, 4_200)
    accounts.statement_create(clinic_id=cid, guarantor_id=f.guarantor_id, statement_date="2026-11-01",
                              due_date="2026-11-30")
    return f, gid


@pytest.mark.parametrize("width", [360, 1280])
def test_quickpay_from_a_link_fits_the_screen_and_passes_axe(browser, live_server, width):
    f, gid = _family()
    link = links.link_issue(clinic_id=f.clinic_id, guarantor_id=f.guarantor_id, group_id=gid, kind=LinkKind.TEXT)
    context = browser.new_context(viewport={"width": width, "height": 800}, bypass_csp=True)
    page = context.new_page()
    page.goto(link.url.replace("http://127.0.0.1:8000", live_server))
    assert page.url == f"{live_server}/pay"  # the token is gone from the address bar
    assert page.get_by_role("heading", name="Hello, Jane").is_visible()
    assert "$42.00" in page.inner_text("main")
    assert page.evaluate("document.documentElement.scrollWidth") <= width
    assert axe_violations(page) == []
    page.get_by_role("link", name="Español").click()
    page.wait_for_url(f"{live_server}/pay")
    expect(page.get_by_role("heading", name="Hola, Jane")).to_be_visible()
    assert page.evaluate("document.documentElement.lang") == "es"
    assert axe_violations(page) == []
    page.get_by_role("link", name="English").click()
    page.wait_for_url(f"{live_server}/pay")
    page.get_by_role("button", name="Continue to payment").click()
    page.wait_for_url(re.compile(r".*/sandbox-processor/pay/.*"))  # the processor's own page
    page.get_by_label("Card number").fill("4242 4242 4242 4242")
    page.get_by_label("Expiry (MM/YY)").fill("12/39")
    page.get_by_label("Security code").fill("123")
    page.get_by_role("button", name=re.compile("Pay")).click()
    page.wait_for_url(re.compile(r".*/pay/done\?.*"))
    expect(page.get_by_role("heading", name="Payment received")).to_be_visible()
    assert "$42.00" in page.inner_text("main") and "4242" in page.inner_text("main")
    assert page.evaluate("document.documentElement.scrollWidth") <= width
    assert axe_violations(page) == []
    summary = account_selectors.guarantor_summary(clinic_id=f.clinic_id, guarantor_id=f.guarantor_id)
    assert summary.figures.balances.current_balance == 0
    assert ledger_verify(clinic_id=f.clinic_id).ok
    context.close()


def test_every_full_portal_page_passes_axe_in_both_languages(browser, live_server):
    f, gid = _family()
    cookie = links.session_start(clinic_id=f.clinic_id, guarantor_id=f.guarantor_id, group_id=gid,
                                 method="code", origin="website")
    context = browser.new_context(viewport={"width": 360, "height": 740}, bypass_csp=True)
    context.add_cookies([{"name": "fd_session", "value": cookie, "url": live_server}])
    page = context.new_page()
    for lang in ("en", "es"):
        page.goto(f"{live_server}/lang/{lang}?next=/home")
        for path in ("/home", "/account", "/statements", "/profile", "/pay", "/receipts"):
            page.goto(f"{live_server}{path}")
            assert page.evaluate("document.documentElement.lang") == lang, path
            assert axe_violations(page) == [], (lang, path)
            assert page.evaluate("document.documentElement.scrollWidth") <= 360, path
        page.goto(f"{live_server}/statements")
        page.locator("a[href^='/statements/st_']").first.click()
        page.wait_for_url(re.compile(r".*/statements/st_\w+$"))
        assert axe_violations(page) == []
    page.goto(f"{live_server}/l/{f.clinic_id}.{'A' * 43}")
    assert "(555) 555-0100" in page.inner_text("main")
    assert axe_violations(page) == []
    context.close()
