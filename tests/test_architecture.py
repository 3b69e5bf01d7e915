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


def test_import_app_leaves_every_service_to_the_handler_that_calls_it():
    """B3: every Lambda function imports app.py, so the blueprints name their services through
    core.lazy and ``import app`` loads none of them, nor Jinja2 or boto3; each function then
    imports what its own handlers call, on first use. A top-level service import in a
    blueprint fails here (the module list is what catches it; the timing is noisy)."""
    code = (
        "import sys, app\n"
        "print(sorted(m for m in sys.modules if m in ('jinja2', 'boto3', 'markupsafe')"
        " or (m.startswith('chalicelib.') and m.rsplit('.', 1)[-1] in"
        " ('services', 'selectors', 'pages', 'context', 'registry', 'queue', 'api_keys'))))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True,
                         env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), "AWS_DEFAULT_REGION": "us-east-1"})
    assert out.stdout.strip() == "[]"


def _lazy_names(path: Path) -> tuple[dict[str, str], dict[str, str]]:
    """``(name -> module)`` of a file's ``if TYPE_CHECKING:`` imports, and of its
    ``name = lazy.module("...")`` assignments in the ``else`` branch."""
    import ast

    typed: dict[str, str] = {}
    lazy: dict[str, str] = {}
    for node in ast.walk(ast.parse(_source(path))):
        if not (isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING"):
            continue
        for stmt in node.body:
            if isinstance(stmt, ast.ImportFrom):
                for alias in stmt.names:
                    typed[alias.asname or alias.name] = f"{stmt.module}.{alias.name}"
        for stmt in node.orelse:
            if isinstance(stmt, ast.Assign) and isinstance(stmt.value, ast.Call):
                arg = stmt.value.args[0]
                assert isinstance(arg, ast.Constant)
                lazy[stmt.targets[0].id] = str(arg.value)  # type: ignore[attr-defined]
    return typed, lazy


def test_every_lazy_module_is_the_module_its_typed_name_says():
    """core.lazy: mypy and import-linter read a blueprint's TYPE_CHECKING import, the code runs
    its lazy.module name; the two must name the same module (a class imported for typing
    only, such as Session, has no lazy twin)."""
    import importlib

    checked = 0
    for path in RUNTIME:
        typed, lazy = _lazy_names(path)
        for name, module in lazy.items():
            assert typed.get(name) == module, (path.name, name, module)
            importlib.import_module(module)
            checked += 1
        for name, target in typed.items():
            if name not in lazy:  # typing only: a class or function, never a module used at run time
                parent, attr = target.rsplit(".", 1)
                assert not isinstance(getattr(importlib.import_module(parent), attr), type(sys)), (path.name, name)
    assert checked >= 20


def test_no_import_cycle_among_our_modules():
    """core.lazy imports a blueprint's services on first use, so two threads of ``chalice local``
    can import two of our modules at once. Python's per-module import locks keep that safe only
    without cycles: two threads entering a cycle from both ends get a partly initialised module.
    Top-level imports (the ones run at import; TYPE_CHECKING blocks and function bodies are not)
    must form no cycle (graphlib raises CycleError naming it)."""
    import ast
    import graphlib

    package = ROOT / "chalicelib"
    names = {".".join(p.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__"): p
             for p in package.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in names.items():
        deps = graph.setdefault(name, set())
        for node in ast.parse(_source(path)).body:
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("chalicelib"):
                deps.update(f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in names else node.module
                            for a in node.names)
            elif isinstance(node, ast.Import):
                deps.update(a.name for a in node.names if a.name.startswith("chalicelib"))
    order = list(graphlib.TopologicalSorter(graph).static_order())
    assert len(order) >= len(names) > 100


def test_every_service_and_selector_taking_a_clinic_is_clinic_scoped():
    """R16: the request hook checks every key against the clinic of the running service or
    selector, which ``clinic_scoped`` sets; a function without it is checked only for a clinic
    prefix. Review found ``@clinic_scoped`` left on a dataclass inserted above
    ``statements.statement_pdf`` (the class was wrapped, the function unchecked). Exempt:
    creating a clinic (its id may be new) and reading the local console file (no request)."""
    import importlib
    import inspect
    import pkgutil

    import chalicelib

    exempt = {("chalicelib.tenants.services", "clinic_create"), ("chalicelib.notify.selectors", "console_outbox_read")}
    unscoped, wrapped_classes, checked = [], [], 0
    for info in pkgutil.walk_packages(chalicelib.__path__, "chalicelib."):
        if info.name.rsplit(".", 1)[-1] not in ("services", "selectors"):
            continue
        module = importlib.import_module(info.name)
        for name, obj in vars(module).items():
            if name.startswith("_") or not callable(obj) or getattr(obj, "__module__", None) != module.__name__:
                continue
            if inspect.isclass(getattr(obj, "__wrapped__", None)):
                wrapped_classes.append(f"{info.name}.{name}")
            elif inspect.isfunction(obj) and (param := inspect.signature(obj).parameters.get("clinic_id")) and (
                    param.kind is param.KEYWORD_ONLY):  # what clinic_scoped reads
                checked += 1
                if not hasattr(obj, "__wrapped__") and (info.name, name) not in exempt:
                    unscoped.append(f"{info.name}.{name}")
    assert (unscoped, wrapped_classes) == ([], [])
    assert checked > 100


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
