"""A rendered statement PDF: its QR code decodes to the statement's pay URL (rasterised with
Debian's pdftoppm, decoded with zxing-cpp), one page for a typical account, remit stub, short
URL and verification code printed; QR codes as SVG and PNG decode too."""

from __future__ import annotations

import io
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import zxingcpp
from PIL import Image

from chalicelib.links import services as links
from chalicelib.links.services import LinkKind
from chalicelib.statements import render, storage
from chalicelib.statements import selectors as st_selectors
from chalicelib.statements import services as statements
from chalicelib.store import keys
from chalicelib.store.db import clinic_scope
from chalicelib.store.models import StatementItem
from chalicelib.store.models_statements import StatementRecordItem
from tests import statements_fixtures as sf
from tests.statements_fixtures import statements_env  # noqa: F401 (fixture)

needs_poppler = pytest.mark.skipif(shutil.which("pdftoppm") is None,
                                   reason="pdftoppm missing: apt-get install poppler-utils (.ci/run does)")


def _pages(pdf: bytes, tmp: Path, dpi: int = 150) -> list[Image.Image]:
    (tmp / "s.pdf").write_bytes(pdf)
    subprocess.run(["pdftoppm", "-r", str(dpi), "-gray", "-png", str(tmp / "s.pdf"), str(tmp / "page")], check=True)
    return [Image.open(p) for p in sorted(tmp.glob("page*.png"))]


def _text(pdf: bytes, tmp: Path) -> str:
    (tmp / "t.pdf").write_bytes(pdf)
    return subprocess.run(["pdftotext", "-layout", str(tmp / "t.pdf"), "-"], check=True, capture_output=True,
                          text=True).stdout


def _decode(image: Image.Image) -> list[str]:
    return [r.text for r in zxingcpp.read_barcodes(image) if r.format == zxingcpp.BarcodeFormat.QRCode]


@needs_poppler
@pytest.mark.usefixtures("dynamodb_endpoint", "statements_env")
def test_run_pdf_qr_decodes_to_the_statements_pay_url(tmp_path):
    c = sf.Clock()
    cid, gid = sf.clinic()
    f = sf.family(cid)
    for i in range(4):
        sf.owes(f, 1_000 + i, dos=f"2026-10-0{i + 1}")
    statements.statement_run_start(clinic_id=cid, run_date=c.today)
    [row] = st_selectors.statement_history(clinic_id=cid, guarantor_id=f.guarantor_id)
    with clinic_scope(cid):
        item = StatementItem.get(keys.guarantor_pk(cid, f.guarantor_id), keys.statement_sk(row.statement_id))
    assert isinstance(item, StatementRecordItem) and item.pdf_key
    pdf = storage.storage().get(item.pdf_key)
    pages = _pages(pdf, tmp_path)
    assert len(pages) == 1  # a typical account fits one page, remit stub included
    [decoded] = _decode(pages[0])
    assert decoded.startswith(f"{sf.PORTAL}/l/{cid}.")
    resolved = links.link_resolve(token=decoded.rsplit("/", 1)[1])
    assert (resolved.guarantor_id, resolved.group_id, resolved.kind, resolved.statement_id) == (
        f.guarantor_id, gid, LinkKind.STATEMENT_QR, row.statement_id)
    text = _text(pdf, tmp_path)
    printed = re.search(r"(https://pay\.example\.org/l/\S+)", text)
    assert printed and printed.group(1) != decoded  # the typed URL is its own link (statement URL origin)
    assert links.link_resolve(token=printed.group(1).rsplit("/", 1)[1]).kind == LinkKind.STATEMENT_URL
    assert row.verification_code and row.verification_code in text
    assert f"{sf.PORTAL}/verify?c={cid}" in text  # the page learns which practice the code is from
    assert "Make check payable to" in text and "Amount enclosed" in text and f.guarantor_id in text
    assert "$40.06" in text  # amount due: 1,000 + 1,001 + 1,002 + 1,003 cents


@needs_poppler
def test_long_accounts_continue_on_further_pages_and_every_page_renders(tmp_path):
    lines = tuple(render.PrintedLine(f"2026-10-{1 + i % 28:02d}", "Jane Doe", "99213", "Office visit", 1_000, True)
                  for i in range(30))
    doc = render.StatementDoc("Clinic", ("1 Way",), ("Clinic", "PO Box 1"), ("Jane Doe", "1 St", "Town, IL 1"),
                              "g_1", "2026-11-01", "2026-11-22", 30_000, 0, 30_000, 0, lines,
                              qr_url="https://pay.example.org/l/x", verification_code="ABCD-EFGH")
    pdf = render.statement_pdf(doc)
    pages = _pages(pdf, tmp_path, dpi=100)
    assert len(pages) == 2
    assert _decode(_pages(pdf, tmp_path / "..", dpi=150)[0]) == ["https://pay.example.org/l/x"]


def test_qr_svg_and_png_decode_to_the_url():
    url = f"{sf.PORTAL}/l/c_0123456789abcdef." + "A" * 43
    png = Image.open(io.BytesIO(render.qr_png(url)))
    assert _decode(png.convert("L")) == [url]
    svg = render.qr_svg(url)
    assert svg.startswith("<svg") and 'shape-rendering="crispEdges"' in svg
    # Rasterise the SVG's runs back into pixels to decode it without an SVG renderer.
    size = int(re.search(r'width="(\d+)"', svg).group(1))  # type: ignore[union-attr]
    image = Image.new("L", (size, size), 255)
    for x, y, w in re.findall(r"M(\d+) (\d+)h(\d+)", svg):
        for dx in range(int(w)):
            for dy in range(4):
                image.putpixel((int(x) + dx, int(y) + dy), 0)
    assert _decode(image) == [url]


def test_a_missing_local_pdf_says_which_folder_was_searched(tmp_path):
    from chalicelib.core.errors import NotFound

    with pytest.raises(NotFound, match=r"not found in .*pdfs \(FRONTDESK_STATEMENTS_DIR\)"):
        storage.LocalStorage(str(tmp_path / "pdfs")).get("c_1/run/st_1.pdf")
