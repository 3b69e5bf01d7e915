"""Real Chromium against ``chalice local`` on DynamoDB Local: QuickPay from a link at phone and
desktop widths, every portal page in English and Spanish, axe-core with zero violations."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from chalicelib.accounts import selectors as account_selectors
from chalicelib.accounts import services as accounts
from chalicelib.core import clock
from chalicelib.ledger.verify import ledger_verify
from chalicelib.links import services as links
from chalicelib.links.services import LinkKind
from chalicelib.payments import services as payment_services
from chalicelib.statements import selectors as statement_selectors
from chalicelib.statements import services as statements
from chalicelib.tenants import services as tenants
from tests import factories
from tests import statements_fixtures as sf
from tests.browser import axe_violations, sent_codes
from tests.statements_fixtures import statements_env  # noqa: F401 (fixture)

pytestmark = pytest.mark.usefixtures("dynamodb_endpoint")


def _family(email: str = "jane@example.com"):
    cid = tenants.clinic_create(name="Riverside", time_zone="America/Chicago", phone="(555) 555-0100")
    f = factories.family(cid, email=email)
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
    # The address is /pay before and after the switch: wait for the English page itself, or the
    # click below can land on the Spanish page as it is replaced (a flake on a loaded machine).
    expect(page.get_by_role("heading", name="Hello, Jane")).to_be_visible()
    page.get_by_role("button", name="Continue to payment").click()
    page.wait_for_url(re.compile(r".*/sandbox-processor/pay/.*"))  # the processor's own page
    page.get_by_label("Card number").fill("4242 4242 4242 4242")
    page.get_by_label("Expiry (MM/YY)").fill("12/39")
    page.get_by_label("Security code").fill("123")
    # the sandbox's own page fits the phone too (it was unstyled: labels and inputs ran together)
    assert page.evaluate("document.documentElement.scrollWidth") <= width
    assert page.evaluate("getComputedStyle(document.querySelector('label')).display") == "block"
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
    f, gid = _family(email="elizabeth.johnson.18@riverside-family-medicine.example.com")  # a long one: 360 px
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


def test_sign_in_with_a_one_time_code_from_the_outbox_lands_on_home(browser, live_server, live_outbox):
    f, gid = _family()
    context = browser.new_context(viewport={"width": 360, "height": 740}, bypass_csp=True)
    page = context.new_page()
    page.goto(f"{live_server}/signin?clinic={f.clinic_id}&group={gid}")
    assert axe_violations(page) == []
    page.get_by_label("First or preferred name").fill("JANE")
    page.get_by_label("Last name").fill("doe")
    page.get_by_label("Email or mobile number").fill("jane@example.com")
    page.get_by_role("button", name="Send me a code").click()
    expect(page.get_by_role("heading", name="Enter your code")).to_be_visible()
    assert axe_violations(page) == []
    [code] = sent_codes(live_outbox, clinic_id=f.clinic_id, to="jane@example.com")
    page.get_by_label("6-digit code").fill("000000" if code != "000000" else "111111")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_have_text("That code is invalid or expired.")
    assert axe_violations(page) == []
    page.get_by_label("6-digit code").fill(code)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{live_server}/home")
    expect(page.get_by_role("heading", name="Hello, Jane")).to_be_visible()
    assert "$42.00" in page.inner_text("main")
    assert page.evaluate("document.documentElement.scrollWidth") <= 360
    context.close()


def test_the_profile_works_without_javascript_at_360_px(browser, live_server, live_outbox):
    f, _ = _family()
    gid = tenants.group_create(clinic_id=f.clinic_id, name="Riverside Cards",
                               settings={"footer_phone": "(555) 555-0100", "stored_cards": True})
    payment_services.card_store(clinic_id=f.clinic_id, guarantor_id=f.guarantor_id, token="tok_visa", group_id=gid)
    cookie = links.session_start(clinic_id=f.clinic_id, guarantor_id=f.guarantor_id, group_id=gid,
                                 method="code", origin="website")
    context = browser.new_context(viewport={"width": 360, "height": 740}, java_script_enabled=False)
    context.add_cookies([{"name": "fd_session", "value": cookie, "url": live_server}])
    page = context.new_page()
    page.goto(f"{live_server}/profile")
    page.get_by_label("Preferred name").fill("Janie")
    page.get_by_role("button", name="Save name").click()
    expect(page.get_by_role("status")).to_have_text("Your preferred name was saved.")
    page.get_by_label("New email address").fill("jane.new@example.org")
    page.get_by_role("button", name="Change email").click()
    # step-up first (R22): a code to the address on file, nothing yet to the new one
    expect(page.get_by_role("heading", name="Confirm it is you")).to_be_visible()
    [stepup] = sent_codes(live_outbox, clinic_id=f.clinic_id, to="jane@example.com")
    assert sent_codes(live_outbox, clinic_id=f.clinic_id, to="jane.new@example.org") == []
    page.get_by_label("6-digit code").fill("000000" if stepup != "000000" else "111111")
    page.get_by_role("button", name="Continue").click()
    expect(page.get_by_role("alert")).to_have_text("That code is invalid or expired.")
    page.get_by_label("6-digit code").fill(stepup)
    page.get_by_role("button", name="Continue").click()
    expect(page.get_by_role("heading", name="Enter your code")).to_be_visible()
    session_keys = [c["value"] for c in context.cookies() if c["name"] == "fd_session"]
    assert len(session_keys) == 1 and session_keys != [cookie]  # a new session key after the step-up (R23)
    [code] = sent_codes(live_outbox, clinic_id=f.clinic_id, to="jane.new@example.org")
    page.get_by_label("6-digit code").fill("000000" if code != "000000" else "111111")
    page.get_by_role("button", name="Confirm the change").click()
    expect(page.get_by_role("alert")).to_have_text("That code is invalid or expired.")
    page.get_by_label("6-digit code").fill(code)
    page.get_by_role("button", name="Confirm the change").click()
    expect(page.get_by_role("status")).to_have_text("Your email address was changed.")
    assert "jane.new@example.org" in page.inner_text("main")
    page.get_by_label("Text message").check()
    page.get_by_role("button", name="Save preferences").click()
    expect(page.get_by_role("status")).to_have_text("Your notification preferences were saved.")
    assert page.get_by_label("Text message").is_checked()
    page.get_by_role("button", name="Remove Visa 4242").click()
    expect(page.get_by_role("status")).to_have_text("The card was removed.")
    assert "No stored cards." in page.inner_text("main")
    summary = account_selectors.guarantor_summary(clinic_id=f.clinic_id, guarantor_id=f.guarantor_id)
    assert (summary.preferred_name, summary.email) == ("Janie", "jane.new@example.org")
    context.close()


@pytest.mark.usefixtures("statements_env")
def test_profile_code_and_verify_pages_pass_axe_in_both_languages(browser, live_server, live_outbox):
    f, _ = _family()
    payment_group = tenants.group_create(clinic_id=f.clinic_id, name="Cards", settings={"stored_cards": True})
    payment_services.card_store(clinic_id=f.clinic_id, guarantor_id=f.guarantor_id, token="tok_visa",
                                group_id=payment_group)
    cookie = links.session_start(clinic_id=f.clinic_id, guarantor_id=f.guarantor_id, group_id=payment_group,
                                 method="code", origin="website")
    cid, code = _statement(sf.Clock())  # billed "on" a fixed day: the served app keeps the real clock
    clock.set_source(None)
    context = browser.new_context(viewport={"width": 360, "height": 740}, bypass_csp=True)
    context.add_cookies([{"name": "fd_session", "value": cookie, "url": live_server}])
    page = context.new_page()
    for lang, check, genuine, not_genuine in (("en", "Check", "Yes: this is a genuine statement.",
                                                 "We could not confirm this bill."),
                                                ("es", "Verificar", "Sí: este es un estado de cuenta auténtico.",
                                                 "No pudimos confirmar esta factura.")):
        page.goto(f"{live_server}/lang/{lang}?next=/profile")
        assert page.evaluate("document.documentElement.lang") == lang
        assert axe_violations(page) == [], (lang, "profile")
        assert page.evaluate("document.documentElement.scrollWidth") <= 360
        page.locator("#new_mobile").fill("555 555 0177")
        page.locator("#new_mobile").press("Enter")
        stepup = sent_codes(live_outbox, clinic_id=f.clinic_id, to="+15555550123")[0]  # the mobile on file
        page.locator("#code").fill("000000" if stepup != "000000" else "111111")
        page.locator("form[action='/profile/contact/stepup'] button").click()
        expect(page.get_by_role("alert")).to_be_visible()
        assert axe_violations(page) == [], (lang, "profile step-up code")
        page.locator("#code").fill(stepup)
        page.locator("form[action='/profile/contact/stepup'] button").click()
        page.locator("form[action='/profile/contact/verify']").wait_for()
        sent = sent_codes(live_outbox, clinic_id=f.clinic_id, to="+15555550177")[0]
        page.locator("#code").fill("000000" if sent != "000000" else "111111")
        page.locator("form[action='/profile/contact/verify'] button").click()
        expect(page.get_by_role("alert")).to_be_visible()
        assert axe_violations(page) == [], (lang, "profile code")
        page.goto(f"{live_server}/verify?c={cid}")
        assert axe_violations(page) == [], (lang, "verify")
        page.locator("#code").fill(code)
        page.get_by_role("button", name=check).click()
        expect(page.get_by_role("heading", name=genuine)).to_be_visible()
        assert "Sunrise Family Medicine" in page.inner_text("main") and "Jane" not in page.inner_text("main")
        assert axe_violations(page) == [], (lang, "verify genuine")
        page.locator("#code").fill("ABCD-EFGH")
        page.get_by_role("button", name=check).click()
        expect(page.get_by_role("heading", name=not_genuine)).to_be_visible()
        assert axe_violations(page) == [], (lang, "verify not genuine")
        assert page.evaluate("document.documentElement.scrollWidth") <= 360
    context.close()


def _statement(c: sf.Clock) -> tuple[str, str]:
    """A clinic with one billed statement; returns (clinic id, its verification code)."""
    cid = tenants.clinic_create(name="Sunrise Family Medicine", time_zone="America/Chicago", phone="(555) 555-0142")
    gid = tenants.group_create(clinic_id=cid, name="Sunrise", is_default=True)
    statements.statement_profile_save(clinic_id=cid, profile=sf.profile(cid, gid))
    f = sf.family(cid)
    sf.owes(f, 1_000)
    statements.statement_run_start(clinic_id=cid, run_date=c.today)
    [row] = statement_selectors.statement_history(clinic_id=cid, guarantor_id=f.guarantor_id)
    assert row.verification_code
    return cid, row.verification_code
