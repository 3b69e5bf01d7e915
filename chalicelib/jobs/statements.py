"""Statement runs on AWS: a daily schedule starts each billing clinic's run, and an SQS
consumer processes the run's pages (PRODUCT.md §4, SERVERLESS.md 3.6-3.7).

Message bodies are ids only: ``{"clinic_id", "run_id", "page"}`` for a page, and
``{"clinic_id", "run_id", "op": "print"}`` for a finished run's print files (merged PDF and
manifest for the print vendor). The consumer reports partial
batch failures (infra enables ``ReportBatchItemFailures``): a page that fails is retried alone,
and after ``maxReceiveCount`` goes to the dead-letter queue; pages and guarantors are
idempotent, so a redelivery or a redrive never makes a second statement.
"""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING, Any

from chalice import Blueprint, Cron, Rate
from chalice.app import CloudWatchEvent, SQSEvent

from chalicelib.core import lazy
from chalicelib.core.errors import DomainError

if TYPE_CHECKING:
    from chalicelib.statements import services as statement_services
else:
    statement_services = lazy.module("chalicelib.statements.services")

#: The queue's name in the decorator; infra points the event source at the stage's real queue.
QUEUE = "frontdesk-statements"
#: One page (100 guarantors, a few seconds) per invocation, well inside the 60 s timeout.
BATCH_SIZE = 1
#: Consumers at once: bounds the run's DynamoDB write rate and the account's Lambda concurrency.
MAX_CONCURRENCY = 10

statements_jobs = Blueprint(__name__)
log = logging.getLogger(__name__)


def page_process(body: str) -> None:
    """Process one message body (a page, or a finished run's print files). Raises on a
    malformed body or a failure (the message is retried)."""
    data = json.loads(body)
    if isinstance(data, dict) and set(data) == {"clinic_id", "run_id", "op"} and data["op"] == "print":
        statement_services.statement_run_print(clinic_id=str(data["clinic_id"]), run_id=str(data["run_id"]))
        return
    if not isinstance(data, dict) or set(data) != {"clinic_id", "run_id", "page"}:
        raise ValueError("a statement run message is {clinic_id, run_id, page} or {clinic_id, run_id, op: print}")
    page = data["page"]
    if isinstance(page, bool) or not isinstance(page, int):
        raise ValueError("page must be an integer")
    statement_services.statement_run_page(clinic_id=str(data["clinic_id"]), run_id=str(data["run_id"]), page=page)


def pages_handle(records: list[tuple[str, str]]) -> dict[str, Any]:
    """``(message id, body)`` pairs -> the partial-batch response: the ids of failed messages."""
    failures = []
    for message_id, body in records:
        try:
            page_process(body)
        except Exception as exc:  # any failure means "retry this message alone"
            log.warning("statement page failed", extra={"message_id": message_id, "error": type(exc).__name__})
            failures.append({"itemIdentifier": message_id})
    return {"batchItemFailures": failures}


@statements_jobs.on_sqs_message(queue=QUEUE, batch_size=BATCH_SIZE, maximum_concurrency=MAX_CONCURRENCY)
def statement_pages(event: SQSEvent) -> dict[str, Any]:
    """SQS: process statement run pages; returns ``batchItemFailures`` (R7)."""
    return pages_handle([(record.to_dict()["messageId"], record.body) for record in event])


@statements_jobs.schedule(Cron(0, 9, "*", "*", "?", "*"))
def statement_runs_start(event: CloudWatchEvent) -> None:
    """Daily at 09:00 UTC: start (or join) today's run for every clinic billing from Frontdesk.
    A clinic that cannot run (no portal URL, no default profile) is logged and skipped; a
    second firing joins the same runs (one per clinic and local date)."""
    for clinic_id in statement_services.run_clinic_ids():
        try:
            statement_services.statement_run_start(clinic_id=clinic_id)
        except DomainError as exc:
            log.warning("statement run not started", extra={"clinic_id": clinic_id, "error": str(exc)[:200]})


@statements_jobs.schedule(Rate(5, unit=Rate.MINUTES))
def balance_notices_bill(event: CloudWatchEvent) -> dict[str, int]:
    """Every 5 minutes: bill the guarantors whose patient balance an import grew, and queue
    their notifications (PRODUCT.md §1 "told at once"); safe when EventBridge fires twice."""
    return statement_services.balance_notices_bill_all()
