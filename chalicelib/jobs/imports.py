"""S3 drop: a file put under ``imports/<clinic id>/`` in the import bucket is imported.

The object key names the clinic (``imports/<clinic id>/<anything>``); the file is downloaded to
the Lambda's ``/tmp`` and imported by :func:`chalicelib.imports.services.import_file`, which is
exactly-once by the file's SHA-256: an event delivered twice (S3 is at least once, R1), or a
Lambda retry after a crash, finds the import record and answers ``duplicate`` or resumes the
claims after its last checkpoint (R3).

Failures (SERVERLESS-PERF-REL.md R8): a rejected file leaves its import record with status
``rejected`` (segment, segment id, message) and the handler raises :class:`ImportFailed`;
an unexpected error leaves the record ``failed`` and is raised as it is. Either way Lambda makes
3 attempts in all, then hands the event to the on-failure destination (the SQS queue of
``infra/imports.py``, which has an alarm): Chalice cannot set the destination or the event age,
so infra does. Logs carry the clinic id, the file's digest, status and counts: never the key
(file names can name patients) and never file values.

The S3 client is created on first use (``import app`` creates none, B3) and the importers on
the handler's first call (:mod:`chalicelib.core.lazy`).
"""

from __future__ import annotations

import logging
import os
import tempfile
from typing import TYPE_CHECKING, Any

from chalice import Blueprint
from chalice.app import S3Event

from chalicelib.core import lazy
from chalicelib.core.errors import DomainError, InvalidInput
from chalicelib.core.ids import require_id

if TYPE_CHECKING:
    from chalicelib.imports import files, services
    from chalicelib.tenants import selectors as tenants
else:
    files = lazy.module("chalicelib.imports.files")
    services = lazy.module("chalicelib.imports.services")
    tenants = lazy.module("chalicelib.tenants.selectors")

#: The bucket named in the decorator; with ``chalice deploy`` it is the one notified, with the
#: CDK stack ``infra/imports.py`` creates the bucket and its notification to this function.
BUCKET = os.environ.get("FRONTDESK_IMPORT_BUCKET", "frontdesk-imports")
PREFIX = "imports/"

imports_jobs = Blueprint(__name__)
log = logging.getLogger(__name__)
_s3: Any = None


class ImportFailed(Exception):
    """The file was rejected (its import record says why); raised so Lambda retries and then
    sends the event to the failure destination (R8). The message carries no file values."""


def clinic_of(key: str) -> str:
    """The clinic id of an object key ``imports/<clinic id>/<name>``; InvalidInput otherwise."""
    parts = key.split("/")
    if len(parts) < 3 or parts[0] != PREFIX.rstrip("/") or not parts[2]:
        raise InvalidInput("an import key is imports/<clinic id>/<file name>")
    return require_id(parts[1], field="clinic_id")


def _client() -> Any:
    global _s3
    if _s3 is None:
        import boto3

        _s3 = boto3.client("s3")
    return _s3


def object_import(*, bucket: str, key: str) -> dict[str, Any]:
    """Download ``bucket/key`` and import it for the clinic its key names; returns the result
    (``import --json`` shape). Raises ImportFailed for a rejected file, UnknownClinic, InvalidInput."""
    clinic_id = clinic_of(key)
    tenants.clinic_get(clinic_id=clinic_id)  # UnknownClinic: nothing is written for a stranger
    with tempfile.NamedTemporaryFile(prefix="import-", suffix=".dat") as tmp:
        _client().download_fileobj(bucket, key, tmp)
        tmp.flush()
        result = services.import_file(clinic_id=clinic_id, source=files.Source(path=tmp.name, name=key))
    facts = {"clinic_id": clinic_id, "sha256": result.sha256, "status": result.status,
             "format": result.file_format, "claims": result.claims, "outcomes": result.outcomes}
    if result.status == "rejected":
        log.warning("import rejected", extra=facts)
        error = result.error or {}
        raise ImportFailed(f"import {result.sha256[:16]} rejected at segment {error.get('segment')} "
                           f"({error.get('segment_id')}): {error.get('message')}")
    log.info("import done", extra=facts)
    return result.as_json()


@imports_jobs.on_s3_event(bucket=BUCKET, prefix=PREFIX, events=["s3:ObjectCreated:*"])
def import_object_created(event: S3Event) -> dict[str, Any]:
    """S3 ObjectCreated under ``imports/``: import the file (safe when delivered twice)."""
    try:
        return object_import(bucket=event.bucket, key=event.key)
    except DomainError as exc:
        log.warning("import refused", extra={"error": type(exc).__name__})
        raise
