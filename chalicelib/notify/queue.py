"""Notification work queue: SQS in the cloud, an in-process queue on the embedded default.

Bodies are JSON with ids only, never PHI (DESIGN.md rule 6): ``{"op": "send", "clinic_id",
"owner", "message_id"}`` or ``{"op": "sweep", "clinic_id", "at"}``. Sends are batched ten to a
``SendMessageBatch`` (SERVERLESS-PERF-REL.md §3.3). The SQS client is created lazily on first
use (B3), with botocore's standard retries: a duplicate enqueue is harmless because the
sender's claim makes every delivery after the first a no-op.
"""

from __future__ import annotations

import json
import threading
from collections import deque
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from chalicelib.notify import config

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient

BATCH = 10
_lock = threading.Lock()
_client: SQSClient | None = None
_queue_url: str | None = None
#: The embedded default's queue, drained by :func:`chalicelib.notify.local.tick`.
LOCAL: deque[dict[str, Any]] = deque()


def _sqs() -> tuple[SQSClient, str]:
    global _client, _queue_url
    if _client is None or _queue_url is None:
        with _lock:
            if _client is None:
                import boto3
                from botocore.config import Config

                _client = boto3.client("sqs", region_name=config.settings().region,
                                       config=Config(connect_timeout=2, read_timeout=5,
                                                     retries={"total_max_attempts": 3, "mode": "standard"}))
            if _queue_url is None:
                cfg = config.settings()
                _queue_url = cfg.queue_url or _client.get_queue_url(QueueName=cfg.queue_name)["QueueUrl"]
    return _client, _queue_url


def enqueue(bodies: Iterable[Mapping[str, Any]], *, delay_seconds: int = 0) -> int:
    """Put work items on the queue (batches of 10); return how many were accepted.

    Raises RuntimeError naming how many of a batch SQS refused (the sweeper will find those
    messages again: they stay ``queued`` in the due index).
    """
    items = [dict(b) for b in bodies]
    if not items:
        return 0
    if config.settings().is_console and not config.settings().queue_url:
        if delay_seconds > 0:
            return 0  # the local queue has no delays: the due sweeper picks these up
        LOCAL.extend(items)
        return len(items)
    client, url = _sqs()
    sent = 0
    for start in range(0, len(items), BATCH):
        chunk = items[start:start + BATCH]
        response = client.send_message_batch(QueueUrl=url, Entries=[
            {"Id": str(i), "MessageBody": json.dumps(body, separators=(",", ":")),
             "DelaySeconds": max(0, min(900, int(delay_seconds)))}
            for i, body in enumerate(chunk)])
        failed = response.get("Failed", [])
        sent += len(chunk) - len(failed)
        if failed:
            raise RuntimeError(f"SQS refused {len(failed)} of {len(chunk)} notification work items")
    return sent


def reset() -> None:
    """Forget the client, queue URL and local items (tests)."""
    global _client, _queue_url
    with _lock:
        _client = None
        _queue_url = None
        LOCAL.clear()
