"""Files to import, without storage: the source, its digest, its format, the validation pass
that reads the whole file before anything is written, the units the write pass posts, and
the result reported per file (CLI ``--json``, import records, the S3 handler).
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Iterator
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, BinaryIO

from chalicelib.imports.csv_roster import looks_like_roster, read_roster
from chalicelib.imports.errors import ImportRejected, Warnings
from chalicelib.imports.fhir import Unit, read_fhir
from chalicelib.imports.model import FileFacts, RemitClaim
from chalicelib.imports.x12 import X12Reader, decoder_for, read_isa
from chalicelib.imports.x835 import read_835, summarize_835
from chalicelib.imports.x837 import read_837, summarize_837

FORMATS = ("835", "837", "fhir", "csv")
MAX_WHOLE_FILE = 200 * 1024 * 1024  # FHIR and CSV are read whole; X12 streams


class Source:
    """A file to import that can be read more than once: a ``path`` or in-memory ``data``.

    ``name`` is what staff see (file name or S3 key); it may name a patient, so it is stored on
    the import record and never logged.
    """

    def __init__(self, *, path: str | Path | None = None, data: bytes | None = None, name: str | None = None) -> None:
        if (path is None) == (data is None):
            raise ValueError("give a path or data")
        self.path = Path(path) if path is not None else None
        self.data = data
        self.name = name or (str(path) if path is not None else "upload")

    def open(self) -> BinaryIO:
        """A fresh binary stream positioned at the start of the file."""
        if self.path is not None:
            return self.path.open("rb")
        assert self.data is not None
        return io.BytesIO(self.data)

    def read(self) -> bytes:
        """The whole file (FHIR and CSV); ImportRejected when larger than 200 MB."""
        with self.open() as stream:
            data = stream.read(MAX_WHOLE_FILE + 1)
        if len(data) > MAX_WHOLE_FILE:
            raise ImportRejected(0, "", "the file is larger than 200 MB")
        return data

    def sha256(self) -> str:
        """Hex SHA-256 of the file's bytes (the import record's key), read in 1 MB chunks."""
        digest = hashlib.sha256()
        with self.open() as stream:
            while chunk := stream.read(1 << 20):
                digest.update(chunk)
        return digest.hexdigest()


def detect(source: Source) -> str:
    """``835``, ``837``, ``fhir`` or ``csv`` from the file's first 64 KB (and its name).

    X12: the transaction set id after the first ``ST`` (with the element separator of the ISA,
    or the one after ``ST`` in a file without ISA, which the reader then refuses). Raises
    ImportRejected(0, "", "unknown file format") otherwise.
    """
    with source.open() as stream:
        head = stream.read(65536)
    codec, bom = decoder_for(head[:4])
    text = head[bom:].decode(codec, errors="replace").lstrip()
    if text.startswith(("{", "[")):
        return "fhir"
    if text.startswith(("ISA", "ST", "GS")):
        sep = text[3] if text.startswith("ISA") and len(text) > 3 else text[2:3]
        if text.startswith("ISA"):
            try:
                sep = read_isa(text, 1)[0].element
            except ImportRejected:
                pass
        for kind in ("835", "837"):
            if f"ST{sep}{kind}" in text:
                return kind
        functional = text.split(sep)[1] if text.startswith("GS") and sep else ""
        if "GS" + sep + "HP" in text or functional == "HP":
            return "835"
        if "GS" + sep + "HC" in text or functional == "HC":
            return "837"
        raise ImportRejected(1, text[:3] if text[:3].isalnum() else "", "an X12 file without an 835 or 837 "
                                                                          "transaction set")
    if looks_like_roster(text) or source.name.lower().endswith(".csv"):
        return "csv"
    raise ImportRejected(0, "", "unknown file format: not X12 835/837, FHIR JSON or a CSV roster")


def validate(source: Source, file_format: str, warnings: Warnings, *, strict: bool = False) -> FileFacts:
    """Read and check the whole file (no storage); raises ImportRejected on the first fatal error.

    835: envelopes, counts, amounts and balancing (:func:`summarize_835`); 837: the same
    envelope checks and every claim; FHIR: validation of every resource; CSV: every row.
    """
    facts = FileFacts(file_format)
    if file_format == "835":
        with source.open() as stream:
            facts = summarize_835(stream, warnings, strict=strict)
        facts.payments = facts.payments[:100]
    elif file_format == "837":
        with source.open() as stream:
            facts = summarize_837(stream, warnings, strict=strict)
    elif file_format == "fhir":
        facts = read_fhir(source.read(), warnings).facts
    elif file_format == "csv":
        facts.transactions = read_roster(source.read(), warnings).rows
    else:
        raise ImportRejected(0, "", f"unknown format {file_format[:10]!r}")
    return facts


def units(source: Source, file_format: str, *, strict: bool = False) -> Iterator[Unit]:
    """The units of work of a validated file, in order, each with its 1-based ``ordinal``.

    X12 files are read again as a stream (one claim at a time); FHIR and CSV are small enough
    to read whole. Warnings were collected by :func:`validate` and are not repeated.
    """
    quiet = Warnings(keep=0)
    if file_format == "835":
        with source.open() as stream:
            for item in read_835(X12Reader(stream, warnings=quiet, strict=strict), quiet, strict=strict):
                if isinstance(item, RemitClaim):
                    yield item
    elif file_format == "837":
        with source.open() as stream:
            yield from read_837(X12Reader(stream, warnings=quiet, strict=strict), quiet)
    elif file_format == "fhir":
        yield from read_fhir(source.read(), quiet).units
    elif file_format == "csv":
        yield from read_roster(source.read(), quiet).units


@dataclass(kw_only=True)
class ImportResult(FileFacts):
    """The outcome of importing one file (one object of ``import --json``): its facts, and

    ``status``: ``imported``, ``duplicate`` (the same bytes were imported before: nothing was
    posted), ``rejected`` (nothing was written but the import record; ``error`` has the
    segment number, segment id and message) or, for a dry run, ``valid``; ``outcomes`` counts
    claims by what happened to them; ``dry_run`` when nothing was written on purpose.
    """

    path: str
    status: str
    sha256: str = ""
    warnings: list[str] = field(default_factory=list)
    error: dict[str, Any] | None = None
    outcomes: dict[str, int] = field(default_factory=dict)
    dry_run: bool = False

    @classmethod
    def of(cls, source: Source, facts: FileFacts, status: str, sha256: str, warnings: list[str]) -> ImportResult:
        """A result carrying the counts and totals of ``facts``."""
        return cls(**{f.name: getattr(facts, f.name) for f in fields(FileFacts)}, path=source.name, status=status,
                   sha256=sha256, warnings=warnings)

    def as_json(self) -> dict[str, Any]:
        """The JSON object of PRODUCT.md §3 / the CLI: path, format, status, counts, totals,
        warnings, and ``error`` for a rejection."""
        out: dict[str, Any] = {
            "path": self.path, "format": self.file_format, "status": self.status,
            "transactions": self.transactions, "claims": self.claims, "service_lines": self.service_lines,
            "insurance_paid_cents": self.insurance_paid_cents,
            "patient_responsibility_cents": self.patient_responsibility_cents, "plb_cents": self.plb_cents,
            "charge_cents": self.charge_cents, "warnings": self.warnings, "sha256": self.sha256,
            "outcomes": self.outcomes,
        }
        if self.error is not None:
            out["error"] = self.error
        if self.dry_run:
            out["dry_run"] = True
        return out
