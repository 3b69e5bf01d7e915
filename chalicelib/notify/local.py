"""The embedded default's scheduler: what EventBridge and SQS do in the cloud, on a timer.

:func:`tick` does the hourly schedule's work for a time (one sweep item per clinic) and then
drains the in-process queue through the same :func:`services.work_items_handle` the SQS worker
calls. The demo's local schedule (chalicelib/demo/scheduler.py) calls it every 30 s.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from chalicelib.core import clock
from chalicelib.notify import config, queue, services

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TickResult:
    """Work items handled and messages sent by one tick."""

    handled: int
    sent: int


def drain(limit: int = 100_000) -> TickResult:
    """Handle every item on the local queue ten at a time, as SQS delivers them (new items
    added while draining included). An item that failed is logged and dropped: the due sweep
    finds its message again."""
    handled = sent = 0
    while queue.LOCAL and handled < limit:
        bodies = [queue.LOCAL.popleft() for _ in range(min(queue.BATCH, len(queue.LOCAL)))]
        for result in services.work_items_handle(bodies=bodies):
            if isinstance(result, Exception):
                log.warning("notify work item failed: %s", type(result).__name__)
            sent += isinstance(result, services.SendOutcome) and result.status == "sent"
        handled += len(bodies)
    return TickResult(handled, sent)


def tick(at: datetime | None = None, *, clinic_ids: list[str] | None = None) -> TickResult:
    """Sweep every clinic (or ``clinic_ids``) for ``at`` (default now, UTC), then drain the
    local queue."""
    when = at or clock.now()
    if clinic_ids is None:
        services.clinics_sweep_enqueue(at=when)
    else:
        queue.enqueue({"op": "sweep", "clinic_id": cid, "at": when.isoformat()} for cid in clinic_ids)
    return drain()


def outbox_path() -> Path:
    """Where the console channel writes (``FRONTDESK_OUTBOX_DIR``/outbox.jsonl)."""
    from chalicelib.notify.channels.console import FILE_NAME

    return config.settings().outbox_dir / FILE_NAME
