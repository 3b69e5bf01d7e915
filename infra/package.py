"""The Lambda bundle, slimmed to what the application runs (SERVERLESS-PERF-REL.md B4).

``chalice package`` zips the app with every dependency of ``requirements.txt`` as its wheels
ship. That bundle is ~31 MB zipped and ~78 MB unzipped, over B4's 15 MB / 62 MB, and two
dependencies make most of it:

- **botocore** (16.4 MB zipped) carries the API models of ~450 AWS services; the app makes
  clients for :data:`AWS_SERVICES` only (``boto3.client(...)`` under ``chalicelib`` and
  PynamoDB's DynamoDB). Everything else under ``botocore/data`` is dropped; the top-level
  files there (endpoints, partitions, retry and default configuration) are kept. The pinned
  botocore stays the one the tests ran against: relying on the Lambda runtime's own boto3 would
  make the deployed version differ from the tested one, and a layer only moves the bytes (the
  250 MB unzipped limit counts layers too).
- **fhir.resources** (14.5 MB unzipped) carries the models of FHIR R5, R4B and STU3; the FHIR
  reader imports ``fhir.resources.R4B`` only (``chalicelib/imports/fhir.py``), whose modules
  import nothing outside ``fhir.resources.R4B``, ``fhir_core`` and pydantic. The R5 and STU3
  models are dropped; the package's ``__init__`` stays. The library itself stays: validating
  against the standard's generated models is what the standards ask for, and it is ~0.8 MB
  zipped once trimmed.

Also dropped everywhere: test, example and documentation directories of dependencies
(:data:`DROPPED_DIRS`; ``botocore/docs`` and ``boto3/docs`` are code, imported when a client is
built, and stay), byte-code caches and type stubs (``.pyi``). ``tests/test_infra_package.py``
checks the result: sizes against B4's limits, no test or doc content, and, in a subprocess
that sees only the slim tree, every client of :data:`AWS_SERVICES` built and a FHIR bundle
validated.
"""

from __future__ import annotations

import zipfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

#: AWS services the application makes clients for: PynamoDB (dynamodb), import files and
#: statement PDFs (s3), the three work queues (sqs), email (ses), SMS (sns) and the application
#: secret (secretsmanager, ``chalicelib.core.secrets``).
AWS_SERVICES: frozenset[str] = frozenset({"dynamodb", "s3", "sqs", "ses", "sns", "secretsmanager"})
#: FHIR model packages kept (the reader validates against R4B only).
FHIR_KEPT: tuple[str, ...] = ("fhir/resources/R4B/",)
#: Directory names never shipped from a dependency (never a package the app imports).
DROPPED_DIRS: frozenset[str] = frozenset({"tests", "test", "testing", "examples", "example", "__pycache__"})
#: Documentation directories that are code: imported by botocore/boto3 when a client is built.
CODE_DOCS: tuple[str, ...] = ("botocore/docs/", "boto3/docs/")
#: B4: zipped ≤ 0.30 × 50 MB and unzipped ≤ 0.25 × 250 MB (bytes, decimal megabytes as AWS counts).
ZIPPED_LIMIT = 15_000_000
UNZIPPED_LIMIT = 62_500_000
#: The application's own files: kept whatever their names.
APP_ROOTS: tuple[str, ...] = ("app.py", "chalicelib/")


@dataclass(frozen=True)
class Sizes:
    """What a bundle weighs: ``zipped`` (file size) and ``unzipped`` (sum of member sizes), bytes."""

    zipped: int
    unzipped: int
    files: int


def keep(name: str) -> bool:
    """Whether the zip member ``name`` (a POSIX path inside the bundle) ships."""
    if name.startswith(APP_ROOTS):
        return "/__pycache__/" not in name
    parts = name.split("/")
    if any(p in DROPPED_DIRS for p in parts[:-1]) or name.endswith((".pyc", ".pyi")):
        return False
    if name.startswith("botocore/data/"):
        rest = name[len("botocore/data/"):]
        return "/" not in rest or rest.split("/")[0] in AWS_SERVICES
    if name.startswith("fhir/resources/"):
        rest = name[len("fhir/resources/"):]
        return ("/" not in rest and rest in ("__init__.py", "py.typed")) or name.startswith(FHIR_KEPT)
    return True


def slim(source: Path, target: Path) -> Sizes:
    """Write the members of the bundle ``source`` that :func:`keep` accepts to ``target`` (same
    compression, same timestamps, so the output is as deterministic as the input). ``source``
    and ``target`` may be the same path. Returns the sizes of the result."""
    tmp = target.with_name(target.name + ".slim")
    with zipfile.ZipFile(source) as src, zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as out:
        for info in src.infolist():
            if keep(info.filename):
                out.writestr(info, src.read(info), compress_type=zipfile.ZIP_DEFLATED, compresslevel=9)
    tmp.replace(target)
    return sizes(target)


def sizes(bundle: Path) -> Sizes:
    """The zipped and unzipped size of ``bundle`` and its number of files."""
    with zipfile.ZipFile(bundle) as zf:
        infos = [i for i in zf.infolist() if not i.is_dir()]
    return Sizes(zipped=bundle.stat().st_size, unzipped=sum(i.file_size for i in infos), files=len(infos))


def largest(bundle: Path, top: int = 5) -> list[tuple[str, int]]:
    """The ``top`` top-level entries of ``bundle`` by compressed size (B4 names the largest)."""
    totals: dict[str, int] = {}
    with zipfile.ZipFile(bundle) as zf:
        for info in zf.infolist():
            head = info.filename.split("/")[0]
            totals[head] = totals.get(head, 0) + info.compress_size
    return sorted(totals.items(), key=lambda kv: -kv[1])[:top]


def offending(names: Iterable[str]) -> list[str]:
    """Members that are test, example or documentation content (B4: none may ship)."""
    bad = []
    for name in names:
        if name.startswith(APP_ROOTS) or name.startswith(CODE_DOCS) or ".dist-info/" in name:
            continue
        parts = name.lower().split("/")
        if any(p in DROPPED_DIRS or p in ("docs", "doc") for p in parts[:-1]) or parts[-1].endswith((".md", ".rst")):
            bad.append(name)
    return bad
