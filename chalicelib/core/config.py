"""Configuration from the environment, read on first use and cached (no network at import).

| variable | meaning | default |
|---|---|---|
| FRONTDESK_TABLE | the single DynamoDB table | ``frontdesk`` |
| AWS_ENDPOINT_URL_DYNAMODB | DynamoDB endpoint (DynamoDB Local in the embedded default) | AWS |
| AWS_REGION / AWS_DEFAULT_REGION | region | ``us-east-1`` |
| FRONTDESK_DDB_CONNECT_TIMEOUT / _READ_TIMEOUT | seconds (R6: far below API Gateway's 29 s) | 1 / 2 |
| FRONTDESK_DDB_MAX_RETRIES | botocore retries after the first attempt | 2 |
| FRONTDESK_PORTAL_URL | portal base URL; links use it, never the request's Host (R26) | ``http://127.0.0.1:8000`` |
| FRONTDESK_CODE_PEPPER | key of the one-time-code HMAC (R16); a secret in the cloud | a local value |
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache


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
    code_pepper: str

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
        code_pepper=env.get("FRONTDESK_CODE_PEPPER", "frontdesk-local-development-pepper"),
    )


def reset() -> None:
    """Forget cached settings so the next :func:`settings` call re-reads the environment."""
    settings.cache_clear()
