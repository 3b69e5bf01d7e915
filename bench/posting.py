"""Posting-path benchmark (PERFORMANCE.md S2 on this stack; SERVERLESS-PERF-REL.md B2).

Against DynamoDB Local started here, in one run, alternating repetitions (median of 5):

- posting rate: ``patient_payment_post`` applying to one service line (BatchGetItem + one
  TransactWriteItems of entry, posting key, line and versioned balance), at concurrency 1
  and 8 over distinct guarantors;
- limit: a single conditional ``PutItem`` (attribute_not_exists) with a raw boto3 client on
  the same table, same concurrency;
- the same storage calls made raw with boto3 (BatchGetItem + a 4-item transaction), to show
  what is Frontdesk's own overhead and what is the emulator's transaction cost;
- hot guarantor: 8 threads posting to one guarantor, against the uncontended rate;
- DynamoDB requests per posting, counted by a hook on the shared client.

Prints ratios; exits 0. Usage: ``.venv/bin/python bench/posting.py [--postings N]``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import boto3

from chalicelib import dynamodb_local
from chalicelib.accounts import services as accounts
from chalicelib.core import config
from chalicelib.core.errors import ConcurrentPosting
from chalicelib.ledger.accounts import ResponsibilityKind
from chalicelib.store import db, tables
from chalicelib.tenants import services as tenants


def _family(clinic_id: str, i: int) -> tuple[str, str]:
    gid = accounts.guarantor_create(clinic_id=clinic_id, first_name="Bench", last_name=f"G{i}")
    pid = accounts.patient_link(clinic_id=clinic_id, guarantor_id=gid, first_name="Bench", last_name=f"G{i}")
    accounts.service_line_charge(clinic_id=clinic_id, guarantor_id=gid, encounter_number=f"E{i}", line_number=1,
                                 patient_id=pid, date_of_service="2026-10-01", procedure_code="99213",
                                 billed_cents=10_000_000)
    accounts.patient_responsibility_post(clinic_id=clinic_id, guarantor_id=gid, line_id=f"E{i}-1",
                                         amount_cents=10_000_000, kind=ResponsibilityKind.COINSURANCE,
                                         source_key="pr")
    return gid, f"E{i}-1"


def _rate(fn: Any, jobs: list[Any], workers: int) -> float:
    start = time.perf_counter()
    if workers == 1:
        for job in jobs:
            fn(job)
    else:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            list(pool.map(fn, jobs))
    return len(jobs) / (time.perf_counter() - start)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--postings", type=int, default=400, help="postings per repetition")
    parser.add_argument("--reps", type=int, default=5)
    args = parser.parse_args()
    n = args.postings
    with dynamodb_local.running() as endpoint:
        os.environ["AWS_ENDPOINT_URL_DYNAMODB"] = endpoint
        os.environ["FRONTDESK_TABLE"] = "bench"
        config.reset()
        db.bind()
        tables.table_create(table_name="bench")
        clinic = tenants.clinic_create(name="Bench", time_zone="America/Chicago")
        families = [_family(clinic, i) for i in range(64)]
        raw = boto3.client("dynamodb", endpoint_url=endpoint, region_name="us-east-1",
                           aws_access_key_id="local", aws_secret_access_key="local")
        ops: Counter[str] = Counter()
        db.add_request_hook(lambda op, params: ops.update([op]))
        counter = iter(range(10**9))

        def post(i: int) -> None:
            gid, lid = families[i % len(families)]
            accounts.patient_payment_post(clinic_id=clinic, guarantor_id=gid, amount_cents=100,
                                          applications={lid: 100}, source_key=f"r:{next(counter)}")

        def hot(i: int) -> None:
            gid, lid = families[0]
            key = f"h:{next(counter)}"
            for _ in range(50):
                try:
                    accounts.patient_payment_post(clinic_id=clinic, guarantor_id=gid, amount_cents=1,
                                                  applications={lid: 1}, source_key=key)
                    return
                except ConcurrentPosting:
                    continue

        def put(i: int) -> None:
            raw.put_item(TableName="bench", Item={"pk": {"S": f"C#{clinic}#X#{uuid.uuid4().hex}"},
                                                  "sk": {"S": "X"}, "n": {"N": str(i)}},
                         ConditionExpression="attribute_not_exists(pk)")

        def raw_same_shape(i: int) -> None:
            """The posting's storage calls with no Frontdesk code: BatchGet of 3 keys, 4-item tx."""
            gid, lid = families[i % len(families)]
            pk = {"S": f"C#{clinic}#G#{gid}"}
            raw.batch_get_item(RequestItems={"bench": {"ConsistentRead": True, "Keys": [
                {"pk": pk, "sk": {"S": s}} for s in ("BAL", f"PK#raw{i}", f"SL#{lid}")]}})
            tag = uuid.uuid4().hex
            raw.transact_write_items(TransactItems=[
                {"Put": {"TableName": "bench", "Item": {"pk": pk, "sk": {"S": f"RAW#{tag}#{k}"}, "n": {"N": "1"}},
                         "ConditionExpression": "attribute_not_exists(pk)"}} for k in range(4)])

        post(0)
        put(0)  # warm-up
        raw_same_shape(0)
        results: dict[str, list[float]] = {k: [] for k in ("post1", "put1", "raw1", "post8", "put8", "hot8")}
        for _ in range(args.reps):
            results["post1"].append(_rate(post, list(range(n)), 1))
            results["put1"].append(_rate(put, list(range(n)), 1))
            results["raw1"].append(_rate(raw_same_shape, list(range(n)), 1))
            results["post8"].append(_rate(post, list(range(n)), 8))
            results["put8"].append(_rate(put, list(range(n)), 8))
            results["hot8"].append(_rate(hot, list(range(n // 4)), 8))
        ops.clear()
        for i in range(100):
            post(i)
        per_posting = {op: c / 100 for op, c in ops.items()}
        med = {k: statistics.median(v) for k, v in results.items()}
        spread = {k: (min(v), max(v)) for k, v in results.items()}
    print("posting path vs a single conditional PutItem, DynamoDB Local, same run "
          f"({args.reps} reps x {n} postings, median):")
    for c in ("1", "8"):
        print(f"  c={c}: posting {med['post' + c]:8.1f}/s  put {med['put' + c]:8.1f}/s  "
              f"ratio {med['post' + c] / med['put' + c]:.3f}  "
              f"(posting spread {spread['post' + c][0]:.0f}-{spread['post' + c][1]:.0f}/s)")
    print(f"  c=1: posting vs raw boto3 calls of the same shape (BatchGet + 4-item transaction): "
          f"{med['post1'] / med['raw1']:.3f} (raw {med['raw1']:.1f}/s)")
    print(f"  hot guarantor c=8: {med['hot8']:.1f}/s = {med['hot8'] / med['post8']:.3f} of uncontended c=8")
    print(f"  DynamoDB requests per posting: {sum(per_posting.values()):.2f} {per_posting}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
