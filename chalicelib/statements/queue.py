"""The statement run's fan-out: one SQS message per run page, ``{"clinic_id", "run_id",
"page"}``, and one for the finished run's print files, ``{"clinic_id", "run_id", "op": "print"}``
(ids only, never PHI; SERVERLESS.md 3.7). The consumer is
``chalicelib.jobs.statements``; every page is safe to process twice.

Without ``FRONTDESK_STATEMENTS_QUEUE_URL`` (the embedded default, tests) :func:`enabled` is
false and the run processes its pages inline. :func:`set_sender` replaces the transport
(tests, the benchmark's worker pool). The SQS client is created on first send, never at import.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Sequence
from typing import Any

from chalicelib.core import config

Sender = Callable[[Sequence[dict[str, Any]]], None]

_sender: Sender | None = None
_client: Any = None
_lock = threading.Lock()


def set_sender(sender: Sender | None) -> None:
    """Send page messages through ``sender`` instead of SQS (``None`` restores the default)."""
    global _sender
    _sender = sender


def enabled() -> bool:
    """True when pages fan out (a sender is set, or an SQS queue is configured)."""
    return _sender is not None or config.settings().statements_queue_url is not None


def message(*, clinic_id: str, run_id: str, page: int) -> dict[str, Any]:
    """One page's message body."""
    return {"clinic_id": clinic_id, "run_id": run_id, "page": page}


def print_message(*, clinic_id: str, run_id: str) -> dict[str, Any]:
    """The message that builds a finished run's print files (merged PDF and manifest)."""
    return {"clinic_id": clinic_id, "run_id": run_id, "op": "print"}


def _sqs() -> Any:
    global _client
    if _client is None:
        with _lock:
            if _client is None:
                import boto3  # lazily: importing the app creates no SQS client (B3)
                from botocore.config import Config

                _client = boto3.client("sqs", region_name=config.settings().region,
                                       config=Config(connect_timeout=2, read_timeout=5,
                                                     retries={"max_attempts": 3}))
    return _client


def reset() -> None:
    """Forget the SQS client (tests that start and stop a moto mock)."""
    global _client
    _client = None


def send(messages: Sequence[dict[str, Any]]) -> None:
    """Send run messages (pages, print), ten per SQS batch call. Raises RuntimeError if SQS refuses any."""
    if not messages:
        return
    if _sender is not None:
        _sender(messages)
        return
    url = config.settings().statements_queue_url
    assert url is not None, "queue.send needs FRONTDESK_STATEMENTS_QUEUE_URL or a sender"
    for start in range(0, len(messages), 10):
        chunk = messages[start:start + 10]
        result = _sqs().send_message_batch(QueueUrl=url, Entries=[
            {"Id": str(i), "MessageBody": json.dumps(body, separators=(",", ":"))} for i, body in enumerate(chunk)])
        if result.get("Failed"):
            raise RuntimeError(f"SQS refused {len(result['Failed'])} statement page message(s)")
