"""Payment links, patient sessions and one-time codes (SECURITY.md R14, R16-R21, R25)."""

from __future__ import annotations

import re
import secrets
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pytest

from chalicelib.accounts import services as accounts
from chalicelib.core import clock
from chalicelib.core.errors import CodeRefused, InvalidInput, LinkInvalid, NotFound, TooManyRequests, UnknownGuarantor
from chalicelib.links import services as links
from chalicelib.links.services import LinkKind
from chalicelib.store import keys
from chalicelib.store.db import Tx, clinic_scope
from chalicelib.store.models_links import LinkItem
from chalicelib.tenants import selectors as tenant_selectors
from chalicelib.tenants import services as tenants
from tests import factories

pytestmark = pytest.mark.usefixtures("dynamodb_endpoint")


class Clock:
    def __init__(self) -> None:
        self.at = datetime(2026, 11, 29, 15, 0, tzinfo=UTC)
        clock.set_source(lambda: self.at)

    def move(self, **kw: float) -> None:
        self.at += timedelta(**kw)


def _setup(**group_settings):
    f = factories.family()
    gid = tenants.group_create(clinic_id=f.clinic_id, name="G", settings=group_settings or None)
    return f, gid


def test_link_is_stored_hashed_and_resolves_to_its_guarantor():
    f, gid = _setup()
    issued = links.link_issue(clinic_id=f.clinic_id, guarantor_id=f.guarantor_id, group_id=gid, kind=LinkKind.EMAIL)
    assert issued.url.startswith("http://127.0.0.1:8000/l/") and issued.token in issued.url
    assert len(issued.token.split(".", 1)[1]) >= 43  # 256 bits, url-safe
    with clinic_scope(f.clinic_id):
        [item] = list(LinkItem.gsi1.query(keys.guarantor_links_gsi1pk(f.clinic_id, f.guarantor_id)))
    stored = item.pk.rsplit("#", 1)[1]
    assert re.fullmatch(r"[0-9a-f]{64}", stored) and issued.token not in item.pk
    resolved = links.link_resolve(token=issued.token)
    assert (resolved.guarantor_id, resolved.group_id, resolved.purpose) == (f.guarantor_id, gid, "pay")
    links.link_resolve(token=issued.token)  # GET-safe: resolving twice consumes nothing


def test_lifetimes_per_kind_and_group_override_and_expiry_checked_on_read():
    c = Clock()
    f, gid = _setup(link_lifetimes={"office_qr": 10})
    office = links.link_issue(clinic_id=f.clinic_id, guarantor_id=f.guarantor_id, group_id=gid,
                              kind=LinkKind.OFFICE_QR)
    email = links.link_issue(clinic_id=f.clinic_id, guarantor_id=f.guarantor_id, group_id=gid, kind=LinkKind.EMAIL)
    qr = links.link_issue(clinic_id=f.clinic_id, guarantor_id=f.guarantor_id, group_id=gid,
                          kind=LinkKind.STATEMENT_QR)
    assert office.expires_at - c.at == timedelta(minutes=10)
    assert email.expires_at - c.at == timedelta(days=60)
    assert qr.expires_at - c.at == timedelta(days=365)
    c.move(minutes=9, seconds=59)
    links.link_resolve(token=office.token)
    c.move(seconds=2)  # the item is still stored (TTL has not run): expiry is ours to enforce
    with pytest.raises(LinkInvalid):
        links.link_resolve(token=office.token)
    links.link_resolve(token=email.token)


def test_revoked_tampered_unknown_and_foreign_links_are_all_the_same_refusal():
    f, gid = _setup()
    a = links.link_issue(clinic_id=f.clinic_id, guarantor_id=f.guarantor_id, group_id=gid, kind=LinkKind.TEXT)
    b = links.link_issue(clinic_id=f.clinic_id, guarantor_id=f.guarantor_id, group_id=gid, kind=LinkKind.TEXT,
                         supersede=True)
    with pytest.raises(LinkInvalid):
        links.link_resolve(token=a.token)  # superseded
    links.link_resolve(token=b.token)
    assert links.links_revoke(clinic_id=f.clinic_id, guarantor_id=f.guarantor_id) == 1
    other = factories.family()
    bad = [b.token, b.token[:-1] + ("A" if b.token[-1] != "A" else "B"), "nonsense", "", "x.y",
           f"{other.clinic_id}.{b.token.split('.', 1)[1]}", f"c#x.{secrets.token_urlsafe(32)}"]
    bad += [f"{f.clinic_id}.{secrets.token_urlsafe(32)}" for _ in range(200)]
    for token in bad:
        with pytest.raises(LinkInvalid) as err:
            links.link_resolve(token=token)
        assert str(err.value) == "link not valid"


def test_a_link_for_an_unknown_guarantor_is_not_issued():
    f, gid = _setup()
    with pytest.raises(UnknownGuarantor):
        links.link_issue(clinic_id=f.clinic_id, guarantor_id="g_nobody", group_id=gid, kind=LinkKind.EMAIL)


def test_sessions_end_on_idle_and_absolute_limits_and_log_pages_without_rewriting(request_log):
    c = Clock()
    f, gid = _setup()
    cookie = links.session_start(clinic_id=f.clinic_id, guarantor_id=f.guarantor_id, group_id=gid,
                                 method="quickpay", origin="email", first_page="quickpay")
    request_log.reset()
    session = links.session_resolve(cookie=cookie, page="quickpay")
    assert session.guarantor_id == f.guarantor_id and session.pages == ("quickpay",)
    assert dict(request_log.operations) == {"GetItem": 1}  # a repeat view writes nothing
    c.move(minutes=14)
    assert links.session_resolve(cookie=cookie, page="receipt").pages == ("quickpay", "receipt")
    c.move(minutes=15, seconds=1)
    with pytest.raises(LinkInvalid):
        links.session_resolve(cookie=cookie)  # 15 minutes idle
    full = links.session_start(clinic_id=f.clinic_id, guarantor_id=f.guarantor_id, group_id=gid,
                               method="code", origin="website")
    for _ in range(24):
        c.move(minutes=29)
        links.session_resolve(cookie=full)
    c.move(minutes=29)
    with pytest.raises(LinkInvalid):
        links.session_resolve(cookie=full)  # 12 hours absolute
    other = links.session_start(clinic_id=f.clinic_id, guarantor_id=f.guarantor_id, group_id=gid,
                                method="code", origin="website")
    links.session_end(cookie=other)
    links.session_end(cookie=other)
    with pytest.raises(LinkInvalid):
        links.session_resolve(cookie=other)


def test_a_session_read_shows_what_was_stored_as_a_view_that_writes_does(request_log):
    Clock()
    f, gid = _setup()
    sibling = accounts.guarantor_create(clinic_id=f.clinic_id, first_name="Tim", last_name="Doe")
    cookie = links.session_start(clinic_id=f.clinic_id, guarantor_id=f.guarantor_id, group_id=gid, method="code",
                                 origin="website", purpose="statements", guarantor_ids=[sibling], language="es",
                                 first_page="home")
    request_log.reset()
    written = links.session_resolve(cookie=cookie, page="receipts")  # a new page: logged, the view as stored
    assert request_log.operations["UpdateItem"] == 1
    request_log.reset()
    read = links.session_resolve(cookie=cookie, page="receipts")
    assert dict(request_log.operations) == {"GetItem": 1}
    assert written == read == links.Session(f.clinic_id, f.guarantor_id, frozenset({f.guarantor_id, sibling}), gid,
                                            "code", "website", "statements", "es", ("home", "receipts"))
    quick = links.session_start(clinic_id=f.clinic_id, guarantor_id=f.guarantor_id, group_id=gid,
                                method="quickpay", origin="email")
    assert links.session_resolve(cookie=quick) == links.Session(
        f.clinic_id, f.guarantor_id, frozenset({f.guarantor_id}), gid, "quickpay", "email", None, None, ())


def _guarantor(clinic_id: str, first: str, last: str, email: str, mobile: str, preferred: str | None = None) -> str:
    return accounts.guarantor_create(clinic_id=clinic_id, first_name=first, last_name=last, email=email,
                                     mobile=mobile, preferred_name=preferred)


def test_code_request_matches_name_and_contact_on_file_only():
    Clock()
    cid = factories.clinic()
    gid = tenants.group_create(clinic_id=cid, name="G")
    mom = _guarantor(cid, "José", "Núñez", "fam@example.com", "(555) 555-0199", preferred="Pepe")
    kid_g = _guarantor(cid, "Jose", "Nunez", "fam@example.com", "+1 555 555 0100")
    ok = links.code_request(clinic_id=cid, group_id=gid, first_name="PEPE", last_name="nuñez",
                            contact="FAM@example.com", address_hash="a1")
    assert ok.send is not None and ok.send[:2] == ("email", "fam@example.com")
    assert links.code_verify(clinic_id=cid, request_id=ok.request_id, code=ok.send[2]) == {mom}
    both = links.code_request(clinic_id=cid, group_id=gid, first_name="jose", last_name="NUNEZ",
                              contact="fam@example.com", address_hash="a1")
    assert both.send is not None
    # a family sharing one email: both accounts, for the account switcher
    assert links.code_verify(clinic_id=cid, request_id=both.request_id, code=both.send[2]) == {mom, kid_g}
    sms = links.code_request(clinic_id=cid, group_id=gid, first_name="José", last_name="Núñez",
                             contact="555-555-0199", address_hash="a1")
    assert sms.send is not None and sms.send[:2] == ("sms", "+15555550199")
    for first, contact in [("Maria", "fam@example.com"), ("Jose", "other@example.com")]:
        miss = links.code_request(clinic_id=cid, group_id=gid, first_name=first, last_name="Nunez",
                                  contact=contact, address_hash="a1")
        assert miss.send is None and miss.request_id.startswith("req_")
        with pytest.raises(CodeRefused):
            links.code_verify(clinic_id=cid, request_id=miss.request_id, code="123456")
    with pytest.raises(InvalidInput):
        links.code_request(clinic_id=cid, group_id=gid, first_name="a", last_name="b", contact="12",
                           address_hash="a1")


def _request(cid: str, gid: str, address: str = "a") -> links.CodeRequest:
    r = links.code_request(clinic_id=cid, group_id=gid, first_name="Ann", last_name="Lee",
                           contact="ann@example.com", address_hash=address)
    assert r.send is not None
    return r


def test_code_is_single_use_expires_and_dies_after_five_wrong_tries():
    c = Clock()
    cid = factories.clinic()
    gid = tenants.group_create(clinic_id=cid, name="G")
    _guarantor(cid, "Ann", "Lee", "ann@example.com", "5555550111")
    r = _request(cid, gid)
    assert r.send is not None
    links.code_verify(clinic_id=cid, request_id=r.request_id, code=r.send[2])
    with pytest.raises(CodeRefused):
        links.code_verify(clinic_id=cid, request_id=r.request_id, code=r.send[2])  # reuse
    r = _request(cid, gid)
    assert r.send is not None
    wrong = "000000" if r.send[2] != "000000" else "111111"
    for _ in range(5):
        with pytest.raises(CodeRefused):
            links.code_verify(clinic_id=cid, request_id=r.request_id, code=wrong)
    with pytest.raises(CodeRefused):
        links.code_verify(clinic_id=cid, request_id=r.request_id, code=r.send[2])  # 6th try, right code
    c.move(minutes=16)
    r = _request(cid, gid)
    assert r.send is not None
    c.move(minutes=10, seconds=1)
    with pytest.raises(CodeRefused, match="code invalid or expired"):
        links.code_verify(clinic_id=cid, request_id=r.request_id, code=r.send[2])


def test_a_newer_code_retires_the_older_one():
    Clock()
    cid = factories.clinic()
    gid = tenants.group_create(clinic_id=cid, name="G")
    _guarantor(cid, "Ann", "Lee", "ann@example.com", "5555550111")
    first, second = _request(cid, gid), _request(cid, gid)
    assert first.send is not None and second.send is not None
    with pytest.raises(CodeRefused):
        links.code_verify(clinic_id=cid, request_id=first.request_id, code=first.send[2])
    links.code_verify(clinic_id=cid, request_id=second.request_id, code=second.send[2])


def test_send_caps_per_destination_whatever_the_source_address_and_per_address():
    c = Clock()
    cid = factories.clinic()
    gid = tenants.group_create(clinic_id=cid, name="G")
    for i in range(3):
        links.code_request(clinic_id=cid, group_id=gid, first_name="No", last_name="Body",
                           contact="victim@example.com", address_hash=f"ip{i}")
    with pytest.raises(TooManyRequests):  # the 4th in 15 minutes, from yet another address
        links.code_request(clinic_id=cid, group_id=gid, first_name="No", last_name="Body",
                           contact="victim@example.com", address_hash="ip9")
    c.move(minutes=16)
    links.code_request(clinic_id=cid, group_id=gid, first_name="No", last_name="Body",
                       contact="victim@example.com", address_hash="ip10")
    for i in range(20):
        try:
            links.code_request(clinic_id=cid, group_id=gid, first_name="No", last_name="Body",
                               contact=f"n{i}@example.com", address_hash="one-ip")
        except TooManyRequests:
            pytest.fail(f"address cap hit early at {i}")
    with pytest.raises(TooManyRequests):
        links.code_request(clinic_id=cid, group_id=gid, first_name="No", last_name="Body",
                           contact="n99@example.com", address_hash="one-ip")


def test_fifty_concurrent_right_answers_sign_in_once_and_wrong_guesses_stay_capped():
    Clock()
    cid = factories.clinic()
    gid = tenants.group_create(clinic_id=cid, name="G")
    _guarantor(cid, "Ann", "Lee", "ann@example.com", "5555550111")
    r = _request(cid, gid)
    assert r.send is not None

    def attempt(code: str) -> bool:
        try:
            links.code_verify(clinic_id=cid, request_id=r.request_id, code=code)
            return True
        except CodeRefused:
            return False

    with ThreadPoolExecutor(max_workers=25) as pool:
        assert sum(pool.map(attempt, [r.send[2]] * 50)) == 1
    r2 = _request(cid, gid, address="b")
    assert r2.send is not None
    guesses = [*[f"{n:06d}" for n in range(20) if f"{n:06d}" != r2.send[2]][:19], r2.send[2]]
    with ThreadPoolExecutor(max_workers=20) as pool:
        results = list(pool.map(attempt_factory(cid, r2.request_id), guesses))
    assert sum(results) <= 1
    from chalicelib.store.models_links import CodeItem
    with clinic_scope(cid):
        assert CodeItem.get(keys.code_pk(cid, r2.request_id), keys.SINGLE).attempts <= 5


def attempt_factory(cid: str, request_id: str):
    def attempt(code: str) -> bool:
        try:
            links.code_verify(clinic_id=cid, request_id=request_id, code=code)
            return True
        except CodeRefused:
            return False
    return attempt


# --- many links at once (LinkIssuer) -------------------------------------------------------------


def test_issuer_reads_each_group_once_and_its_links_are_link_issues_links(request_log):
    c = Clock()
    f, gid = _setup(link_lifetimes={"email_text": 90})
    other = tenants.group_create(clinic_id=f.clinic_id, name="Other")
    issuer = links.LinkIssuer(f.clinic_id)
    request_log.reset()
    prepared = [issuer.prepare(guarantor_id=f.guarantor_id, group_id=g, kind=LinkKind.EMAIL, statement_id="st_1")
                for g in (gid, other, gid, other, gid)]
    assert request_log.operations == {"GetItem": 2}  # one read per group, no write yet
    assert len({p.link.token for p in prepared}) == 5
    with pytest.raises(LinkInvalid):  # nothing stored until the caller's transaction commits
        links.link_resolve(token=prepared[0].link.token)
    tx = Tx()
    for p in prepared:
        links.LinkIssuer.add_to(tx, p)
    request_log.reset()
    tx.commit()
    assert request_log.operations == {"TransactWriteItems": 1}
    # The same link as link_issue's: hashed, the group's lifetime per kind, its statement, revocable.
    direct = links.link_issue(clinic_id=f.clinic_id, guarantor_id=f.guarantor_id, group_id=gid,
                              kind=LinkKind.EMAIL, statement_id="st_1")
    assert prepared[0].link.expires_at - c.at == direct.expires_at - c.at == timedelta(minutes=90)
    assert prepared[1].link.expires_at - c.at == timedelta(days=60)  # the other group: the default
    resolved = links.link_resolve(token=prepared[0].link.token)
    assert (resolved.guarantor_id, resolved.group_id, resolved.kind, resolved.statement_id) == \
        (f.guarantor_id, gid, LinkKind.EMAIL, "st_1")
    with clinic_scope(f.clinic_id):
        stored = {it.pk.rsplit("#", 1)[1] for it in
                  LinkItem.gsi1.query(keys.guarantor_links_gsi1pk(f.clinic_id, f.guarantor_id))}
    assert len(stored) == 6 and all(p.link.token not in "".join(stored) for p in prepared)
    assert links.links_revoke(clinic_id=f.clinic_id, guarantor_id=f.guarantor_id) == 6
    for p in prepared:
        with pytest.raises(LinkInvalid):
            links.link_resolve(token=p.link.token)


def test_issuer_takes_groups_already_read_and_refuses_bad_input_like_link_issue(request_log):
    f, gid = _setup(link_lifetimes={"statement_qr": 30})
    group = tenant_selectors.group_get(clinic_id=f.clinic_id, group_id=gid)
    issuer = links.LinkIssuer(f.clinic_id, [group])
    request_log.reset()
    p = issuer.prepare(guarantor_id=f.guarantor_id, group_id=gid, kind=LinkKind.STATEMENT_URL)
    assert request_log.requests == 0
    assert p.link.expires_at - p.item.created_at == timedelta(minutes=30)
    with pytest.raises(InvalidInput):
        issuer.prepare(guarantor_id=f.guarantor_id, group_id=gid, kind=LinkKind.EMAIL, purpose="nope")
    with pytest.raises(NotFound):
        issuer.prepare(guarantor_id=f.guarantor_id, group_id="grp_missing", kind=LinkKind.EMAIL)
