"""Statements at the edges: profile validation, the /v1 API with clinic API keys (pay codes, PM
pushes, verification), the CLI, PDFs in S3 (moto) with presigned URLs and the PDF window, and
the SQS consumer's partial batch failures."""

from __future__ import annotations

import base64
import csv
import io
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from chalice.test import Client
from moto import mock_aws

from chalicelib.core import config
from chalicelib.core.errors import InvalidInput, NotFound
from chalicelib.jobs import statements as jobs
from chalicelib.ledger import selectors as ledger_selectors
from chalicelib.ledger.verify import ledger_verify
from chalicelib.statements import codes, profiles, storage
from chalicelib.statements import selectors as st_selectors
from chalicelib.statements import services as statements
from chalicelib.tenants import api_keys
from tests import statements_fixtures as sf
from tests.statements_fixtures import statements_env  # noqa: F401 (fixture)

ROOT = Path(__file__).resolve().parent.parent


# --- profiles (no database) ----------------------------------------------------------------------


def test_profile_validation_names_the_bad_setting():
    ok = profiles.profile_parse(sf.profile("c", "grp"))
    assert (ok.one_statement_per, ok.pay_link, ok.prints_qr, ok.prints_url) == ("guarantor", "url_and_qr", True, True)
    bad: list[tuple[dict[str, Any], str]] = [
           ({"one_statement_per": "family"}, "one_statement_per"), ({"pay_link": "qr_only"}, "pay_link"),
           ({"cycle_days": -1}, "cycle_days"), ({"group_id": None}, "group_id is required"),
           ({"colour": "red"}, "unknown settings"), ({"payment_rules": [{"action": "reset"}]}, "min_cents"),
           ({"payment_rules": [{"min_cents": 100, "action": "forgive"}]}, "action"),
           ({"billing_office": {"remit_address": {"line9": "x"}}}, "unknown settings")]
    for change, message in bad:
        with pytest.raises(InvalidInput, match=message):
            profiles.profile_parse({**sf.profile("c", "grp"), **change})
    assert profiles.profile_parse({**sf.profile("c", None), "pay_link": "none"}).group_id is None


def test_dunning_rules_reset_or_step_back_then_count_the_new_statement():
    p = profiles.profile_parse({**sf.profile("c", "g"), "payment_rules": [
        {"min_percent": 100, "action": "reset"}, {"min_cents": 2_000, "action": "decrement"}]})
    assert profiles.dunning_next(p, current=3, paid_since_cents=0, last_statement_cents=5_000) == 4
    assert profiles.dunning_next(p, current=3, paid_since_cents=2_000, last_statement_cents=5_000) == 3
    assert profiles.dunning_next(p, current=3, paid_since_cents=5_000, last_statement_cents=5_000) == 1
    assert profiles.dunning_next(p, current=0, paid_since_cents=2_500, last_statement_cents=0) == 1


def test_verification_codes_are_short_keyed_and_forgiving():
    code = codes.verification_code("c_1", "st_1")
    assert len(code) == 8 and set(code) <= set(codes.VERIFY_ALPHABET)
    assert code != codes.verification_code("c_2", "st_1") != codes.verification_code("c_1", "st_2")
    assert codes.code_normalize(f" {code[:4].lower()}-{code[4:]} ") == code
    assert codes.code_normalize("0O1I-xxxx") is None


# --- API, keys, push, pay codes ------------------------------------------------------------------


def _client():
    from app import app

    return Client(app)


@pytest.mark.usefixtures("dynamodb_endpoint", "statements_env")
def test_api_keys_guard_the_pay_codes_route_and_codes_come_with_a_manifest():
    sf.Clock()
    cid, _ = sf.clinic()
    other, _ = sf.clinic()
    f = sf.family(cid)
    sf.owes(f, 2_000)
    key = api_keys.api_key_create(clinic_id=cid).key
    other_key = api_keys.api_key_create(clinic_id=other).key
    body = json.dumps({"guarantor_ids": [f.guarantor_id, "g_nobody"]})
    with _client() as client:
        def post(auth: str | None):
            headers = {"Content-Type": "application/json"} | ({"Authorization": auth} if auth else {})
            return client.http.post("/v1/statements/pay-codes", headers=headers, body=body)

        for auth in (None, f"Basic {key}", "Bearer nope", f"Bearer {key}x"):
            assert post(auth).status_code == 401
        assert post(f"Bearer {other_key}").json_body["items"][0]["error"] == "unknown_guarantor"  # R16
        response = post(f"Bearer {key}")
    assert response.status_code == 200 and response.headers["Cache-Control"] == "no-store"
    ok, missing = response.json_body["items"]
    assert missing["error"] == "unknown_guarantor"
    assert ok["pay_url"].startswith(f"{sf.PORTAL}/l/{cid}.") and ok["qr_url"] != ok["pay_url"]
    assert ok["qr_svg"].startswith("<svg") and base64.b64decode(ok["qr_png_base64"]).startswith(b"\x89PNG")
    rows = list(csv.DictReader(io.StringIO(response.json_body["manifest_csv"])))
    assert [r["status"] for r in rows] == ["ok", "error"] and rows[0]["pay_url"] == ok["pay_url"]
    assert rows[0]["qr_png"] == f"{f.guarantor_id}.png" and "Doe" not in response.json_body["manifest_csv"]
    api_keys.api_key_revoke(clinic_id=cid, key=key)
    with pytest.raises(api_keys.ApiKeyRefused):
        api_keys.api_key_check(authorization=f"Bearer {key}")


@pytest.mark.usefixtures("dynamodb_endpoint", "statements_env")
def test_pm_push_becomes_a_snapshot_once_and_codes_by_statement_number():
    c = sf.Clock()
    cid, _ = sf.clinic()
    f = sf.family(cid, address=None)  # the PM mails it: our address book does not matter
    billed = sf.owes(f, 3_000)
    later = sf.owes(f, 700)
    key = api_keys.api_key_create(clinic_id=cid).key
    pushed = {"statement_id": "PM-1001", "guarantor_id": f.guarantor_id, "statement_date": c.today,
              "due_date": "2026-11-30", "line_ids": [billed], "statement_balance_cents": 3_000,
              "amount_due_cents": 2_900}
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {key}"}
    with _client() as client:
        first = client.http.post("/v1/statements", headers=headers, body=json.dumps({"statements": [
            pushed, {**pushed, "statement_id": "PM-1002", "guarantor_id": "g_nobody"}, {"statement_id": "x"}]}))
        again = client.http.post("/v1/statements", headers=headers, body=json.dumps({"statements": [pushed]}))
        codes = client.http.post("/v1/statements/pay-codes", headers=headers,
                                 body=json.dumps({"statement_ids": ["PM-1001", "PM-9999"]}))
    created, unknown, bad = first.json_body["results"]
    assert created["status"] == "created" and created["warnings"] == [
        "amount_due_cents 2900 differs from the ledger's 3000"]
    assert (unknown["status"], unknown["reason"]) == ("error", "unknown_guarantor")
    assert bad["status"] == "error"
    assert again.json_body["results"][0]["status"] == "exists"
    [row] = st_selectors.statement_history(clinic_id=cid, guarantor_id=f.guarantor_id)
    b = ledger_selectors.guarantor_figures(clinic_id=cid, guarantor_id=f.guarantor_id).balances
    assert (row.statement_id, row.source, row.statement_balance, b.statement_balance, b.amount_due) == (
        "PM-1001", "pm", 3_000, 3_000, 3_000)  # the unbilled 700 line is held back, not on the statement
    assert [x["line_id"] for x in row.lines] == [billed] and later not in str(row.lines)
    assert row.verification_code == created["verification_code"]
    item, missing = codes.json_body["items"]
    assert (item["statement_id"], item["guarantor_id"], missing["error"]) == ("PM-1001", f.guarantor_id,
                                                                              "unknown_statement")
    assert ledger_verify(clinic_id=cid).ok


@pytest.mark.usefixtures("dynamodb_endpoint", "statements_env")
def test_verification_code_route_answers_date_and_practice_only():
    c = sf.Clock()
    cid, _ = sf.clinic()
    f = sf.family(cid)
    sf.owes(f, 1_000)
    statements.statement_run_start(clinic_id=cid, run_date=c.today)
    [row] = st_selectors.statement_history(clinic_id=cid, guarantor_id=f.guarantor_id)
    assert row.verification_code is not None
    with _client() as client:
        good = client.http.get(f"/v1/clinics/{cid}/statements/verify/{row.verification_code.lower()}")
        wrong = client.http.get(f"/v1/clinics/{cid}/statements/verify/ABCD-EFGH")
        foreign = client.http.get(f"/v1/clinics/c_nobody/statements/verify/{row.verification_code}")
    assert good.json_body == {"genuine": True, "practice": "Sunrise Family Medicine", "statement_dates": [c.today]}
    assert wrong.json_body["genuine"] is False and foreign.json_body["genuine"] is False
    assert "Doe" not in json.dumps(good.json_body) and "1000" not in json.dumps(good.json_body)


@pytest.mark.usefixtures("dynamodb_endpoint", "statements_env")
def test_pay_codes_refuse_without_portal_url(monkeypatch):
    sf.Clock()
    cid, _ = sf.clinic()
    f = sf.family(cid)
    monkeypatch.delenv("FRONTDESK_PORTAL_URL")
    config.reset()
    with pytest.raises(InvalidInput, match="FRONTDESK_PORTAL_URL"):
        statements.statement_pay_codes(clinic_id=cid, guarantor_ids=[f.guarantor_id])


# --- S3 and the PDF window -----------------------------------------------------------------------


@pytest.mark.usefixtures("dynamodb_endpoint", "statements_env")
def test_a_finished_run_writes_one_merged_pdf_of_its_paper_statements_and_a_manifest_to_s3(monkeypatch):
    from pypdf import PdfReader

    c = sf.Clock()
    with mock_aws():
        import boto3

        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket="fd-statements")
        monkeypatch.setenv("FRONTDESK_STORAGE", "s3")
        monkeypatch.setenv("FRONTDESK_STATEMENTS_BUCKET", "fd-statements")
        config.reset()
        storage.reset()
        try:
            cid, _ = sf.clinic()
            paper = [sf.family(cid), sf.family(cid, patients=2)]
            emailed = sf.family(cid, address=None, consent={"email": True})
            for f in (*paper, emailed):
                sf.owes(f, 1_000)
            sf.owes(paper[1], 2_000, patient_id=f"{paper[1].patient_id}-1")
            run_id = statements.statement_run_start(clinic_id=cid, run_date=c.today).run_id
            pdf_key = storage.print_pdf_key(cid, run_id, 1)
            manifest_key = storage.print_manifest_key(cid, run_id)
            manifest = list(csv.DictReader(io.StringIO(s3.get_object(
                Bucket="fd-statements", Key=manifest_key)["Body"].read().decode())))
            assert sorted(r["guarantor_id"] for r in manifest) == sorted(f.guarantor_id for f in paper)
            merged = PdfReader(io.BytesIO(s3.get_object(Bucket="fd-statements", Key=pdf_key)["Body"].read()))
            assert [int(r["first_page"]) for r in manifest] == [1, 2] and len(merged.pages) == 2
            assert {r["file"] for r in manifest} == {"statements-001.pdf"}
            for row, page in zip(manifest, merged.pages, strict=True):
                one = storage.storage().get(row["pdf_key"])  # each page is that statement's own PDF
                assert page.extract_text() == PdfReader(io.BytesIO(one)).pages[0].extract_text()
                assert row["account_number"] in page.extract_text()
                assert emailed.guarantor_id not in page.extract_text()
            # Lost before the manifest was written (a crash): resuming the run writes the same files.
            s3.delete_object(Bucket="fd-statements", Key=manifest_key)
            before = s3.get_object(Bucket="fd-statements", Key=pdf_key)["ETag"]
            assert statements.statement_run_continue(clinic_id=cid, run_id=run_id).status == "done"
            again = list(csv.DictReader(io.StringIO(s3.get_object(
                Bucket="fd-statements", Key=manifest_key)["Body"].read().decode())))
            assert again == manifest and s3.get_object(Bucket="fd-statements", Key=pdf_key)["ETag"] == before
            # A bigger run's paper output comes in volumes (here of one statement each).
            monkeypatch.setattr(statements, "PRINT_VOLUME", 1)
            files = statements.statement_run_print(clinic_id=cid, run_id=run_id)
            assert files.pdf_keys == (pdf_key, storage.print_pdf_key(cid, run_id, 2)) and files.pages == 2
            volumes = list(csv.DictReader(io.StringIO(storage.storage().get(manifest_key).decode())))
            assert [(r["file"], r["first_page"]) for r in volumes] == [("statements-001.pdf", "1"),
                                                                      ("statements-002.pdf", "1")]
            assert [r["statement_id"] for r in volumes] == [r["statement_id"] for r in manifest]
            with pytest.raises(InvalidInput, match="not finished"):
                _unfinished_print(cid)
        finally:
            storage.reset()


def _unfinished_print(clinic_id: str) -> None:
    """Ask for the print files of a run still processing its pages."""
    from datetime import UTC, datetime

    from chalicelib.store import keys
    from chalicelib.store.db import clinic_scope
    from chalicelib.store.models_statements import StatementRunItem

    with clinic_scope(clinic_id):
        StatementRunItem(keys.clinic_pk(clinic_id), keys.statement_run_sk("2026-01-01"), run_id="2026-01-01",
                         run_date="2026-01-01", status="processing", created_at=datetime.now(UTC)).save()
    statements.statement_run_print(clinic_id=clinic_id, run_id="2026-01-01")


@pytest.mark.usefixtures("dynamodb_endpoint", "statements_env")
def test_pdfs_go_to_s3_and_come_back_through_a_short_presigned_url(monkeypatch):
    c = sf.Clock()
    with mock_aws():
        import boto3

        boto3.client("s3", region_name="us-east-1").create_bucket(Bucket="fd-statements")
        monkeypatch.setenv("FRONTDESK_STORAGE", "s3")
        monkeypatch.setenv("FRONTDESK_STATEMENTS_BUCKET", "fd-statements")
        config.reset()
        storage.reset()
        try:
            cid, _ = sf.clinic()
            f = sf.family(cid)
            sf.owes(f, 1_000)
            statements.statement_run_start(clinic_id=cid, run_date=c.today)
            [row] = st_selectors.statement_history(clinic_id=cid, guarantor_id=f.guarantor_id)
            pdf = statements.statement_pdf(clinic_id=cid, guarantor_id=f.guarantor_id, statement_id=row.statement_id)
            url = pdf.url or ""
            assert pdf.body is None
            assert "fd-statements" in url and "X-Amz-Expires=300" in url and f.guarantor_id not in url
            objects = boto3.client("s3", region_name="us-east-1").list_objects_v2(Bucket="fd-statements")
            [obj] = [o for o in objects["Contents"] if "/print/" not in o["Key"]]  # the run's print files aside
            assert obj["Key"] == f"{cid}/{c.today}/{row.statement_id}.pdf"
            assert storage.storage().get(obj["Key"]).startswith(b"%PDF")
            other = sf.family(cid)
            with pytest.raises(NotFound):  # another guarantor's statement id is the same miss
                statements.statement_pdf(clinic_id=cid, guarantor_id=other.guarantor_id,
                                         statement_id=row.statement_id)
            c.move(days=121)
            with pytest.raises(NotFound, match="120 days"):
                statements.statement_pdf(clinic_id=cid, guarantor_id=f.guarantor_id,
                                         statement_id=row.statement_id)
            assert not st_selectors.statement_history(clinic_id=cid, guarantor_id=f.guarantor_id)[0].pdf_available
        finally:
            storage.reset()


# --- SQS consumer --------------------------------------------------------------------------------


def _sqs_event(bodies: list[str]) -> dict:
    return {"Records": [{"messageId": f"m-{i}", "receiptHandle": f"r-{i}", "body": body, "attributes": {},
                         "messageAttributes": {}, "md5OfBody": "", "eventSource": "aws:sqs",
                         "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:frontdesk-statements",
                         "awsRegion": "us-east-1"} for i, body in enumerate(bodies)]}


@pytest.mark.usefixtures("dynamodb_endpoint", "statements_env")
def test_sqs_consumer_reports_only_the_poison_messages(monkeypatch):
    cid, families, sent, run_id = sf.fanned_out_run(monkeypatch, guarantors=4, page_size=1)
    good = [json.dumps(m) for m in sent]
    poison = ["not json", json.dumps({"clinic_id": cid, "run_id": run_id, "page": 99}),
              json.dumps({"clinic_id": cid, "run_id": run_id, "page": "1", "x": 1})]
    bodies = good[:2] + poison + good[2:] + good[:1]  # 10 messages, 3 poison, one page delivered twice
    with _client() as client:
        result = client.lambda_.invoke("statement_pages", _sqs_event(bodies))
    assert result.payload == {"batchItemFailures": [{"itemIdentifier": "m-2"}, {"itemIdentifier": "m-3"},
                                                    {"itemIdentifier": "m-4"}]}
    view = st_selectors.statement_run_get(clinic_id=cid, run_id=run_id)
    assert (view.status, view.statements_created) == ("done", 4)
    assert all(len(st_selectors.statement_history(clinic_id=cid, guarantor_id=f.guarantor_id)) == 1
               for f in families)
    assert jobs.pages_handle([("a", good[0])]) == {"batchItemFailures": []}  # a redrive changes nothing


@pytest.mark.usefixtures("dynamodb_endpoint", "statements_env")
def test_the_consumer_builds_a_finished_runs_print_files_from_its_own_message(monkeypatch):
    from chalicelib.statements import queue

    cid, families, sent, run_id = sf.fanned_out_run(monkeypatch, guarantors=2, page_size=1)
    later: list[dict[str, Any]] = []
    queue.set_sender(later.extend)  # the worker that closes the run sends the print message
    try:
        assert jobs.pages_handle([(f"m{i}", json.dumps(m)) for i, m in enumerate(sent)]) == \
            {"batchItemFailures": []}
    finally:
        queue.set_sender(None)
    assert later == [{"clinic_id": cid, "run_id": run_id, "op": "print"}]
    manifest_key = storage.print_manifest_key(cid, run_id)
    assert not storage.storage().exists(manifest_key)
    bad = json.dumps({"clinic_id": cid, "run_id": run_id, "op": "reprint"})
    assert jobs.pages_handle([("p", json.dumps(later[0])), ("q", bad)]) == \
        {"batchItemFailures": [{"itemIdentifier": "q"}]}
    rows = list(csv.DictReader(io.StringIO(storage.storage().get(manifest_key).decode())))
    assert sorted(r["guarantor_id"] for r in rows) == sorted(f.guarantor_id for f in families)
    assert storage.storage().exists(storage.print_pdf_key(cid, run_id, 1))


# --- CLI -------------------------------------------------------------------------------------------


def _cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "chalicelib.cli", *args], cwd=ROOT,
                          env={**os.environ, "PYTHONPATH": str(ROOT), **env}, capture_output=True, text=True,
                          timeout=120)


@pytest.mark.usefixtures("dynamodb_endpoint", "statements_env")
def test_cli_statements_run_codes_and_api_key(tmp_path):
    sf.Clock()  # the subprocess uses the real clock: today
    cid, _ = sf.clinic()
    fine, lost = sf.family(cid), sf.family(cid, address=None)
    sf.owes(fine, 1_234)
    sf.owes(lost, 500)
    env = {"FRONTDESK_PORTAL_URL": sf.PORTAL, "FRONTDESK_STATEMENTS_DIR": str(tmp_path / "pdfs")}
    out = _cli("statements-run", "--clinic", cid, "--json", env=env)
    assert out.returncode == 1, out.stderr  # one guarantor ended in error
    [summary] = json.loads(out.stdout)
    assert (summary["status"], summary["statements_created"]) == ("done", 1)
    assert summary["errors"] == [{"guarantor_id": lost.guarantor_id, "reason": "no_address"}]
    pdfs = list((tmp_path / "pdfs").rglob("*.pdf"))
    assert len([p for p in pdfs if p.parent.name != "print"]) == 1
    assert [p.name for p in pdfs if p.parent.name == "print"] == ["statements-001.pdf"]  # for the print vendor
    refused = _cli("statements-run", "--clinic", cid, env={"FRONTDESK_PORTAL_URL": ""})
    assert refused.returncode == 2 and "FRONTDESK_PORTAL_URL" in refused.stderr
    codes = _cli("statement-codes", "--guarantors", fine.guarantor_id, "--clinic", cid, "--out",
                 str(tmp_path / "codes"), env=env)
    assert codes.returncode == 0, codes.stderr
    assert {p.name for p in (tmp_path / "codes").iterdir()} == {
        "manifest.csv", f"{fine.guarantor_id}.png", f"{fine.guarantor_id}.svg"}
    key = _cli("api-key-create", "--clinic", cid, "--json", env=env)
    issued = json.loads(key.stdout)
    assert api_keys.api_key_check(authorization=f"Bearer {issued['key']}") == cid
