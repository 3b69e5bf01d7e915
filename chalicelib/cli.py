"""``python -m chalicelib.cli``: the command line of Frontdesk.

Commands: ``dynamodb-local [--port N]``, ``create-tables``, ``guarantors --json``,
``messages --guarantor ID [--clinic ID] [--json]``, ``ledger-verify --json``,
``demo [--no-serve] [--json] [--port N] [--guarantors N] [--data DIR] [--out DIR]``,
``statements-run [--clinic ID] [--json]``, ``statement-codes (--guarantors IDS | --statements IDS)
--clinic ID [--out DIR]``, ``api-key-create --clinic ID [--label TEXT] [--json]``,
``import PATH... [--clinic ID] [--format auto|835|837|fhir|csv] [--dry-run] [--strict] [--json]``.
DynamoDB endpoint and table come from ``AWS_ENDPOINT_URL_DYNAMODB`` and ``FRONTDESK_TABLE``.
Exit codes: 0 success, 1 a check failed (ledger-verify; import: a file was rejected), 2 bad usage
or a domain error, 3 DynamoDB unreachable or failing.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from contextlib import ExitStack
from typing import Any
from urllib.parse import urlparse

from botocore.exceptions import BotoCoreError, ClientError
from pynamodb.exceptions import PynamoDBException

from chalicelib import dynamodb_local
from chalicelib.accounts import selectors as account_selectors
from chalicelib.core import config
from chalicelib.core.errors import DomainError
from chalicelib.core.money import format_cents
from chalicelib.ledger import verify
from chalicelib.store import db, tables


class Unreachable(Exception):
    """DynamoDB did not answer (exit code 3)."""


def _bind() -> None:
    """Bind the store; wait up to 30 s for a local endpoint that is still starting (S1)."""
    config.reset()
    cfg = config.settings()
    endpoint = cfg.dynamodb_endpoint
    if endpoint is None:
        print(f"note: no AWS_ENDPOINT_URL_DYNAMODB set; using AWS DynamoDB in {cfg.region}", file=sys.stderr)
    else:
        parsed = urlparse(endpoint)
        if parsed.hostname in ("127.0.0.1", "localhost", "::1") and parsed.port:
            try:
                dynamodb_local.wait_ready(parsed.port, timeout=30)
            except TimeoutError:
                raise Unreachable(f"nothing answers at {endpoint}: is DynamoDB Local running?") from None
    db.bind()


def cmd_dynamodb_local(args: argparse.Namespace) -> int:
    """Replace this process with DynamoDB Local, so Ctrl-C and kill stop Java itself."""
    print(f"DynamoDB Local (in memory) on http://127.0.0.1:{args.port}; Ctrl-C stops it", flush=True)
    command = dynamodb_local.command(args.port)
    os.chdir(tempfile.mkdtemp(prefix="dynamodb-local-"))  # the jar writes a metadata file in cwd
    os.execv(command[0], command)  # noqa: S606 - a fixed command line of our own
    return 0  # not reached


def cmd_create_tables(args: argparse.Namespace) -> int:
    _bind()
    name = config.settings().table_name
    created = tables.table_create(table_name=name)
    print(f"table {name} {'created' if created else 'already exists'}")
    return 0


def guarantor_rows(clinic_id: str | None) -> list[dict[str, Any]]:
    """Every guarantor (of one clinic or all) with balances in cents, for ``guarantors``."""
    rows = []
    for cid in [clinic_id] if clinic_id else verify.clinic_ids():
        for g in account_selectors.guarantors_list(clinic_id=cid):
            b = g.figures.balances
            rows.append({
                "clinic_id": cid, "guarantor_id": g.guarantor_id, "account_number": g.account_number,
                "first_name": g.first_name, "last_name": g.last_name,
                "statement_balance_cents": b.statement_balance,
                "amount_due_cents": b.amount_due,
                "current_balance_cents": b.current_balance,
                "unapplied_funds_cents": b.unapplied_funds,
                "collections_balance_cents": b.collections_balance,
                "dunning_count": g.dunning_count,
            })
    return rows


def cmd_guarantors(args: argparse.Namespace) -> int:
    _bind()
    rows = guarantor_rows(args.clinic)
    if args.json:
        print(json.dumps(rows, indent=2, ensure_ascii=False))
    else:
        for r in rows:
            print(f"{r['guarantor_id']}  account {r['account_number']}  {r['first_name']} {r['last_name']}: "
                  f"statement balance {format_cents(r['statement_balance_cents'])}, amount due "
                  f"{format_cents(r['amount_due_cents'])}, current balance {format_cents(r['current_balance_cents'])}, "
                  f"unapplied {format_cents(r['unapplied_funds_cents'])}, collections "
                  f"{format_cents(r['collections_balance_cents'])}")
    return 0


def message_rows(guarantor_id: str, clinic_id: str | None) -> list[dict[str, Any]]:
    """A guarantor's outbox (newest first) for ``messages``: kind, channel, status and its
    reason, due and sent times (UTC), rule and statement; no bodies or addresses."""
    from chalicelib.notify import selectors as notify_selectors

    rows = []
    for cid in [clinic_id] if clinic_id else verify.clinic_ids():
        for m in notify_selectors.outbox_list(clinic_id=cid, guarantor_id=guarantor_id):
            rows.append({"clinic_id": cid, "message_id": m.message_id, "kind": m.kind, "channel": m.channel,
                         "status": m.status, "reason": m.reason, "due_at": m.due_at, "sent_at": m.sent_at,
                         "rule_id": m.rule_id, "statement_id": m.statement_id})
    return rows


def cmd_messages(args: argparse.Namespace) -> int:
    _bind()
    rows = message_rows(args.guarantor, args.clinic)
    if args.json:
        print(json.dumps(rows, indent=2))
    elif not rows:
        print(f"no messages for guarantor {args.guarantor}")
    else:
        for r in rows:
            why = f" ({r['reason']})" if r["reason"] else ""
            print(f"{r['due_at']}  {r['kind']:<14} {r['channel']:<5} {r['status']}{why}")
    return 0


def cmd_ledger_verify(args: argparse.Namespace) -> int:
    _bind()
    report = verify.ledger_verify(clinic_id=args.clinic)
    if args.json:
        print(json.dumps(report.as_json(), indent=2))
    else:
        print(f"{'ok' if report.ok else 'MISMATCH'}: {report.balances_checked} balances checked, "
              f"{len(report.mismatches)} mismatches")
        for m in report.mismatches:
            print(json.dumps(m))
    return 0 if report.ok else 1


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def cmd_demo(args: argparse.Namespace) -> int:
    """The product's main job on the embedded default (chalicelib/demo/pipeline.py), then serve
    the portal with ``chalice local`` and the scheduled handlers on a local timer."""
    import shutil
    from pathlib import Path

    from chalicelib.demo import pipeline

    if args.guarantors < 1:
        print("error: --guarantors must be at least 1", file=sys.stderr)
        return 2
    if not args.no_serve and not _port_free(args.port):
        print(f"error: port {args.port} is in use; pass --port N", file=sys.stderr)
        return 2
    data = Path(args.data).resolve() if args.data else None
    if data is not None and not data.is_dir():
        print(f"error: --data {args.data}: not a folder", file=sys.stderr)
        return 2
    work = Path(args.out).resolve() if args.out else Path(dynamodb_local.ROOT) / "var" / "demo"
    shutil.rmtree(work / "files", ignore_errors=True)
    shutil.rmtree(work / "outbox", ignore_errors=True)
    shutil.rmtree(work / "statements", ignore_errors=True)
    with ExitStack() as stack:
        if not os.environ.get("AWS_ENDPOINT_URL_DYNAMODB"):
            endpoint = stack.enter_context(dynamodb_local.running())
            os.environ["AWS_ENDPOINT_URL_DYNAMODB"] = endpoint
            if not args.json:
                print(f"DynamoDB Local (in memory) started at {endpoint}", flush=True)
        if urlparse(os.environ["AWS_ENDPOINT_URL_DYNAMODB"]).hostname in ("127.0.0.1", "localhost", "::1"):
            # The emulator on a busy laptop can pause past the 2 s read timeout meant for AWS;
            # a timed-out write is then retried against itself. Give it room (both processes).
            os.environ.setdefault("FRONTDESK_DDB_READ_TIMEOUT", "10")
        base = f"http://127.0.0.1:{args.port}"
        os.environ.setdefault("FRONTDESK_PORTAL_URL", base)
        os.environ.setdefault("FRONTDESK_STATEMENTS_DIR", str(work / "statements"))
        os.environ.setdefault("FRONTDESK_OUTBOX_DIR", str(work / "outbox"))
        _bind()
        table = config.settings().table_name
        tables.table_create(table_name=table)
        what = f"the files of {data}" if data else f"a generated clinic of {args.guarantors} families"
        print(f"the demo clinic, from {what}:", file=sys.stderr, flush=True)
        result = pipeline.run(work_dir=work, data=data, families=args.guarantors,
                              say=lambda line: print(line, file=sys.stderr, flush=True))
        if args.json:
            out = result.as_json()
            if not args.no_serve:
                out["portal"] = base
            print(json.dumps(out, indent=2, ensure_ascii=False), flush=True)
        else:
            _demo_print(result)
        if args.no_serve:
            return 0 if result.ledger_ok else 1
        from chalicelib.demo.scheduler import LocalSchedule

        echo = logging.StreamHandler(sys.stderr)  # one line per message the timer sends (no PHI)
        echo.setFormatter(logging.Formatter("[outbox] %(message)s"))
        outbox_log = logging.getLogger("frontdesk.outbox")
        outbox_log.addHandler(echo)
        outbox_log.setLevel(logging.INFO)
        stack.callback(LocalSchedule(every=30).start().stop)
        print(f"\nThe scheduled handlers (reminders, receipts, batches, statement runs) run every 30 s; "
              f"email and texts go to {result.outbox}", flush=True)
        print(f"Serving the portal with `chalice local` at {base}; Ctrl-C stops everything.", flush=True)
        env = dict(os.environ, FRONTDESK_TABLE=table)
        chalice = os.path.join(os.path.dirname(sys.executable), "chalice")
        proc = subprocess.Popen([chalice, "local", "--stage", "local", "--port", str(args.port), "--no-autoreload"],
                                env=env, cwd=dynamodb_local.ROOT)
        signal.signal(signal.SIGTERM, _interrupt)  # `kill` stops chalice local too, like Ctrl-C
        try:
            return proc.wait()
        except KeyboardInterrupt:
            proc.terminate()  # SIGTERM: a SIGINT may be ignored when started in the background
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
            return 0


def _could_not(errors: dict[str, int]) -> str:
    """`` (23 could not be billed: no_address 23)`` or nothing."""
    if not errors:
        return ""
    reasons = ", ".join(f"{reason} {n}" for reason, n in sorted(errors.items()))
    return f" ({sum(errors.values())} could not be billed: {reasons})"


def _demo_print(result: Any) -> None:
    """The demo's human summary: files, billing, messages, the largest balances, pay links."""
    print("\nImported:")
    for f in result.files:
        line = f"  {f['status']:<9} {f['format'] or '?':<5} {os.path.relpath(f['path'])}"
        if f["status"] == "rejected" and f.get("error"):
            line += f": {f['error']['message']}"
        elif f["claims"]:
            # A claim file (837) carries charges; a remittance (835) says what the patient owes.
            money = (f"charges {format_cents(f['charge_cents'])}" if f["format"] == "837" else
                     f"patient responsibility {format_cents(f['patient_responsibility_cents'])}")
            line += f": {f['claims']} claims, {money}"
        print(line)
    print(f"\nClinic {result.clinic.clinic_id}: {result.guarantors} guarantors; today's statement run billed "
          f"{result.guarantors_billed}{_could_not(result.statement_errors)}; ledger "
          f"{'verified' if result.ledger_ok else 'MISMATCH'} ({result.balances_checked} balances)")
    counts = ", ".join(f"{n} {status}" for status, n in sorted(result.messages.items())) or "none"
    print(f"Messages: {counts} (queued ones wait for their time: reminders, quiet hours 08:00-21:00)")
    print(f"Outbox (console email and SMS): {result.outbox}")
    if result.largest:
        print(f"\nThe {len(result.largest)} largest amounts due:")
        print(f"{'account':<22}{'guarantor':<22}{'name':<26}{'amount due':>12}{'current':>12}")
        for r in result.largest:
            print(f"{r['account_number'][:21]:<22}{r['guarantor_id']:<22}{r['name'][:25]:<26}"
                  f"{format_cents(r['amount_due_cents']):>12}{format_cents(r['current_balance_cents']):>12}")
    names = {r["guarantor_id"]: r["name"] for r in result.largest}
    print("\nPayment links (open one in a browser while the app is served):")
    for p in result.pay_links:
        print(f"  {p['url']}  ({names.get(p['guarantor_id'], p['guarantor_id'])}, "
              f"amount due {format_cents(p['amount_due_cents'])})")


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def cmd_statements_run(args: argparse.Namespace) -> int:
    """Start (or join) today's statement run of one clinic, or of every clinic billing from
    Frontdesk; pages run inline unless FRONTDESK_STATEMENTS_QUEUE_URL is set. Prints a summary
    per clinic (ids and reason codes only). Exit 1 if any guarantor ended in error."""
    from chalicelib.statements import selectors as statement_selectors
    from chalicelib.statements import services as statement_services

    _bind()
    clinics = [args.clinic] if args.clinic else statement_services.run_clinic_ids()
    out = []
    for cid in clinics:
        run = statement_services.statement_run_start(clinic_id=cid)
        view = statement_selectors.statement_run_get(clinic_id=cid, run_id=run.run_id)
        out.append({"clinic_id": cid, **view.as_json()})
    if args.json:
        print(json.dumps(out, indent=2))
    else:
        for r in out:
            skipped = ", ".join(f"{k} {v}" for k, v in sorted(r["skipped"].items())) or "none"
            print(f"{r['clinic_id']} run {r['run_id']}: {r['status']}, {r['statements_created']} statements for "
                  f"{r['guarantors_billed']} guarantors, {r['pages_done']}/{r['pages_total']} pages; "
                  f"skipped: {skipped}; errors: {len(r['errors'])}")
            for e in r["errors"]:
                print(f"  error {e['guarantor_id']}: {e['reason']}")
    return 1 if any(r["errors"] for r in out) else 0


def cmd_statement_codes(args: argparse.Namespace) -> int:
    """Pay URLs and QR codes for a practice-management print run, with a CSV manifest. With
    --out DIR: DIR/manifest.csv and one .png and .svg per statement; else JSON (PNG as base64)."""
    import base64
    from pathlib import Path

    from chalicelib.statements import services as statement_services

    _bind()
    ids = [x.strip() for x in (args.guarantors or args.statements or "").split(",") if x.strip()]
    if not args.clinic:
        print("error: --clinic is required", file=sys.stderr)
        return 2
    codes = statement_services.statement_pay_codes(
        clinic_id=args.clinic, guarantor_ids=ids if args.guarantors else [],
        statement_ids=ids if args.statements else [])
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "manifest.csv").write_text(codes.manifest_csv, encoding="utf-8")
        for c in codes.items:
            stem = c.statement_id or c.guarantor_id
            if c.qr_png:
                (out / f"{stem}.png").write_bytes(c.qr_png)
            if c.qr_svg:
                (out / f"{stem}.svg").write_text(c.qr_svg, encoding="utf-8")
        ok = sum(1 for c in codes.items if not c.error)
        print(f"{ok} of {len(codes.items)} statements: codes and manifest.csv written to {out}")
    else:
        print(json.dumps({"items": [
            {"guarantor_id": c.guarantor_id, "statement_id": c.statement_id, "account_number": c.account_number,
             "pay_url": c.url, "qr_url": c.qr_url, "qr_svg": c.qr_svg,
             "qr_png_base64": base64.b64encode(c.qr_png).decode() if c.qr_png else None, "error": c.error}
            for c in codes.items], "manifest_csv": codes.manifest_csv}, indent=2))
    return 1 if any(c.error for c in codes.items) else 0


def cmd_api_key_create(args: argparse.Namespace) -> int:
    """Create a clinic API key and print it once (it is stored only as a hash)."""
    from chalicelib.tenants import api_keys

    _bind()
    issued = api_keys.api_key_create(clinic_id=args.clinic, label=args.label)
    if args.json:
        print(json.dumps({"clinic_id": issued.clinic_id, "key_id": issued.key_id, "key": issued.key}))
    else:
        print(f"API key {issued.key_id} for clinic {issued.clinic_id} (shown once; send it as "
              f"'Authorization: Bearer <key>'):\n{issued.key}")
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    """Import 835, 837, FHIR or CSV files (README "Importing"); exit 1 when a file is rejected."""
    from chalicelib.imports import services as imports  # the importers load only for this command
    from chalicelib.imports.files import Source

    clinic_id = args.clinic
    if not args.dry_run:
        _bind()
        if clinic_id is None:
            clinic_id = _only_clinic()
    results = []
    for path in args.paths:
        source = Source(path=path, name=path)
        if args.dry_run:
            result = imports.import_check(source=source, file_format=args.format, strict=args.strict)
        else:
            result = imports.import_file(clinic_id=clinic_id, source=source, file_format=args.format,
                                         strict=args.strict)
        results.append(result.as_json())
        if not args.json:
            line = (f"{result.status:<9} {result.file_format:<5} {path}: {result.claims} claims, "
                    f"{result.service_lines} lines, paid {format_cents(result.insurance_paid_cents)}, "
                    f"patient {format_cents(result.patient_responsibility_cents)}, "
                    f"{len(result.warnings)} warnings")
            if result.error:
                line += f"; segment {result.error['segment']} ({result.error['segment_id']}): {result.error['message']}"
            print(line)
    if args.json:
        print(json.dumps(results, indent=2, ensure_ascii=False))
    return 1 if any(r["status"] == "rejected" for r in results) else 0


def _only_clinic() -> str:
    """The clinic to import into when ``--clinic`` is not given: the only one (created if none)."""
    from chalicelib.tenants import services as tenants

    found = verify.clinic_ids()
    if len(found) == 1:
        return found[0]
    if found:
        raise SystemExit(f"error: {len(found)} clinics: pass --clinic ID")
    clinic_id = tenants.clinic_create(name="Imported clinic", time_zone="America/New_York")
    print(f"note: created clinic {clinic_id} for the import", file=sys.stderr)
    return clinic_id


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m chalicelib.cli", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("dynamodb-local", help="run DynamoDB Local in memory (foreground)")
    p.add_argument("--port", type=int, default=8001, help="port to listen on (default 8001)")
    p.set_defaults(func=cmd_dynamodb_local)
    p = sub.add_parser("create-tables", help="create the table from chalicelib.store.schema")
    p.set_defaults(func=cmd_create_tables)
    p = sub.add_parser("guarantors", help="list guarantors with balances (cents)")
    p.add_argument("--json", action="store_true")
    p.add_argument("--clinic")
    p.set_defaults(func=cmd_guarantors)
    p = sub.add_parser("messages", help="a guarantor's notifications: kind, channel, status and why")
    p.add_argument("--guarantor", required=True)
    p.add_argument("--clinic")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_messages)
    p = sub.add_parser("ledger-verify", help="recompute every stored balance from the entries")
    p.add_argument("--json", action="store_true")
    p.add_argument("--clinic")
    p.set_defaults(func=cmd_ledger_verify)
    p = sub.add_parser("demo", help="run the demo on the embedded default")
    p.add_argument("--no-serve", action="store_true", help="generate, print and exit")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--port", type=int, default=8000, help="port for chalice local (default 8000)")
    p.add_argument("--guarantors", type=int, default=200,
                   help="families the generated claims draw from (default 200; those with a claim become guarantors)")
    p.add_argument("--data", metavar="DIR", help="import this folder's files instead of generated ones")
    p.add_argument("--out", metavar="DIR", help="where generated files, PDFs and the outbox go (default var/demo)")
    p.set_defaults(func=cmd_demo)
    p = sub.add_parser("statements-run", help="start or join today's statement run (PDFs, pay links)")
    p.add_argument("--clinic", help="one clinic (default: every clinic billing from Frontdesk)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_statements_run)
    p = sub.add_parser("statement-codes", help="pay URLs, QR codes and a CSV manifest for PM statements")
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--guarantors", help="comma-separated guarantor ids")
    which.add_argument("--statements", help="comma-separated statement ids (numbers)")
    p.add_argument("--clinic", help="the clinic (required)")
    p.add_argument("--out", help="write manifest.csv and QR files into this folder")
    p.set_defaults(func=cmd_statement_codes)
    p = sub.add_parser("api-key-create", help="create a clinic API key for the /v1 JSON API")
    p.add_argument("--clinic", required=True)
    p.add_argument("--label", default="practice management")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_api_key_create)
    p = sub.add_parser("import", help="import X12 835/837, FHIR R4 or CSV roster files")
    p.add_argument("paths", nargs="+", metavar="PATH")
    p.add_argument("--clinic", help="the clinic (default: the only clinic)")
    p.add_argument("--format", default="auto", choices=["auto", "835", "837", "fhir", "csv"])
    p.add_argument("--dry-run", action="store_true", help="read and check only; write nothing")
    p.add_argument("--strict", action="store_true", help="count and control-number mismatches reject")
    p.add_argument("--json", action="store_true", help="print a JSON list, one object per file")
    p.set_defaults(func=cmd_import)
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except DomainError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except FileNotFoundError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `... | head`: the reader left; not an error of ours
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except Unreachable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 3
    except (BotoCoreError, ClientError, PynamoDBException) as exc:
        print(f"error: DynamoDB request failed: {str(exc).splitlines()[0][:300]}", file=sys.stderr)
        return 3


if __name__ == "__main__":
    sys.exit(main())
