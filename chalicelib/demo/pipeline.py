"""The product's main job end to end on whatever backend is bound (PRODUCT.md §1, issue #8).

:func:`run`: set up the demo clinic; import its files through the real importers (the
generated roster, 837 and 835, or every file of a folder such as ``../shared/data``); bill the
guarantors with a patient balance in today's statement run (PDFs with QR codes, the balance
notification and the reminders it sets off); send what is due through the notification
worker (console channel on the embedded default); verify the ledger; and issue payment links
for the five largest amounts due. Each step is the same service the cloud's handlers call;
nothing writes to storage directly.
"""

from __future__ import annotations

import csv
import os
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from chalicelib.accounts import selectors as account_selectors
from chalicelib.core.errors import DomainError, InvalidInput
from chalicelib.demo.clinic import DemoClinic, setup, write_files
from chalicelib.imports import services as imports
from chalicelib.imports.errors import ImportRejected
from chalicelib.imports.files import Source, detect
from chalicelib.ledger import verify
from chalicelib.links import services as links
from chalicelib.notify import local as notify_local
from chalicelib.notify import selectors as notify_selectors
from chalicelib.statements import selectors as statement_selectors
from chalicelib.statements import services as statements

#: Import order by format: people first, then claims, then the remittances that match them.
ORDER = {"csv": 0, "fhir": 1, "837": 2, "835": 3}
SKIP_SUFFIXES = (".md", ".html", ".htm", ".pdf")


@dataclass
class DemoResult:
    """What one pipeline run did. Money in cents; ``files`` are the importers' JSON objects."""

    clinic: DemoClinic
    files: list[dict[str, Any]]
    guarantors: int
    guarantors_billed: int
    statement_errors: dict[str, int]
    messages: dict[str, int]
    pay_links: list[dict[str, Any]]
    ledger_ok: bool
    balances_checked: int
    outbox: str
    largest: list[dict[str, Any]] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        """The ``--json`` object (issue #8): files_imported, guarantors_billed, messages_sent,
        pay_links (URLs) and the detail behind them."""
        return {
            "clinic_id": self.clinic.clinic_id, "group_id": self.clinic.group_id,
            "files_imported": sum(f["status"] == "imported" for f in self.files),
            "files_rejected": sum(f["status"] == "rejected" for f in self.files),
            "files": [{k: f[k] for k in ("path", "format", "status", "claims", "service_lines",
                                         "patient_responsibility_cents") if k in f}
                      | ({"error": f["error"]} if "error" in f else {}) for f in self.files],
            "guarantors": self.guarantors, "guarantors_billed": self.guarantors_billed,
            "statement_errors": sum(self.statement_errors.values()),
            "statement_errors_by_reason": self.statement_errors,
            "messages_sent": self.messages.get("sent", 0), "messages": self.messages,
            "pay_links": [p["url"] for p in self.pay_links], "pay_link_guarantors": self.pay_links,
            "ledger_ok": self.ledger_ok, "balances_checked": self.balances_checked, "outbox": self.outbox,
            "staff_login": self.clinic.admin_email,
        }


def data_files(folder: Path) -> list[Path]:
    """The files of a data folder: those its ``manifest.csv`` lists (a ``path`` column, as
    ../shared/data has; UTF-8, a BOM is fine), else every file under it except hidden ones,
    licence folders (LICENSES) and documents (.md, .html, .pdf). A listed path that is missing,
    not a file or outside the folder is kept: :func:`import_all` reports it rejected. Raises
    FileNotFoundError when the folder does not exist, InvalidInput for an unreadable manifest."""
    if not folder.is_dir():
        raise FileNotFoundError(f"--data {folder}: not a folder")
    manifest = folder / "manifest.csv"
    if manifest.is_file():
        try:
            with manifest.open(newline="", encoding="utf-8-sig") as fh:
                rows = list(csv.DictReader(fh))
        except (UnicodeDecodeError, csv.Error) as exc:
            raise InvalidInput(f"{manifest}: not a UTF-8 CSV file ({type(exc).__name__})") from None
        if rows and "path" in rows[0]:
            return sorted(folder / r["path"] for r in rows if r.get("path"))
    return sorted(p for p in folder.rglob("*") if p.is_file()
                  and not any(part.startswith(".") or part.upper() == "LICENSES"
                              for part in p.relative_to(folder).parts)
                  and p.suffix.lower() not in SKIP_SUFFIXES)


def _unreadable(path: Path, folder: Path | None) -> str | None:
    """Why ``path`` cannot be imported at all (outside the data folder, missing, not a regular
    file), else None."""
    try:
        resolved = path.resolve(strict=True)
    except (OSError, RuntimeError):
        return "the file does not exist or cannot be read"
    if folder is not None and not resolved.is_relative_to(folder.resolve()):
        return "the path leads outside the data folder"
    if not resolved.is_file():
        return "not a regular file"
    return None


def _rejected(path: Path, message: str) -> dict[str, Any]:
    return {"path": str(path), "format": "", "status": "rejected", "transactions": 0, "claims": 0,
            "service_lines": 0, "insurance_paid_cents": 0, "patient_responsibility_cents": 0, "plb_cents": 0,
            "warnings": [], "error": {"segment": 0, "segment_id": "", "message": message}}


def _order(path: Path) -> tuple[int, str]:
    try:
        fmt = detect(Source(path=str(path), name=path.name))
    except (ImportRejected, OSError):
        fmt = ""
    return ORDER.get(fmt, 9), str(path)


def import_all(clinic_id: str, paths: list[Path], say: Callable[[str], None] = print,
               folder: Path | None = None) -> list[dict[str, Any]]:
    """Import each file (people, then claims, then remittances); a rejected file, or a path
    that cannot be read or leads outside ``folder``, is reported and the rest go on. Returns
    the importers' JSON objects in import order."""
    out = []
    for path in sorted(paths, key=_order):
        why = _unreadable(path, folder)
        if why is not None:
            out.append(_rejected(path, why))
            say(f"  rejected {path.name}: {why}")
            continue
        result = imports.import_file(clinic_id=clinic_id, source=Source(path=str(path), name=str(path)))
        say(f"  {result.status} {path.name}")
        out.append(result.as_json())
    return out


def run(*, work_dir: Path, data: Path | None = None, families: int = 200, seed: int = 7,
        say: Callable[[str], None] = print) -> DemoResult:
    """Run the pipeline once on the bound table (module docstring); generated files go to
    ``work_dir/files``; ``say`` gets one progress line per step. Raises FileNotFoundError for a
    missing ``data`` folder, InvalidInput when the statement run cannot start (e.g. no portal
    base URL configured)."""
    listed = data_files(data) if data is not None else None  # a bad folder fails before anything is written
    clinic = setup()
    paths = listed if listed is not None else write_files(work_dir / "files", families=families, seed=seed)
    say(f"importing {len(paths)} files ...")
    files = import_all(clinic.clinic_id, paths, say, folder=data)
    say("billing today's statement run ...")
    run_item = statements.statement_run_start(clinic_id=clinic.clinic_id)
    view = statement_selectors.statement_run_get(clinic_id=clinic.clinic_id, run_id=run_item.run_id)
    statements.balance_notices_bill(clinic_id=clinic.clinic_id)  # the run billed them: clears the notices
    say(f"  {view.statements_created} statements; sending the balance notifications ...")
    notify_local.tick(clinic_ids=[clinic.clinic_id])  # the run queued them (electronic statements)
    report = verify.ledger_verify(clinic_id=clinic.clinic_id)
    guarantors = account_selectors.guarantors_list(clinic_id=clinic.clinic_id)
    messages: Counter[str] = Counter()
    for g in guarantors:
        messages.update(m.status for m in notify_selectors.outbox_list(clinic_id=clinic.clinic_id,
                                                                       guarantor_id=g.guarantor_id))
    figures = [(g.figures.balances.amount_due, g.figures.balances.current_balance, g) for g in guarantors]
    figures.sort(key=lambda t: (-t[0], -t[1], t[2].guarantor_id))
    pay_links = []
    for due, current, g in figures[:5]:
        if current <= 0:
            break
        try:
            url = links.link_issue(clinic_id=clinic.clinic_id, guarantor_id=g.guarantor_id, group_id=clinic.group_id,
                                   kind=links.LinkKind.EMAIL).url
        except DomainError:
            continue
        pay_links.append({"url": url, "guarantor_id": g.guarantor_id, "amount_due_cents": due,
                          "current_balance_cents": current})
    largest = [{"guarantor_id": g.guarantor_id, "account_number": g.account_number,
                "name": f"{g.first_name} {g.last_name}", "amount_due_cents": due,
                "current_balance_cents": current} for due, current, g in figures[:8]]
    return DemoResult(
        clinic=clinic, files=files, guarantors=len(guarantors), guarantors_billed=int(view.guarantors_billed),
        statement_errors=dict(Counter(reason for _, reason in view.errors)), messages=dict(messages),
        pay_links=pay_links, ledger_ok=report.ok, balances_checked=report.balances_checked,
        outbox=str(notify_local.outbox_path()), largest=largest)


def environment_defaults(work_dir: Path, port: int) -> None:
    """Embedded-default settings for a demo process that has none: the portal's base URL and
    the folders of statement PDFs and of the console outbox under ``work_dir``."""
    os.environ.setdefault("FRONTDESK_PORTAL_URL", f"http://127.0.0.1:{port}")
    os.environ.setdefault("FRONTDESK_STATEMENTS_DIR", str(work_dir / "statements"))
    os.environ.setdefault("FRONTDESK_OUTBOX_DIR", str(work_dir / "outbox"))
