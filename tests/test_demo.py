"""The demo pipeline's handling of a data folder (``demo --data DIR``): whatever a folder or its
manifest names, each entry is imported or reported rejected, never a traceback (the end-to-end
run itself is tests/test_e2e.py)."""

from __future__ import annotations

import os

import pytest

from chalicelib.core.errors import InvalidInput
from chalicelib.demo import pipeline
from tests import factories

pytestmark = pytest.mark.usefixtures("dynamodb_endpoint")


def test_manifest_entries_that_cannot_be_read_are_reported_rejected(tmp_path):
    data = tmp_path / "data"
    (data / "sub").mkdir(parents=True)
    (tmp_path / "outside.csv").write_text("guarantor_id,guarantor_first_name,guarantor_last_name\nA1,Ann,Lee\n")
    (data / "ok.csv").write_text("guarantor_id,guarantor_first_name,guarantor_last_name\nB2,Bo,Kim\n")
    os.symlink("loop", data / "loop")
    # Excel's "CSV UTF-8" starts with a BOM; the manifest is still read as one.
    (data / "manifest.csv").write_text("\ufeffpath\nok.csv\nmissing.835\nsub\nloop\n../outside.csv\n", encoding="utf-8")
    paths = pipeline.data_files(data)
    assert sorted(p.name for p in paths) == sorted(["ok.csv", "missing.835", "sub", "loop", "outside.csv"])
    out = pipeline.import_all(factories.clinic(), paths, say=lambda _: None, folder=data)
    status = {os.path.basename(f["path"]): (f["status"], f.get("error", {}).get("message")) for f in out}
    assert status["ok.csv"] == ("imported", None)
    assert status["missing.835"] == ("rejected", "the file does not exist or cannot be read")
    assert status["loop"] == ("rejected", "the file does not exist or cannot be read")
    assert status["sub"] == ("rejected", "not a regular file")
    assert status["outside.csv"] == ("rejected", "the path leads outside the data folder")


def test_a_manifest_that_is_not_utf8_is_a_clear_error(tmp_path):
    (tmp_path / "manifest.csv").write_bytes(b"path\nfich\xe9.835\n")
    with pytest.raises(InvalidInput, match="not a UTF-8 CSV"):
        pipeline.data_files(tmp_path)
