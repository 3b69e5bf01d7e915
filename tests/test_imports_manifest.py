"""Every file of ../shared/data/manifest.csv imported into one clinic, in manifest order: each is
imported or rejected as its ``expect`` column says, each 835's claim count and totals equal what
plain string splitting in this test computes, and ledger-verify is clean afterwards.

``ok``: imported. ``reject``: rejected with a position and a segment id (no crash).
``lenient``: imported or rejected with a position, never a crash.
"""

from __future__ import annotations

import csv
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from chalicelib.imports import services
from chalicelib.imports.files import Source
from chalicelib.ledger.verify import ledger_verify
from chalicelib.tenants import services as tenants

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
ROWS = list(csv.DictReader((DATA / "manifest.csv").open(encoding="utf-8")))
X835 = [r["path"] for r in ROWS if r["format"] == "X12 835"]


def independent_835_totals(data: bytes) -> tuple[int, int, int]:
    """(claims, ΣCLP04, Σ CAS group-PR amounts) in cents, by plain splitting of the file's text."""
    text = data.decode("utf-8-sig").lstrip()
    sep = text[3]
    at = 3
    for _ in range(15):
        at = text.index(sep, at + 1)
    term = text[at + 2]
    if term.isspace():  # "^\n~GS": the visible punctuation is the terminator, else the newline
        following = text[at + 2:].lstrip()[0]
        term = following if not following.isalnum() else "\n"
    segments = [s.strip().split(sep) for s in text.split(term)]
    claims = [s for s in segments if s[0] == "CLP"]
    paid = sum(Decimal(s[4]) for s in claims)
    patient = sum(Decimal(s[i]) for s in segments if s[0] == "CAS" and s[1] == "PR"
                  for i in range(3, len(s), 3) if s[i])
    return len(claims), int(paid * 100), int(patient * 100)


@pytest.fixture(scope="module")
def imported(dynamodb_endpoint: str, request_log: Any) -> tuple[str, dict[str, dict[str, Any]]]:
    request_log.reset()
    clinic_id = tenants.clinic_create(name="Manifest Clinic", time_zone="America/New_York")
    results = {}
    for row in ROWS:
        result = services.import_file(clinic_id=clinic_id, source=Source(path=DATA / row["path"], name=row["path"]))
        results[row["path"]] = result.as_json()
    assert not request_log.violations, request_log.violations[:5]
    assert request_log.operations["Scan"] == 0
    return clinic_id, results


@pytest.mark.parametrize("row", ROWS, ids=[r["path"].rsplit("/", 1)[-1] for r in ROWS])
def test_each_file_is_imported_or_rejected_as_the_manifest_says(imported, row):
    _, results = imported
    result = results[row["path"]]
    if row["expect"] == "ok":
        assert result["status"] == "imported", result.get("error")
    elif row["expect"] == "reject":
        assert result["status"] == "rejected"
    else:
        assert result["status"] in ("imported", "rejected")
    if result["status"] == "rejected":
        error = result["error"]
        assert set(error) == {"segment", "segment_id", "message"} and isinstance(error["segment"], int)
        assert error["message"]


@pytest.mark.parametrize("path", X835, ids=[p.rsplit("/", 1)[-1] for p in X835])
def test_835_counts_and_totals_equal_plain_splitting(imported, path):
    _, results = imported
    result = results[path]
    if result["status"] != "imported":
        pytest.skip("rejected, as its manifest row allows")
    claims, paid, patient = independent_835_totals((DATA / path).read_bytes())
    assert (result["claims"], result["insurance_paid_cents"], result["patient_responsibility_cents"]) == (
        claims, paid, patient)


def test_ledger_verify_is_clean_after_the_whole_folder(imported):
    clinic_id, results = imported
    report = ledger_verify(clinic_id=clinic_id)
    assert report.ok, report.mismatches[:3]
    assert report.balances_checked > 20
    assert sum(r["outcomes"].get("posted", 0) for r in results.values()) > 400


def test_importing_the_folder_again_is_all_duplicates(imported, request_log):
    clinic_id, results = imported
    request_log.reset()
    again = {row["path"]: services.import_file(clinic_id=clinic_id, source=Source(path=DATA / row["path"])).status
             for row in ROWS}
    for path, status in again.items():
        assert status == ("duplicate" if results[path]["status"] == "imported" else "rejected"), path
    assert request_log.operations["TransactWriteItems"] == 0
