"""Application secrets: read from AWS Secrets Manager on first use in the cloud, from the
environment on the embedded default (SERVERLESS-PERF-REL.md §6.3, R17: no secret in a function's
environment variables; SECURITY.md R16 for the code pepper).

| variable | meaning | default |
|---|---|---|
| FRONTDESK_SECRETS_ARN | ARN of the secret ``frontdesk-<stage>/app``; when set, the only source | unset: environment |

The secret is one JSON object of strings: ``code_pepper`` and, once the operator put them,
``stripe_secret_key``, ``stripe_webhook_secret``, ``stripe_publishable_key`` (README,
Production). Without ``FRONTDESK_SECRETS_ARN`` each field comes from its own environment
variable (``FRONTDESK_CODE_PEPPER``, ``FRONTDESK_STRIPE_SECRET_KEY``, ...), as on a laptop.

The Secrets Manager client is created on the first read, never at ``import app`` (B3), with
explicit timeouts (R6: :data:`WORST_CASE_SECONDS`). The secret is cached per execution
environment for :data:`TTL_SECONDS`, so a changed value (a rotated Stripe key) is picked up
within minutes without a deploy. When a refresh fails the last value keeps serving (retried
after :data:`RETRY_SECONDS`); with nothing cached the read raises :class:`SecretsUnavailable`.
Values are never logged.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from typing import Any

from chalicelib.core.errors import TryAgainLater

ARN_ENV = "FRONTDESK_SECRETS_ARN"
#: Seconds a fetched secret is used before it is read again.
TTL_SECONDS = 300.0
#: Seconds before a failed refresh is tried again (the stale value serves meanwhile).
RETRY_SECONDS = 30.0
#: R6: Secrets Manager connect and read timeouts (seconds) and attempts (first + 1 retry).
CONNECT_TIMEOUT = 1.0
READ_TIMEOUT = 2.0
MAX_ATTEMPTS = 2
#: R6: the most one read can take, (connect + read) × attempts.
WORST_CASE_SECONDS = (CONNECT_TIMEOUT + READ_TIMEOUT) * MAX_ATTEMPTS

log = logging.getLogger(__name__)
_monotonic = time.monotonic  # patched by tests to move time without waiting
_lock = threading.Lock()
_client: Any = None
#: ARN -> (monotonic time the values expire, the secret's fields).
_cache: dict[str, tuple[float, dict[str, str]]] = {}


class SecretsUnavailable(TryAgainLater):
    """Secrets Manager did not answer and no value is cached (HTTP 503; retry later)."""


class SecretMissing(RuntimeError):
    """The secret lacks a required field or is not a JSON object: a deployment error, named
    without its value (the operator fixes the secret; README, Production)."""


def value(field: str, *, env: str) -> str | None:
    """The secret ``field``, or None when it is not set.

    With ``FRONTDESK_SECRETS_ARN`` set, from that secret (cached, see the module docstring);
    otherwise from the environment variable ``env``. Empty strings count as unset.
    Raises SecretsUnavailable (transient) or SecretMissing (the secret is not a JSON object).
    """
    arn = os.environ.get(ARN_ENV, "").strip()
    if not arn:
        return os.environ.get(env) or None
    return _fields(arn).get(field) or None


def required(field: str, *, env: str, local: str) -> str:
    """Like :func:`value`, for a field the application cannot run without.

    ``local`` is the embedded default's value, used only when no secret ARN is configured (a
    missing field in the cloud's secret is an error, never the publicly known local value).
    Raises SecretMissing, SecretsUnavailable.
    """
    found = value(field, env=env)
    if found:
        return found
    if os.environ.get(ARN_ENV, "").strip():
        raise SecretMissing(f"the application secret has no {field!r}")
    return local


def reset() -> None:
    """Forget cached values and the client (tests, or after changing the environment)."""
    global _client
    with _lock:
        _cache.clear()
        _client = None


def _fields(arn: str) -> dict[str, str]:
    now = _monotonic()
    cached = _cache.get(arn)
    if cached is not None and now < cached[0]:
        return cached[1]
    with _lock:
        cached = _cache.get(arn)
        if cached is not None and now < cached[0]:
            return cached[1]
        try:
            fields = _fetch(arn)
        except SecretMissing:
            raise
        except Exception as exc:  # botocore's errors: keep serving what we had
            if cached is None:
                log.warning("secret read failed", extra={"error": type(exc).__name__})
                raise SecretsUnavailable("the application secret could not be read; try again") from exc
            log.warning("secret refresh failed; using the cached value", extra={"error": type(exc).__name__})
            _cache[arn] = (now + RETRY_SECONDS, cached[1])
            return cached[1]
        _cache[arn] = (now + TTL_SECONDS, fields)
        return fields


def _fetch(arn: str) -> dict[str, str]:
    text = _secretsmanager().get_secret_value(SecretId=arn).get("SecretString")
    try:
        data = json.loads(text or "")
    except ValueError:
        data = None
    if not isinstance(data, dict):
        raise SecretMissing("the application secret is not a JSON object")
    return {str(k): v for k, v in data.items() if isinstance(v, str)}


def _secretsmanager() -> Any:
    """The Secrets Manager client, created on first use (called under ``_lock``)."""
    global _client
    if _client is None:
        import boto3
        from botocore.config import Config

        region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
        _client = boto3.client("secretsmanager", region_name=region, config=Config(
            connect_timeout=CONNECT_TIMEOUT, read_timeout=READ_TIMEOUT,
            retries={"total_max_attempts": MAX_ATTEMPTS, "mode": "standard"}))
    return _client
