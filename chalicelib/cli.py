"""``python -m chalicelib.cli``: the command line of Frontdesk.

Commands: ``dynamodb-local [--port N]``, ``create-tables``, ``guarantors --json``,
``ledger-verify --json``, ``demo [--no-serve] [--json] [--port N] [--guarantors N]``.
DynamoDB endpoint and table come from ``AWS_ENDPOINT_URL_DYNAMODB`` and ``FRONTDESK_TABLE``.
Exit codes: 0 success, 1 a check failed (ledger-verify), 2 bad usage or a domain error.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
from collections.abc import Sequence
from contextlib import ExitStack
from typing import Any

from chalicelib import dynamodb_local
from chalicelib.accounts import selectors as account_selectors
from chalicelib.core import config
from chalicelib.core.errors import DomainError
from chalicelib.core.money import format_cents
from chalicelib.ledger import verify
from chalicelib.store import db, tables


def _bind() -> None:
    config.reset()
    db.bind()


def cmd_dynamodb_local(args: argparse.Namespace) -> int:
    port = args.port or 8000
    print(f"DynamoDB Local (in memory) on http://127.0.0.1:{port}; Ctrl-C stops it", flush=True)
    workdir = os.path.join(os.path.dirname(dynamodb_local.jar_path()), "..")
    proc = subprocess.Popen(dynamodb_local.command(port), cwd=workdir)
    try:
        return proc.wait()
    except KeyboardInterrupt:
        proc.terminate()
        return 0


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
                "clinic_id": cid, "guarantor_id": g.guarantor_id,
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
            print(f"{r['guarantor_id']}  {r['first_name']} {r['last_name']}: amount due "
                  f"{format_cents(r['amount_due_cents'])}, current balance "
                  f"{format_cents(r['current_balance_cents'])}")
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


def cmd_demo(args: argparse.Namespace) -> int:
    from chalicelib.demo import clinic as demo_clinic

    with ExitStack() as stack:
        if not os.environ.get("AWS_ENDPOINT_URL_DYNAMODB"):
            endpoint = stack.enter_context(dynamodb_local.running())
            os.environ["AWS_ENDPOINT_URL_DYNAMODB"] = endpoint
            if not args.json:
                print(f"DynamoDB Local (in memory) started at {endpoint}", flush=True)
        _bind()
        table = config.settings().table_name
        tables.table_create(table_name=table)
        demo = demo_clinic.generate(guarantors=args.guarantors)
        rows = guarantor_rows(demo.clinic_id)
        report = verify.ledger_verify(clinic_id=demo.clinic_id)
        base = f"http://127.0.0.1:{args.port}"
        if args.json:
            print(json.dumps({"clinic_id": demo.clinic_id, "guarantors": len(rows),
                              "ledger_ok": report.ok, "api": base,
                              "sample": rows[:5]}, indent=2, ensure_ascii=False))
        else:
            print(f"\nDemo clinic {demo.clinic_id}: {len(rows)} guarantors, ledger "
                  f"{'verified' if report.ok else 'MISMATCH'} ({report.balances_checked} balances)")
            print(f"Staff login: {demo.admin_email} / {demo.admin_password}\n")
            print(f"{'guarantor':<22}{'name':<24}{'amount due':>12}{'current':>12}")
            for r in sorted(rows, key=lambda r: -r["current_balance_cents"])[:8]:
                print(f"{r['guarantor_id']:<22}{(r['first_name'] + ' ' + r['last_name']):<24}"
                      f"{format_cents(r['amount_due_cents']):>12}"
                      f"{format_cents(r['current_balance_cents']):>12}")
        if args.no_serve:
            return 0 if report.ok else 1
        print(f"\nServing the app with `chalice local` at {base} (try {base}/health); "
              "Ctrl-C stops everything.", flush=True)
        env = dict(os.environ, FRONTDESK_TABLE=table)
        chalice = os.path.join(os.path.dirname(sys.executable), "chalice")
        proc = subprocess.Popen([chalice, "local", "--stage", "local", "--port", str(args.port), "--no-autoreload"],
                                env=env, cwd=dynamodb_local.ROOT)
        try:
            return proc.wait()
        except KeyboardInterrupt:
            proc.send_signal(signal.SIGINT)
            proc.wait(timeout=10)
            return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m chalicelib.cli", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("dynamodb-local", help="run DynamoDB Local in memory (foreground)")
    p.add_argument("--port", type=int, default=8000)
    p.set_defaults(func=cmd_dynamodb_local)
    p = sub.add_parser("create-tables", help="create the table from chalicelib.store.schema")
    p.set_defaults(func=cmd_create_tables)
    p = sub.add_parser("guarantors", help="list guarantors with balances (cents)")
    p.add_argument("--json", action="store_true")
    p.add_argument("--clinic")
    p.set_defaults(func=cmd_guarantors)
    p = sub.add_parser("ledger-verify", help="recompute every stored balance from the entries")
    p.add_argument("--json", action="store_true")
    p.add_argument("--clinic")
    p.set_defaults(func=cmd_ledger_verify)
    p = sub.add_parser("demo", help="run the demo on the embedded default")
    p.add_argument("--no-serve", action="store_true", help="generate, print and exit")
    p.add_argument("--json", action="store_true")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--guarantors", type=int, default=120)
    p.set_defaults(func=cmd_demo)
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except DomainError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except FileNotFoundError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
