"""Payment event handlers (each safe to run twice, DESIGN.md rule 5; ids only in events):

- ``reference_batches_open``: hourly; opens the online batch of each clinic whose local day
  starts in that hour (by the event's scheduled time, so a late or replayed event converges).
- ``payment_attempts_complete``: every 5 minutes; the completer for attempts stuck pending.
- ``processor_events_consume``: SQS consumer of recorded webhook events; reports partial batch
  failures so only failed records are redelivered (SERVERLESS.md 3.7; the queue's
  ``ReportBatchItemFailures`` is set in infra).
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from chalice import Blueprint, Cron, Rate
from chalice.app import CloudWatchEvent, SQSEvent

from chalicelib.core import lazy

if TYPE_CHECKING:
    from chalicelib.payments import services
else:
    services = lazy.module("chalicelib.payments.services")

#: The queue's name in the decorator; infra points the event source at the stage's real queue.
QUEUE = "frontdesk-processor-events"
payment_jobs = Blueprint(__name__)
log = logging.getLogger(__name__)


def _scheduled_time(event: CloudWatchEvent) -> datetime:
    try:
        return datetime.fromisoformat(str(event.time).replace("Z", "+00:00"))
    except ValueError:
        return datetime.now(UTC)


@payment_jobs.schedule(Cron(0, "*", "*", "*", "?", "*"))
def reference_batches_open(event: CloudWatchEvent) -> dict[str, Any]:
    """Open the day's online batch for clinics whose local midnight is this hour."""
    return {"opened": services.batches_open_due(at=_scheduled_time(event))}


@payment_jobs.schedule(Rate(5, unit=Rate.MINUTES))
def payment_attempts_complete(event: CloudWatchEvent) -> dict[str, Any]:
    """Finish attempts stuck pending by asking the processor (DESIGN.md rule 4)."""
    return {"statuses": dict(services.payment_attempts_complete_all())}


@payment_jobs.on_sqs_message(queue=QUEUE, batch_size=10)
def processor_events_consume(event: SQSEvent) -> dict[str, Any]:
    """Handle each queued event; return the failed ones for redelivery."""
    failures = []
    for record in event:
        message_id = record.to_dict().get("messageId", "")
        try:
            body = json.loads(record.body)
            services.processor_event_handle(clinic_id=str(body["clinic_id"]), processor=str(body["processor"]),
                                            event_id=str(body["event_id"]))
        except Exception as exc:  # any failure (a DynamoDB error too) means "retry this record alone" (R7)
            log.warning("processor event not handled; will be redelivered",
                        extra={"message_id": message_id, "error": type(exc).__name__})
            failures.append({"itemIdentifier": message_id})
    return {"batchItemFailures": failures}
