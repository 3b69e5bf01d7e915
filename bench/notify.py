"""Reminder fan-out benchmark (PERFORMANCE.md S5 and SERVERLESS-PERF-REL.md B7 on this stack).

In one run, against DynamoDB Local started here and moto's SES and SNS in process:

- fan-out: ``messages_due_fanout`` finds the due reminders through the sharded due index and
  queues their ids; workers (threads, standing in for concurrent Lambda invocations) run
  ``message_send`` on each: read message, profile, balance and contact point, check consent,
  quiet hours and caps, render, claim (one transaction that also stores the pay link and counts
  the cap), call SES or SNS, mark sent;
- limit: raw boto3 ``send_email`` / SMS ``publish`` of the same number of pre-rendered messages
  to the same moto, one after the other (S5's "smtplib over one persistent connection");
- the limiter: with the send rate set to N per second, the most sends seen in any one-second
  window.

The work queue is the embedded default's in-process queue (moto's SQS slows with depth and
would measure moto, SERVERLESS-PERF-REL.md §5.2); workers take ten items at a time, as one SQS
delivery to the Lambda.
Prints the ratio (target ≥ 0.5), the CPU per message of this process and of DynamoDB Local
(which shares the cores: the ceiling it puts on the ratio), requests per message, and the
limiter's window; exits 0.
Usage: ``PYTHONPATH=. .venv/bin/python bench/notify.py [--guarantors N] [--workers W]``.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import boto3
from moto import mock_aws

from bench import emulator
from chalicelib import dynamodb_local
from chalicelib.accounts import services as accounts
from chalicelib.core import clock
from chalicelib.core import config as core_config
from chalicelib.ledger.accounts import ResponsibilityKind
from chalicelib.notify import channels, context, queue, services, templates
from chalicelib.notify import config as notify_config
from chalicelib.store import db, tables
from chalicelib.tenants import services as tenants

REGION = "us-east-1"
SENDER = "billing@bench.example"
DUE = datetime(2026, 12, 15, 16, 0, tzinfo=UTC)  # 10:00 in Chicago


def _guarantor(clinic_id: str, i: int, rep: int) -> str:
    gid = accounts.guarantor_create(clinic_id=clinic_id, first_name="Bench", last_name=f"G{rep}x{i}",
                                    email=f"g{rep}x{i}@example.com", mobile=f"+1555{rep:02d}{i:05d}",
                                    consent={"email": True, "sms": True})
    pid = accounts.patient_link(clinic_id=clinic_id, guarantor_id=gid, first_name="Bench", last_name=f"G{i}")
    accounts.service_line_charge(clinic_id=clinic_id, guarantor_id=gid, encounter_number="E1", line_number=1,
                                 patient_id=pid, date_of_service="2026-10-01", procedure_code="99213",
                                 billed_cents=30_000)
    accounts.patient_responsibility_post(clinic_id=clinic_id, guarantor_id=gid, line_id="E1-1", amount_cents=12_540,
                                         kind=ResponsibilityKind.COINSURANCE, source_key="pr")
    accounts.statement_create(clinic_id=clinic_id, guarantor_id=gid, statement_date="2026-11-25",
                              due_date="2026-12-15", statement_id="st1")
    services.reminders_plan(clinic_id=clinic_id, guarantor_id=gid, statement_id="st1")
    return gid


def _clinic(n: int, rep: int, workers: int) -> str:
    cid = tenants.clinic_create(name="Riverside Family Medicine", time_zone="America/Chicago", phone="+15555550100")
    tenants.group_create(clinic_id=cid, name="Riverside", is_default=True)
    services.notify_settings_set(clinic_id=cid, settings={"sms_origination_number": f"+1877555{rep:04d}"})
    services.reminder_schedule_set(clinic_id=cid, rules=[
        {"rule_id": "on-email", "when": "on", "days": 0, "time_of_day": "10:00", "channel": "email"},
        {"rule_id": "on-sms", "when": "on", "days": 0, "time_of_day": "10:00", "channel": "sms"},
    ])
    with ThreadPoolExecutor(max_workers=workers) as pool:
        list(pool.map(lambda i: _guarantor(cid, i, rep), range(n)))
    return cid


def _drain(workers: int) -> int:
    sent = Counter[str]()

    def work(_: int) -> None:
        while True:  # one SQS delivery: up to ten work items
            bodies = []
            with contextlib.suppress(IndexError):
                for _ in range(queue.BATCH):
                    bodies.append(queue.LOCAL.popleft())
            if not bodies:
                return
            for outcome in services.work_items_handle(bodies=bodies):
                sent[getattr(outcome, "status", "?")] += 1

    with ThreadPoolExecutor(max_workers=workers) as pool:
        list(pool.map(work, range(workers)))
    return sent["sent"]


def _raw_same_shape(ddb: Any, ses: Any, sns: Any, batch: int, rep: int, rendered: Any, sms_text: str,
                    shape: dict[str, int]) -> None:
    """One SQS delivery of ten messages: its storage calls (the same kinds and counts per ten
    messages as measured, each over the ten messages' items) and ten provider calls, made raw
    with boto3: what Frontdesk adds on top is the difference."""
    table = "bench-notify"
    pks = [{"S": f"C#raw#G#{rep}-{batch}-{k}"} for k in range(queue.BATCH)]
    for _ in range(shape.get("BatchGetItem", 0)):
        ddb.batch_get_item(RequestItems={table: {"ConsistentRead": True, "Keys": [
            {"pk": pk, "sk": {"S": s}} for pk in pks for s in ("M#1", "PROFILE", "BAL", "CP")]}})
    for _ in range(shape.get("GetItem", 0)):
        ddb.get_item(TableName=table, Key={"pk": pks[0], "sk": {"S": "GRP"}})
    for n in range(shape.get("UpdateItem", 0)):
        ddb.update_item(TableName=table, Key={"pk": pks[n % len(pks)], "sk": {"S": f"U{n}"}},
                        UpdateExpression="SET n = :n", ExpressionAttributeValues={":n": {"N": str(n)}})
    for n in range(shape.get("TransactWriteItems", 0)):
        ddb.transact_write_items(TransactItems=[{"Put": {"TableName": table, "Item": {
            "pk": pk, "sk": {"S": f"T{n}-{k}"}}, "ConditionExpression": "attribute_not_exists(pk)"}}
            for pk in pks for k in range(2)])
    for k in range(queue.BATCH):
        i = batch * queue.BATCH + k
        if i % 2:
            sns.publish(PhoneNumber=f"+1777{rep:02d}{i:05d}", Message=sms_text)
        else:
            ses.send_email(Source=SENDER, Destination={"ToAddresses": [f"same{rep}x{i}@example.com"]},
                           Message={"Subject": {"Data": rendered.subject or ""},
                                    "Body": {"Text": {"Data": rendered.text}, "Html": {"Data": rendered.html or ""}}})


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--guarantors", type=int, default=150, help="guarantors per repetition (2 reminders each)")
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args()
    with dynamodb_local.running() as endpoint, mock_aws():
        os.environ.update({"AWS_ENDPOINT_URL_DYNAMODB": endpoint, "FRONTDESK_TABLE": "bench-notify",
                           "FRONTDESK_CHANNEL": "aws", "FRONTDESK_SENDER_EMAIL": SENDER,
                           "FRONTDESK_SES_RATE": "0", "FRONTDESK_SMS_RATE": "0", "AWS_DEFAULT_REGION": REGION})
        core_config.reset()
        notify_config.reset()
        db.bind()
        tables.table_create(table_name="bench-notify")
        ses = boto3.client("ses", region_name=REGION)
        ses.verify_email_identity(EmailAddress=SENDER)
        sns = boto3.client("sns", region_name=REGION)
        enqueued: list[int] = []

        def local_enqueue(bodies: Any, delay_seconds: int = 0) -> int:
            items = list(bodies)
            enqueued.append(len(items))
            queue.LOCAL.extend(items)
            return len(items)

        queue.enqueue = local_enqueue
        ops: Counter[str] = Counter()
        db.add_request_hook(lambda op, params: ops.update([op]))
        rendered = templates.render("reminder", "email", "en", {**templates.SAMPLE, "when": "on"})
        sms_text = templates.render("reminder", "sms", "en", {**templates.SAMPLE, "when": "on"}).text
        fan: list[float] = []
        raw: list[float] = []
        same: list[float] = []
        fan_cpu: list[tuple[float, float]] = []  # (our process, DynamoDB Local) CPU s per message
        raw_cpu: list[float] = []
        ddb = boto3.client("dynamodb", endpoint_url=endpoint, region_name=REGION, aws_access_key_id="local",
                           aws_secret_access_key="local")
        per_message: dict[str, float] = {}
        for rep in range(args.reps):
            clock.set_source(lambda: DUE - timedelta(days=30))
            cid = _clinic(args.guarantors, rep, args.workers)
            context.invalidate()
            channels.reset()
            # Steady state: the hourly schedule ran an hour ago (the sweep mark is set).
            services.messages_due_fanout(clinic_id=cid, at=DUE - timedelta(hours=1))
            clock.set_source(lambda: DUE + timedelta(minutes=1))
            ops.clear()
            start, cpu, emu = time.perf_counter(), time.process_time(), emulator.cpu_seconds()
            found = services.messages_due_fanout(clinic_id=cid, at=DUE + timedelta(minutes=1))
            sent = _drain(args.workers)
            fan.append(sent / (time.perf_counter() - start))
            fan_cpu.append(((time.process_time() - cpu) / sent, (emulator.cpu_seconds() - emu) / sent))
            assert found.enqueued == sent == 2 * args.guarantors, (found, sent)
            per_message = {op: c / sent for op, c in ops.items()}
            start, cpu = time.perf_counter(), time.process_time()
            for i in range(args.guarantors):
                ses.send_email(Source=SENDER, Destination={"ToAddresses": [f"raw{rep}x{i}@example.com"]},
                               Message={"Subject": {"Data": rendered.subject or ""},
                                        "Body": {"Text": {"Data": rendered.text},
                                                 "Html": {"Data": rendered.html or ""}}})
                sns.publish(PhoneNumber=f"+1666{rep:02d}{i:05d}", Message=sms_text)
            raw.append(2 * args.guarantors / (time.perf_counter() - start))
            raw_cpu.append((time.process_time() - cpu) / (2 * args.guarantors))
            shape = {op: round(c * queue.BATCH) for op, c in per_message.items() if c * queue.BATCH >= 0.5}
            batches = 2 * args.guarantors // queue.BATCH
            start = time.perf_counter()
            with ThreadPoolExecutor(max_workers=args.workers) as pool:
                list(pool.map(lambda b, rep=rep, shape=shape: _raw_same_shape(ddb, ses, sns, b, rep, rendered,
                                                                               sms_text, shape),
                              range(batches)))
            same.append(batches * queue.BATCH / (time.perf_counter() - start))
        # The limiter: N per second, the most in any one-second window.
        os.environ["FRONTDESK_SES_RATE"] = "20"
        notify_config.reset()
        channels.reset()
        clock.set_source(lambda: DUE - timedelta(days=30))
        cid = _clinic(30, 99, args.workers)
        clock.set_source(lambda: DUE + timedelta(minutes=1))
        times: list[float] = []
        client = channels.get("email").client  # type: ignore[attr-defined]
        client.meta.events.register("after-call.ses.SendEmail", lambda **_: times.append(time.monotonic()))
        services.messages_due_fanout(clinic_id=cid, at=DUE + timedelta(minutes=1))
        _drain(args.workers)
        times.sort()
        window = max(sum(1 for t in times if s <= t < s + 1.0) for s in times)
        clock.set_source(None)
    f, r = statistics.median(fan), statistics.median(raw)
    print(f"reminder fan-out vs raw provider sends, moto SES+SNS, DynamoDB Local, same run "
          f"({args.reps} reps x {2 * args.guarantors} messages, {args.workers} workers, median):")
    print(f"  fan-out (find due -> render -> claim -> send -> mark): {f:8.1f} messages/s "
          f"(spread {min(fan):.0f}-{max(fan):.0f})")
    print(f"  raw boto3 send_email/publish of pre-rendered messages: {r:8.1f} messages/s "
          f"(spread {min(raw):.0f}-{max(raw):.0f})")
    print(f"  ratio {f / r:.3f} (target >= 0.5)")
    m = statistics.median(same)
    print(f"  raw boto3 loop making the same DynamoDB and provider calls ({args.workers} threads): "
          f"{m:8.1f} messages/s; ratio {f / m:.3f} (B7 target >= 0.7)")
    ours = statistics.median(c for c, _ in fan_cpu) * 1000
    emu = statistics.median(e for _, e in fan_cpu) * 1000
    send = statistics.median(raw_cpu) * 1000
    cores = os.cpu_count() or 1
    print(f"  CPU per message: this process {ours:.2f} ms (its moto provider call included) + DynamoDB Local "
          f"{emu:.2f} ms, against {send:.2f} ms per raw send (one thread); with both on {cores} cores the "
          f"ratio cannot pass {send * cores / (ours + emu):.2f}")
    print(f"  load average during the run: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    print(f"  DynamoDB requests per message: {sum(per_message.values()):.2f} "
          f"{ {k: round(v, 2) for k, v in sorted(per_message.items())} }")
    print(f"  work items per enqueue call: {statistics.mean(enqueued):.1f} (SQS batches of 10)")
    print(f"  limiter at 20/s: at most {window} sends in any one-second window ({len(times)} sends)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
