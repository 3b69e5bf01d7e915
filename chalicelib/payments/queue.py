"""Hand a recorded webhook event to its handler: an SQS message carrying ids only (DESIGN.md
rule 6) when ``FRONTDESK_PROCESSOR_EVENTS_QUEUE_URL`` is set (the cloud), else inline (tests,
``chalice local``). The SQS client is created on first use, never at import (B3)."""

from __future__ import annotations

import json
import os
import threading
from typing import Any

from chalicelib.payments import services
from chalicelib.payments.services import RecordedEvent

QUEUE_ENV = "FRONTDESK_PROCESSOR_EVENTS_QUEUE_URL"
_lock = threading.Lock()
_client: Any = None


def processor_event_enqueue(recorded: RecordedEvent) -> None:
    """Queue ``recorded`` for :func:`services.processor_event_handle` (or handle it now).

    Inline handling raises what the handler raises (TryAgainLater): the webhook then answers
    503 and the processor delivers again; the event item remembers it failed.
    """
    url = os.environ.get(QUEUE_ENV)
    if not url:
        services.processor_event_handle(clinic_id=recorded.clinic_id, processor=recorded.processor,
                                        event_id=recorded.event_id)
        return
    _sqs().send_message(QueueUrl=url, MessageBody=json.dumps(
        {"clinic_id": recorded.clinic_id, "processor": recorded.processor, "event_id": recorded.event_id}))


def _sqs() -> Any:
    global _client
    with _lock:
        if _client is None:
            import boto3  # the SQS client only where events are queued (B3)

            _client = boto3.client("sqs")
        return _client
