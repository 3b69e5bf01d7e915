"""Page rendering and the page read, made cheap without changing a byte (SERVERLESS-PERF-REL.md B1).

- Literal messages are translated when a template is compiled (``pages.PretranslatedEnvironment``):
  every page in English and Spanish must be the HTML jinja2.ext.i18n's run-time gettext makes.
- The page read (``accounts.selectors.guarantor_page``) deserialises only what a page shows: it
  must equal what the full PynamoDB models say, ask again for keys DynamoDB left unprocessed,
  and refuse a guarantor or group that is not there.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Any

import pytest
from chalice.test import Client
from jinja2 import DictLoader, Environment, nodes

from chalicelib.accounts import selectors as account_selectors
from chalicelib.core.errors import UnknownGuarantor
from chalicelib.core.money import format_cents
from chalicelib.links import services as links
from chalicelib.store import db, keys
from chalicelib.store.models import BalanceItem, ClinicItem, GroupItem, GuarantorItem
from chalicelib.tenants import services as tenants
from chalicelib.tenants.groups import settings_load
from chalicelib.web import i18n, pages
from tests import factories

FORM = {"Content-Type": "application/x-www-form-urlencoded"}


class _Catalog:
    """A gettext catalog for the synthetic templates: every message upper-cased, some with
    characters HTML escaping would change."""

    def gettext(self, message: str) -> str:
        special = {"Tom's <b>": "TOM'S <B> & CO", "50%% off": "50%% OFF"}
        parts = re.split(r"(%\([a-z]+\)[sd])", message)  # placeholders kept as they are
        return special.get(message) or "".join(p if i % 2 else p.upper() for i, p in enumerate(parts))

    def ngettext(self, singular: str, plural: str, n: int) -> str:
        return self.gettext(singular if n == 1 else plural)


def _runtime_env(translations: Any, **options: Any) -> Environment:
    """The reference: jinja2.ext.i18n translating at run time (the environment before B1)."""
    env = Environment(**options)
    env.install_gettext_translations(translations, newstyle=True)  # type: ignore[attr-defined]
    env.filters["money"] = format_cents
    return env


SYNTHETIC = {
    "t.html": (
        '<p title="{{ _("Tom\'s <b>") }}">{{ _("Tom\'s <b>") }}</p>\n'
        '{{ _("Hello, %(name)s", name=user) }} {{ _("50%% off") }} {{ _("%(a)s and %(b)s", a=user, b=2) }}\n'
        '{% set label = _("Pay") %}{{ label }}|{{ label|length }}|{{ _("Pay")|lower }}\n'
        '{{ _(dynamic) }} {{ gettext("Home") }} {% trans %}Plain {{ user }}{% endtrans %}\n'
        '{{ ngettext("%(num)d visit", "%(num)d visits", count) }} {{ [_("a"), _("b")]|join(",") }}\n'
    ),
    "bad.html": '{{ _("100% sure") }}',
}


@pytest.mark.parametrize("autoescape", [True, False])
def test_messages_translated_at_compile_time_render_as_run_time_gettext(autoescape):
    options = {"loader": DictLoader(SYNTHETIC), "autoescape": autoescape, "extensions": ["jinja2.ext.i18n"]}
    catalog = _Catalog()
    reference = _runtime_env(catalog, **options)
    env = pages.PretranslatedEnvironment(catalog, **options)
    env.install_gettext_translations(catalog, newstyle=True)  # type: ignore[attr-defined]
    context = {"user": "<script>alert(1)</script>", "dynamic": "Receipts", "count": 3}
    html = env.get_template("t.html").render(**context)
    assert html == reference.get_template("t.html").render(**context)
    assert "TOM'S <B> & CO" in html and "50% OFF" in html and "RECEIPTS" in html
    assert ("&lt;script&gt;" in html) == autoescape  # values formatted in are still escaped
    # A message whose formatting fails at run time still fails at run time, with the same error.
    with pytest.raises(ValueError):
        reference.get_template("bad.html").render()
    with pytest.raises(ValueError):
        env.get_template("bad.html").render()


def _calls(tree: nodes.Template, name: str) -> list[nodes.Call]:
    return [c for c in tree.find_all(nodes.Call) if isinstance(c.node, nodes.Name) and c.node.name == name]


@pytest.mark.parametrize("name", sorted(p.name for p in pages.TEMPLATES.glob("*.html")))
def test_every_template_message_is_translated_when_compiled(name):
    """No template assigns ``_`` or ``gettext`` (the compile-time translation would be wrong),
    and no ``_()`` call is left for run time: every message in the templates is a literal."""
    env = pages.environment("es")
    source = env.loader.get_source(env, name)[0]  # type: ignore[union-attr]
    tree = env.parse(source, name)
    stored = {n.name for n in tree.find_all(nodes.Name) if n.ctx in ("store", "param")}
    assert not stored & {"_", "gettext", "ngettext"}
    assert _calls(env._translate.visit(tree), "_") == []


# --- every page, both languages, against the run-time reference --------------------------------


@pytest.fixture(scope="module")
def client(dynamodb_endpoint):
    from app import app

    with Client(app) as c:
        yield c


@pytest.fixture
def compared(monkeypatch):
    """Render every page twice, also with run-time gettext, and fail on any difference; yields
    a Counter of (template, language) rendered."""
    seen: Counter[tuple[str, str]] = Counter()
    references: dict[str, Environment] = {}
    real = pages.page_template

    class Compared:
        def __init__(self, name: str, language: str) -> None:
            self.name, self.language = name, language

        def render(self, **context: Any) -> str:
            html = real(self.name, self.language).render(**context)
            env = references.get(self.language)
            if env is None:
                env = references[self.language] = _runtime_env(i18n.translations(self.language),
                                                                **pages.environment_options())
            assert html == env.get_template(self.name).render(**context), (self.name, self.language)
            seen[(self.name, self.language)] += 1
            return html

    monkeypatch.setattr(pages, "page_template", Compared)
    yield seen


def _body(response: Any) -> str:
    return response.body.decode() if isinstance(response.body, bytes) else response.body


@pytest.mark.usefixtures("dynamodb_endpoint")
def test_every_page_in_both_languages_is_the_html_of_run_time_gettext(client, compared):
    f = factories.family(tenants.clinic_create(name="Riverside", time_zone="America/Chicago", phone="(555) 555-0100"))
    gid = tenants.group_create(clinic_id=f.clinic_id, name="Riverside & Sons",
                               settings={"footer_phone": "(555) 555-0100", "show_collections": True})
    factories.patient_owes(f, 4_200)
    from chalicelib.accounts import services as accounts

    accounts.statement_create(clinic_id=f.clinic_id, guarantor_id=f.guarantor_id, statement_date="2026-11-01",
                              due_date="2026-11-30")
    quick = links.session_start(clinic_id=f.clinic_id, guarantor_id=f.guarantor_id, group_id=gid,
                                method="quickpay", origin="email_link")
    full = links.session_start(clinic_id=f.clinic_id, guarantor_id=f.guarantor_id, group_id=gid,
                               method="code", origin="website")
    for language in ("en", "es"):
        lang = f"fd_lang={language}"
        signed_in = {"cookie": f"fd_session={full}; {lang}"}
        pay = client.http.get("/pay", headers={"cookie": f"fd_session={quick}; {lang}"})
        assert pay.status_code == 200
        csrf = re.search(r'name="csrf" value="([^"]+)"', _body(pay)).group(1)  # type: ignore[union-attr]
        bad = client.http.post("/pay", headers={**FORM, "cookie": f"fd_session={quick}; {lang}"},
                               body=f"choice=other&other_amount=4%2C2&attempt_key=k&csrf={csrf}".encode())
        assert bad.status_code == 400
        for path in ("/home", "/account", "/statements", "/receipts", "/profile"):
            assert client.http.get(path, headers=signed_in).status_code == 200
        listed = _body(client.http.get("/statements", headers=signed_in))
        sid = re.search(r"/statements/(st_\w+)", listed).group(1)  # type: ignore[union-attr]
        assert client.http.get(f"/statements/{sid}", headers=signed_in).status_code == 200
        for path in (f"/signin?clinic={f.clinic_id}&group={gid}", f"/verify?c={f.clinic_id}", "/l/not-a-link"):
            client.http.get(path, headers={"cookie": lang})
    rendered = {name for name, _ in compared}
    assert {"quickpay.html", "home.html", "account.html", "statements.html", "statement.html", "receipts.html",
            "profile.html", "signin.html", "verify.html", "invalid.html"} <= rendered
    assert all((name, "es") in compared for name in rendered)


@pytest.mark.usefixtures("dynamodb_endpoint")
def test_a_repeated_quickpay_view_is_one_get_and_one_batch_get_and_writes_nothing(client, request_log):
    """B2: a QuickPay view after the first is 2 requests, ≤ 3 read units, no write."""
    f = factories.family()
    factories.patient_owes(f, 4_200)
    gid = tenants.group_create(clinic_id=f.clinic_id, name="Main")
    cookie = links.session_start(clinic_id=f.clinic_id, guarantor_id=f.guarantor_id, group_id=gid,
                                 method="quickpay", origin="email_link", first_page="quickpay")
    assert client.http.get("/pay", headers={"cookie": f"fd_session={cookie}"}).status_code == 200
    request_log.reset()
    page = client.http.get("/pay", headers={"cookie": f"fd_session={cookie}"})
    assert page.status_code == 200 and "$42.00" in _body(page)
    assert dict(request_log.operations) == {"GetItem": 1, "BatchGetItem": 1}
    assert request_log.read_units <= 3 and request_log.write_units == 0


# --- the page read -------------------------------------------------------------------------------


def _page_from_models(clinic_id: str, guarantor_id: str, group_id: str) -> account_selectors.GuarantorPage:
    """What the full PynamoDB models say (the read before B1), for comparison."""
    cpk, gpk = keys.clinic_pk(clinic_id), keys.guarantor_pk(clinic_id, guarantor_id)
    clinic = ClinicItem.get(cpk, keys.CLINIC)
    group = GroupItem.get(cpk, keys.group_sk(group_id))
    settings = settings_load(group.settings_json)
    summary = account_selectors.guarantor_summary(clinic_id=clinic_id, guarantor_id=guarantor_id,
                                                  include_new_charges=settings.include_new_charges)
    assert isinstance(GuarantorItem.get(gpk, keys.PROFILE), GuarantorItem)
    assert isinstance(BalanceItem.get(gpk, keys.BALANCE), BalanceItem)
    return account_selectors.GuarantorPage(clinic.name, clinic.phone, account_selectors.Group(
        group.group_id, group.name, bool(group.is_default), settings), summary)


@pytest.mark.usefixtures("dynamodb_endpoint")
def test_the_page_read_is_what_the_models_say_in_one_batch_get(request_log):
    f = factories.family()
    factories.patient_owes(f, 1_234)
    from chalicelib.accounts import services as accounts

    plain = accounts.guarantor_create(clinic_id=f.clinic_id, first_name="Ann", last_name="Lee")  # no email, mobile
    gid = tenants.group_create(clinic_id=f.clinic_id, name="Main", settings={"include_new_charges": True})
    for guarantor_id in (f.guarantor_id, plain):
        request_log.reset()
        page = account_selectors.guarantor_page(clinic_id=f.clinic_id, guarantor_id=guarantor_id, group_id=gid)
        assert dict(request_log.operations) == {"BatchGetItem": 1} and request_log.read_units <= 2
        assert page == _page_from_models(f.clinic_id, guarantor_id, gid)
    assert page.guarantor.email is None and page.guarantor.preferred_name is None and page.guarantor.language == "en"


@pytest.mark.usefixtures("dynamodb_endpoint")
def test_the_page_read_asks_again_for_keys_dynamodb_left_unprocessed(request_log):
    f = factories.family()
    gid = tenants.group_create(clinic_id=f.clinic_id, name="Main")
    table = db.connection().client.meta.events
    left: list[int] = []

    def leave_two(parsed: dict[str, Any], **_: Any) -> None:
        if left:
            return
        (name, items), = parsed["Responses"].items()
        kept, unprocessed = items[:2], items[2:]
        parsed["Responses"][name] = kept
        parsed["UnprocessedKeys"] = {name: {"Keys": [{"pk": i["pk"], "sk": i["sk"]} for i in unprocessed]}}
        left.append(len(unprocessed))

    table.register("after-call.dynamodb.BatchGetItem", leave_two, unique_id="leave-two")
    try:
        request_log.reset()
        page = account_selectors.guarantor_page(clinic_id=f.clinic_id, guarantor_id=f.guarantor_id, group_id=gid)
    finally:
        table.unregister("after-call.dynamodb.BatchGetItem", unique_id="leave-two")
    assert left == [2] and dict(request_log.operations) == {"BatchGetItem": 2}
    assert page == _page_from_models(f.clinic_id, f.guarantor_id, gid)


@pytest.mark.usefixtures("dynamodb_endpoint")
def test_the_page_read_refuses_a_missing_guarantor_or_group_and_another_clinics_guarantor():
    f = factories.family()
    gid = tenants.group_create(clinic_id=f.clinic_id, name="Main")
    other = factories.family()
    for guarantor_id, group_id in ((f.guarantor_id, "g_" + "0" * 24), (other.guarantor_id, gid),
                                   ("gu_" + "0" * 24, gid)):
        with pytest.raises(UnknownGuarantor):
            account_selectors.guarantor_page(clinic_id=f.clinic_id, guarantor_id=guarantor_id, group_id=group_id)
