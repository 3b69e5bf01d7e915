"""Notification event handlers (a Chalice blueprint): the hourly due sweep, the SQS worker,
SES events and SMS delivery status from SNS, inbound SMS from SNS. Each parses its event
(ids only; never PHI) and calls one notify service; each is safe to run twice.

Queue and topic names here are logical: ``infra/notify.py`` points each event source at the
stage's real queue and topics (SAM overrides), and turns on ``ReportBatchItemFailures``.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime
from typing import TYPE_CHECKING, Any

from chalice import Blueprint, Cron
from chalice.app import CloudWatchEvent, SNSEvent, SQSEvent

from chalicelib.core import lazy

if TYPE_CHECKING:
    from chalicelib.notify import services as notify_services
else:
    notify_services = lazy.module("chalicelib.notify.services")

notify_events = Blueprint(__name__)
log = logging.getLogger(__name__)

QUEUE = "frontdesk-notify"
SES_EVENTS_TOPIC = "frontdesk-ses-events"
SMS_STATUS_TOPIC = "frontdesk-sms-status"
SMS_INBOUND_TOPIC = "frontdesk-sms-inbound"


@notify_events.schedule(Cron(0, "*", "*", "*", "?", "*"), name="notify_due_hourly")
def notify_due_hourly(event: CloudWatchEvent) -> dict[str, int]:
    """Every hour: one sweep work item per clinic, keyed by the event's time (not now())."""
    at = datetime.fromisoformat(event.time.replace("Z", "+00:00"))
    return {"clinics": notify_services.clinics_sweep_enqueue(at=at)}


@notify_events.on_sqs_message(queue=QUEUE, batch_size=10, name="notify_worker")
def notify_worker(event: SQSEvent) -> dict[str, list[dict[str, str]]]:
    """Sends and sweeps, ten to a batch (one clinic's sends share their storage calls). A
    record whose item failed is reported in ``batchItemFailures`` (only it is redelivered);
    the claim makes a redelivery a no-op."""
    ids: list[str] = []
    bodies: list[dict[str, Any]] = []
    failures: list[dict[str, str]] = []
    for record in event:
        message_id = str(record.to_dict().get("messageId", ""))
        try:
            bodies.append(json.loads(record.body))
            ids.append(message_id)
        except ValueError:
            log.warning("notify work item is not JSON")
            failures.append({"itemIdentifier": message_id})
    for message_id, result in zip(ids, notify_services.work_items_handle(bodies=bodies), strict=True):
        if isinstance(result, Exception):
            log.warning("notify work item failed: %s", type(result).__name__)
            failures.append({"itemIdentifier": message_id})
    return {"batchItemFailures": failures}


@notify_events.on_sns_message(topic=SES_EVENTS_TOPIC, name="notify_ses_events")
def notify_ses_events(event: SNSEvent) -> None:
    """SES configuration-set events (send, delivery, bounce, complaint, reject)."""
    notify_services.provider_event_record(payload=json.loads(event.message))


@notify_events.on_sns_message(topic=SMS_STATUS_TOPIC, name="notify_sms_status")
def notify_sms_status(event: SNSEvent) -> None:
    """SMS delivery status events."""
    notify_services.provider_event_record(payload=json.loads(event.message))


@notify_events.on_sns_message(topic=SMS_INBOUND_TOPIC, name="notify_sms_inbound")
def notify_sms_inbound(event: SNSEvent) -> None:
    """Inbound SMS: STOP / HELP / START and their synonyms."""
    notify_services.inbound_sms_handle(payload=json.loads(event.message))
