"""The embedded default's EventBridge: the scheduled handlers' work, on a timer in the demo.

In the cloud, EventBridge fires ``notify_due_hourly`` (then SQS workers send), the payment
completer and the balance-notice biller every 5 minutes, the reference-batch opener hourly and
the statement runs daily at 09:00 UTC (chalicelib/jobs). :class:`LocalSchedule` calls the same services every ``every``
seconds in a daemon thread: each is idempotent per period, so running them more often than
the cloud does only makes the demo answer sooner. The daily statement run starts at most once
per UTC date, from 09:00 UTC.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import date

from chalicelib.core import clock
from chalicelib.core.errors import DomainError
from chalicelib.notify import local as notify_local
from chalicelib.payments import services as payments
from chalicelib.statements import services as statements

log = logging.getLogger(__name__)


class LocalSchedule:
    """Runs :meth:`tick` every ``every`` seconds until :meth:`stop`. A failing job is logged
    (its name and the error type only) and tried again at the next tick, as a scheduled
    Lambda would be."""

    def __init__(self, every: float = 30.0) -> None:
        self.every = every
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="local-schedule", daemon=True)
        self._statements_day: date | None = None

    def start(self) -> LocalSchedule:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=self.every + 5)

    def jobs(self) -> list[tuple[str, Callable[[], object]]]:
        """(name, job) in the order one tick runs them."""
        return [("reference_batches_open", lambda: payments.batches_open_due(at=clock.now())),
                ("payment_attempts_complete", payments.payment_attempts_complete_all),
                ("statement_runs_start", self._statement_runs),
                ("balance_notices_bill", statements.balance_notices_bill_all),
                ("notify_due", notify_local.tick)]

    def tick(self) -> None:
        for name, job in self.jobs():
            try:
                job()
            except Exception as exc:  # a scheduled Lambda's failure is logged and retried
                log.warning("scheduled job failed; next tick tries again", extra={"job": name,
                                                                                  "error": type(exc).__name__})

    def _statement_runs(self) -> None:
        now = clock.now()
        if now.hour < 9 or self._statements_day == now.date():
            return
        for clinic_id in statements.run_clinic_ids():
            try:
                statements.statement_run_start(clinic_id=clinic_id)
            except DomainError as exc:
                log.warning("statement run not started", extra={"clinic_id": clinic_id, "error": str(exc)[:200]})
        self._statements_day = now.date()

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            self.tick()
