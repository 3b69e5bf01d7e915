"""Online payment benchmark (PERFORMANCE.md S2 on this stack; SERVERLESS-PERF-REL.md B2).

Against DynamoDB Local started here, in one run, alternating repetitions (median):

- a whole online payment through ``payment_attempt_submit`` with the sandbox processor called
  in-process: phase 1 (conditional put of the attempt), the claim (created -> processing with
  the amount held), the processor call, and phase 3 (ONE TransactWriteItems: attempt
  transition and history, receipt, entry, posting key, line, balance, hold release), each
  payment for one of 64 guarantors;
- limit: a single conditional ``PutItem`` (attribute_not_exists) with a raw boto3 client on the
  same table;
- DynamoDB requests and request units per successful payment, by the published formulas of
  the test hook (writes ⌈KB⌉ x 2 in a transaction, reads ⌈4 KB⌉ x 0.5/1), against the B2
  limits: at most 24 WRU and 12 RRU, exactly one posting transaction. GSI writes are shown
  apart (an estimate: one per item written into an index, one per update touching one).

Prints the figures; exits 0. Usage: ``.venv/bin/python bench/payment.py [--payments N]``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import boto3

from bench.posting import _family
from chalicelib import dynamodb_local
from chalicelib.core import config
from chalicelib.payments import services as payments
from chalicelib.payments.processors import registry
from chalicelib.store import db, tables
from chalicelib.tenants import services as tenants
from tests.ddb_hook import RequestLog


def _gsi_writes(op: str, params: dict[str, Any]) -> int:
    """Estimated index writes: items put with an index key, and updates naming an index key."""
    count = 0
    items = []
    if op == "PutItem":
        items.append(params.get("Item", {}))
    elif op == "TransactWriteItems":
        for action in params.get("TransactItems", []):
            (kind, body), = action.items()
            if kind == "Put":
                items.append(body["Item"])
            elif kind == "Update" and "gsi" in str(body.get("ExpressionAttributeNames", {})):
                count += 1
    for item in items:
        count += sum(1 for k in ("gsi1pk", "gsi2pk", "gsi3pk") if k in item)
    return count


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--payments", type=int, default=150, help="payments per repetition")
    parser.add_argument("--reps", type=int, default=5)
    args = parser.parse_args()
    n = args.payments
    with dynamodb_local.running() as endpoint:
        os.environ["AWS_ENDPOINT_URL_DYNAMODB"] = endpoint
        os.environ["FRONTDESK_TABLE"] = "bench"
        config.reset()
        db.bind()
        tables.table_create(table_name="bench")
        clinic = tenants.clinic_create(name="Bench", time_zone="America/Chicago")
        tenants.group_create(clinic_id=clinic, name="Default", is_default=True)
        payers = [_family(clinic, i)[0] for i in range(64)]  # each owes $100,000 on one line
        raw = boto3.client("dynamodb", endpoint_url=endpoint, region_name="us-east-1",
                           aws_access_key_id="local", aws_secret_access_key="local")
        counter = iter(range(10**9))

        def pay(i: int) -> str:
            view = payments.payment_attempt_submit(
                clinic_id=clinic, guarantor_id=payers[i % len(payers)], attempt_key=f"bench-{next(counter)}",
                amount_choice="other", amount_cents=100, token="tok_visa")
            return view.status

        def put(i: int) -> None:
            raw.put_item(TableName="bench", Item={"pk": {"S": f"C#{clinic}#X#{uuid.uuid4().hex}"},
                                                  "sk": {"S": "X"}, "n": {"N": str(i)}},
                         ConditionExpression="attribute_not_exists(pk)")

        assert pay(0) == "succeeded"
        put(0)  # warm-up
        rates: dict[str, list[float]] = {"pay": [], "put": []}
        for _ in range(args.reps):
            start = time.perf_counter()
            for i in range(n):
                pay(i)
            rates["pay"].append(n / (time.perf_counter() - start))
            start = time.perf_counter()
            for i in range(n):
                put(i)
            rates["put"].append(n / (time.perf_counter() - start))
        registry.sandbox().reset()

        log = RequestLog()
        gsi = [0]

        def count_gsi(op: str, params: dict[str, Any]) -> None:
            gsi[0] += _gsi_writes(op, params)

        db.add_request_hook(log.hook)
        db.add_request_hook(count_gsi)
        measured = 50
        for i in range(measured):
            assert pay(i) == "succeeded"
        db.remove_request_hook(log.hook)
        db.remove_request_hook(count_gsi)
        left = payments.payment_attempts_complete_stuck(clinic_id=clinic, older_than_seconds=0)
    med = {k: statistics.median(v) for k, v in rates.items()}
    per = {op: c / measured for op, c in sorted(log.operations.items())}
    wru, rru = log.write_units / measured, log.read_units / measured
    print(f"online payment (attempt, sandbox call in-process, posting) vs a single conditional PutItem, "
          f"DynamoDB Local, same run ({args.reps} reps x {n} payments, median):")
    print(f"  payment {med['pay']:8.1f}/s  put {med['put']:8.1f}/s  ratio {med['pay'] / med['put']:.3f}  "
          f"(payment spread {min(rates['pay']):.0f}-{max(rates['pay']):.0f}/s)")
    print(f"  DynamoDB requests per payment: {sum(per.values()):.2f} {per}")
    print(f"  TransactWriteItems per payment: {per.get('TransactWriteItems', 0):.2f} "
          f"(the claim + exactly one posting transaction)")
    print(f"  request units per successful payment: {wru:.1f} WRU (limit 24) {'ok' if wru <= 24 else 'OVER'}, "
          f"{rru:.1f} RRU (limit 12) {'ok' if rru <= 12 else 'OVER'}; "
          f"plus ~{gsi[0] / measured:.1f} GSI writes (estimate)")
    print(f"  attempts left pending after the completer: {sum(left.values())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
