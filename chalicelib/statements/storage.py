"""Where statement PDFs live: the one adapter over S3 (managed cloud) or a local folder
(embedded default, ``var/statements/``), chosen by ``FRONTDESK_STORAGE=local|s3``.

The boto3 S3 client is created on first use, never at import (B3: importing ``app`` creates no
S3 client). Object keys are ids only (``<clinic>/<run or source>/<statement id>.pdf``): never a
name. Bodies carry PHI: never log them. The bucket encrypts with the stage's KMS key and
expires objects after the configured window (``infra/statements.py``).
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any, Protocol

from chalicelib.core import config
from chalicelib.core.errors import InvalidInput, NotFound

PDF = "application/pdf"


class Storage(Protocol):
    """Put, read and hand out a short-lived URL for one object."""

    def put(self, key: str, body: bytes, *, content_type: str = PDF) -> None: ...

    def get(self, key: str) -> bytes: ...

    def url(self, key: str, *, expires_seconds: int) -> str: ...

    def exists(self, key: str) -> bool: ...


class LocalStorage:
    """A folder on this machine (the embedded default). ``url`` is a ``file://`` URI: the local
    stand-in for a presigned URL (nothing expires on a laptop)."""

    def __init__(self, root: str) -> None:
        self.root = Path(root)

    def _path(self, key: str) -> Path:
        path = (self.root / key).resolve()
        if self.root.resolve() not in path.parents:
            raise InvalidInput("storage key leaves the statements folder")
        return path

    def put(self, key: str, body: bytes, *, content_type: str = PDF) -> None:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(path.suffix + ".part")
        tmp.write_bytes(body)
        tmp.replace(path)

    def get(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError:
            raise NotFound(self._missing()) from None

    def url(self, key: str, *, expires_seconds: int) -> str:
        path = self._path(key)
        if not path.exists():
            raise NotFound(self._missing())
        return path.as_uri()

    def _missing(self) -> str:
        """Where it was looked for (a local folder; keys are ids only), for the command line."""
        return f"statement PDF not found in {self.root} (FRONTDESK_STATEMENTS_DIR)"

    def exists(self, key: str) -> bool:
        return self._path(key).exists()


class S3Storage:
    """An S3 bucket; ``url`` is a presigned GET that expires after ``expires_seconds``."""

    def __init__(self, bucket: str) -> None:
        self.bucket = bucket
        self._client: Any = None
        self._lock = threading.Lock()

    def client(self) -> Any:
        if self._client is None:
            with self._lock:
                if self._client is None:
                    import boto3  # lazily: importing the app creates no S3 client (B3)
                    from botocore.config import Config

                    self._client = boto3.client(
                        "s3", region_name=config.settings().region,
                        config=Config(connect_timeout=2, read_timeout=5, retries={"max_attempts": 3},
                                      signature_version="s3v4"))
        return self._client

    def put(self, key: str, body: bytes, *, content_type: str = PDF) -> None:
        self.client().put_object(Bucket=self.bucket, Key=key, Body=body, ContentType=content_type)

    def get(self, key: str) -> bytes:
        try:
            response = self.client().get_object(Bucket=self.bucket, Key=key)
        except self.client().exceptions.NoSuchKey:
            raise NotFound("statement PDF not found") from None
        body: bytes = response["Body"].read()
        return body

    def url(self, key: str, *, expires_seconds: int) -> str:
        url: str = self.client().generate_presigned_url(
            "get_object", Params={"Bucket": self.bucket, "Key": key, "ResponseContentType": PDF},
            ExpiresIn=expires_seconds)
        return url

    def exists(self, key: str) -> bool:
        from botocore.exceptions import ClientError

        try:
            self.client().head_object(Bucket=self.bucket, Key=key)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return False
            raise
        return True


_cache: dict[tuple[str, str], Storage] = {}
_cache_lock = threading.Lock()


def storage() -> Storage:
    """The configured adapter (one per configuration, so the S3 client is made once).

    Raises InvalidInput when ``FRONTDESK_STORAGE`` is unknown or ``s3`` lacks a bucket name.
    """
    cfg = config.settings()
    if cfg.storage == "s3":
        if not cfg.statements_bucket:
            raise InvalidInput("FRONTDESK_STORAGE=s3 needs FRONTDESK_STATEMENTS_BUCKET")
        key = ("s3", cfg.statements_bucket)
    elif cfg.storage == "local":
        key = ("local", cfg.statements_dir)
    else:
        raise InvalidInput("FRONTDESK_STORAGE must be 'local' or 's3'")
    with _cache_lock:
        if key not in _cache:
            _cache[key] = S3Storage(key[1]) if key[0] == "s3" else LocalStorage(key[1])
        return _cache[key]


def reset() -> None:
    """Forget adapters and their clients (tests that start and stop a moto mock)."""
    with _cache_lock:
        _cache.clear()


def pdf_key(clinic_id: str, batch: str, statement_id: str) -> str:
    """The object key of a statement PDF: ids only."""
    return f"{clinic_id}/{batch}/{statement_id}.pdf"


def print_pdf_key(clinic_id: str, run_id: str, volume: int) -> str:
    """The object key of one volume (1, 2, ...) of a run's merged PDF for the print vendor."""
    return f"{clinic_id}/{run_id}/print/statements-{volume:03d}.pdf"


def print_manifest_key(clinic_id: str, run_id: str) -> str:
    """The object key of a run's print manifest (CSV; written last: the print files are complete)."""
    return f"{clinic_id}/{run_id}/print/manifest.csv"
