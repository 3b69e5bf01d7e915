"""835 import benchmark (PERFORMANCE.md S4; SERVERLESS-PERF-REL.md B5, B6), measured in one run.

1. Parse rate: a generated 20,000-claim 835 (``chalicelib.imports.generator``, written to a
   temporary file) read from disk into claim and service-line objects with envelopes, SE01
   counts and balancing checked (``summarize_835``), against the bare split of the same bytes
   in the same interpreter (``data.split(terminator)`` then ``segment.split(element)``).
   Alternating repetitions, median of ``--reps`` (CPU time of this process: the machine is
   shared), target ≥ 0.25.
2. Full import against DynamoDB Local started here: the 837 of a ``--import-claims`` subset is
   imported first (visits, guarantors), then its 835 (matching, posting); wall time, claims/s,
   and DynamoDB requests per claim of the 835 phase (writes and all), counted by a hook on the
   shared client. The whole 20,000-claim pair would take many minutes on DynamoDB Local (one
   posting is a BatchGetItem and a TransactWriteItems on an emulator doing ~300-500 requests/s
   here), so a subset is imported and the rate is what counts.
3. Peak memory (``tracemalloc``) of parsing a ~5 MB and a ~50 MB file from disk: the ratio must
   stay within 1.2 (the reader streams: one chunk and one claim at a time).

Usage: ``.venv/bin/python bench/import_835.py [--claims 20000] [--import-claims 1000] [--reps 5]``.
Prints ratios and counts; exits 0.
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import sys
import tempfile
import time
import tracemalloc
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from chalicelib import dynamodb_local
from chalicelib.core import config
from chalicelib.imports import generator
from chalicelib.imports import services as imports
from chalicelib.imports.errors import Warnings
from chalicelib.imports.files import Source
from chalicelib.imports.x835 import summarize_835
from chalicelib.store import db, tables
from chalicelib.tenants import services as tenants

WRITES = {"PutItem", "UpdateItem", "DeleteItem", "TransactWriteItems", "BatchWriteItem"}


def write_835(path: Path, claims: int, seed: int) -> generator.Totals:
    with path.open("w", encoding="ascii") as out:
        return generator.write_835(out, claims=claims, seed=seed, newline=False)


def parse(path: Path) -> int:
    with path.open("rb") as stream:
        return summarize_835(stream, Warnings()).claims


def bare(path: Path) -> int:
    data = path.read_bytes()
    count = 0
    for segment in data.split(b"~"):
        segment.split(b"*")
        count += 1
    return count


def cpu(fn: Any, *args: Any) -> float:
    start = time.process_time()
    fn(*args)
    return time.process_time() - start


def peak_parse_memory(path: Path) -> int:
    tracemalloc.start()
    try:
        parse(path)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--claims", type=int, default=20_000)
    parser.add_argument("--import-claims", type=int, default=1_000)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--no-import", action="store_true", help="skip the DynamoDB Local part")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-835-") as tmp:
        work = Path(tmp)
        big = work / "remit.835"
        totals = write_835(big, args.claims, seed=20)
        size = big.stat().st_size
        parse(big)
        bare(big)  # warm-up
        ours, base = [], []
        for _ in range(args.reps):
            base.append(cpu(bare, big))
            ours.append(cpu(parse, big))
        m_ours, m_base = statistics.median(ours), statistics.median(base)
        print(f"S4 (a) parse, generated 835: {totals.claims} claims, {totals.segments} segments, {size / 1e6:.1f} MB "
              f"({args.reps} alternating reps, median CPU time)")
        print(f"  bare split      {m_base:.3f} s  {size / m_base / 1e6:6.1f} MB/s")
        print(f"  parse (objects) {m_ours:.3f} s  {size / m_ours / 1e6:6.1f} MB/s  "
              f"{totals.claims / m_ours:8.0f} claims/s  spread {min(ours):.3f}-{max(ours):.3f} s")
        print(f"  ratio parse / bare split: {m_base / m_ours:.3f}  (target >= 0.25)")

        small, large = work / "5mb.835", work / "50mb.835"
        per_claim = size / totals.claims
        write_835(small, int(5e6 / per_claim), seed=21)
        write_835(large, int(50e6 / per_claim), seed=22)
        peaks = {p: peak_parse_memory(p) for p in (small, large)}
        print(f"S4 memory: tracemalloc peak while parsing {small.stat().st_size / 1e6:.1f} MB: "
              f"{peaks[small] / 1e6:.2f} MB; {large.stat().st_size / 1e6:.1f} MB: {peaks[large] / 1e6:.2f} MB; "
              f"ratio {peaks[large] / peaks[small]:.2f} (target <= 1.2)")

        if args.no_import:
            return 0
        with dynamodb_local.running() as endpoint:
            os.environ["AWS_ENDPOINT_URL_DYNAMODB"] = endpoint
            os.environ["FRONTDESK_TABLE"] = "bench"
            config.reset()
            db.bind()
            tables.table_create(table_name="bench")
            ops: Counter[str] = Counter()
            db.add_request_hook(lambda op, params: ops.update([op]))
            clinic = tenants.clinic_create(name="Bench", time_zone="America/Chicago")
            a, b = io.StringIO(), io.StringIO()
            generator.write_837(a, claims=args.import_claims, seed=23)
            subset = generator.write_835(b, claims=args.import_claims, seed=23)
            start = time.perf_counter()
            imports.import_file(clinic_id=clinic, source=Source(data=a.getvalue().encode(), name="bench.837"))
            t837 = time.perf_counter() - start
            ops.clear()
            start = time.perf_counter()
            result = imports.import_file(clinic_id=clinic, source=Source(data=b.getvalue().encode(), name="bench.835"))
            t835 = time.perf_counter() - start
            n = result.claims
            writes = sum(c for op, c in ops.items() if op in WRITES)
            print(f"S4 (b) full import against DynamoDB Local, subset of {args.import_claims} claims "
                  f"(the full {args.claims} would take ~{args.claims / (n / t835) / 60:.0f} min at this rate):")
            print(f"  837 (visits, guarantors, patients): {t837:.1f} s, {args.import_claims / t837:.0f} claims/s")
            print(f"  835 ({n} claims: {dict(result.outcomes)}): {t835:.1f} s, {n / t835:.0f} claims/s")
            print(f"  DynamoDB per 835 claim: {sum(ops.values()) / n:.2f} requests, {writes / n:.2f} write requests "
                  f"({ops['TransactWriteItems'] / n:.2f} TransactWriteItems); "
                  f"{dict(sorted(ops.items()))}")
            assert (result.insurance_paid_cents, result.patient_responsibility_cents) == (subset.paid, subset.patient)
    return 0


if __name__ == "__main__":
    sys.exit(main())
