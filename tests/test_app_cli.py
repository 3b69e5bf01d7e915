"""The Chalice app through its test client, and the command line against DynamoDB Local."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from chalice.test import Client

from chalicelib.accounts import services as accounts
from tests import factories

ROOT = Path(__file__).resolve().parent.parent


def test_health_route():
    from app import app

    with Client(app) as client:
        response = client.http.get("/health")
    assert response.status_code == 200
    assert response.json_body == {"ok": True, "service": "frontdesk"}


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-m", "chalicelib.cli", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)


@pytest.mark.usefixtures("dynamodb_endpoint")
def test_cli_create_tables_guarantors_and_ledger_verify():
    assert _cli("create-tables").stdout.strip().endswith("already exists")
    f = factories.family(last_name="Cli")
    factories.patient_owes(f, 4_321)
    out = _cli("guarantors", "--json", "--clinic", f.clinic_id)
    assert out.returncode == 0, out.stderr
    [row] = json.loads(out.stdout)
    assert row["guarantor_id"] == f.guarantor_id
    assert (row["current_balance_cents"], row["amount_due_cents"]) == (4_321, 0)
    assert row["account_number"] == f.guarantor_id  # no practice number: our id
    text = _cli("guarantors", "--clinic", f.clinic_id).stdout  # every figure the README lists
    assert f"account {f.guarantor_id}" in text and "statement balance $0.00" in text and "unapplied $0.00" in text
    assert "collections $0.00" in text and "current balance $43.21" in text
    verify = _cli("ledger-verify", "--json", "--clinic", f.clinic_id)
    assert verify.returncode == 0
    assert json.loads(verify.stdout) == {"ok": True, "balances_checked": 1, "mismatches": []}


@pytest.mark.usefixtures("dynamodb_endpoint")
def test_cli_messages_lists_a_guarantors_notifications_with_why(tmp_path):
    """A new user could not see that a payment cancelled the guarantor's reminders."""
    from datetime import UTC, datetime

    from chalicelib.core import clock
    from chalicelib.notify import services as notify
    from tests import notify_support as ns

    with ns.console(tmp_path):
        clock.set_source(lambda: datetime(2026, 11, 30, 16, 0, tzinfo=UTC))
        cid = ns.clinic()
        p = ns.payer(cid)
        notify.message_queue(clinic_id=cid, guarantor_id=p.guarantor_id, kind="reminder", channel="email",
                             logical_key="k1", statement_id=ns.statement_id(p),
                             fields={"due_date": "2026-12-15", "when": "on"},
                             due_at=datetime(2026, 12, 15, 16, 0, tzinfo=UTC))
        notify.reminders_cancel(clinic_id=cid, guarantor_id=p.guarantor_id, reason="payment")
        clock.set_source(None)
    out = _cli("messages", "--guarantor", p.guarantor_id, "--json")
    assert out.returncode == 0, out.stderr
    [row] = json.loads(out.stdout)
    assert (row["clinic_id"], row["kind"], row["channel"], row["status"], row["reason"]) == (
        cid, "reminder", "email", "cancelled", "cancelled:payment")
    text = _cli("messages", "--guarantor", p.guarantor_id, "--clinic", cid)
    assert "reminder" in text.stdout and "cancelled (cancelled:payment)" in text.stdout and p.email not in text.stdout
    assert "no messages" in _cli("messages", "--guarantor", "g_nobody", "--clinic", cid).stdout


@pytest.mark.usefixtures("dynamodb_endpoint")
def test_cli_ledger_verify_exits_1_on_a_mismatch():
    f = factories.family()
    lid = factories.patient_owes(f, 1_000)
    accounts.statement_create(clinic_id=f.clinic_id, guarantor_id=f.guarantor_id,
                              statement_date="2026-11-01", due_date="2026-11-30")
    from chalicelib.store import keys
    from chalicelib.store.db import clinic_scope
    from chalicelib.store.models import ServiceLineItem
    with clinic_scope(f.clinic_id):
        item = ServiceLineItem.get(keys.guarantor_pk(f.clinic_id, f.guarantor_id), keys.line_sk(lid))
        item.update(actions=[ServiceLineItem.money.set({**item.money, "pat_open": 5})])
    verify = _cli("ledger-verify", "--json", "--clinic", f.clinic_id)
    assert verify.returncode == 1
    report = json.loads(verify.stdout)
    assert report["ok"] is False and report["mismatches"][0]["line_id"] == lid


def test_demo_refuses_a_data_folder_that_does_not_exist(tmp_path):
    """The pipeline itself is tested end to end in tests/test_e2e.py."""
    out = _cli("demo", "--no-serve", "--json", "--data", str(tmp_path / "missing"))
    assert out.returncode == 2
    assert "missing: not a folder" in out.stderr and out.stdout == ""


def test_demo_summary_shows_a_claim_files_charges_and_no_password(capsys):
    """An 837 carries charges, not patient responsibility ("837: 300 claims, patient
    responsibility $0.00" said nothing); and a password for a staff console that does not exist
    yet is not printed (new-user helper)."""
    from types import SimpleNamespace

    from chalicelib.cli import _demo_print

    files = [{"status": "imported", "format": "837", "path": "claims.837", "claims": 3, "charge_cents": 45_000,
              "patient_responsibility_cents": 0},
             {"status": "imported", "format": "835", "path": "era.835", "claims": 3, "charge_cents": 45_000,
              "patient_responsibility_cents": 6_000}]
    result = SimpleNamespace(files=files, clinic=SimpleNamespace(clinic_id="c_1"),
                             guarantors=3, guarantors_billed=3, statement_errors={}, ledger_ok=True,
                             balances_checked=3, messages={}, outbox="outbox.jsonl", pay_links=[],
                             largest=[{"guarantor_id": "g_1", "account_number": "A000105", "name": "John Williams",
                                       "amount_due_cents": 9_000, "current_balance_cents": 9_000}])
    _demo_print(result)
    out = capsys.readouterr().out
    assert "claims.837: 3 claims, charges $450.00" in out and "era.835: 3 claims, patient responsibility $60.00" in out
    assert "password" not in out.lower() and "Staff login" not in out
    assert "A000105" in out  # the largest amounts due by the practice's account number, not only our id
