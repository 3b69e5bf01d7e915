"""Statement rendering: a one-page ReportLab PDF with a remit stub, the pay QR code and short
URL, and the verification code (PRODUCT.md §4, §11; REFERENCE-PORTAL.md H1, K1); QR codes as
SVG and PNG for practice-management print runs.

Speed (PERFORMANCE.md S3): the QR code is made with ``qrcode`` at a fixed mask (automatic mask
selection costs ~8x more) and drawn as one path of merged horizontal runs, not one rectangle
per module; fonts are the PDF base fonts (nothing embedded); page compression is off (a page
is ~10 KB either way, and zlib would cost more than the rest of the page).

Everything here works on in-memory values only (no storage, no clock): the same page renders
in the benchmark's raw baseline. The output carries PHI (names, addresses): never log it.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # loaded by the functions that draw: ``import app`` stays light (B3)
    from reportlab.pdfgen.canvas import Canvas

from chalicelib.core.money import format_cents

#: A fixed mask pattern: valid for every symbol, and ~8x cheaper than trying all eight.
QR_MASK = 2
#: Quiet zone in modules (ISO/IEC 18004 asks for 4).
QR_BORDER = 4


def qr_matrix(data: str) -> list[list[bool]]:
    """The QR code of ``data`` (error correction M, fixed mask), modules without quiet zone."""
    import qrcode
    from qrcode.constants import ERROR_CORRECT_M

    code = qrcode.QRCode(error_correction=ERROR_CORRECT_M, mask_pattern=QR_MASK, border=0)
    code.add_data(data)
    code.make(fit=True)
    return [[bool(m) for m in row] for row in code.modules]


def _runs(matrix: Sequence[Sequence[bool]]) -> list[tuple[int, int, int]]:
    """Dark runs ``(row, start column, length)``, left to right, top to bottom."""
    out = []
    for y, row in enumerate(matrix):
        x, n = 0, len(row)
        while x < n:
            if row[x]:
                start = x
                while x < n and row[x]:
                    x += 1
                out.append((y, start, x - start))
            else:
                x += 1
    return out


def qr_svg(data: str, *, module: int = 4) -> str:
    """A standalone SVG of the QR code of ``data`` (one path, quiet zone included)."""
    matrix = qr_matrix(data)
    size = (len(matrix) + 2 * QR_BORDER) * module
    d = "".join(f"M{(x + QR_BORDER) * module} {(y + QR_BORDER) * module}h{n * module}v{module}h-{n * module}z"
                for y, x, n in _runs(matrix))
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{size}" height="{size}" '
            f'viewBox="0 0 {size} {size}" shape-rendering="crispEdges">'
            f'<rect width="{size}" height="{size}" fill="#fff"/><path d="{d}" fill="#000"/></svg>')


def qr_png(data: str, *, module: int = 8) -> bytes:
    """A PNG of the QR code of ``data`` (1 bit per pixel, quiet zone included)."""
    from PIL import Image  # Pillow comes with ReportLab; loaded only when a PNG is asked for

    matrix = qr_matrix(data)
    side = len(matrix) + 2 * QR_BORDER
    image = Image.new("1", (side, side), 1)
    pixels = image.load()
    assert pixels is not None
    for y, x, n in _runs(matrix):
        for i in range(n):
            pixels[x + QR_BORDER + i, y + QR_BORDER] = 0
    image = image.resize((side * module, side * module), Image.Resampling.NEAREST)
    out = io.BytesIO()
    image.save(out, format="PNG", optimize=True)
    return out.getvalue()


@dataclass(frozen=True)
class PrintedLine:
    """One service line as printed: ISO date, patient, code and text, cents, new or not."""

    date_of_service: str
    patient: str
    procedure_code: str
    description: str
    balance_cents: int
    new: bool


@dataclass(frozen=True)
class StatementDoc:
    """Everything printed on one statement. Money in cents; dates ISO.

    ``amount_due_cents`` is what this statement's account owes now (the patient's share on a
    per-patient statement). ``pay_url`` is printed as text when set; ``qr_url`` is drawn as a
    QR code when set. ``remit_lines``: the remit address, its first line printed as "Make check
    payable to".
    """

    practice_name: str
    office_lines: tuple[str, ...]
    remit_lines: tuple[str, ...]
    recipient_lines: tuple[str, ...]
    account_number: str
    statement_date: str
    due_date: str
    amount_due_cents: int
    previously_billed_cents: int
    new_charges_cents: int
    unapplied_cents: int
    lines: tuple[PrintedLine, ...] = ()
    pay_url: str | None = None
    qr_url: str | None = None
    verification_code: str | None = None
    verify_url: str | None = None
    notice: str | None = None
    patient_label: str | None = None
    extra: dict[str, str] = field(default_factory=dict)


LINES_ON_FIRST_PAGE = 12
LINES_PER_PAGE = 40


def _text(c: Canvas, x: float, y: float, value: str, *, size: float = 9, bold: bool = False,
          right: bool = False) -> None:
    c.setFont("Helvetica-Bold" if bold else "Helvetica", size)
    if right:
        c.drawRightString(x, y, value)
    else:
        c.drawString(x, y, value)


def _draw_qr(c: Canvas, matrix: Sequence[Sequence[bool]], x: float, y: float, size: float) -> None:
    """Draw the QR code with its top-left corner at (x, y + size): one filled path."""
    n = len(matrix) + 2 * QR_BORDER
    m = size / n
    c.setFillColorRGB(1, 1, 1)
    c.rect(x, y, size, size, stroke=0, fill=1)
    c.setFillColorRGB(0, 0, 0)
    top = y + size - QR_BORDER * m
    # One path of "x y w h re" operators, filled once: ~10x faster than a PathObject per rect.
    ops = [f"{x + (col + QR_BORDER) * m:.2f} {top - (row + 1) * m:.2f} {length * m:.2f} {m:.2f} re"
           for row, col, length in _runs(matrix)]
    c.addLiteral("\n".join(ops) + "\nf")


def _lines_table(c: Canvas, lines: Sequence[PrintedLine], top: float) -> float:
    _text(c, 40, top, "Date", bold=True, size=8)
    _text(c, 100, top, "Patient", bold=True, size=8)
    _text(c, 230, top, "Service", bold=True, size=8)
    _text(c, 490, top, "", bold=True, size=8)
    _text(c, 572, top, "Your balance", bold=True, size=8, right=True)
    c.line(40, top - 3, 572, top - 3)
    y = top - 14
    for ln in lines:
        _text(c, 40, y, ln.date_of_service, size=8)
        _text(c, 100, y, ln.patient[:24], size=8)
        _text(c, 230, y, f"{ln.procedure_code} {ln.description}"[:48], size=8)
        _text(c, 490, y, "new" if ln.new else "billed before", size=7)
        _text(c, 572, y, format_cents(ln.balance_cents), size=8, right=True)
        y -= 12
    return y


def statement_pdf(doc: StatementDoc) -> bytes:
    """Render ``doc`` as a Letter-size PDF: header, summary, lines, pay box, remit stub.

    Typical accounts (up to :data:`LINES_ON_FIRST_PAGE` lines) fit one page; further lines
    continue on following pages, and the remit stub stays at the foot of the first page.
    Returns the PDF bytes. Raises nothing for long text: fields are clipped to their boxes.
    """
    from reportlab.lib.pagesizes import LETTER
    from reportlab.pdfgen.canvas import Canvas

    out = io.BytesIO()
    c = Canvas(out, pagesize=LETTER, pageCompression=0, invariant=1)
    c.setTitle(f"Statement {doc.account_number} {doc.statement_date}")
    height = LETTER[1]
    # Header: the practice and its billing office.
    _text(c, 40, height - 50, doc.practice_name[:60], size=14, bold=True)
    y = height - 64
    for line in doc.office_lines[:5]:
        _text(c, 40, y, line[:70], size=8)
        y -= 10
    _text(c, 572, height - 50, "STATEMENT", size=14, bold=True, right=True)
    facts = [("Statement date", doc.statement_date), ("Account number", doc.account_number),
             ("Due date", doc.due_date), ("Amount due", format_cents(doc.amount_due_cents))]
    fy = height - 66
    for label, value in facts:
        _text(c, 470, fy, label, size=8, right=True)
        _text(c, 572, fy, value, size=9, bold=True, right=True)
        fy -= 12
    # Recipient (window-envelope position).
    ry = height - 140
    for line in doc.recipient_lines[:5]:
        _text(c, 60, ry, line[:50], size=10)
        ry -= 12
    if doc.patient_label:
        _text(c, 330, height - 140, f"Patient: {doc.patient_label[:40]}", size=9)
    # Summary.
    sy = height - 225
    c.setStrokeColorRGB(0.6, 0.6, 0.6)
    c.rect(40, sy - 52, 532, 62, stroke=1, fill=0)
    c.setStrokeColorRGB(0, 0, 0)
    summary = [("Previously billed", doc.previously_billed_cents), ("New charges", doc.new_charges_cents),
               ("Unapplied payments", -doc.unapplied_cents), ("Amount due", doc.amount_due_cents)]
    for i, (label, cents) in enumerate(summary):
        x = 50 + i * 132
        _text(c, x, sy - 8, label, size=8)
        _text(c, x, sy - 24, format_cents(cents), size=12, bold=(i == 3))
    _text(c, 50, sy - 44, f"Please pay {format_cents(doc.amount_due_cents)} by {doc.due_date}.", size=9)
    if doc.notice:
        _text(c, 300, sy - 44, doc.notice[:60], size=9, bold=True)
    # Lines.
    first, rest = doc.lines[:LINES_ON_FIRST_PAGE], doc.lines[LINES_ON_FIRST_PAGE:]
    ly = _lines_table(c, first, sy - 72)
    if rest:
        _text(c, 40, ly - 2, f"{len(rest)} more line(s) on the following page(s).", size=8)
    # Pay online: QR code, short URL, verification code.
    py = 300
    if doc.qr_url or doc.pay_url:
        _text(c, 40, py + 70, "Pay online", size=11, bold=True)
        tx = 40
        if doc.qr_url:
            _draw_qr(c, qr_matrix(doc.qr_url), 40, py - 20, 86)
            tx = 140
            _text(c, tx, py + 50, "Scan with your phone's camera to pay securely.", size=9)
        if doc.pay_url:
            _text(c, tx, py + 34, "Or type this address:", size=9)
            _text(c, tx, py + 20, doc.pay_url, size=7.5)
    if doc.verification_code:
        where = f" at {doc.verify_url}" if doc.verify_url else ""
        _text(c, 40 if not (doc.qr_url or doc.pay_url) else 140, py - 4,
              f"Is this bill genuine? Check code {doc.verification_code}{where}.", size=8)
    # Remit stub.
    c.setDash(4, 3)
    c.line(30, 232, 582, 232)
    c.setDash()
    _text(c, 40, 238, "Please detach and return this part with your payment.", size=7)
    _text(c, 40, 214, doc.practice_name[:60], size=10, bold=True)
    stub = [("Account number", doc.account_number), ("Statement date", doc.statement_date),
            ("Due date", doc.due_date), ("Amount due", format_cents(doc.amount_due_cents))]
    sy2 = 214
    for label, value in stub:
        _text(c, 470, sy2, label, size=8, right=True)
        _text(c, 572, sy2, value, size=9, bold=True, right=True)
        sy2 -= 13
    _text(c, 470, sy2 - 4, "Amount enclosed", size=8, right=True)
    c.rect(480, sy2 - 10, 92, 16, stroke=1, fill=0)
    if doc.remit_lines:
        _text(c, 330, 120, "Make check payable to:", size=8)
        _text(c, 330, 108, doc.remit_lines[0][:45], size=9, bold=True)
        ay = 96
        for line in doc.remit_lines[1:4]:
            _text(c, 330, ay, line[:45], size=9)
            ay -= 11
    gy = 150
    for line in doc.recipient_lines[:4]:
        _text(c, 40, gy, line[:45], size=9)
        gy -= 11
    c.showPage()
    for start in range(0, len(rest), LINES_PER_PAGE):
        _text(c, 40, height - 50, f"{doc.practice_name[:60]}: account {doc.account_number}, "
                                  f"statement {doc.statement_date} (continued)", size=10, bold=True)
        _lines_table(c, rest[start:start + LINES_PER_PAGE], height - 80)
        c.showPage()
    c.save()
    return out.getvalue()
