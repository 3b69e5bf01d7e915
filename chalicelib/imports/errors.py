"""The one error every importer raises for a file it refuses, with where and what (PRODUCT.md §3).

A rejection names a position and an id, never a value from the file: the values of a clinic's
files are names, dates of birth and member ids (PHI), so messages say which element is wrong
(``CLP04 is not a decimal amount``), never what it holds.
"""

from __future__ import annotations

from typing import Any

from chalicelib.core.errors import InvalidInput


class ImportRejected(InvalidInput):
    """The file is refused as a whole; nothing was written for it.

    ``position``: 1-based segment number in the file (X12), entry number (FHIR bundle, 0 for
    the resource itself) or row number (CSV, the header is row 1). ``segment_id``: the X12
    segment id (``CLP``), the FHIR resource type or the CSV column. ``message``: what is wrong,
    without file values.
    """

    def __init__(self, position: int, segment_id: str, message: str) -> None:
        super().__init__(f"segment {position} ({segment_id or '-'}): {message}")
        self.position = position
        self.segment_id = segment_id
        self.message = message

    def as_json(self) -> dict[str, Any]:
        """``{"segment": n, "segment_id": "CLP", "message": "..."}`` for reports and records."""
        return {"segment": self.position, "segment_id": self.segment_id, "message": self.message}


class Warnings:
    """Warnings of one import, in file order: the first ``keep`` are kept, the rest counted.

    A warning never stops an import (unknown code values, unbalanced remits, count mismatches
    when not strict); like rejections, warnings name positions and codes, never file values.
    """

    def __init__(self, keep: int = 200) -> None:
        self.keep = keep
        self.items: list[str] = []
        self.total = 0

    def add(self, message: str) -> None:
        """Record one warning."""
        self.total += 1
        if len(self.items) < self.keep:
            self.items.append(message)

    def as_list(self) -> list[str]:
        """The kept warnings, plus a last line saying how many more there were."""
        more = self.total - len(self.items)
        return self.items + ([f"... and {more} more warnings"] if more > 0 else [])
