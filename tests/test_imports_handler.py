"""The two ways in besides the services: the S3 handler through ``chalice.test.Client`` (moto for
S3 only; DynamoDB stays on DynamoDB Local) and ``python -m chalicelib.cli import``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from chalice.test import Client

from chalicelib.core.errors import InvalidInput, UnknownClinic
from chalicelib.imports import generator, selectors
from chalicelib.jobs import imports as import_jobs
from chalicelib.ledger.verify import ledger_verify
from chalicelib.tenants import services as tenants

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared" / "data"
BUCKET = "frontdesk-imports"


@pytest.fixture
def s3(dynamodb_endpoint: str) -> Iterator[object]:
    import boto3
    from moto import mock_aws

    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket=BUCKET)
        import_jobs._s3 = None  # the handler creates its client on first use, inside the mock
        yield client
        import_jobs._s3 = None


def drop(s3: object, key: str, body: bytes) -> dict:
    s3.put_object(Bucket=BUCKET, Key=key, Body=body)  # type: ignore[attr-defined]
    from app import app

    with Client(app) as client:
        return client.events.generate_s3_event(bucket=BUCKET, key=key)


def invoke(event: dict) -> dict:
    from app import app

    with Client(app) as client:
        return client.lambda_.invoke("import_object_created", event).payload


def test_a_file_dropped_in_the_clinic_prefix_is_imported_once_even_when_delivered_twice(s3):
    cid = tenants.clinic_create(name="Drop Clinic", time_zone="America/New_York")
    claims, remit, totals = generator.pair(claims=10, seed=81)
    invoke(drop(s3, f"imports/{cid}/claims batch.837", claims))
    event = drop(s3, f"imports/{cid}/remit.835", remit)
    first = invoke(event)
    assert first["status"] == "imported" and first["claims"] == totals.claims
    assert first["insurance_paid_cents"] == totals.paid
    second = invoke(event)  # S3 delivers at least once (R1)
    assert second["status"] == "duplicate"
    [latest, *_] = selectors.imports_list(clinic_id=cid)
    assert latest.source == f"imports/{cid}/remit.835" and latest.status == "imported"
    assert ledger_verify(clinic_id=cid).ok


def test_a_malformed_file_raises_so_lambda_retries_and_leaves_a_status_item(s3):
    """R8: the handler raises (3 attempts, then the failure destination); the import record
    says rejected, with the position; nothing else was written."""
    cid = tenants.clinic_create(name="Drop Clinic", time_zone="America/New_York")
    event = drop(s3, f"imports/{cid}/tertiary.835", (DATA / "x12-835" / "lfh__tertiary-payment.835").read_bytes())
    for _ in range(3):
        with pytest.raises(import_jobs.ImportFailed, match=r"segment 20 \(SVC\)"):
            invoke(event)
    [record] = selectors.imports_list(clinic_id=cid)
    assert record.status == "rejected" and record.error == {"segment": 20, "segment_id": "SVC",
                                                            "message": "SVC01 has no procedure code"}
    assert ledger_verify(clinic_id=cid).balances_checked == 0


def test_keys_outside_a_known_clinic_are_refused(s3):
    with pytest.raises(InvalidInput):
        invoke(drop(s3, "imports/just-a-file.835", b"ISA"))
    with pytest.raises(UnknownClinic):
        invoke(drop(s3, "imports/c_nobodyhere/x.835", b"ISA"))


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "chalicelib.cli", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=180, env=env or dict(os.environ, PYTHONPATH=str(ROOT)))


@pytest.mark.usefixtures("dynamodb_endpoint")
def test_cli_import_json_reports_each_file_and_exits_1_on_a_rejection():
    cid = tenants.clinic_create(name="CLI Clinic", time_zone="America/New_York")
    files = [DATA / "x12-835" / "badx12__X221-secondary-payments.edi",
             DATA / "x12-835" / "lfh__tertiary-payment.835", DATA / "fhir" / "r4-spec-examples" / "Patient-pat1.json"]
    out = _cli("import", "--json", "--clinic", cid, *map(str, files))
    assert out.returncode == 1, out.stderr
    results = json.loads(out.stdout)
    assert [(r["format"], r["status"]) for r in results] == [("835", "imported"), ("835", "rejected"),
                                                             ("fhir", "imported")]
    first = results[0]
    assert {"path", "format", "status", "transactions", "claims", "service_lines", "insurance_paid_cents",
            "patient_responsibility_cents", "plb_cents", "warnings"} <= set(first)
    assert (first["claims"], first["insurance_paid_cents"], first["patient_responsibility_cents"]) == (2, 122200, 22000)
    assert results[1]["error"] == {"segment": 20, "segment_id": "SVC", "message": "SVC01 has no procedure code"}
    again = _cli("import", "--json", "--clinic", cid, str(files[0]))
    assert again.returncode == 0 and json.loads(again.stdout)[0]["status"] == "duplicate"


def test_cli_dry_run_needs_no_database():
    env = {"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(ROOT)}
    out = _cli("import", "--dry-run", "--json", "--format", "835",
               str(DATA / "x12-835" / "tigershark__835-example-2.txt"), env=env)
    assert out.returncode == 0, out.stderr
    [result] = json.loads(out.stdout)
    assert result["dry_run"] is True and result["claims"] == 2 and result["warnings"]
    assert result["status"] == "valid"  # never "imported": nothing was
    human = _cli("import", "--dry-run", "--format", "835", str(DATA / "x12-835" / "tigershark__835-example-2.txt"),
                 env=env)
    assert human.returncode == 0 and human.stdout.startswith("valid ") and "imported" not in human.stdout
