"""What every channel takes and raises, the send-rate limiter, and provider error classification.

A channel makes exactly one provider call per :meth:`Channel.send` (plus in-process retries of
errors that prove nothing was accepted: throttling), so the outbox's claim is the only thing
that decides whether a message goes out (SECURITY.md R40). Outcomes:

- returns the provider's message id: accepted;
- :class:`SendRetryable`: definitely not accepted (throttled, daily quota, spend limit,
  connection refused): the message goes back to ``queued`` with a later due time;
- :class:`SendPermanent`: refused for good (invalid address, opted out, rejected): ``failed``;
- :class:`SendUnknown`: the request may have been accepted (read timeout, 5xx after sending):
  ``unknown``, never resent automatically.
"""

from __future__ import annotations

import random
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import boto3
from botocore.config import Config
from botocore.exceptions import (
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    ReadTimeoutError,
)


@dataclass(frozen=True)
class Outgoing:
    """One message ready for a provider. ``to`` is an email address or E.164 number;
    ``sender`` the From address or SMS origination number; ``tags`` carry ids only (SES
    message tags come back on every SES event). ``sensitive`` marks sign-in codes: never
    logged or stored outside the local console file."""

    channel: str
    to: str
    text: str
    subject: str | None = None
    html: str | None = None
    sender: str | None = None
    sender_name: str | None = None
    tags: Mapping[str, str] = field(default_factory=dict)
    meta: Mapping[str, str] = field(default_factory=dict)
    sensitive: bool = False


#: Provider clients: botocore retries OFF. botocore would retry a read timeout, which can send a
#: message twice; only errors that prove nothing was accepted are retried (``with_throttle_retries``).
CLIENT_CONFIG = Config(connect_timeout=2, read_timeout=5, retries={"total_max_attempts": 1, "mode": "standard"})


class LazyClient:
    """A boto3 client for ``service`` created on first use (B3: importing the app creates none)."""

    def __init__(self, service: str) -> None:
        self.service = service
        self._client: Any = None
        self._lock = threading.Lock()

    def get(self) -> Any:
        if self._client is None:
            with self._lock:
                if self._client is None:
                    from chalicelib.notify import config

                    self._client = boto3.client(self.service, region_name=config.settings().region,  # type: ignore[call-overload]
                                                config=CLIENT_CONFIG)
        return self._client


class SendError(Exception):
    """Base of channel outcomes other than success. ``reason`` is a short code, never PHI."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class SendRetryable(SendError):
    """Not accepted; try again after ``retry_after`` seconds."""

    def __init__(self, reason: str, retry_after: float = 60.0) -> None:
        super().__init__(reason)
        self.retry_after = retry_after


class SendPermanent(SendError):
    """Refused for good. ``contact`` is the suppression to record on the contact point
    (``invalid`` or ``opted_out``), if any."""

    def __init__(self, reason: str, contact: str | None = None) -> None:
        super().__init__(reason)
        self.contact = contact


class SendUnknown(SendError):
    """The provider may have accepted it: never resend automatically (R40)."""


class Channel(Protocol):
    """A delivery channel (SES email, SNS SMS, the console/file channel)."""

    name: str

    def send(self, message: Outgoing) -> str:
        """Send once; return the provider message id or raise a :class:`SendError`."""
        ...


class RateLimiter:
    """At most ``rate`` provider calls in any sliding one-second window, for this process
    (R10, R13).

    A slot is taken before the call and stamped again when the call returns
    (:meth:`release`), so call ``i + rate`` starts at least one second after call ``i``
    *finished*: whatever the provider's arrival time within a call, no one-second window
    there holds more than ``rate`` requests. Per process: the worker's SQS event source caps
    concurrency, and each process gets ``provider rate / max concurrency``.
    """

    def __init__(self, rate: float, *, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.rate = rate
        self._clock = clock
        self._sleep = sleep
        self._slots: deque[list[float]] = deque()
        self._lock = threading.Lock()

    def acquire(self) -> list[float]:
        """Block until a slot is free; return it (pass it to :meth:`release`)."""
        if self.rate <= 0:
            return [self._clock()]
        limit = max(1, int(self.rate))
        while True:
            with self._lock:
                now = self._clock()
                while self._slots and now - self._slots[0][0] >= 1.0:
                    self._slots.popleft()
                if len(self._slots) < limit:
                    slot = [now]
                    self._slots.append(slot)
                    return slot
                wait = 1.0 - (now - self._slots[0][0])
            self._sleep(max(wait, 0.001))

    def release(self, slot: list[float]) -> None:
        """Stamp the slot with the call's end."""
        with self._lock:
            slot[0] = self._clock()


THROTTLE_CODES = frozenset({"Throttling", "ThrottlingException", "TooManyRequestsException",
                            "RequestLimitExceeded", "ThrottledException"})


def classify(exc: Exception, *, channel: str) -> SendError:
    """Map a botocore exception from a send call to an outcome (see the module docstring)."""
    if isinstance(exc, ConnectTimeoutError | EndpointConnectionError):
        return SendRetryable("connect_failed", 30)
    if isinstance(exc, ReadTimeoutError | ConnectionClosedError):
        return SendUnknown("provider_timeout")
    if not isinstance(exc, ClientError):
        return SendUnknown(f"provider_error_{type(exc).__name__}"[:60])
    error = exc.response.get("Error", {})
    code = str(error.get("Code", ""))
    message = str(error.get("Message", "")).lower()
    status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
    if "opted out" in message or "optedout" in code.lower():
        return SendPermanent("opted_out", contact="opted_out")
    if code in THROTTLE_CODES:
        if "daily" in message and "quota" in message:
            return SendRetryable("daily_quota", 3600)
        return SendRetryable("throttled", 60)
    if "spend" in message or "no quota left" in message or ("monthly" in message and "limit" in message):
        return SendRetryable("spend_limit", 3600)
    if code in ("InvalidParameter", "InvalidParameterValue", "InvalidParameterException"):
        return SendPermanent("invalid_address", contact="invalid")
    if code == "MessageRejected":
        return SendPermanent("rejected")
    if code in ("MailFromDomainNotVerified", "ConfigurationSetDoesNotExist", "AccountSendingPaused",
                "AuthorizationError", "AccessDenied", "AccessDeniedException", "InvalidClientTokenId"):
        return SendRetryable(f"sender_not_ready_{code}"[:60], 3600)
    if status >= 500 or code in ("InternalFailure", "InternalError", "ServiceUnavailable"):
        return SendUnknown("provider_5xx")
    return SendPermanent(f"refused_{code}"[:60] if code else "refused")


def with_throttle_retries(call: Callable[[], str], *, limiter: RateLimiter, attempts: int = 3,
                          base_delay: float = 0.05, sleep: Callable[[float], None] = time.sleep) -> str:
    """Run one provider ``call`` under the limiter, retrying only errors that prove the request
    was not accepted (throttling), with jittered exponential backoff. Never retries timeouts."""
    for attempt in range(attempts):
        slot = limiter.acquire()
        try:
            return call()
        except Exception as exc:
            outcome = classify(exc, channel="")
            if isinstance(outcome, SendRetryable) and outcome.reason == "throttled" and attempt + 1 < attempts:
                sleep(base_delay * (2 ** attempt) * (1 + random.random()))
                continue
            raise outcome from exc
        finally:
            limiter.release(slot)
    raise SendRetryable("throttled", 60)
