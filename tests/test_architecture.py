"""Rules checked by reading the code, and the request hook checked against itself."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from chalicelib.store import keys
from chalicelib.store.db import clinic_scope
from chalicelib.store.models import BalanceItem, Item
from tests import factories

ROOT = Path(__file__).resolve().parent.parent
RUNTIME = [p for p in (ROOT / "chalicelib").rglob("*.py")] + [ROOT / "app.py"]


def _source(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def test_no_scan_in_runtime_code():
    offenders = [p.name for p in RUNTIME if re.search(r"\.scan\(|'Scan'|\"Scan\"", _source(p))]
    assert offenders == []


def test_runtime_code_never_imports_development_chalice():
    pattern = re.compile(r"^\s*(from|import)\s+chalice\.(test|local|cdk|cli)\b", re.M)
    assert [p.name for p in RUNTIME if pattern.search(_source(p))] == []


def test_entries_are_never_updated_or_deleted():
    pattern = re.compile(r"EntryItem\.(update|delete)|entry\.(update|delete)\(|PostingKeyItem\.delete")
    assert [p.name for p in RUNTIME if pattern.search(_source(p))] == []


def test_no_add_on_money_attributes():
    """R4: ADD is not idempotent across a timeout; money moves by SET under a version condition."""
    assert [p.name for p in RUNTIME if re.search(r"[A-Z]\w*Item\.\w+\.add\(", _source(p))] == []


def test_no_floats_in_money_code():
    for pkg in ("ledger", "accounts"):
        for path in (ROOT / "chalicelib" / pkg).rglob("*.py"):
            assert not re.search(r"\bfloat\(|\d+\.\d+\s*\*", _source(path)), path


def test_import_app_leaves_heavy_and_sending_modules_unloaded():
    """B3: stripe, the Powertools idempotency utility and SES/SNS/SQS clients stay unimported."""
    code = (
        "import sys, app\n"
        "bad = [m for m in ('stripe', 'aws_lambda_powertools.utilities.idempotency', 'aws_xray_sdk',"
        " 'mypy_boto3_ses', 'moto') if m in sys.modules]\n"
        "import gc, botocore.client\n"
        "clients = {type(o).__name__ for o in gc.get_objects() if isinstance(o, botocore.client.BaseClient)}\n"
        "print(bad, sorted(clients))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True,
                         env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), "AWS_DEFAULT_REGION": "us-east-1"})
    assert out.stdout.strip() == "[] ['DynamoDB']"


def test_timeouts_are_explicit_and_below_api_gateway(dynamodb_endpoint):
    """R6: connect + read per attempt × attempts stays far below API Gateway's 29 s."""
    from chalicelib.store import db
    client = db.connection().client
    cfg = client.meta.config
    attempts = cfg.retries["total_max_attempts"]
    assert (cfg.connect_timeout, cfg.read_timeout) == (1, 2)
    assert (cfg.connect_timeout + cfg.read_timeout) * attempts <= 10 < 29
    for model in (Item, BalanceItem):
        assert model.Meta.read_timeout_seconds <= 2 and model.Meta.connect_timeout_seconds <= 1


def test_hook_fails_on_a_foreign_key_and_on_scan(dynamodb_endpoint, request_log):
    mine, theirs = factories.family(), factories.family()
    with clinic_scope(mine.clinic_id):
        with pytest.raises(BalanceItem.DoesNotExist):
            BalanceItem.get(keys.guarantor_pk(theirs.clinic_id, "nobody"), keys.BALANCE)
    assert any("outside clinic" in v for v in request_log.violations)
    list(Item.scan(limit=1))
    assert "Scan request" in request_log.violations
    request_log.reset()  # the violations above were made on purpose
