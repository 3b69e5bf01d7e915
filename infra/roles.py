"""Least privilege per function (SERVERLESS-PERF-REL.md §6.2, R18): which Lambda function of the
app may do what, beyond the table, the stage key and its own logs.

Every function of the Chalice app is listed in :data:`FUNCTIONS` with the grants it needs
(names of :data:`GRANTS`); ``infra/api.py`` gives each its own role holding exactly the base
statements and those grants, all with exact actions on exact ARNs, and points the packaged
function at it. ``tests/test_infra_roles.py`` checks that the list names every handler the app
registers (a new handler without an entry fails synthesis and the test), and what each role may
do. Grants follow the calls each handler's code path makes:

- ``send``: SES ``SendEmail`` through the stage's configuration set and SNS ``Publish`` to phone
  numbers (sign-in codes from the portal, the worker, STOP/HELP replies);
- ``notify_enqueue`` / ``notify_consume``: the notification work queue (payments queue receipts
  and cancel reminders, the sweep and a throttled send re-enqueue);
- ``statements_enqueue`` / ``statements_consume``, ``pdfs_read`` / ``pdfs_write``: the run pages
  and the statement PDF bucket (the portal presigns PDF links, so the API reads);
- ``payments_enqueue`` / ``payments_consume``: processor events (the webhook route enqueues);
- ``imports_read`` / ``imports_failed``: the dropped file and the import failure destination
  (Lambda sends a failed event there as the function's role);
- ``secrets_read``: ``secretsmanager:GetSecretValue`` on the application secret only
  (``infra/secrets.py``), for every function whose code may read the code pepper or the
  processor's keys (``chalicelib.core.secrets``): all but the import function.

``processor`` marks the functions whose code path may call the payment processor (Stripe): their
Lambda timeout covers Stripe's worst case too (R6, ``tests/test_infra.py``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SOURCE_DIR = Path(__file__).resolve().parent.parent
CHALICE_DEFAULT_TIMEOUT = 60
#: What an SQS event source mapping needs of its function's role (Lambda polls as the function).
CONSUME_ACTIONS: tuple[str, ...] = ("sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility",
                                    "sqs:GetQueueAttributes")

#: Every grant a function may hold; the statements come from the constructs owning the resources.
GRANTS: frozenset[str] = frozenset({
    "send", "notify_enqueue", "notify_consume", "statements_enqueue", "statements_consume", "pdfs_read",
    "pdfs_write", "payments_enqueue", "payments_consume", "imports_read", "imports_failed", "secrets_read",
})


@dataclass(frozen=True)
class Function:
    """One Lambda function of the app: its Chalice name (the handler's ``name``, ``api_handler``
    for the API), the logical id ``chalice package`` gives it, its grants, and whether it may
    call the payment processor (``processor``)."""

    name: str
    logical_id: str
    grants: frozenset[str]
    processor: bool = False


def _fn(name: str, logical_id: str, *grants: str, processor: bool = False) -> Function:
    unknown = set(grants) - GRANTS
    if unknown:
        raise ValueError(f"unknown grants {sorted(unknown)} for {name}")
    return Function(name, logical_id, frozenset(grants), processor)


FUNCTIONS: tuple[Function, ...] = (
    _fn("api_handler", "APIHandler", "send", "notify_enqueue", "pdfs_read", "payments_enqueue", "secrets_read",
        processor=True),
    _fn("import_object_created", "ImportObjectCreated", "imports_read", "imports_failed"),
    _fn("statement_runs_start", "StatementRunsStart", "statements_enqueue", "secrets_read"),
    _fn("balance_notices_bill", "BalanceNoticesBill", "pdfs_write", "notify_enqueue", "secrets_read"),
    _fn("statement_pages", "StatementPages", "statements_consume", "pdfs_write", "notify_enqueue", "secrets_read"),
    _fn("notify_due_hourly", "NotifyDueHourly", "notify_enqueue", "secrets_read"),
    _fn("notify_worker", "NotifyWorker", "notify_consume", "notify_enqueue", "send", "secrets_read"),
    _fn("notify_ses_events", "NotifySesEvents", "secrets_read"),
    _fn("notify_sms_status", "NotifySmsStatus", "secrets_read"),
    _fn("notify_sms_inbound", "NotifySmsInbound", "send", "notify_enqueue", "secrets_read"),
    _fn("reference_batches_open", "ReferenceBatchesOpen", "secrets_read", processor=True),
    _fn("payment_attempts_complete", "PaymentAttemptsComplete", "notify_enqueue", "secrets_read", processor=True),
    _fn("processor_events_consume", "ProcessorEventsConsume", "payments_consume", "notify_enqueue", "secrets_read",
        processor=True),
)
BY_LOGICAL_ID: dict[str, Function] = {f.logical_id: f for f in FUNCTIONS}


def function_timeout_seconds(name: str, stage: str) -> int:
    """The Lambda timeout of the Chalice function ``name`` in ``stage``, looked up in
    ``.chalice/config.json`` in Chalice's own order: the stage's per-function setting, the stage,
    the app's per-function setting, the app, Chalice's default (60 s).

    ``.chalice/config.json`` (R6, SERVERLESS-PERF-REL.md): every function 30 s (DynamoDB's
    worst case 9 s + Secrets Manager's 6 s ≤ half of it); the API and the functions calling
    the processor 60 s (+ Stripe's 12 s: 27 s, below API Gateway's 29 s and half of 60 s);
    statement pages, runs and imports longer for their batch work."""
    config: dict[str, Any] = json.loads((SOURCE_DIR / ".chalice" / "config.json").read_text())
    stage_cfg = config.get("stages", {}).get(stage, {})
    for scope in (stage_cfg.get("lambda_functions", {}).get(name, {}), stage_cfg,
                  config.get("lambda_functions", {}).get(name, {}), config):
        if scope.get("lambda_timeout") is not None:
            return int(scope["lambda_timeout"])
    return CHALICE_DEFAULT_TIMEOUT
