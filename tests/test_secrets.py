"""chalicelib.core.secrets: the application secret read from Secrets Manager on first use in the
cloud (moto's Secrets Manager: an AWS API outside the machine, at its one adapter), from the
environment on the embedded default; cached with a TTL, stale on a failed refresh, never the
local pepper in the cloud; and the processor registry built from it (SERVERLESS-PERF-REL.md
§6.3, R17; SECURITY.md R16)."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws

from chalicelib.core import config, secrets
from chalicelib.links import tokens
from chalicelib.payments.errors import ProcessorRejected
from chalicelib.payments.processors import registry

PEPPER = "pepper-from-secrets-manager-0123456789abcdef"
SECRET_ENV = ("FRONTDESK_SECRETS_ARN", "FRONTDESK_CODE_PEPPER", "FRONTDESK_STRIPE_SECRET_KEY",
              "FRONTDESK_STRIPE_WEBHOOK_SECRET", "FRONTDESK_STRIPE_PUBLISHABLE_KEY", "FRONTDESK_PROCESSOR")


class Clock:
    """Stands in for ``time.monotonic`` inside the reader: the TTL passes without waiting."""

    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(autouse=True)
def clean(monkeypatch: pytest.MonkeyPatch) -> Iterator[Clock]:
    for name in SECRET_ENV:
        monkeypatch.delenv(name, raising=False)
    clock = Clock()
    monkeypatch.setattr(secrets, "_monotonic", clock)
    config.reset()
    registry.reset()
    yield clock
    config.reset()
    registry.reset()


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    with mock_aws():
        yield boto3.client("secretsmanager", region_name="us-east-1")


def _secret(sm: Any, monkeypatch: pytest.MonkeyPatch, fields: dict[str, str] | str) -> str:
    body = fields if isinstance(fields, str) else json.dumps(fields)
    arn = str(sm.create_secret(Name="frontdesk-dev/app", SecretString=body)["ARN"])
    monkeypatch.setenv("FRONTDESK_SECRETS_ARN", arn)
    config.reset()
    return arn


def _hash(pepper: str, value: str) -> str:
    return hmac.new(pepper.encode(), value.encode(), hashlib.sha256).hexdigest()[:32]


# --- the embedded default: the environment -------------------------------------------------


def test_without_an_arn_values_come_from_the_environment(monkeypatch):
    assert config.settings().code_pepper == config.LOCAL_CODE_PEPPER
    assert secrets.value("stripe_secret_key", env="FRONTDESK_STRIPE_SECRET_KEY") is None
    monkeypatch.setenv("FRONTDESK_CODE_PEPPER", "env-pepper")
    monkeypatch.setenv("FRONTDESK_STRIPE_SECRET_KEY", "sk_test_env")
    assert config.settings().code_pepper == "env-pepper"
    assert registry.aliases() == ["sandbox", "stripe"]
    assert registry.get("stripe").api_key == "sk_test_env"  # type: ignore[attr-defined]
    assert secrets._client is None  # no Secrets Manager client on the embedded default


# --- the cloud: Secrets Manager ------------------------------------------------------------


def test_the_pepper_comes_from_the_secret_and_the_environment_is_ignored(aws, monkeypatch):
    monkeypatch.setenv("FRONTDESK_CODE_PEPPER", "a-stale-environment-value")
    _secret(aws, monkeypatch, {"code_pepper": PEPPER})
    assert secrets._client is None  # nothing read before first use
    assert config.settings().code_pepper == PEPPER
    assert tokens.subject_hash("ann@example.org") == _hash(PEPPER, "ann@example.org")
    assert secrets._client is not None


def test_a_secret_without_the_pepper_is_an_error_never_the_local_pepper(aws, monkeypatch):
    _secret(aws, monkeypatch, {"stripe_secret_key": "sk_test_x"})
    with pytest.raises(secrets.SecretMissing) as raised:
        config.settings().code_pepper
    assert "code_pepper" in str(raised.value) and "sk_test_x" not in str(raised.value)


def test_a_secret_that_is_not_a_json_object_is_an_error(aws, monkeypatch):
    _secret(aws, monkeypatch, "not json")
    with pytest.raises(secrets.SecretMissing):
        secrets.value("code_pepper", env="FRONTDESK_CODE_PEPPER")


def test_values_are_cached_until_the_ttl_then_read_again(aws, monkeypatch, clean):
    arn = _secret(aws, monkeypatch, {"code_pepper": PEPPER, "stripe_secret_key": "sk_test_one"})
    calls: list[str] = []
    monkeypatch.setattr(secrets, "_fetch", _counting(secrets._fetch, calls))
    assert secrets.value("stripe_secret_key", env="X") == "sk_test_one"
    assert config.settings().code_pepper == PEPPER
    aws.put_secret_value(SecretId=arn, SecretString=json.dumps({"code_pepper": PEPPER,
                                                                "stripe_secret_key": "sk_test_two"}))
    clean.now += secrets.TTL_SECONDS - 1
    assert secrets.value("stripe_secret_key", env="X") == "sk_test_one"  # cached
    assert calls == [arn]
    clean.now += 1
    assert secrets.value("stripe_secret_key", env="X") == "sk_test_two"
    assert calls == [arn, arn]


def test_a_failed_refresh_keeps_the_last_value_and_nothing_cached_is_try_again(aws, monkeypatch, clean):
    arn = _secret(aws, monkeypatch, {"code_pepper": PEPPER})
    assert config.settings().code_pepper == PEPPER
    aws.delete_secret(SecretId=arn, ForceDeleteWithoutRecovery=True)  # every read fails from now on
    clean.now += secrets.TTL_SECONDS
    assert config.settings().code_pepper == PEPPER  # stale, not an outage
    calls: list[str] = []
    monkeypatch.setattr(secrets, "_fetch", _counting(secrets._fetch, calls))
    clean.now += secrets.RETRY_SECONDS - 1
    assert config.settings().code_pepper == PEPPER and calls == []  # no retry storm
    clean.now += 1
    assert config.settings().code_pepper == PEPPER and calls == [arn]
    secrets.reset()
    with pytest.raises(secrets.SecretsUnavailable):
        config.settings().code_pepper


def test_the_client_has_explicit_timeouts():
    """R6: 1 s connect, 2 s read, 2 attempts: 6 s at worst (tests/test_infra.py adds it up)."""
    cfg = secrets._secretsmanager().meta.config
    assert (cfg.connect_timeout, cfg.read_timeout, cfg.retries["total_max_attempts"]) == (1, 2, 2)
    assert secrets.WORST_CASE_SECONDS == 6


# --- the processor registry ----------------------------------------------------------------


def test_stripe_is_on_when_the_secret_holds_its_key_and_follows_a_rotation(aws, monkeypatch, clean):
    monkeypatch.setenv("FRONTDESK_PROCESSOR", "stripe")
    arn = _secret(aws, monkeypatch, {"code_pepper": PEPPER})
    assert registry.aliases() == []  # a cloud stage before the operator put Stripe's keys
    with pytest.raises(ProcessorRejected):
        registry.get("stripe")
    aws.put_secret_value(SecretId=arn, SecretString=json.dumps({
        "code_pepper": PEPPER, "stripe_secret_key": "sk_test_one", "stripe_webhook_secret": "whsec_one",
        "stripe_publishable_key": "pk_test_one"}))
    clean.now += secrets.TTL_SECONDS
    assert registry.aliases() == ["stripe"]
    first = registry.get("stripe")
    assert (first.api_key, first.webhook_secret, first.publishable_key) == (  # type: ignore[attr-defined]
        "sk_test_one", "whsec_one", "pk_test_one")
    assert registry.get("stripe") is first  # built once while the keys stay
    aws.put_secret_value(SecretId=arn, SecretString=json.dumps({
        "code_pepper": PEPPER, "stripe_secret_key": "sk_test_two", "stripe_webhook_secret": "whsec_two"}))
    clean.now += secrets.TTL_SECONDS
    second = registry.get("stripe")
    assert second is not first and second.api_key == "sk_test_two"  # type: ignore[attr-defined]


def test_the_sandbox_is_on_only_where_the_processor_is_the_sandbox(monkeypatch):
    assert registry.sandbox_enabled() and "sandbox" in registry.aliases()
    monkeypatch.setenv("FRONTDESK_PROCESSOR", "stripe")
    config.reset()
    assert not registry.sandbox_enabled() and "sandbox" not in registry.aliases()
    with pytest.raises(ProcessorRejected):
        registry.sandbox()


def _counting(fetch: Any, calls: list[str]) -> Any:
    def counted(arn: str) -> dict[str, str]:
        calls.append(arn)
        return dict(fetch(arn))

    return counted
