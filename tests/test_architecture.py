"""Rules checked by reading the code, and the request hook checked against itself."""

from __future__ import annotations

import json
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
    """B3: stripe, the Powertools idempotency utility, the PDF/QR/FHIR libraries and SES/SNS/SQS
    clients stay unimported,
    and with a secret configured (the cloud) no Secrets Manager client is made: secrets are read
    on first use, never at import."""
    code = (
        "import sys, app\n"
        "bad = [m for m in ('stripe', 'aws_lambda_powertools.utilities.idempotency', 'aws_xray_sdk',"
        " 'mypy_boto3_ses', 'moto', 'reportlab', 'qrcode', 'pypdf', 'PIL', 'fhir', 'pydantic')"
        " if m in sys.modules]\n"
        "import gc, botocore.client\n"
        "clients = {type(o).__name__ for o in gc.get_objects() if isinstance(o, botocore.client.BaseClient)}\n"
        "print(bad, sorted(clients))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True,
                         env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), "AWS_DEFAULT_REGION": "us-east-1",
                              "FRONTDESK_SECRETS_ARN": "arn:aws:secretsmanager:us-east-1:123456789012:secret:x"})
    assert out.stdout.strip() == "[] ['DynamoDB']"


def _api_timeout() -> int:
    config = json.loads((ROOT / ".chalice" / "config.json").read_text())
    return int(config["lambda_functions"]["api_handler"]["lambda_timeout"])


def test_timeouts_are_explicit_and_below_api_gateway(dynamodb_endpoint, monkeypatch):
    """R6, read from the clients the app builds: DynamoDB, the Secrets Manager client and the
    Stripe client, each (connect + read) × attempts, together stay below API Gateway's 29 s and
    within half the API function's Lambda timeout (no library default of 30, 60 or 80 s left)."""
    from chalicelib.core import secrets
    from chalicelib.payments.processors.stripe import StripeProcessor
    from chalicelib.store import db

    cfg = db.connection().client.meta.config
    assert (cfg.connect_timeout, cfg.read_timeout) == (1, 2)
    dynamodb = (cfg.connect_timeout + cfg.read_timeout) * cfg.retries["total_max_attempts"]
    for model in (Item, BalanceItem):
        assert model.Meta.read_timeout_seconds <= 2 and model.Meta.connect_timeout_seconds <= 1

    monkeypatch.setattr(secrets, "_client", None)
    sm = secrets._secretsmanager().meta.config
    secrets_manager = (sm.connect_timeout + sm.read_timeout) * sm.retries["total_max_attempts"]

    stripe = StripeProcessor(api_key="sk_test_x", webhook_secret="whsec_x")
    http = stripe.client._requestor._client
    connect, read = http._timeout
    stripe_worst = (connect + read) * (1 + stripe.client._requestor._options.max_network_retries)
    assert (dynamodb, secrets_manager, stripe_worst) == (9, 6, 12)
    assert dynamodb + secrets_manager + stripe_worst < 29
    assert dynamodb + secrets_manager + stripe_worst <= 0.5 * _api_timeout()


def test_hook_fails_on_a_foreign_key_and_on_scan(dynamodb_endpoint, request_log):
    mine, theirs = factories.family(), factories.family()
    with clinic_scope(mine.clinic_id):
        with pytest.raises(BalanceItem.DoesNotExist):
            BalanceItem.get(keys.guarantor_pk(theirs.clinic_id, "nobody"), keys.BALANCE)
    assert any("outside clinic" in v for v in request_log.violations)
    list(Item.scan(limit=1))
    assert "Scan request" in request_log.violations
    request_log.reset()  # the violations above were made on purpose
