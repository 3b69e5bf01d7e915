"""infra/roles.py: every function the app registers has its own role and a grant list
(SERVERLESS-PERF-REL.md R18), timeouts are looked up as Chalice does, and the deployment's own
settings reach the functions from the stage configuration."""

from __future__ import annotations

import dataclasses

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
    assert {n for n, g in by.items() if "pdfs_write" in g} == {"statement_pages"}
    assert by["notify_ses_events"] == by["notify_sms_status"] == by["reference_batches_open"] == frozenset()
    with pytest.raises(ValueError):
        roles._fn("x", "X", "everything")


def test_timeouts_follow_chalices_lookup_order():
    assert roles.function_timeout_seconds("import_object_created", "prod") == 900
    assert roles.function_timeout_seconds("statement_pages", "dev") == 60
    assert roles.function_timeout_seconds("notify_worker", "dev") == 20  # the app's lambda_timeout
    assert roles.function_timeout_seconds("no_such_function", "no_such_stage") == 20


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


def test_secrets_reach_functions_only_as_references():
    """R17: the pepper (generated) and, once the operator put them, the Stripe keys reach the
    functions as CloudFormation dynamic references; only the payment functions get Stripe's."""
    import aws_cdk as cdk

    from infra.secrets import Secrets

    stack = cdk.Stack(cdk.App(), "S")
    secrets = Secrets(stack, "Secrets", stage="dev", key=cdk.aws_kms.Key(stack, "K"), stripe=True, version=None)
    api = {k: stack.resolve(v) for k, v in secrets.environment("APIHandler").items()}
    assert set(api) == {"FRONTDESK_CODE_PEPPER", "FRONTDESK_STRIPE_SECRET_KEY", "FRONTDESK_STRIPE_WEBHOOK_SECRET",
                        "FRONTDESK_STRIPE_PUBLISHABLE_KEY"}
    assert all("{{resolve:secretsmanager:" in str(v) for v in api.values())
    assert set(secrets.environment("NotifyWorker")) == {"FRONTDESK_CODE_PEPPER"}
    pinned = Secrets(stack, "Pinned", stage="dev", key=cdk.aws_kms.Key(stack, "K2"), stripe=False, version="v-1")
    assert str(stack.resolve(pinned.reference("code_pepper"))).count("::v-1}}") == 1
