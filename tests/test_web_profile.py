"""The Profile page, the public "is this bill genuine?" page and the Statements page through
Chalice's test client on DynamoDB Local: preferred name, email and mobile changes confirmed by a
step-up code sent to the current contact and then a code sent to the new one (SECURITY.md R22),
notification consent, stored-card removal, CSRF, and every bad input the issue names (wrong,
expired and too many codes, a change without its step-up, another guarantor's card)."""

from __future__ import annotations

import re
from urllib.parse import urlencode

import pytest
from chalice.test import Client
from moto import mock_aws

from chalicelib.accounts import selectors as account_selectors
from chalicelib.accounts import services as accounts
from chalicelib.core import config
from chalicelib.links import services as links
from chalicelib.notify import selectors as notify_selectors
from chalicelib.payments import selectors as payment_selectors
from chalicelib.payments import services as payment_services
from chalicelib.statements import services as statements
from chalicelib.statements import storage
from chalicelib.store import keys
from chalicelib.store.db import clinic_scope
from chalicelib.store.models_payments import CardItem
from chalicelib.tenants import services as tenants
from chalicelib.web import pages
from tests import factories
from tests import statements_fixtures as sf
from tests.statements_fixtures import statements_env  # noqa: F401 (fixture)

pytestmark = pytest.mark.usefixtures("dynamodb_endpoint")
FORM = {"Content-Type": "application/x-www-form-urlencoded"}


@pytest.fixture(scope="module")
def client():
    from app import app

    with Client(app) as c:
        yield c


@pytest.fixture
def outbox(tmp_path, monkeypatch):
    """The console channel writes to a folder of this test's own; returns a reader of the codes
    sent to one destination, newest first."""
    monkeypatch.setenv("FRONTDESK_OUTBOX_DIR", str(tmp_path))
    config.reset()

    def codes(clinic_id: str, to: str) -> list[str]:
        rows = notify_selectors.console_outbox_read(clinic_id=clinic_id, limit=200)
        return [re.search(r"\b(\d{6})\b", str(r["text"])).group(1)  # type: ignore[union-attr]
                for r in rows if r["to"] == to and r.get("sensitive")]

    yield codes
    monkeypatch.undo()
    config.reset()


def _body(response) -> str:
    return response.body.decode() if isinstance(response.body, bytes) else response.body


def _find(pattern: str, text: str) -> str:
    match = re.search(pattern, text)
    assert match is not None, pattern
    return match.group(1)


class Visitor:
    """A signed-in (one-time code) guarantor posting the portal's forms like a browser."""

    def __init__(self, client: Client, f: factories.Family, group_id: str) -> None:
        self.client, self.f, self.group_id = client, f, group_id
        cookie = links.session_start(clinic_id=f.clinic_id, guarantor_id=f.guarantor_id, group_id=group_id,
                                     method="code", origin="website")
        self.cookie = cookie
        self.headers = {"cookie": f"{pages.cookie_name(pages.SESSION_COOKIE)}={cookie}"}

    def get(self, path: str):
        return self.client.http.get(path, headers=self.headers)

    def csrf(self) -> str:
        return _find(r'name="csrf" value="([^"]+)"', _body(self.get("/profile")))

    def post(self, path: str, csrf: str | None = None, **fields: str):
        data = {"csrf": self.csrf() if csrf is None else csrf, **fields}
        return self.client.http.post(path, headers={**self.headers, **FORM}, body=urlencode(data).encode())

    def use_cookie_of(self, response) -> None:
        """Follow a rotated session key (R23: a new key after the step-up)."""
        [cookie] = [c for c in response.headers.get("Set-Cookie", []) if c.startswith("fd_session=")]
        self.cookie = cookie.split(";")[0].split("=", 1)[1]
        self.headers = {"cookie": f"fd_session={self.cookie}"}

    def change(self, outbox, channel: str, value: str, current: str):
        """Ask to change ``channel`` to ``value`` and pass the step-up with the code sent to
        ``current``; return the response showing the form for the new contact's code (or the
        refusal; the session key it set, if any, is followed)."""
        asked = self.post("/profile/contact", channel=channel, value=value)
        assert asked.status_code == 200 and 'action="/profile/contact/stepup"' in _body(asked), _body(asked)[-800:]
        step = self.post("/profile/contact/stepup", request=_request_id(asked),
                         code=outbox(self.f.clinic_id, current)[0])
        if "fd_session=" in str(step.headers.get("Set-Cookie")):
            self.use_cookie_of(step)
        return step


def _request_id(response) -> str:
    return _find(r'name="request" value="([^"]+)"', _body(response))


def _visitor(client, *, settings: dict | None = None, last_name: str = "Doe") -> Visitor:
    f = factories.family(tenants.clinic_create(name="Riverside", time_zone="America/Chicago",
                                               phone="(555) 555-0100"), last_name=last_name)
    gid = tenants.group_create(clinic_id=f.clinic_id, name="Riverside Family Medicine", settings=settings or {})
    return Visitor(client, f, gid)


def _profile(v: Visitor):
    return account_selectors.guarantor_summary(clinic_id=v.f.clinic_id, guarantor_id=v.f.guarantor_id)


# --- preferred name and CSRF ---------------------------------------------------------------------


def test_preferred_name_is_saved_and_greets_on_home(client):
    v = _visitor(client)
    page = v.get("/profile")
    html = _body(page)
    assert page.status_code == 200 and "<script" not in html  # plain forms, no JavaScript
    assert html.count('<form method="post"') == html.count('name="csrf"') >= 5  # every form carries it
    saved = v.post("/profile/name", preferred_name="  Janie  ")
    assert saved.status_code == 303 and saved.headers["Location"] == "/profile?done=name"
    assert _profile(v).preferred_name == "Janie"
    assert "Hello, Janie" in _body(v.get("/home"))
    assert "Your preferred name was saved." in _body(v.get("/profile?done=name"))
    assert v.post("/profile/name", preferred_name="").status_code == 303  # blank clears it
    assert _profile(v).preferred_name is None


@pytest.mark.parametrize("name", ["x" * 41, "Jane\x07"])
def test_a_bad_preferred_name_is_refused_and_nothing_changes(client, name):
    v = _visitor(client)
    r = v.post("/profile/name", preferred_name=name)
    assert r.status_code == 400 and "at most 40 letters" in _body(r) and 'aria-invalid="true"' in _body(r)
    assert _profile(v).preferred_name is None


@pytest.mark.parametrize("csrf", ["", "0" * 32])
def test_posts_without_the_sessions_csrf_token_change_nothing(client, csrf):
    v = _visitor(client)
    other = _visitor(client, last_name="Other")
    for token in (csrf, other.csrf()):  # a missing, made-up or another session's token
        r = v.post("/profile/name", csrf=token, preferred_name="Mallory")
        assert r.status_code == 403 and "Nothing was changed" in _body(r)
        assert v.post("/logout", csrf=token).status_code == 403
    assert _profile(v).preferred_name is None
    assert v.get("/profile").status_code == 200  # still signed in


# --- email and mobile: step-up to the current contact, then a code to the new one (R22) ----------

OLD_EMAIL, OLD_MOBILE = "jane@example.com", "+15555550123"


def _wrong(code: str) -> str:
    return "000000" if code != "000000" else "111111"


def _guarantor(client, *, email: str | None = None, mobile: str | None = None) -> Visitor:
    """A signed-in guarantor of a clinic of their own with exactly these contacts on file."""
    cid = tenants.clinic_create(name="Riverside", time_zone="America/Chicago")
    gid = tenants.group_create(clinic_id=cid, name="Riverside")
    g = accounts.guarantor_create(clinic_id=cid, first_name="Ana", last_name="Solo", email=email, mobile=mobile)
    return Visitor(client, factories.Family(cid, g, "", "", ""), gid)


def test_an_email_change_needs_the_code_to_the_current_address_then_the_new_ones(client, outbox):
    v = _visitor(client)
    asked = v.post("/profile/contact", channel="email", value="Jane.New@Example.org")
    html = _body(asked)
    assert asked.status_code == 200 and "Confirm it is you" in html and OLD_EMAIL in html
    [stepup] = outbox(v.f.clinic_id, OLD_EMAIL)  # the step-up code goes to the address on file
    assert outbox(v.f.clinic_id, "jane.new@example.org") == []  # nothing to the new address yet
    old_cookie = v.cookie
    step = v.post("/profile/contact/stepup", request=_request_id(asked), code=stepup)
    assert step.status_code == 200 and "jane.new@example.org" in _body(step)
    assert 'action="/profile/contact/verify"' in _body(step)
    v.use_cookie_of(step)  # R23: a new session key on step-up; the old one is dead
    assert v.cookie != old_cookie
    dead = client.http.get("/profile", headers={"cookie": f"fd_session={old_cookie}"})
    assert dead.status_code == 401
    assert _find(r'name="csrf" value="([^"]+)"', _body(step)) == pages.csrf_token(v.cookie)
    [code] = outbox(v.f.clinic_id, "jane.new@example.org")
    assert _profile(v).email == OLD_EMAIL  # unchanged until the new address's code is confirmed
    request_id = _request_id(step)
    refused = v.post("/profile/contact/verify", request=request_id, code=_wrong(code))
    assert refused.status_code == 400 and "That code is invalid or expired." in _body(refused)
    assert v.post("/profile/contact/verify", request=request_id, code=stepup).status_code == 400 or stepup == code
    assert _profile(v).email == OLD_EMAIL
    done = v.post("/profile/contact/verify", request=request_id, code=code)
    assert done.status_code == 303 and done.headers["Location"] == "/profile?done=email"
    assert _profile(v).email == "jane.new@example.org"
    again = v.post("/profile/contact/verify", request=request_id, code=code)  # a replay, a double submit
    assert again.status_code == 400 and _profile(v).email == "jane.new@example.org"
    assert "Your email address was changed." in _body(v.get("/profile?done=email"))


def test_a_change_without_the_step_up_is_refused_with_403_and_nothing_changes(client, outbox):
    v = _visitor(client)
    asked = v.post("/profile/contact", channel="sms", value="5555550199")
    request_id = _request_id(asked)
    [stepup] = outbox(v.f.clinic_id, OLD_MOBILE)
    for code in (stepup, "123456", "", "abc"):  # straight to the confirmation, whatever the code
        r = v.post("/profile/contact/verify", request=request_id, code=code)
        assert r.status_code == 403 and "first enter the code we sent" in _body(r)
    assert _profile(v).mobile == OLD_MOBILE
    assert outbox(v.f.clinic_id, "+15555550199") == []
    # the 403s burnt nothing: the step-up still works, and then the change
    step = v.post("/profile/contact/stepup", request=request_id, code=stepup)
    assert step.status_code == 200
    v.use_cookie_of(step)
    [code] = outbox(v.f.clinic_id, "+15555550199")
    assert v.post("/profile/contact/verify", request=request_id, code=code).status_code == 303
    assert _profile(v).mobile == "+15555550199"


def test_a_wrong_step_up_code_sends_nothing_to_the_new_contact_and_the_sixth_try_fails(client, outbox):
    v = _visitor(client)
    asked = v.post("/profile/contact", channel="email", value="new@example.org")
    request_id = _request_id(asked)
    [stepup] = outbox(v.f.clinic_id, OLD_EMAIL)
    for attempt in range(5):
        r = v.post("/profile/contact/stepup", request=request_id, code=_wrong(stepup))
        assert r.status_code == 400 and "That code is invalid or expired." in _body(r), attempt
        assert 'action="/profile/contact/stepup"' in _body(r)  # the same step-up form again
        assert "Set-Cookie" not in r.headers  # no new session key for a wrong code
    assert v.post("/profile/contact/stepup", request=request_id, code=stepup).status_code == 400  # R19
    assert outbox(v.f.clinic_id, "new@example.org") == []
    assert _profile(v).email == OLD_EMAIL
    assert v.get("/profile").status_code == 200  # the session is untouched


def test_the_step_up_code_goes_to_the_other_channel_when_none_is_on_file(client, outbox):
    v = _guarantor(client, email="ana@example.com")
    step = v.change(outbox, "sms", "555-555-0188", current="ana@example.com")
    assert step.status_code == 200
    [code] = outbox(v.f.clinic_id, "+15555550188")
    assert v.post("/profile/contact/verify", request=_request_id(step), code=code).status_code == 303
    assert _profile(v).mobile == "+15555550188"
    w = _guarantor(client, mobile="+15555550177")
    step = w.change(outbox, "email", "ana@example.net", current="+15555550177")
    [code] = outbox(w.f.clinic_id, "ana@example.net")
    assert w.post("/profile/contact/verify", request=_request_id(step), code=code).status_code == 303
    assert _profile(w).email == "ana@example.net"


def test_with_no_contact_on_file_a_change_is_refused(client, outbox):
    v = _guarantor(client)
    r = v.post("/profile/contact", channel="email", value="ana@example.com")
    assert r.status_code == 403 and "Please call your practice" in _body(r)
    assert notify_selectors.console_outbox_read(clinic_id=v.f.clinic_id) == []
    assert _profile(v).email is None


def test_the_step_up_helper_picks_the_current_contact_first():
    assert accounts.stepup_contact("email", email="A@x.org", mobile="5555550100") == ("email", "a@x.org")
    assert accounts.stepup_contact("sms", email="a@x.org", mobile="5555550100") == ("sms", "+15555550100")
    assert accounts.stepup_contact("sms", email="a@x.org", mobile=None) == ("email", "a@x.org")
    assert accounts.stepup_contact("email", email=None, mobile="5555550100") == ("sms", "+15555550100")
    with pytest.raises(accounts.StepUpRequired):
        accounts.stepup_contact("email", email=None, mobile=None)


def test_the_old_contact_is_told_of_the_change_exactly_once(client, outbox):
    v = _visitor(client)
    step = v.change(outbox, "sms", "(555) 555-0199", current=OLD_MOBILE)
    [code] = outbox(v.f.clinic_id, "+15555550199")
    v.post("/profile/contact/verify", request=_request_id(step), code=code)
    v.post("/profile/contact/verify", request=_request_id(step), code=code)  # a replayed form
    rows = [r for r in notify_selectors.console_outbox_read(clinic_id=v.f.clinic_id)
            if r["to"] == OLD_MOBILE and not r.get("sensitive")]  # the step-up code is not the notice
    assert len(rows) == 1
    assert "contact on your billing account was changed" in str(rows[0]["text"])


def test_a_mobile_change_and_the_sixth_guess_fails_even_when_right(client, outbox):
    v = _visitor(client)
    step = v.change(outbox, "sms", "555.555.0199", current=OLD_MOBILE)
    [code] = outbox(v.f.clinic_id, "+15555550199")
    request_id = _request_id(step)
    for _ in range(5):
        assert v.post("/profile/contact/verify", request=request_id, code=_wrong(code)).status_code == 400
    assert v.post("/profile/contact/verify", request=request_id, code=code).status_code == 400  # R19
    assert _profile(v).mobile == OLD_MOBILE


def test_each_code_is_accepted_at_nine_minutes_59_and_refused_after_ten(client, outbox):
    c = sf.Clock()
    for seconds, status in ((9 * 60 + 59, 303), (10 * 60 + 1, 400)):
        v = _visitor(client)
        c.at = c.at.replace(microsecond=0)
        # the step-up code ...
        asked = v.post("/profile/contact", channel="email", value=f"s{seconds}@example.org")
        c.move(seconds=seconds)
        step = v.post("/profile/contact/stepup", request=_request_id(asked), code=outbox(v.f.clinic_id, OLD_EMAIL)[0])
        assert step.status_code == {303: 200, 400: 400}[status], seconds
        if step.status_code == 200:
            v.use_cookie_of(step)
        # ... and the new contact's code, which gets 10 minutes of its own
        step = v.change(outbox, "email", f"t{seconds}@example.org", current=OLD_EMAIL)
        code = outbox(v.f.clinic_id, f"t{seconds}@example.org")[0]
        c.move(seconds=seconds)
        r = v.post("/profile/contact/verify", request=_request_id(step), code=code)
        assert r.status_code == status, seconds
        assert _profile(v).email == (f"t{seconds}@example.org" if status == 303 else OLD_EMAIL)


def test_a_newer_change_retires_the_older_ones_codes(client, outbox):
    v = _visitor(client)
    first = v.change(outbox, "email", "a@example.org", current=OLD_EMAIL)
    [old_code] = outbox(v.f.clinic_id, "a@example.org")
    second = v.post("/profile/contact", channel="email", value="b@example.org")
    r = v.post("/profile/contact/verify", request=_request_id(first), code=old_code)
    assert r.status_code == 400 and _profile(v).email == OLD_EMAIL  # R18
    r = v.post("/profile/contact/stepup", request=_request_id(first), code=outbox(v.f.clinic_id, OLD_EMAIL)[1])
    assert r.status_code == 400  # the older step-up code too
    assert _request_id(second) != _request_id(first)


def test_step_up_codes_are_capped_per_current_contact_and_per_guarantor(client, outbox):
    v = _visitor(client)
    for i in range(3):
        assert v.post("/profile/contact", channel="email", value=f"n{i}@example.org").status_code == 200
    fourth = v.post("/profile/contact", channel="sms", value="5555550111")  # still 3 per guarantor (R20)
    assert fourth.status_code == 429 and "Too many codes" in _body(fourth)
    assert len(outbox(v.f.clinic_id, OLD_EMAIL)) == 3 and outbox(v.f.clinic_id, OLD_MOBILE) == []
    # the current contact's cap is the sign-in cap of that destination: shared by a family
    sibling = Visitor(client, factories.family(v.f.clinic_id, last_name="Sib"), v.group_id)
    assert sibling.post("/profile/contact", channel="email", value="s@example.org").status_code == 429
    assert len(outbox(v.f.clinic_id, OLD_EMAIL)) == 3


def test_new_contact_codes_are_capped_per_destination(client, outbox):
    cid = tenants.clinic_create(name="Riverside", time_zone="America/Chicago")
    gid = tenants.group_create(clinic_id=cid, name="Riverside")
    visitors = [Visitor(client, factories.Family(cid, accounts.guarantor_create(
        clinic_id=cid, first_name="Ana", last_name=f"N{i}", email=f"ana{i}@example.com"), "", "", ""), gid)
        for i in range(4)]
    for v in visitors[:3]:
        assert v.change(outbox, "email", "pumped@example.org", current=v_email(v)).status_code == 200
    last = visitors[3]
    r = last.change(outbox, "email", "pumped@example.org", current=v_email(last))
    assert r.status_code == 429 and "Too many codes" in _body(r)  # R20: the 4th in 15 min is not sent
    assert len(outbox(cid, "pumped@example.org")) == 3
    assert last.get("/profile").status_code == 200  # the rotated session carries on


def v_email(v: Visitor) -> str:
    return str(_profile(v).email)


def test_new_contact_codes_are_capped_per_guarantor(client, outbox):
    v = _guarantor(client, email="ana@example.com")
    for i in range(3):  # one guarantor spraying codes to many numbers (SMS pumping, R20)
        step = v.change(outbox, "sms", f"555555020{i}", current="ana@example.com")
        assert step.status_code == 200
    assert v.post("/profile/contact", channel="sms", value="5555550209").status_code == 429
    assert outbox(v.f.clinic_id, "+15555550209") == []


@pytest.mark.parametrize(("channel", "value", "message"), [
    ("email", "not-an-email", "Please enter a valid email address."),
    ("email", "JANE@example.com", "That email address is already on file."),
    ("sms", "555-0199", "Please enter a valid US mobile number."),
    ("sms", "+44 20 7946 0958", "Please enter a valid US mobile number."),
    ("sms", "(555) 555-0123", "That mobile number is already on file."),
    ("fax", "5555550100", "Please enter a valid email address."),
])
def test_bad_or_unchanged_contacts_are_refused_without_a_code(client, outbox, channel, value, message):
    v = _visitor(client)
    r = v.post("/profile/contact", channel=channel, value=value)
    assert r.status_code == 400 and message in _body(r)
    assert notify_selectors.console_outbox_read(clinic_id=v.f.clinic_id) == []


def test_another_guarantors_change_request_cannot_be_confirmed(client, outbox):
    v = _visitor(client)
    sibling = Visitor(client, factories.family(v.f.clinic_id, last_name="Sib"), v.group_id)
    asked = v.post("/profile/contact", channel="email", value="mine@example.org")
    [stepup] = outbox(v.f.clinic_id, OLD_EMAIL)
    assert sibling.post("/profile/contact/stepup", request=_request_id(asked), code=stepup).status_code == 400
    step = v.post("/profile/contact/stepup", request=_request_id(asked), code=stepup)
    v.use_cookie_of(step)
    [code] = outbox(v.f.clinic_id, "mine@example.org")
    r = sibling.post("/profile/contact/verify", request=_request_id(step), code=code)
    assert r.status_code == 400
    assert _profile(sibling).email == OLD_EMAIL and _profile(v).email == OLD_EMAIL


# --- notification preferences --------------------------------------------------------------------


def test_notification_preferences_are_recorded_as_consent_from_the_portal(client, outbox):
    v = _visitor(client)
    html = _body(v.get("/profile"))
    assert re.search(r'name="email" value="on" checked', html)  # the clinic default for email is "in"
    assert not re.search(r'name="sms" value="on" checked', html)  # SMS needs consent (R41)
    saved = v.post("/profile/notifications", sms="on")  # email off, text on
    assert saved.status_code == 303 and saved.headers["Location"] == "/profile?done=notifications"
    email = notify_selectors.contact_get(clinic_id=v.f.clinic_id, channel="email", destination="jane@example.com")
    sms = notify_selectors.contact_get(clinic_id=v.f.clinic_id, channel="sms", destination="+15555550123")
    assert (email.consent, email.consent_source) == ("revoked", "portal")
    assert (sms.consent, sms.consent_source) == ("granted", "portal")
    html = _body(v.get("/profile"))
    assert re.search(r'name="sms" value="on" checked', html) and not re.search(r'name="email" value="on" checked',
                                                                                 html)
    with clinic_scope(v.f.clinic_id):
        from chalicelib.store.models_notify import ConsentEventItem

        events = [e for e in ConsentEventItem.query(keys.contact_pk(v.f.clinic_id, "email", _hash("jane@example.com")))
                  if isinstance(e, ConsentEventItem)]
    assert len(events) == 1 and events[0].source == "portal" and events[0].recorded_at is not None
    v.post("/profile/notifications", sms="on")  # the same form again records nothing new
    with clinic_scope(v.f.clinic_id):
        again = [e for e in ConsentEventItem.query(keys.contact_pk(v.f.clinic_id, "email", _hash("jane@example.com")))
                 if isinstance(e, ConsentEventItem)]
    assert len(again) == 1


def _hash(value: str) -> str:
    from chalicelib.links import tokens

    return tokens.subject_hash(value)


def test_a_channel_with_nothing_on_file_cannot_be_switched_on(client):
    cid = tenants.clinic_create(name="Riverside", time_zone="America/Chicago")
    gid = tenants.group_create(clinic_id=cid, name="Riverside")
    g = accounts.guarantor_create(clinic_id=cid, first_name="Ana", last_name="Solo", email="ana@example.com")
    v = Visitor(client, factories.Family(cid, g, "", "", ""), gid)
    assert 'name="sms" value="on" disabled' in _body(v.get("/profile"))
    assert v.post("/profile/notifications", email="on", sms="on").status_code == 303
    assert notify_selectors.contact_get(clinic_id=cid, channel="email", destination="ana@example.com").consent is None


# --- stored cards ----------------------------------------------------------------------------------


def _card(v: Visitor, group_id: str) -> str:
    card = payment_services.card_store(clinic_id=v.f.clinic_id, guarantor_id=v.f.guarantor_id, token="tok_visa",
                                       group_id=group_id)
    return card.card_id


def _card_active(f: factories.Family, card_id: str) -> bool:
    with clinic_scope(f.clinic_id):
        return bool(CardItem.get(keys.guarantor_pk(f.clinic_id, f.guarantor_id), keys.card_sk(card_id),
                                 consistent_read=True).active)


def test_stored_cards_are_listed_and_removed_and_a_double_submit_is_harmless(client):
    v = _visitor(client, settings={"stored_cards": True})
    card_id = _card(v, v.group_id)
    html = _body(v.get("/profile"))
    assert "Visa •••• 4242" in html and f'value="{card_id}"' in html and "tok_visa" not in html
    csrf = v.csrf()
    first = v.post("/profile/cards/remove", csrf=csrf, card=card_id)
    second = v.post("/profile/cards/remove", csrf=csrf, card=card_id)  # the same form submitted twice
    assert first.status_code == second.status_code == 303 and first.headers["Location"] == "/profile?done=card"
    assert not _card_active(v.f, card_id)
    assert payment_selectors.stored_cards_list(clinic_id=v.f.clinic_id, guarantor_id=v.f.guarantor_id) == []
    assert "No stored cards." in _body(v.get("/profile?done=card"))


@pytest.mark.parametrize("which", ["sibling", "stranger", "made_up", "malformed"])
def test_another_guarantors_card_id_is_refused_and_that_card_stays(client, which):
    v = _visitor(client, settings={"stored_cards": True})
    gid = v.group_id
    sibling = Visitor(client, factories.family(v.f.clinic_id, last_name="Sib"), gid)
    sibling_card = _card(sibling, gid)
    stranger = _visitor(client, settings={"stored_cards": True}, last_name="Stranger")
    stranger_card = _card(stranger, stranger.group_id)
    card_id = {"sibling": sibling_card, "stranger": stranger_card, "made_up": "card_0123456789abcdef",
               "malformed": "../x"}[which]
    r = v.post("/profile/cards/remove", card=card_id)
    assert r.status_code == 404 and "That card is not available." in _body(r)
    assert "4242" not in _body(r)  # nothing about the other card
    assert _card_active(sibling.f, sibling_card) and _card_active(stranger.f, stranger_card)


# --- statements ------------------------------------------------------------------------------------


@pytest.mark.usefixtures("statements_env")
def test_statements_page_uses_the_history_with_paid_flags_detail_and_pdf(client, monkeypatch):
    c = sf.Clock()
    with mock_aws():
        import boto3

        boto3.client("s3", region_name="us-east-1").create_bucket(Bucket="fd-statements")
        monkeypatch.setenv("FRONTDESK_STORAGE", "s3")
        monkeypatch.setenv("FRONTDESK_STATEMENTS_BUCKET", "fd-statements")
        config.reset()
        storage.reset()
        try:
            cid, gid = sf.clinic()
            f = sf.family(cid)
            first = sf.owes(f, 1_000, dos="2026-09-01")
            statements.statement_run_start(clinic_id=cid, run_date=c.today)
            sf.pay(f, 1_000, {first: 1_000})
            c.move(days=28)
            sf.owes(f, 2_500)
            statements.statement_run_start(clinic_id=cid, run_date=c.today)
            v = Visitor(client, f, gid)
            html = _body(v.get("/statements"))
            rows = re.findall(r"<tr><td>(\d{4}-\d\d-\d\d)</td><td class=\"num\">([^<]+)</td><td>(\w+)</td>", html)
            assert [(s, p) for _, s, p in rows] == [("$25.00", "Unpaid"), ("$10.00", "Paid")]
            assert rows[0][0] > rows[1][0]  # newest due date first
            hidden = _body(v.get("/statements?hide_paid=1"))
            assert "$25.00" in hidden and "$10.00" not in hidden
            sid = _find(r'href="/statements/(st_\w+)"', html)
            detail = _body(v.get(f"/statements/{sid}"))
            assert "Account number" in detail and f.guarantor_id in detail and "$25.00" in detail
            pdf = v.get(f"/statements/{sid}/pdf")
            assert pdf.status_code == 303 and "fd-statements" in pdf.headers["Location"]
            assert pdf.headers["Location"].startswith("https://") and "X-Amz-Expires=" in pdf.headers["Location"]
            other = Visitor(client, sf.family(cid), gid)
            assert other.get(f"/statements/{sid}").status_code == 404
            assert other.get(f"/statements/{sid}/pdf").status_code == 404
        finally:
            storage.reset()


@pytest.mark.usefixtures("statements_env")
def test_a_local_pdf_is_served_as_its_bytes_never_as_a_file_url(client):
    """The embedded default keeps PDFs in a folder: the Statements page's PDF link answered 404
    (a file:// address cannot be handed to a browser), so it never worked in the demo."""
    c = sf.Clock()
    cid, gid = sf.clinic()
    f = sf.family(cid)
    sf.owes(f, 1_000)
    statements.statement_run_start(clinic_id=cid, run_date=c.today)
    v = Visitor(client, f, gid)
    sid = _find(r'href="/statements/(st_\w+)"', _body(v.get("/statements")))
    browser = {**v.headers, "accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"}
    r = client.http.get(f"/statements/{sid}/pdf", headers=browser)  # Chalice wants an Accept for bytes
    assert r.status_code == 200 and r.headers["Content-Type"] == "application/pdf"
    assert r.body.startswith(b"%PDF") and r.headers["Cache-Control"] == "no-store"
    assert "Location" not in r.headers
    other = Visitor(client, sf.family(cid), gid)
    assert other.get(f"/statements/{sid}/pdf").status_code == 404


# --- is this bill genuine? -------------------------------------------------------------------------


def _statement_code(c: sf.Clock) -> tuple[str, str]:
    from chalicelib.statements import selectors as st_selectors

    cid = tenants.clinic_create(name="Sunrise Family Medicine", time_zone="America/Chicago", phone="(555) 555-0142")
    gid = tenants.group_create(clinic_id=cid, name="Sunrise", is_default=True)
    statements.statement_profile_save(clinic_id=cid, profile=sf.profile(cid, gid))
    f = sf.family(cid)
    sf.owes(f, 12_345)
    statements.statement_run_start(clinic_id=cid, run_date=c.today)
    [row] = st_selectors.statement_history(clinic_id=cid, guarantor_id=f.guarantor_id)
    assert row.verification_code
    return cid, row.verification_code


def _verify_post(client, fields: dict[str, str], page: str = "/verify"):
    """Post the "is this bill genuine?" form as a browser does: with the ``fd_csrf`` cookie and
    the token its page set (R46)."""
    form = client.http.get(page)
    name = pages.cookie_name(pages.LOGIN_CSRF_COOKIE)  # __Host-fd_csrf when the portal is on HTTPS
    cookie = next(c for c in form.headers["Set-Cookie"] if c.startswith(f"{name}=")).split(";")[0]
    token = _find(r'name="csrf" value="([^"]+)"', _body(form))
    return client.http.post("/verify", headers={**FORM, "cookie": cookie},
                            body=urlencode({"csrf": token, **fields}).encode())


@pytest.mark.usefixtures("statements_env")
def test_verify_answers_genuine_with_practice_and_date_only(client):
    c = sf.Clock()
    cid, code = _statement_code(c)
    form = client.http.get(f"/verify?c={cid}")
    assert form.status_code == 200 and f'name="c" value="{cid}"' in _body(form) and "<script" not in _body(form)
    good = _verify_post(client, {"c": cid, "code": code.lower()})
    html = _body(good)
    assert good.status_code == 200 and "this is a genuine statement" in html
    assert "Sunrise Family Medicine" in html and c.today in html and "(555) 555-0142" in html
    for secret in ("Jane", "Doe", "123.45", "99213", "g_"):  # no name, amount, service or account
        assert secret not in html.split("<main")[1], secret
    assert good.headers["Cache-Control"] == "no-store" and "nonce-" in good.headers["Content-Security-Policy"]


@pytest.mark.usefixtures("statements_env")
def test_verify_answers_the_same_for_a_wrong_code_and_an_unknown_practice(client):
    c = sf.Clock()
    cid, code = _statement_code(c)
    answers = []
    for clinic_id, typed in ((cid, "ABCD-EFGH"), (cid, "not a code"), ("c_0123456789abcdef", code)):
        r = _verify_post(client, {"c": clinic_id, "code": typed})
        assert r.status_code == 200 and "We could not confirm this bill." in _body(r)
        answers.append(re.sub(r'(nonce[-=]"?[\w-]+|name="c" value="[^"]*"|name="csrf" value="\w+"|c(=|%3D)c_\w+)', "",
                              _body(r)))
    assert len(set(answers)) == 1
    bare = _verify_post(client, {"code": "ABCD-EFGH"})
    assert bare.status_code == 400 and "exactly as printed" in _body(bare)


@pytest.mark.usefixtures("statements_env")
def test_verify_is_rate_limited_per_address(client):
    c = sf.Clock()
    cid, code = _statement_code(c)
    statuses = [_verify_post(client, {"c": cid, "code": "ABCD-EFGH"}).status_code for _ in range(21)]
    assert statuses == [200] * 20 + [429]
    right = _verify_post(client, {"c": cid, "code": code})
    assert right.status_code == 429 and "genuine statement" not in _body(right)  # even the right code waits
