"""SERVERLESS-PERF-REL.md R17, SECURITY.md §0 item 5: no secret and no PHI in logs.

Representative handlers run with the application's loggers captured at DEBUG and every
other logger at INFO (the most a deployed function emits; botocore's DEBUG wire log prints
request bodies and must never be turned on in production): sign-in with a one-time code
(request and check), a QuickPay card payment through the sandbox processor (with its webhook),
a CSV roster import, and a notification sent by the SQS worker. Every log record, its message
and every attribute (``extra=`` fields included, which a JSON formatter in Lambda would print),
is searched for the guarantor's email, phone and names, the card number and processor token,
the payment-link and session tokens, the code, and secret markers.
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Any

import pytest
from chalice.test import Client

from chalicelib.accounts import services as accounts
from chalicelib.core import config
from chalicelib.links import services as links
from chalicelib.tenants import services as tenants
from tests import factories
from tests import payments_support as ps

pytestmark = pytest.mark.usefixtures("dynamodb_endpoint")
FORM = {"Content-Type": "application/x-www-form-urlencoded"}
EMAIL, PHONE, FIRST, LAST = "zelda.quixote@example.com", "+16125550123", "Zelda", "Quixotic"
CARD = "4242424242424242"
SECRET_MARKERS = ("sk_live_", "sk_test_", "rk_live_", "whsec_", "frontdesk-local-development-pepper",
                  "sandbox-local-webhook-secret")


def _text(record: logging.LogRecord) -> str:
    attrs = {k: v for k, v in vars(record).items() if k not in ("msg", "args")}
    return record.getMessage() + " " + json.dumps(attrs, default=str)


def _find(pattern: str, text: str) -> str:
    match = re.search(pattern, text)
    assert match is not None, pattern
    return match.group(1)


def _body(response: Any) -> str:
    return response.body.decode() if isinstance(response.body, bytes) else response.body


@pytest.fixture
def captured(caplog, tmp_path, monkeypatch):
    monkeypatch.setenv("FRONTDESK_OUTBOX_DIR", str(tmp_path / "outbox"))
    config.reset()
    caplog.set_level(logging.INFO)  # libraries at INFO: botocore's DEBUG wire log prints request bodies
    for ours in ("chalicelib", "frontdesk", "app"):
        caplog.set_level(logging.DEBUG, logger=ours)
    for _ in ps.fresh_sandbox():
        yield caplog
    config.reset()


def test_r17_no_phi_or_secret_in_logs_of_sign_in_payment_import_and_notification(captured, tmp_path):
    from app import app
    from chalicelib.imports import services as imports
    from chalicelib.imports.files import Source
    from chalicelib.notify import selectors as notify_selectors
    from chalicelib.notify import services as notify

    clinic_id = tenants.clinic_create(name="Riverside", time_zone="America/Chicago", phone="(555) 555-0100")
    f = factories.family(clinic_id, last_name=LAST)
    gid = tenants.group_create(clinic_id=clinic_id, name="Riverside Family Medicine", settings={})
    factories.patient_owes(f, 4_200)
    accounts.statement_create(clinic_id=clinic_id, guarantor_id=f.guarantor_id, statement_date="2026-11-01",
                              due_date="2026-11-30")
    guarantor = accounts.guarantor_create(clinic_id=clinic_id, first_name=FIRST, last_name=LAST, email=EMAIL)
    secrets: list[str] = [EMAIL, PHONE, PHONE[2:], FIRST, LAST, CARD]
    with Client(app) as client:
        # Sign-in: request a code by email, then check it.
        signin = client.http.get(f"/signin?clinic={clinic_id}&group={gid}")  # the login-CSRF cookie (R46)
        login = {**FORM, "cookie": signin.headers["Set-Cookie"][0].split(";")[0]}
        csrf = _find(r'name="csrf" value="([^"]+)"', _body(signin))
        form = f"csrf={csrf}&clinic={clinic_id}&group={gid}&first_name={FIRST}&last_name={LAST}&contact={EMAIL}"
        sent = client.http.post("/signin", headers=login, body=form.replace("@", "%40").encode())
        assert sent.status_code == 200
        request_id = _find(r'name="request" value="([^"]+)"', _body(sent))
        [row] = notify_selectors.console_outbox_read(clinic_id=clinic_id, limit=1)
        code = _find(r"\b(\d{6})\b", str(row["text"]))
        ok = client.http.post("/signin/code", headers=login,
                              body=f"csrf={csrf}&clinic={clinic_id}&group={gid}&request={request_id}&code={code}".encode())
        assert ok.status_code == 303
        secrets += [code, ok.headers["Set-Cookie"][0].split(";")[0].split("=", 1)[1]]

        # QuickPay through a payment link, the sandbox card page and its webhook.
        link = links.link_issue(clinic_id=clinic_id, guarantor_id=f.guarantor_id, group_id=gid,
                                kind=links.LinkKind.EMAIL)
        token = link.url.rsplit("/", 1)[1]
        secrets.append(token)
        assert client.http.get(f"/l/{token}").status_code in (302, 303)
        cookie = links.session_start(clinic_id=clinic_id, guarantor_id=f.guarantor_id, group_id=gid,
                                     method="quickpay", origin="email_link")
        secrets.append(cookie)
        headers = {"cookie": f"fd_session={cookie}"}
        page = _body(client.http.get("/pay", headers=headers))
        from urllib.parse import urlencode

        pay = urlencode({"attempt_key": _find(r'name="attempt_key" value="([^"]+)"', page),
                         "csrf": _find(r'name="csrf" value="([^"]+)"', page), "method": "card",
                         "choice": "amount_due"}).encode()
        start = client.http.post("/pay", headers={**headers, **FORM}, body=pay)
        assert start.status_code == 303, _body(start)[-1500:]
        location = start.headers["Location"]
        hosted = "/" + location.split("://", 1)[1].split("/", 1)[1] if "://" in location else location
        done = client.http.post(hosted, headers=FORM, body=f"card_number={CARD}&expiry=12%2F39&cvc=123".encode())
        assert done.status_code in (302, 303)
        ps.deliver_webhooks(client)
        secrets += [t for t in re.findall(r"tok_[A-Za-z0-9_]+", json.dumps(list(ps.sandbox().outbox))) if len(t) > 8]

        # A notification sent by the SQS worker.
        queued = notify.message_queue(clinic_id=clinic_id, guarantor_id=guarantor, kind="on_demand",
                                      channel="email", logical_key="r17")
        records = [{"messageId": "m-1", "receiptHandle": "h", "body": json.dumps(queued.ref.body()),
                    "attributes": {}, "messageAttributes": {}, "md5OfBody": "", "eventSource": "aws:sqs",
                    "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:frontdesk-notify",
                    "awsRegion": "us-east-1"}]
        assert client.lambda_.invoke("notify_worker", {"Records": records}).payload == {"batchItemFailures": []}

    # A CSV roster import with names, dates of birth, email and mobile.
    roster = tmp_path / "roster.csv"
    roster.write_text("guarantor_id,guarantor_first_name,guarantor_last_name,guarantor_date_of_birth,email,mobile\n"
                      f"R17-1,{FIRST},{LAST},1961-07-04,{EMAIL},{PHONE}\n")
    result = imports.import_file(clinic_id=clinic_id, source=Source(path=str(roster), name="roster.csv"))
    assert result.status == "imported"
    secrets.append("1961-07-04")

    logged = [_text(r) for r in captured.records]
    assert len(logged) > 0
    for record in logged:
        lowered = record.lower()
        for value in secrets:
            assert value.lower() not in lowered, (value, record[:300])
        for marker in SECRET_MARKERS:
            assert marker not in record, (marker, record[:300])


def test_the_chalice_config_holds_no_secret():
    """R17: 0 secrets in Chalice's environment variables (the template: tests/test_infra.py)."""
    text = (Path(__file__).resolve().parent.parent / ".chalice" / "config.json").read_text()
    assert not any(marker in text for marker in SECRET_MARKERS)
    env = {k for stage in json.loads(text)["stages"].values() for k in stage.get("environment_variables", {})}
    env |= set(json.loads(text).get("environment_variables", {}))
    assert not any(word in name for name in env for word in ("SECRET", "PEPPER", "KEY", "PASSWORD"))
