"""Configuration from the environment, read on first use and cached (no network at import).

| variable | meaning | default |
|---|---|---|
| FRONTDESK_TABLE | the single DynamoDB table | ``frontdesk`` |
| AWS_ENDPOINT_URL_DYNAMODB | DynamoDB endpoint (DynamoDB Local in the embedded default) | AWS |
| AWS_REGION / AWS_DEFAULT_REGION | region | ``us-east-1`` |
| FRONTDESK_DDB_CONNECT_TIMEOUT / _READ_TIMEOUT | seconds (R6: far below API Gateway's 29 s) | 1 / 2 |
| FRONTDESK_DDB_MAX_RETRIES | botocore retries after the first attempt | 2 |
| FRONTDESK_PORTAL_URL | portal base URL; links use it, never the request's Host (R26) | ``http://127.0.0.1:8000`` |
| FRONTDESK_CODE_PEPPER | key of the code HMAC (R16); the cloud: the secret's ``code_pepper`` | a local value |
| FRONTDESK_SECRETS_ARN | the app secret in Secrets Manager (the cloud; :mod:`.secrets`) | unset: environment |
| FRONTDESK_PROCESSOR | ``sandbox`` (the sandbox is on) or ``stripe`` (the cloud: sandbox off) | ``sandbox`` |
| FRONTDESK_STORAGE | where statement PDFs go: ``local`` (a folder) or ``s3`` | ``local`` |
| FRONTDESK_STATEMENTS_BUCKET | the S3 bucket of statement PDFs (``s3`` storage) | none |
| FRONTDESK_STATEMENTS_DIR | the folder of statement PDFs (``local`` storage) | ``var/statements`` |
| FRONTDESK_STATEMENTS_QUEUE_URL | the SQS queue statement runs fan out through; unset: pages run inline | none |
| FRONTDESK_STATEMENT_PDF_DAYS | days a statement PDF stays viewable (the S3 lifecycle rule matches) | 120 |
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache

from chalicelib.core import secrets

#: The embedded default's pepper (public: never used when a secret ARN is configured).
LOCAL_CODE_PEPPER = "frontdesk-local-development-pepper"


@dataclass(frozen=True)
class Settings:
    """Immutable process settings. Timeouts in seconds."""

    table_name: str
    dynamodb_endpoint: str | None
    region: str
    ddb_connect_timeout: float
    ddb_read_timeout: float
    ddb_max_retries: int
    portal_url: str
    portal_url_set: bool = False
    storage: str = "local"
    statements_bucket: str | None = None
    statements_dir: str = "var/statements"
    statements_queue_url: str | None = None
    statement_pdf_days: int = 120
    processor: str = "sandbox"

    @property
    def code_pepper(self) -> str:
        """The HMAC key of codes, link subjects and statement codes (SECURITY.md R16): the
        secret's ``code_pepper`` when ``FRONTDESK_SECRETS_ARN`` is set (read on first use and
        cached for minutes, never at import), else ``FRONTDESK_CODE_PEPPER`` or the local value.
        Raises secrets.SecretsUnavailable (transient) or secrets.SecretMissing."""
        return secrets.required("code_pepper", env="FRONTDESK_CODE_PEPPER", local=LOCAL_CODE_PEPPER)

    @property
    def is_local(self) -> bool:
        """True when DynamoDB is an emulator on this machine (the embedded default)."""
        host = self.dynamodb_endpoint or ""
        return "127.0.0.1" in host or "localhost" in host


@lru_cache(maxsize=1)
def settings() -> Settings:
    """Read the environment once. Call :func:`reset` after changing it (tests, CLI)."""
    env = os.environ
    return Settings(
        table_name=env.get("FRONTDESK_TABLE", "frontdesk"),
        dynamodb_endpoint=env.get("AWS_ENDPOINT_URL_DYNAMODB") or None,
        region=env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or "us-east-1",
        ddb_connect_timeout=float(env.get("FRONTDESK_DDB_CONNECT_TIMEOUT", "1")),
        ddb_read_timeout=float(env.get("FRONTDESK_DDB_READ_TIMEOUT", "2")),
        ddb_max_retries=int(env.get("FRONTDESK_DDB_MAX_RETRIES", "2")),
        portal_url=env.get("FRONTDESK_PORTAL_URL", "http://127.0.0.1:8000").rstrip("/"),
        portal_url_set=bool(env.get("FRONTDESK_PORTAL_URL", "").strip()),
        storage=env.get("FRONTDESK_STORAGE", "local").strip().lower() or "local",
        statements_bucket=env.get("FRONTDESK_STATEMENTS_BUCKET") or None,
        statements_dir=env.get("FRONTDESK_STATEMENTS_DIR")
        or os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                        "var", "statements"),
        statements_queue_url=env.get("FRONTDESK_STATEMENTS_QUEUE_URL") or None,
        statement_pdf_days=int(env.get("FRONTDESK_STATEMENT_PDF_DAYS", "120")),
        processor=env.get("FRONTDESK_PROCESSOR", "sandbox").strip().lower() or "sandbox",
    )


def reset() -> None:
    """Forget cached settings (and cached secrets) so the next :func:`settings` call re-reads
    the environment."""
    settings.cache_clear()
    secrets.reset()
