"""Helpers shared by the notification tests (tests/test_notify_*.py): environments for the
console channel and for moto's SES/SNS/SQS, guarantors with balances and statements built
through the real services, a frozen clock, and provider event builders."""

from __future__ import annotations

import itertools
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from chalicelib.accounts import services as accounts
from chalicelib.core import clock
from chalicelib.ledger.accounts import ResponsibilityKind
from chalicelib.notify import channels, config, context, queue
from chalicelib.notify.outbox import MessageRef
from chalicelib.tenants import services as tenants

ACCOUNT = "123456789012"
REGION = "us-east-1"
SENDER = "billing@clinic.example"
_n = itertools.count(1)


def reset_notify() -> None:
    """Forget everything notify caches from the environment."""
    config.reset()
    channels.reset()
    queue.reset()
    context.invalidate()


@contextmanager
def env(**values: str) -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    reset_notify()
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        reset_notify()


@contextmanager
def console(outbox: Path) -> Iterator[None]:
    """The embedded default: console channel writing to ``outbox``, in-process queue."""
    with env(FRONTDESK_CHANNEL="console", FRONTDESK_OUTBOX_DIR=str(outbox)):
        yield


def console_lines(outbox: Path) -> list[dict[str, Any]]:
    """What the console channel wrote to ``outbox`` (one JSON object per message), oldest first."""
    path = outbox / "outbox.jsonl"
    return [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []


@contextmanager
def aws(*, ses_rate: str = "1000", sms_rate: str = "1000", queue_name: str = "frontdesk-notify") -> Iterator[Any]:
    """moto for SES, SNS and SQS only (DynamoDB stays on DynamoDB Local): a verified sender,
    a configuration set and the work queue. Yields the SQS queue URL."""
    import boto3
    from moto import mock_aws

    with mock_aws():
        ses = boto3.client("ses", region_name=REGION)
        ses.verify_email_identity(EmailAddress=SENDER)
        ses.create_configuration_set(ConfigurationSet={"Name": "frontdesk-notify"})
        url = boto3.client("sqs", region_name=REGION).create_queue(
            QueueName=queue_name, Attributes={"VisibilityTimeout": "0"})["QueueUrl"]
        with env(FRONTDESK_CHANNEL="aws", FRONTDESK_NOTIFY_QUEUE_URL=url, FRONTDESK_SENDER_EMAIL=SENDER,
                 FRONTDESK_SES_CONFIGURATION_SET="frontdesk-notify", FRONTDESK_SES_RATE=ses_rate,
                 FRONTDESK_SMS_RATE=sms_rate, AWS_DEFAULT_REGION=REGION):
            yield url


def ses_sent() -> list[Any]:
    from moto.ses.models import ses_backends

    return list(ses_backends[ACCOUNT][REGION].sent_messages)


def sms_sent() -> dict[str, tuple[str, str]]:
    from moto.sns.models import sns_backends

    return dict(sns_backends[ACCOUNT][REGION].sms_messages)


class Clock:
    """A settable UTC clock through the clock seam."""

    def __init__(self, at: datetime) -> None:
        self.at = at
        clock.set_source(lambda: self.at)

    def set(self, at: datetime) -> None:
        self.at = at

    def move(self, **kw: float) -> None:
        self.at += timedelta(**kw)


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


@dataclass(frozen=True)
class Payer:
    clinic_id: str
    guarantor_id: str
    patient_id: str
    email: str | None
    mobile: str | None
    line_id: str | None


def clinic(*, time_zone: str = "America/Chicago", name: str = "Riverside Family Medicine",
           group: bool = True, **settings: Any) -> str:
    """A clinic with a default group and its own SMS origination number (``number_of``)."""
    from chalicelib.notify import services

    cid = tenants.clinic_create(name=name, time_zone=time_zone, phone="+15555550100")
    if group:
        tenants.group_create(clinic_id=cid, name=name, is_default=True)
    settings.setdefault("sms_origination_number", f"+1877{next(_n) % 10_000_000:07d}")
    services.notify_settings_set(clinic_id=cid, settings=settings)
    return cid


def number_of(clinic_id: str) -> str:
    from chalicelib.notify import selectors

    number = selectors.notify_settings_get(clinic_id=clinic_id).sms_origination_number
    assert number
    return number


def payer(clinic_id: str, *, owes: int = 12_540, email: bool = True, mobile: bool = True,
          consent: dict[str, bool] | None = None, language: str = "en", time_zone: str | None = None,
          statement: bool = True, due_date: str = "2026-12-15", statement_date: str = "2026-11-25") -> Payer:
    """A guarantor who owes ``owes`` cents (coinsurance), optionally billed on a statement.
    ``time_zone`` is written to the profile (the model has it; accounts has no setter yet)."""
    n = next(_n)
    em = f"payer{n}@example.com" if email else None
    mob = f"+1555{n % 10_000_000:07d}" if mobile else None
    gid = accounts.guarantor_create(clinic_id=clinic_id, first_name="Pat", last_name=f"Payer{n}", email=em,
                                    mobile=mob, language=language,
                                    consent=consent if consent is not None else {"email": True, "sms": True})
    if time_zone is not None:
        _set_time_zone(clinic_id, gid, time_zone)
    pid = accounts.patient_link(clinic_id=clinic_id, guarantor_id=gid, first_name="Pat", last_name=f"Payer{n}")
    if owes:
        enc = f"E{n}"
        accounts.service_line_charge(clinic_id=clinic_id, guarantor_id=gid, encounter_number=enc, line_number=1,
                                     patient_id=pid, date_of_service="2026-10-01", procedure_code="99213",
                                     billed_cents=owes * 3, self_pay=False)
        accounts.insurance_payment_post(clinic_id=clinic_id, guarantor_id=gid, line_id=f"{enc}-1",
                                        amount_cents=owes * 2, source_key=f"ins:{enc}")
        accounts.patient_responsibility_post(clinic_id=clinic_id, guarantor_id=gid, line_id=f"{enc}-1",
                                             amount_cents=owes, kind=ResponsibilityKind.COINSURANCE,
                                             source_key=f"pr:{enc}")
    if statement:
        accounts.statement_create(clinic_id=clinic_id, guarantor_id=gid, statement_date=statement_date,
                                  due_date=due_date, statement_id=f"st{n}")
    return Payer(clinic_id, gid, pid, em, mob, f"E{n}-1" if owes else None)


def statement_id(p: Payer) -> str:
    from chalicelib.accounts import selectors

    return selectors.statements_list(clinic_id=p.clinic_id, guarantor_id=p.guarantor_id)[0].statement_id


def _set_time_zone(clinic_id: str, guarantor_id: str, zone: str) -> None:
    from chalicelib.store import keys
    from chalicelib.store.db import clinic_scope
    from chalicelib.store.models import GuarantorItem

    with clinic_scope(clinic_id):
        GuarantorItem(keys.guarantor_pk(clinic_id, guarantor_id), keys.PROFILE).update(
            actions=[GuarantorItem.time_zone.set(zone)], condition=GuarantorItem.pk.exists())


def pay(p: Payer, cents: int, key: str) -> None:
    """A patient payment applied to the payer's line."""
    accounts.patient_payment_post(clinic_id=p.clinic_id, guarantor_id=p.guarantor_id, amount_cents=cents,
                                  applications={p.line_id: cents} if p.line_id else {}, source_key=key)


def ses_event(ref: MessageRef, event_type: str, *, to: str = "x@example.com", provider_id: str = "ses-1",
              bounce_type: str = "Permanent") -> dict[str, Any]:
    """An SES configuration-set event as it arrives through SNS (the message body)."""
    event: dict[str, Any] = {
        "eventType": event_type,
        "mail": {"timestamp": "2026-12-01T15:00:00.000Z", "source": SENDER, "messageId": provider_id,
                 "destination": [to], "tags": {k: [v] for k, v in ref.tags().items()}
                 | {"ses:configuration-set": ["frontdesk-notify"]}},
    }
    if event_type == "Bounce":
        event["bounce"] = {"bounceType": bounce_type, "bounceSubType": "General",
                           "bouncedRecipients": [{"emailAddress": to, "status": "5.1.1"}]}
    elif event_type == "Complaint":
        event["complaint"] = {"complainedRecipients": [{"emailAddress": to}], "complaintFeedbackType": "abuse"}
    elif event_type == "Delivery":
        event["delivery"] = {"recipients": [to], "smtpResponse": "250 ok"}
    elif event_type == "Send":
        event["send"] = {}
    return event


def inbound(sender: str, body: str, *, to: str | None = None, inbound_id: str | None = None) -> dict[str, Any]:
    """A two-way SMS inbound message as SNS delivers it."""
    return {"originationNumber": sender, "destinationNumber": to, "messageKeyword": "KEYWORD",
            "messageBody": body, "inboundMessageId": inbound_id or f"in-{next(_n)}",
            "previousPublishedMessageId": None}


class _Http:
    def __init__(self, status: int) -> None:
        self.status_code = status
        self.headers: dict[str, str] = {}
        self.content = b""


class ProviderTap:
    """botocore hooks on a channel's client (SERVERLESS-PERF-REL.md §5.3 "inject what emulators
    cannot produce"): every call counted, every accepted send recorded with its parameters,
    provider id and monotonic time, and faults injected by ``fault(params) -> (code, message,
    http status) | None`` before the request reaches moto."""

    def __init__(self, client: Any, operation: str) -> None:
        import time

        self._time = time.monotonic
        self.calls = 0
        self.accepted: list[tuple[float, dict[str, Any], str]] = []
        self.fault: Any = None
        service = client.meta.service_model.service_id.hyphenize()
        events = client.meta.events
        events.register(f"before-parameter-build.{service}.{operation}", self._params)
        events.register(f"before-call.{service}.{operation}", self._before)
        events.register(f"after-call.{service}.{operation}", self._after)

    def _params(self, params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        context["fd_params"] = dict(params)

    def _before(self, context: dict[str, Any], **_: Any) -> Any:
        self.calls += 1
        if self.fault is not None:
            injected = self.fault(context.get("fd_params", {}))
            if injected is not None:
                code, message, status = injected
                return _Http(status), {"Error": {"Code": code, "Message": message},
                                       "ResponseMetadata": {"HTTPStatusCode": status}}
        return None

    def _after(self, http_response: Any, parsed: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        if http_response.status_code < 300:
            self.accepted.append((self._time(), context.get("fd_params", {}), str(parsed.get("MessageId"))))

    def max_in_any_second(self) -> int:
        times = sorted(t for t, _, _ in self.accepted)
        best, lo = 0, 0
        for hi, t in enumerate(times):
            while t - times[lo] >= 1.0:
                lo += 1
            best = max(best, hi - lo + 1)
        return best


def taps() -> tuple[ProviderTap, ProviderTap]:
    """Taps on the email (SES SendEmail) and SMS (SNS Publish) channels of the aws mode."""
    return (ProviderTap(channels.get("email").client, "SendEmail"),  # type: ignore[attr-defined]
            ProviderTap(channels.get("sms").client, "Publish"))  # type: ignore[attr-defined]


def sqs_drain(url: str, *, handle: Any = None) -> int:
    """Receive the work queue ten at a time, run the batch (``handle(bodies)``; default the
    worker's service, raising the first failed item's error), delete it (what the Lambda event
    source does for records the handler does not report as failed)."""
    import json

    import boto3

    from chalicelib.notify import services

    sqs = boto3.client("sqs", region_name=REGION)

    def run_all(bodies: list[dict[str, Any]]) -> None:
        for result in services.work_items_handle(bodies=bodies):
            if isinstance(result, Exception):
                raise result

    run = handle or run_all
    handled = 0
    while True:
        got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", [])
        if not got:
            return handled
        run([json.loads(m["Body"]) for m in got])
        for m in got:
            sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
            handled += 1
