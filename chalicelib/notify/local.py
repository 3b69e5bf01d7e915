"""The embedded default's scheduler: what EventBridge and SQS do in the cloud, on a timer.

:func:`tick` does the hourly schedule's work for a time (one sweep item per clinic) and then
drains the in-process queue through the same :func:`services.work_item_handle` the SQS worker
calls. :class:`Timer` runs it every ``every`` seconds in a daemon thread (the demo starts one).
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from chalicelib.accounts import selectors as account_selectors
from chalicelib.core import clock
from chalicelib.notify import config, queue, services

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TickResult:
    """Work items handled and messages sent by one tick."""

    handled: int
    sent: int


def drain(limit: int = 100_000) -> TickResult:
    """Handle every item on the local queue (new items added while draining included)."""
    handled = sent = 0
    while queue.LOCAL and handled < limit:
        body = queue.LOCAL.popleft()
        outcome = services.work_item_handle(body=body)
        handled += 1
        sent += isinstance(outcome, services.SendOutcome) and outcome.status == "sent"
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


class Timer:
    """Calls :func:`tick` every ``every`` seconds until :meth:`stop`. Errors are logged (ids
    only) and the next tick tries again, as a scheduled Lambda would be."""

    def __init__(self, every: float = 30.0) -> None:
        self.every = every
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="notify-timer", daemon=True)

    def start(self) -> Timer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=self.every + 5)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                tick()
            except Exception:
                log.exception("notify timer tick failed")
            self._stop.wait(self.every)


def statements_notify(clinic_id: str) -> int:
    """Queue the balance notification and reminders of every guarantor's latest statement of a
    clinic (the demo's statements predate the scheduler); return how many messages were queued."""
    queued = 0
    for guarantor in account_selectors.guarantors_list(clinic_id=clinic_id):
        statements = account_selectors.statements_list(clinic_id=clinic_id, guarantor_id=guarantor.guarantor_id)
        if statements:
            queued += sum(q.created for q in services.statement_notifications_queue(
                clinic_id=clinic_id, guarantor_id=guarantor.guarantor_id, statement_id=statements[0].statement_id))
    return queued


def outbox_path() -> Path:
    """Where the console channel writes (``FRONTDESK_OUTBOX_DIR``/outbox.jsonl)."""
    from chalicelib.notify.channels.console import FILE_NAME

    return config.settings().outbox_dir / FILE_NAME
