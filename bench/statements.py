"""Statement-run benchmark (PERFORMANCE.md S3 on this stack).

Against DynamoDB Local started here, in one run:

- data: two clinics, 1,000 and N (default 10,000) guarantors, each with a mailing address, one
  patient and 1-2 self-pay service lines, built through
  the real services in parallel threads (DynamoDB Local takes ~5 requests per guarantor);
- **statement run**: the clinic's run exactly as on AWS except for the transport: the run start
  enumerates pages (100 guarantors each) and "sends" them, and a pool of 2 worker processes
  (the SQS fan-out's consumers) processes the pages with the same ``statement_run_page`` the
  Lambda consumer calls: read, plan, two pay links, ReportLab + ``qrcode`` PDF, write it to the
  local storage folder, and the snapshot transaction (which also stores the pay links);
- **print files**: the finished run's merged PDF (volumes of ``PRINT_VOLUME`` statements) and
  manifest for the print vendor, built by one worker from the statement PDFs, timed apart (on
  AWS it is its own SQS message), with that worker's peak RSS;
- **limit, same run**: the identical page (same StatementDoc shape, URL length and number of
  lines) rendered from in-memory fixtures with ReportLab + ``qrcode`` in 2 processes, no DB;
  the QR ``make()`` time is reported separately;
- peak RSS of a worker process for the 1,000- and the N-guarantor run (flat is the target);
- the projected time for 100,000 statements with the consumer's SQS maximum concurrency,
  from the per-worker rate measured here (DynamoDB Local shares these 2 cores, so it is a
  conservative figure for Lambda against DynamoDB);
- CPU time per statement of the workers and of DynamoDB Local, against the raw page's CPU
  time: on a machine shared with other work the rates above move with the load, these do not
  (much), and their quotient is the ratio the run would reach on 2 otherwise idle cores.

Prints ratios; exits 0. Usage: ``.venv/bin/python bench/statements.py [--guarantors N]``.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import resource
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import emulator
from chalicelib import dynamodb_local
from chalicelib.accounts import services as accounts
from chalicelib.core import config
from chalicelib.jobs import statements as jobs
from chalicelib.statements import queue, render
from chalicelib.statements import selectors as st_selectors
from chalicelib.statements import services as statements
from chalicelib.store import db, tables
from chalicelib.tenants import services as tenants

PORTAL = "https://pay.example-clinic.org"
WORKERS = 2
RAW_SECONDS = 4.0


def _profile(group_id: str) -> dict[str, Any]:
    office = {"name": "Sunrise Family Medicine", "phone": "(555) 555-0100", "hours_1": "Mon-Fri 8-5",
              "email": "billing@sunrise.example",
              "return_address": {"line1": "1 Clinic Way", "city": "Springfield", "state": "IL", "postal_code": "62701"},
              "remit_address": {"line1": "Sunrise Family Medicine", "line2": "PO Box 100", "city": "Springfield",
                                "state": "IL", "postal_code": "62701"}}
    return {"profile_id": "std", "is_default": True, "group_id": group_id, "pay_link": "url_and_qr",
            "cycle_days": 28, "due_days": 21, "billing_office": office}


def _guarantor(clinic_id: str, facility_id: str, provider_id: str, i: int) -> None:
    gid = accounts.guarantor_create(
        clinic_id=clinic_id, first_name="Bench", last_name=f"Guarantor{i}", email=f"g{i}@example.com",
        address={"line1": f"{i} Elm St", "city": "Springfield", "state": "IL", "postal_code": "62704"})
    pid = accounts.patient_link(clinic_id=clinic_id, guarantor_id=gid, first_name="Bench", last_name=f"Patient{i}")
    for n in range(1 + i % 2):
        accounts.service_line_charge(
            clinic_id=clinic_id, guarantor_id=gid, encounter_number=f"E{i}", line_number=n + 1, patient_id=pid,
            date_of_service=f"2026-10-{1 + n:02d}", procedure_code="99213", billed_cents=4_500 + 250 * n,
            facility_id=facility_id, rendering_provider_id=provider_id, description="Office visit", self_pay=True)


def _clinic(n: int, threads: int) -> str:
    cid = tenants.clinic_create(name="Sunrise Family Medicine", time_zone="America/Chicago")
    gid = tenants.group_create(clinic_id=cid, name="Sunrise", is_default=True)
    statements.statement_profile_save(clinic_id=cid, profile=_profile(gid))
    fac = tenants.facility_create(clinic_id=cid, name="Main", nickname="Main")
    prv = tenants.provider_create(clinic_id=cid, last_name="Welby", npi="1234567893")
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(lambda i: _guarantor(cid, fac, prv, i), range(n)))
    return cid


# --- worker processes ---------------------------------------------------------------------------


_requests = [0]


def _count(_op: str, _params: dict[str, Any]) -> None:
    _requests[0] += 1


def _worker_init(env: dict[str, str]) -> None:
    os.environ.update(env)
    config.reset()
    db.bind()
    db.add_request_hook(_count)
    # The run's closing worker sends the print-files message; the benchmark builds the print
    # files itself afterwards (timed apart, as the separate SQS message they are on AWS).
    queue.set_sender(lambda messages: None)


def _worker_print(body: dict[str, Any]) -> tuple[float, int, int]:
    """The print-files message: (seconds, peak RSS KiB, statements in the merged PDF)."""
    start = time.perf_counter()
    made = statements.statement_run_print(clinic_id=body["clinic_id"], run_id=body["run_id"])
    return time.perf_counter() - start, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, made.statements


def _worker_page(body: dict[str, Any]) -> tuple[int, int, int, float]:
    """One SQS message, as the Lambda consumer handles it; returns (statements, peak RSS KiB,
    DynamoDB requests, CPU seconds of the worker process)."""
    before, cpu = _requests[0], time.process_time()
    results = statements.statement_run_page(**body)
    made = sum(len(v.split(":", 1)[1].split(",")) for v in results.values() if v.startswith("created:"))
    return (made, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, _requests[0] - before,
            time.process_time() - cpu)


def _warm(_: int) -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def _run(clinic_id: str, env: dict[str, str], run_date: str) -> dict[str, float]:
    sent: list[dict[str, Any]] = []
    ctx = mp.get_context("spawn")
    with ctx.Pool(WORKERS, initializer=_worker_init, initargs=(env,)) as pool:
        pool.map(_warm, range(WORKERS * 4))  # imports and DynamoDB binding happen before the clock starts
        start, emulator_cpu, own_cpu = time.perf_counter(), emulator.cpu_seconds(), time.process_time()
        queue.set_sender(sent.extend)
        try:
            statements.statement_run_start(clinic_id=clinic_id, run_date=run_date)
        finally:
            queue.set_sender(None)
        out = pool.map(_worker_page, sent, chunksize=1)
        elapsed = time.perf_counter() - start
        emulator_cpu, own_cpu = emulator.cpu_seconds() - emulator_cpu, time.process_time() - own_cpu
        print_seconds, print_rss, printed = pool.apply(
            _worker_print, (queue.print_message(clinic_id=clinic_id, run_id=run_date),))
    view = st_selectors.statement_run_get(clinic_id=clinic_id, run_id=run_date)
    made = sum(m for m, _, _, _ in out)
    assert made == view.statements_created == printed and view.status == "done", view
    return {"statements": made, "seconds": elapsed, "rate": made / elapsed,
            "rss_mib": max(r for _, r, _, _ in out) / 1024, "pages": len(sent),
            "requests": sum(n for _, _, n, _ in out) / max(made, 1),
            "worker_cpu_ms": (sum(c for _, _, _, c in out) + own_cpu) / max(made, 1) * 1000,
            "emulator_cpu_ms": emulator_cpu / max(made, 1) * 1000,
            "print_seconds": print_seconds, "print_rss_mib": print_rss / 1024}


def _emulator_rate(table: str, endpoint: str, seconds: float = 4.0, threads: int = 8) -> float:
    """Raw boto3 requests/s on the same DynamoDB Local (a GetItem and a 2-item transaction per
    loop, the shape of the run's requests), at the run's concurrency: the emulator's ceiling."""
    import threading

    import boto3

    client = boto3.client("dynamodb", endpoint_url=endpoint, region_name="us-east-1",
                          aws_access_key_id="local", aws_secret_access_key="local")
    done = [0]
    lock = threading.Lock()
    end = time.perf_counter() + seconds

    def loop(n: int) -> None:
        i = 0
        while time.perf_counter() < end:
            pk = {"S": f"C#raw#{n}#{i}"}
            client.get_item(TableName=table, Key={"pk": pk, "sk": {"S": "BAL"}}, ConsistentRead=True)
            client.transact_write_items(TransactItems=[
                {"Put": {"TableName": table, "Item": {"pk": pk, "sk": {"S": s}},
                         "ConditionExpression": "attribute_not_exists(pk)"}} for s in ("A", "B")])
            i += 1
            with lock:
                done[0] += 2

    start = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(loop, range(threads)))
    return done[0] / (time.perf_counter() - start)


# --- the raw limit ------------------------------------------------------------------------------


def _raw_doc() -> render.StatementDoc:
    token = f"c_{uuid.uuid4().hex[:16]}." + "x" * 43
    lines = tuple(render.PrintedLine(f"2026-10-0{1 + n}", "Bench Patient1", "99213", "Office visit", 4_500 + 250 * n,
                                     n > 0) for n in range(2))
    return render.StatementDoc(
        "Sunrise Family Medicine", ("1 Clinic Way", "Springfield, IL 62701", "Phone (555) 555-0100", "Mon-Fri 8-5"),
        ("Sunrise Family Medicine", "PO Box 100", "Springfield, IL 62701"),
        ("Bench Guarantor1", "1 Elm St", "Springfield, IL 62704"), "g_0123456789abcdef", "2026-11-29",
        "2026-12-20", 9_250, 4_500, 4_750, 0, lines, pay_url=f"{PORTAL}/l/{token}", qr_url=f"{PORTAL}/l/{token}y",
        verification_code="ABCD-EFGH", verify_url=f"{PORTAL}/verify")


def _raw_worker(seconds: float) -> tuple[int, float]:
    """Pages rendered in ``seconds``, and the CPU seconds they took."""
    doc = _raw_doc()
    n, end, cpu = 0, time.perf_counter() + seconds, time.process_time()
    while time.perf_counter() < end:
        render.statement_pdf(doc)
        n += 1
    return n, time.process_time() - cpu


def _raw_rate() -> tuple[float, float, float]:
    """(pages/s in :data:`WORKERS` processes, CPU ms per page, QR make() ms)."""
    ctx = mp.get_context("spawn")
    with ctx.Pool(WORKERS) as pool:
        pool.map(_warm, range(WORKERS * 4))
        start = time.perf_counter()
        out = pool.map(_raw_worker, [RAW_SECONDS] * WORKERS, chunksize=1)
        elapsed = time.perf_counter() - start
    pages = sum(n for n, _ in out)
    url = _raw_doc().qr_url or ""
    n, t = 200, time.perf_counter()
    for _ in range(n):
        render.qr_matrix(url)
    return pages / elapsed, sum(c for _, c in out) / pages * 1000, (time.perf_counter() - t) / n * 1000


def _size(n: int) -> str:
    """A run's size as printed: ``300``, ``1k``, ``10k``."""
    return f"{n // 1000}k" if n >= 1000 and n % 1000 == 0 else f"{n:,}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench/statements.py", description=__doc__.split("\n")[0])
    parser.add_argument("--guarantors", type=int, default=10_000)
    parser.add_argument("--small", type=int, default=1_000, help="the smaller run, for the memory comparison")
    parser.add_argument("--threads", type=int, default=12, help="threads building the guarantors")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="fd-bench-statements-") as tmp, dynamodb_local.running() as endpoint:
        env = {"AWS_ENDPOINT_URL_DYNAMODB": endpoint, "FRONTDESK_TABLE": f"bench-{uuid.uuid4().hex[:8]}",
               "FRONTDESK_PORTAL_URL": PORTAL, "FRONTDESK_STORAGE": "local",
               "FRONTDESK_STATEMENTS_DIR": os.path.join(tmp, "pdfs")}
        os.environ.update(env)
        os.environ.pop("FRONTDESK_STATEMENTS_QUEUE_URL", None)
        config.reset()
        db.bind()
        tables.table_create(table_name=env["FRONTDESK_TABLE"])
        t = time.perf_counter()
        small = _clinic(args.small, args.threads)
        big = _clinic(args.guarantors, args.threads)
        built = time.perf_counter() - t
        print(f"built {args.small + args.guarantors:,} guarantors through the services with {args.threads} "
              f"threads in {built:.0f} s ({(args.small + args.guarantors) / built:.0f}/s)", flush=True)
        raw, raw_cpu, qr_ms = _raw_rate()
        run_small = _run(small, env, "2026-11-29")
        run_big = _run(big, env, "2026-11-29")
        raw_after, raw_cpu_after, _ = _raw_rate()
        raw, raw_cpu = (raw + raw_after) / 2, (raw_cpu + raw_cpu_after) / 2
        emulator = _emulator_rate(env["FRONTDESK_TABLE"], endpoint,
                                  threads=WORKERS * statements.PAGE_THREADS)
    concurrency = jobs.MAX_CONCURRENCY
    per_worker = run_big["rate"] / WORKERS
    projected = 100_000 / (per_worker * concurrency)
    print(f"raw ReportLab + qrcode page, {WORKERS} processes: {raw:.0f} pages/s; qrcode make() "
          f"{qr_ms:.2f} ms (fixed mask)")
    for label, r in ((_size(args.small), run_small), (_size(args.guarantors), run_big)):
        print(f"statement run {label}: {r['statements']:,.0f} statements in {r['seconds']:.1f} s = "
              f"{r['rate']:.0f}/s over {r['pages']:.0f} pages; worker peak RSS {r['rss_mib']:.0f} MiB")
    for label, r in ((_size(args.small), run_small), (_size(args.guarantors), run_big)):
        print(f"print files {label} (merged PDF in volumes of {statements.PRINT_VOLUME:,} + manifest, its own "
              f"message): {r['print_seconds']:.1f} s; "
              f"that worker's peak RSS {r['print_rss_mib']:.0f} MiB")
    print(f"S3 ratio (statements/s / raw ReportLab+qrcode pages/s, same run): {run_big['rate'] / raw:.2f} "
          f"(target >= 0.4)")
    ceiling = emulator / run_big["requests"]
    print(f"DynamoDB requests per statement: {run_big['requests']:.1f}; raw DynamoDB Local rate {emulator:.0f} "
          f"requests/s -> emulator ceiling {ceiling:.0f} statements/s; the run reaches "
          f"{run_big['rate'] / ceiling:.2f} of it")
    cpu = run_big["worker_cpu_ms"] + run_big["emulator_cpu_ms"]
    print(f"CPU per statement: workers and run start {run_big['worker_cpu_ms']:.1f} ms + DynamoDB Local "
          f"{run_big['emulator_cpu_ms']:.1f} ms = {cpu:.1f} ms, against {raw_cpu:.1f} ms per raw page: "
          f"S3 ratio if CPU-bound on {WORKERS} otherwise idle cores ~{raw_cpu / cpu:.2f}")
    print(f"projected 100,000 statements: {projected / 60:.1f} min at SQS maximum concurrency {concurrency} "
          f"({per_worker:.0f}/s per worker; target < 15 min)")
    print(f"worker peak RSS: {run_small['rss_mib']:.0f} MiB at {_size(args.small)} vs {run_big['rss_mib']:.0f} MiB at "
          f"{_size(args.guarantors)} (delta {run_big['rss_mib'] - run_small['rss_mib']:+.0f} MiB; target flat, "
          f"<= 50 MiB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
