"""infra/roles.py: every function the app registers has its own role and a grant list
(SERVERLESS-PERF-REL.md R18), timeouts are looked up as Chalice does, and the deployment's own
settings reach the functions from the stage configuration."""

from __future__ import annotations

import ast
import dataclasses
import re
from pathlib import Path

import pytest

from infra import roles
from infra.app import build_app
from infra.config import STAGES, StageConfig


def test_every_handler_the_app_registers_is_listed_with_the_logical_id_chalice_gives_it():
    from app import app

    registered = {e.name for e in app.event_sources} | {"api_handler"}
    assert {f.name for f in roles.FUNCTIONS} == registered
    for function in roles.FUNCTIONS:
        expected = "APIHandler" if function.name == "api_handler" else "".join(
            part.title() for part in function.name.split("_"))
        assert function.logical_id == expected
        assert function.grants <= roles.GRANTS


def test_grants_are_the_least_each_code_path_needs():
    by = {f.name: f.grants for f in roles.FUNCTIONS}
    assert {n for n, g in by.items() if "send" in g} == {"api_handler", "notify_worker", "notify_sms_inbound"}
    assert {n for n, g in by.items() if g & {"imports_read", "imports_failed"}} == {"import_object_created"}
    assert {n for n, g in by.items() if "payments_consume" in g} == {"processor_events_consume"}
    assert {n for n, g in by.items() if "payments_enqueue" in g} == {"api_handler"}
    assert {n for n, g in by.items() if "pdfs_write" in g} == {"statement_pages", "balance_notices_bill"}
    # new statements queue their notifications (notify.statement_notifications_queue)
    assert {n for n, g in by.items() if "notify_enqueue" in g} == {
        "api_handler", "statement_pages", "balance_notices_bill", "notify_due_hourly", "notify_worker",
        "notify_sms_inbound", "payment_attempts_complete", "processor_events_consume"}
    assert by["notify_ses_events"] == by["notify_sms_status"] == by["reference_batches_open"] == {"secrets_read"}
    assert {n for n, g in by.items() if "secrets_read" not in g} == {"import_object_created"}
    with pytest.raises(ValueError):
        roles._fn("x", "X", "everything")


def test_timeouts_follow_chalices_lookup_order():
    assert roles.function_timeout_seconds("import_object_created", "prod") == 900
    assert roles.function_timeout_seconds("statement_pages", "dev") == 60
    assert roles.function_timeout_seconds("notify_worker", "dev") == 30  # the app's lambda_timeout
    assert roles.function_timeout_seconds("api_handler", "prod") == 60  # the API's own setting
    assert roles.function_timeout_seconds("no_such_function", "no_such_stage") == 30


def test_deployment_settings_come_from_context_and_must_be_https():
    app = build_app(stages=["dev"], with_api=False)
    assert app.node.try_get_context("frontdesk:dev:portal_url") is None
    config = dataclasses.replace(STAGES["dev"], portal_url="https://pay.example.org", sender_email="b@example.org")
    assert config.environment() == {"FRONTDESK_PORTAL_URL": "https://pay.example.org",
                                    "FRONTDESK_SENDER_EMAIL": "b@example.org"}
    assert STAGES["prod"].environment() == {}
    with pytest.raises(ValueError):
        StageConfig(stage="dev", log_retention_days=30, throttle_rate=1, throttle_burst=1,
                    portal_url="http://pay.example.org")


ROOT = Path(__file__).resolve().parent.parent
#: Source that reads a secret (the code pepper, or the processor's keys through the registry).
SECRET_READ = re.compile(r"\.code_pepper\b|\bsecrets\.(value|required)\(")


def _module_file(module: str) -> Path | None:
    for path in (ROOT / (module.replace(".", "/") + ".py"), ROOT / module.replace(".", "/") / "__init__.py"):
        if path.exists():
            return path
    return None


def _reachable(module: str) -> set[str]:
    """Modules of the app ``module`` may import, at any depth, including imports inside
    functions (what a handler's code path can run, over-approximated by module)."""
    seen: set[str] = set()
    todo = [module]
    while todo:
        current = todo.pop()
        path = _module_file(current)
        if current in seen or path is None:
            continue
        seen.add(current)
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("chalicelib"):
                todo.append(node.module)
                todo.extend(f"{node.module}.{a.name}" for a in node.names)
            elif isinstance(node, ast.Import):
                todo.extend(a.name for a in node.names if a.name.startswith("chalicelib"))
    return seen


def _handler_modules() -> dict[str, str]:
    from app import app

    return {"api_handler": "app", **{e.name: e.handler_string.rsplit(".", 1)[0] for e in app.event_sources}}


def test_secret_readers_and_processor_callers_follow_the_code():
    """R18: a function gets ``secrets_read`` (GetSecretValue on the app secret) exactly when its
    handler's code can read a secret, and is marked ``processor`` (R6: Stripe's worst case in
    its timeout) exactly when it can reach the processor registry. A function missing the grant
    would fail in the cloud only; one holding it needlessly is broader than it needs."""
    readers = {m for m in _reachable("app") if not m.startswith("chalicelib.core")
               and (path := _module_file(m)) is not None and SECRET_READ.search(path.read_text(encoding="utf-8"))}
    assert "chalicelib.payments.processors.registry" in readers and "chalicelib.links.tokens" in readers
    handlers = _handler_modules()
    for function in roles.FUNCTIONS:
        reach = _reachable(handlers[function.name])
        assert ("secrets_read" in function.grants) == bool(reach & readers), function.name
        assert function.processor == ("chalicelib.payments.processors.registry" in reach), function.name


def test_secrets_reach_functions_only_as_the_secret_arn():
    """R17: a function gets the secret's ARN (never a value or a dynamic reference) when it holds
    ``secrets_read``; the grant is GetSecretValue on exactly that ARN."""
    import aws_cdk as cdk

    from infra.secrets import ARN_ENV, Secrets

    stack = cdk.Stack(cdk.App(), "S")
    secrets = Secrets(stack, "Secrets", stage="dev", key=cdk.aws_kms.Key(stack, "K"))
    arn = stack.resolve(secrets.secret.secret_arn)
    assert arn == {"Ref": stack.get_logical_id(secrets.secret.node.default_child)}
    assert {k: stack.resolve(v) for k, v in secrets.environment("APIHandler").items()} == {ARN_ENV: arn}
    assert secrets.environment("ImportObjectCreated") == {}
    [statement] = secrets.grants()["secrets_read"]
    assert stack.resolve(statement.to_statement_json()) == {
        "Sid": "AppSecret", "Effect": "Allow", "Action": "secretsmanager:GetSecretValue", "Resource": arn}
