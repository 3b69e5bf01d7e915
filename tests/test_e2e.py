"""End to end (issue #8): the demo pipeline on a fresh DynamoDB Local, then a patient pays.

``python -m chalicelib.cli demo --no-serve --json`` runs as a user runs it (generated files, or
``--data ../shared/data``), against a DynamoDB Local of this test's own; then ``chalice local``
serves the portal on the same data and real Chromium opens the first printed pay link, checks
the amount due, pays with the sandbox success card and reads the receipt. Afterwards: the
ledger verifies (the CLI), the guarantor's balance dropped by the payment, the day's online
reference batch holds the receipt, and the guarantor's pending reminders are cancelled.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from chalicelib import dynamodb_local
from chalicelib.core import config
from chalicelib.core.money import format_cents
from chalicelib.notify import selectors as notify_selectors
from chalicelib.payments import selectors as payment_selectors
from chalicelib.store import db
from tests.browser import serve_app

ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = (ROOT.parent / "shared" / "data").resolve()  # the demo reports resolved paths
TABLE = "frontdesk"


def _cli(env: dict[str, str], *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "chalicelib.cli", *args], cwd=ROOT, env=env, text=True,
                          capture_output=True, timeout=timeout, check=False)


@contextmanager
def bound_to(endpoint: str) -> Iterator[None]:
    """This process's store pointed at the demo's DynamoDB Local and table, then back."""
    saved = {k: os.environ.get(k) for k in ("AWS_ENDPOINT_URL_DYNAMODB", "FRONTDESK_TABLE")}
    os.environ.update(AWS_ENDPOINT_URL_DYNAMODB=endpoint, FRONTDESK_TABLE=TABLE)
    config.reset()
    db.bind()
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        config.reset()
        db.bind()


@pytest.mark.parametrize("source", ["generated", "shared-data"])
def test_demo_pipeline_then_a_patient_pays_from_a_printed_link(browser, tmp_path, source):
    if source == "shared-data" and not SHARED_DATA.is_dir():
        pytest.skip(f"{SHARED_DATA} is not here")
    port = dynamodb_local.free_port()
    base = f"http://127.0.0.1:{port}"
    with dynamodb_local.running() as endpoint:
        env = dict(os.environ, AWS_ENDPOINT_URL_DYNAMODB=endpoint, FRONTDESK_TABLE=TABLE, FRONTDESK_PORTAL_URL=base,
                   FRONTDESK_OUTBOX_DIR=str(tmp_path / "outbox"), FRONTDESK_STATEMENTS_DIR=str(tmp_path / "pdf"),
                   FRONTDESK_DDB_READ_TIMEOUT="10", PYTHONPATH=str(ROOT))
        args = ["--data", str(SHARED_DATA)] if source == "shared-data" else ["--guarantors", "24"]
        done = _cli(env, "demo", "--no-serve", "--json", "--port", str(port), "--out", str(tmp_path), *args)
        assert done.returncode == 0, done.stderr[-3000:]
        demo: dict[str, Any] = json.loads(done.stdout)
        clinic_id = demo["clinic_id"]
        assert demo["ledger_ok"] and demo["pay_links"] and demo["guarantors_billed"] > 0
        if source == "generated":
            assert demo["files_imported"] == 3 and demo["files_rejected"] == 0
            assert demo["messages_sent"] + demo["messages"].get("queued", 0) > demo["guarantors_billed"]
        else:  # every file the manifest marks reject is reported rejected; the rest went on
            rejects = {line.split(",")[0] for line in (SHARED_DATA / "manifest.csv").read_text().splitlines()
                       if line.split(",")[4:5] == ["reject"]}
            rejected = {str(Path(f["path"]).relative_to(SHARED_DATA)) for f in demo["files"]
                        if f["status"] == "rejected"}
            assert rejects <= rejected and demo["files_imported"] >= len(demo["files"]) - len(rejected)
        first = demo["pay_link_guarantors"][0]
        gid, due = first["guarantor_id"], first["amount_due_cents"]
        assert due > 0

        with bound_to(endpoint):
            pending = [m for m in notify_selectors.outbox_list(clinic_id=clinic_id, guarantor_id=gid)
                       if m.kind == "reminder" and m.status == "queued"]
        if source == "generated":
            assert pending, "the billed guarantor has reminders planned"

        with serve_app(endpoint, port=port, env={"FRONTDESK_TABLE": TABLE,
                                                   "FRONTDESK_OUTBOX_DIR": env["FRONTDESK_OUTBOX_DIR"],
                                                   "FRONTDESK_STATEMENTS_DIR": env["FRONTDESK_STATEMENTS_DIR"]}):
            context = browser.new_context(viewport={"width": 390, "height": 844})
            page = context.new_page()
            page.goto(demo["pay_links"][0])
            assert page.url == f"{base}/pay"
            assert format_cents(due) in page.inner_text("main")
            if page.evaluate("document.documentElement.lang") != "en":  # the guarantor's language
                page.get_by_role("link", name="English").click()
                expect(page.locator("html")).to_have_attribute("lang", "en")  # the new page, not the URL
            page.get_by_role("button", name="Continue to payment").click()
            page.wait_for_url(re.compile(r".*/sandbox-processor/pay/.*"))
            page.get_by_label("Card number").fill("4242 4242 4242 4242")
            page.get_by_label("Expiry (MM/YY)").fill("12/39")
            page.get_by_label("Security code").fill("123")
            page.get_by_role("button", name=re.compile("Pay")).click()
            page.wait_for_url(re.compile(r".*/pay/done\?.*"), timeout=60_000)
            expect(page.get_by_role("heading", name="Payment received")).to_be_visible()
            assert format_cents(due) in page.inner_text("main")
            context.close()

        verified = _cli(env, "ledger-verify", "--json", "--clinic", clinic_id)
        assert verified.returncode == 0 and json.loads(verified.stdout)["ok"], verified.stdout[-2000:]
        rows = json.loads(_cli(env, "guarantors", "--json", "--clinic", clinic_id).stdout)
        after = next(r for r in rows if r["guarantor_id"] == gid)
        assert after["current_balance_cents"] == first["current_balance_cents"] - due
        assert after["amount_due_cents"] == 0

        with bound_to(endpoint):
            receipts = payment_selectors.receipts_list(clinic_id=clinic_id, guarantor_id=gid)
            assert [r.amount_cents for r in receipts] == [due]
            online = [b for b in payment_selectors.batches_list(clinic_id=clinic_id) if b.batch_kind == "online"]
            members = {r.receipt_id for b in online
                       for r in payment_selectors.batch_receipts(clinic_id=clinic_id, batch_id=b.batch_id)}
            assert receipts[0].receipt_id in members
            reminders = {m.message_id: m.status for m in notify_selectors.outbox_list(clinic_id=clinic_id,
                                                                                      guarantor_id=gid)
                         if m.kind == "reminder"}
        assert all(reminders[m.message_id] == "cancelled" for m in pending)
        assert "queued" not in reminders.values()
