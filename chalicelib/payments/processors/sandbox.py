"""The sandbox processor: the default, deterministic, no network (STYLE.md 3.7, PRODUCT.md §5).

It models a real processor's side of the world in this process: a hosted card page (served by
``chalicelib.api.sandbox_processor`` under ``/sandbox-processor/``, standing for the
processor's own domain: the card number is posted there and never to a Frontdesk route), test
cards, idempotency keys, signed webhooks delivered later (twice or out of order when asked),
stored card tokens, refunds and voids, and a daily settlement report.

Test cards (any future expiry, any CVC) and the matching server-side tokens:

| card | token | outcome |
|---|---|---|
| 4242 4242 4242 4242 | ``tok_visa`` | success (Visa) |
| 5555 5555 5555 4444 | ``tok_mastercard`` | success (Mastercard) |
| 4000 0000 0000 0002 | ``tok_decline`` | declined (``card_declined``) |
| 4000 0000 0000 9995 | ``tok_insufficient`` | declined (``insufficient_funds``) |
| 4000 0000 0000 0069 | ``tok_expired`` | declined (``expired_card``) |
| 4000 0000 0000 0119 | ``tok_error`` | declined (``processing_error``) |
| 4000 0025 0000 3155 | ``tok_3ds`` | 3-D Secure challenge, then success or failure |
| 4000 0000 0000 0416 | ``tok_lost`` | charged, but every charge response is lost (timeout) |
| (wallet button) | ``tok_apple_pay`` / ``tok_google_pay`` | success through a wallet |

State lives in process memory (tests, ``chalice local``): the sandbox is not for a
multi-process deployment. :class:`SandboxFaults` injects the processor faults of SECURITY.md T5
(500, 429, connection reset, timeout after acting) from a seed, and the sandbox asserts that an
idempotency key is never reused with different parameters.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import random
import secrets
import threading
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import StrEnum
from typing import Any
from urllib.parse import urlencode

from chalicelib.core import clock
from chalicelib.payments.errors import (
    ProcessorRejected,
    ProcessorTimeout,
    ProcessorUnavailable,
    WebhookRejected,
)
from chalicelib.payments.processors import SANDBOX_PAGE_PREFIX
from chalicelib.payments.processors.base import (
    Capabilities,
    CardDetails,
    Outcome,
    PaymentRequest,
    PaymentResult,
    Processor,
    ProcessorEvent,
    RefundRequest,
    RefundResult,
    SettlementLine,
    check_metadata,
    luhn_ok,
)

SIGNATURE_HEADER = "sandbox-signature"
TOLERANCE_SECONDS = 300


class Behaviour(StrEnum):
    SUCCEED = "succeed"
    DECLINE = "decline"
    CHALLENGE = "challenge"
    LOST = "lost"


@dataclass(frozen=True)
class TestCard:
    brand: str
    behaviour: Behaviour
    decline_code: str | None = None


TEST_CARDS: dict[str, TestCard] = {
    "4242424242424242": TestCard("visa", Behaviour.SUCCEED),
    "5555555555554444": TestCard("mastercard", Behaviour.SUCCEED),
    "4000000000000002": TestCard("visa", Behaviour.DECLINE, "card_declined"),
    "4000000000009995": TestCard("visa", Behaviour.DECLINE, "insufficient_funds"),
    "4000000000000069": TestCard("visa", Behaviour.DECLINE, "expired_card"),
    "4000000000000119": TestCard("visa", Behaviour.DECLINE, "processing_error"),
    "4000002500003155": TestCard("visa", Behaviour.CHALLENGE),
    "4000000000000416": TestCard("visa", Behaviour.LOST),
}
TEST_TOKENS: dict[str, str] = {
    "tok_visa": "4242424242424242",
    "tok_mastercard": "5555555555554444",
    "tok_decline": "4000000000000002",
    "tok_insufficient": "4000000000009995",
    "tok_expired": "4000000000000069",
    "tok_error": "4000000000000119",
    "tok_3ds": "4000002500003155",
    "tok_lost": "4000000000000416",
    "tok_apple_pay": "4242424242424242",
    "tok_google_pay": "4242424242424242",
}
DECLINE_MESSAGES = {
    "card_declined": "Your card was declined. Please use another card.",
    "insufficient_funds": "Your card has insufficient funds. Please use another card.",
    "expired_card": "Your card has expired. Please use another card.",
    "processing_error": "The card could not be processed. Please try again or use another card.",
    "authentication_failed": "The card's security check was not completed. Please try again.",
    "stored_card_removed": "This stored card is no longer available. Please use another card.",
}


@dataclass
class SandboxFaults:
    """Fault rates in [0, 1] per money-moving call, drawn from ``seed`` (SECURITY.md T5)."""

    server_error: float = 0.0
    rate_limited: float = 0.0
    connection_reset: float = 0.0
    timeout_after: float = 0.0
    seed: int = 0
    rng: random.Random = field(default_factory=random.Random)

    def __post_init__(self) -> None:
        self.rng.seed(self.seed)


@dataclass
class _Card:
    details: CardDetails
    behaviour: Behaviour
    decline_code: str | None
    wallet: str | None = None
    reusable: bool = False
    customer: str | None = None
    removed: bool = False


@dataclass
class _Payment:
    reference: str
    idempotency_key: str
    params: str
    account_id: str
    amount_cents: int
    metadata: dict[str, str]
    return_url: str | None
    save_card: bool
    require_cvc: bool
    wallet: str | None
    status: str = "requires_payment_method"
    token: str | None = None
    card: _Card | None = None
    reusable_token: str | None = None
    decline_code: str | None = None
    refunded_cents: int = 0
    voided: bool = False
    charged_at: datetime | None = None


class SandboxProcessor(Processor):
    """Deterministic processor for development and tests; see the module docstring."""

    alias = "sandbox"
    capabilities = Capabilities(wallets=True, stored_cards=True, refunds=True, split=True)

    def __init__(self, *, secret: str, public_base: str = "", livemode: bool = False,
                 webhook_url: str | None = None) -> None:
        self.secret = secret
        self.public_base = public_base.rstrip("/")
        self.livemode = livemode
        self.webhook_url = webhook_url
        self.faults = SandboxFaults()
        self._lock = threading.RLock()
        self.reset()

    # --- test helpers -------------------------------------------------------------------------

    def reset(self) -> None:
        """Forget every payment, token, refund and pending webhook (tests)."""
        with self._lock:
            self._payments: dict[str, _Payment] = {}
            self._by_key: dict[tuple[str, str], str] = {}
            self._tokens: dict[str, _Card] = {}
            self._refunds: dict[tuple[str, str], tuple[str, RefundResult]] = {}
            self._refund_log: list[tuple[str, str, int, datetime]] = []
            self.outbox: list[dict[str, Any]] = []
            self.charges: list[tuple[str, int]] = []
            self.idempotency_violations: list[str] = []
            self.calls = 0
            self.faults = SandboxFaults()

    def charges_for(self, **metadata: str) -> list[tuple[str, int]]:
        """(reference, cents) of the charges whose metadata includes ``metadata``."""
        with self._lock:
            return [(ref, cents) for ref, cents in self.charges
                    if all(self._payments[ref].metadata.get(k) == v for k, v in metadata.items())]

    def refunds_for(self, reference: str) -> list[tuple[str, int]]:
        """(refund id, cents) made against payment ``reference``."""
        with self._lock:
            return [(rid, cents) for rid, ref, cents, _ in self._refund_log if ref == reference]

    # --- the processor interface --------------------------------------------------------------

    def checkout_create(self, request: PaymentRequest) -> PaymentResult:
        """A hosted page for ``request``; a stored card (``token``) with ``require_cvc`` asks
        only for the CVC there."""
        if not request.return_url:
            raise ProcessorRejected("a hosted page needs a return_url")
        with self._lock:
            self._fault_before()
            payment = self._payment_for(request)
            if request.token and payment.token is None:
                card = self._card_for_token(request.token)
                payment.token, payment.card = request.token, card
            return self._result(payment)

    def charge(self, request: PaymentRequest, *, reference: str | None = None,
               on_reference: Callable[[str], None] | None = None) -> PaymentResult:
        if not request.token:
            raise ProcessorRejected("a charge needs a token")
        with self._lock:
            self._fault_before()
            payment = self._payment_for(request)  # idempotent: no recovery point needed
            if payment.status == "requires_payment_method":
                payment.token = request.token
                payment.card = self._card_for_token(request.token)
                self._attempt_charge(payment)
            result = self._result(payment)
            self._fault_after(payment)
            return result

    def payment_retrieve(self, *, reference: str, account_id: str) -> PaymentResult:
        with self._lock:
            payment = self._payments.get(reference)
            if payment is None or payment.account_id != account_id:
                return PaymentResult(Outcome.NOT_FOUND, message="No such payment at the processor.")
            return self._result(payment)

    def payment_find(self, *, idempotency_key: str, account_id: str) -> PaymentResult:
        with self._lock:
            ref = self._by_key.get((account_id, idempotency_key))
            if ref is None:
                return PaymentResult(Outcome.NOT_FOUND, message="No such payment at the processor.")
            return self._result(self._payments[ref])

    def payment_cancel(self, *, reference: str, account_id: str) -> PaymentResult:
        with self._lock:
            payment = self._payments.get(reference)
            if payment is None or payment.account_id != account_id:
                return PaymentResult(Outcome.NOT_FOUND, message="No such payment at the processor.")
            if payment.status in ("requires_payment_method", "requires_action"):
                payment.status = "canceled"
                self._event("payment.canceled", payment)
            return self._result(payment)

    def refund(self, request: RefundRequest) -> RefundResult:
        with self._lock:
            self._fault_before()
            key = (request.account_id, request.idempotency_key)
            params = f"{request.reference}|{request.amount_cents}|{request.void}"
            if key in self._refunds:
                seen_params, seen = self._refunds[key]
                if seen_params != params:
                    self.idempotency_violations.append(request.idempotency_key)
                    raise ProcessorRejected("idempotency key reused with different parameters")
                return seen
            payment = self._payments.get(request.reference)
            if payment is None or payment.account_id != request.account_id or payment.status != "succeeded":
                raise ProcessorRejected("only a succeeded payment can be refunded")
            if request.amount_cents <= 0 or payment.refunded_cents + request.amount_cents > payment.amount_cents:
                raise ProcessorRejected("the refund exceeds what is left of the payment")
            if request.void and (payment.refunded_cents or request.amount_cents != payment.amount_cents):
                raise ProcessorRejected("a void cancels the whole payment before any refund")
            payment.refunded_cents += request.amount_cents
            payment.voided = request.void
            refund_id = f"re_{secrets.token_hex(8)}"
            result = RefundResult(Outcome.SUCCEEDED, refund_id, request.amount_cents,
                                  "voided" if request.void else "refunded")
            self._refunds[key] = (params, result)
            self._refund_log.append((refund_id, payment.reference, request.amount_cents, clock.now()))
            self._emit({"object": "refund", "id": refund_id, "payment": payment.reference,
                        "status": "succeeded", "amount": request.amount_cents,
                        "metadata": check_metadata(request.metadata)}, "refund.succeeded",
                       request.account_id)
            if self.faults.timeout_after and self.faults.rng.random() < self.faults.timeout_after:
                raise ProcessorTimeout("the processor did not answer in time")
            return result

    def customer_create(self, *, account_id: str, metadata: Mapping[str, str]) -> str:
        check_metadata(metadata)
        return f"cus_{secrets.token_hex(8)}"

    def card_save(self, *, token: str, customer: str, account_id: str) -> tuple[str, CardDetails]:
        with self._lock:
            card = self._card_for_token(token)
            reusable = f"pm_{secrets.token_hex(8)}"
            self._tokens[reusable] = replace(card, reusable=True, customer=customer)
            return reusable, card.details

    def card_remove(self, *, token: str, account_id: str) -> None:
        with self._lock:
            card = self._tokens.get(token)
            if card is not None:
                card.removed = True

    def settlement_report(self, *, account_id: str, start: datetime, end: datetime) -> list[SettlementLine]:
        with self._lock:
            out = [SettlementLine(p.reference, "charge", p.amount_cents, p.account_id,
                                  p.charged_at.date().isoformat() if p.charged_at else "")
                   for p in self._payments.values()
                   if p.account_id == account_id and p.status == "succeeded" and p.charged_at is not None
                   and start <= p.charged_at < end]
            for rid, ref, cents, at in self._refund_log:
                if start <= at < end and self._payments[ref].account_id == account_id:
                    out.append(SettlementLine(rid, "refund", -cents, account_id, at.date().isoformat()))
            return out

    def check(self) -> list[str]:
        return [] if len(self.secret) >= 16 else ["sandbox webhook secret must be at least 16 characters"]

    # --- the hosted page (called by chalicelib.api.sandbox_processor) --------------------------

    def page_view(self, reference: str) -> dict[str, Any] | None:
        """What the hosted page shows: amount, mode (card, cvc for a stored card, wallet)."""
        with self._lock:
            p = self._payments.get(reference)
            if p is None:
                return None
            mode = "cvc" if (p.require_cvc and p.token) else ("wallet" if p.wallet else "card")
            return {"reference": p.reference, "amount_cents": p.amount_cents, "status": p.status,
                    "mode": mode, "wallet": p.wallet, "save_card": p.save_card,
                    "last4": p.card.details.last4 if p.card else None,
                    "brand": p.card.details.brand if p.card else None}

    def page_submit(self, reference: str, form: Mapping[str, str]) -> str:
        """Take the card (or CVC, or wallet) from the hosted page's own form; return the URL to
        send the browser to next (the 3-D Secure page or the merchant's return URL). The card
        number is used here and dropped; only brand, last 4 and expiry are kept."""
        with self._lock:
            p = self._payments.get(reference)
            if p is None:
                raise ProcessorRejected("unknown payment")
            if p.status != "requires_payment_method":
                return self._return_url(p)
            if p.wallet:
                p.token = f"tok_{p.wallet}"
                p.card = self._card_for_token(p.token)
            elif p.require_cvc and p.token:
                cvc = form.get("cvc", "")
                if not (cvc.isdigit() and 3 <= len(cvc) <= 4):
                    raise ProcessorRejected("Enter the 3 or 4 digit security code.")
            else:
                p.card = _card_from_form(form)
                p.token = f"tok_{secrets.token_hex(8)}"
                self._tokens[p.token] = p.card
            self._attempt_charge(p)
            if p.status == "requires_action":
                return f"{self.public_base}{SANDBOX_PAGE_PREFIX}/3ds/{p.reference}"
            return self._return_url(p)

    def challenge_submit(self, reference: str, *, passed: bool) -> str:
        """Finish a 3-D Secure challenge; return the merchant's return URL."""
        with self._lock:
            p = self._payments.get(reference)
            if p is None:
                raise ProcessorRejected("unknown payment")
            if p.status == "requires_action":
                if passed:
                    self._succeed(p)
                else:
                    self._fail(p, "authentication_failed")
            return self._return_url(p)

    # --- webhooks -----------------------------------------------------------------------------

    def sign(self, payload: bytes, *, timestamp: int | None = None, secret: str | None = None) -> str:
        """The signature header value for ``payload``: ``t=<epoch>,v1=<hex HMAC-SHA256>``."""
        t = int(clock.now().timestamp()) if timestamp is None else timestamp
        mac = hmac.new((secret or self.secret).encode(), f"{t}.".encode() + payload, hashlib.sha256)
        return f"t={t},v1={mac.hexdigest()}"

    def parse_webhook(self, *, payload: bytes, headers: Mapping[str, str]) -> ProcessorEvent:
        header = {k.lower(): v for k, v in headers.items()}.get(SIGNATURE_HEADER, "")
        parts = dict(p.split("=", 1) for p in header.split(",") if "=" in p)
        try:
            t = int(parts.get("t", ""))
        except ValueError:
            raise WebhookRejected("webhook signature missing") from None
        expected = hmac.new(self.secret.encode(), f"{t}.".encode() + payload, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, parts.get("v1", "")):
            raise WebhookRejected("webhook signature does not match")
        if abs(clock.now().timestamp() - t) > TOLERANCE_SECONDS:
            raise WebhookRejected("webhook timestamp outside the tolerance")
        try:
            body = json.loads(payload)
            obj = body["data"]["object"]
            event = ProcessorEvent(
                processor=self.alias, event_id=str(body["id"]), event_type=str(body["type"]),
                account_id=body.get("account"), livemode=bool(body.get("livemode")),
                created=int(body["created"]), object_kind=str(obj["object"]),
                reference=str(obj.get("payment") or obj["id"]) if obj["object"] == "payment" else str(obj["id"]),
                metadata={str(k): str(v) for k, v in (obj.get("metadata") or {}).items()},
            )
        except (ValueError, KeyError, TypeError):
            raise WebhookRejected("webhook body is not an event") from None
        if event.livemode != self.livemode:
            raise WebhookRejected("webhook mode does not match this deployment")
        if event.event_type not in EVENT_TYPES:
            raise WebhookRejected(f"unexpected webhook type {event.event_type!r}")
        return event

    def deliver(self, send: Callable[[bytes, dict[str, str]], Any], *, twice: bool = False,
                reverse: bool = False, seed: int | None = None) -> int:
        """Deliver and clear pending webhook events through ``send(payload, headers)``: each
        twice, in reverse order, or shuffled by ``seed`` when asked. Returns the deliveries."""
        with self._lock:
            events, self.outbox = self.outbox, []
        if reverse:
            events.reverse()
        if seed is not None:
            random.Random(seed).shuffle(events)
        sent = 0
        for event in events:
            payload = json.dumps(event, sort_keys=True).encode()
            for _ in range(2 if twice else 1):
                send(payload, {"Content-Type": "application/json", "Sandbox-Signature": self.sign(payload)})
                sent += 1
        return sent

    # --- internals ----------------------------------------------------------------------------

    def _payment_for(self, request: PaymentRequest) -> _Payment:
        self.calls += 1
        metadata = check_metadata(request.metadata)
        if request.amount_cents <= 0 or request.currency != "USD":
            raise ProcessorRejected("amount must be positive cents in USD")
        params = json.dumps([request.amount_cents, request.account_id, sorted(metadata.items()),
                             request.save_card, request.require_cvc, request.wallet], sort_keys=True)
        key = (request.account_id, request.idempotency_key)
        ref = self._by_key.get(key)
        if ref is not None:
            payment = self._payments[ref]
            if payment.params != params:
                self.idempotency_violations.append(request.idempotency_key)
                raise ProcessorRejected("idempotency key reused with different parameters")
            return payment
        ref = f"sbx_{secrets.token_hex(8)}"
        payment = _Payment(ref, request.idempotency_key, params, request.account_id,
                           request.amount_cents, metadata, request.return_url, request.save_card,
                           request.require_cvc, request.wallet)
        self._payments[ref] = payment
        self._by_key[key] = ref
        return payment

    def _card_for_token(self, token: str) -> _Card:
        card = self._tokens.get(token)
        if card is not None:
            if card.removed:
                raise ProcessorRejected(DECLINE_MESSAGES["stored_card_removed"])
            return card
        number = TEST_TOKENS.get(token)
        if number is None:
            raise ProcessorRejected(f"unknown sandbox token {token!r}; see the sandbox test cards")
        test = TEST_CARDS[number]
        wallet = token.removeprefix("tok_") if token in ("tok_apple_pay", "tok_google_pay") else None
        return _Card(CardDetails(test.brand, number[-4:], 12, clock.now().year + 3), test.behaviour,
                     test.decline_code, wallet)

    def _attempt_charge(self, p: _Payment) -> None:
        assert p.card is not None
        if p.card.behaviour is Behaviour.CHALLENGE and p.status == "requires_payment_method":
            p.status = "requires_action"
            self._event("payment.requires_action", p)
        elif p.card.behaviour is Behaviour.DECLINE:
            self._fail(p, p.card.decline_code or "card_declined")
        else:
            self._succeed(p)

    def _succeed(self, p: _Payment) -> None:
        p.status = "succeeded"
        p.charged_at = clock.now()
        self.charges.append((p.reference, p.amount_cents))
        if p.save_card and p.card is not None:
            p.reusable_token = f"pm_{secrets.token_hex(8)}"
            self._tokens[p.reusable_token] = replace(p.card, reusable=True)
        self._event("payment.succeeded", p)

    def _fail(self, p: _Payment, code: str) -> None:
        p.status = "failed"
        p.decline_code = code
        self._event("payment.failed", p)

    def _result(self, p: _Payment) -> PaymentResult:
        outcome = {"succeeded": Outcome.SUCCEEDED, "failed": Outcome.DECLINED,
                   "requires_action": Outcome.REQUIRES_ACTION, "canceled": Outcome.CANCELED}.get(
            p.status, Outcome.PENDING)
        redirect = None
        if outcome is Outcome.PENDING:
            redirect = f"{self.public_base}{SANDBOX_PAGE_PREFIX}/pay/{p.reference}"
        elif outcome is Outcome.REQUIRES_ACTION:
            redirect = f"{self.public_base}{SANDBOX_PAGE_PREFIX}/3ds/{p.reference}"
        return PaymentResult(
            outcome=outcome, reference=p.reference, amount_cents=p.amount_cents,
            card=p.card.details if p.card else None, reusable_token=p.reusable_token,
            redirect_url=redirect, decline_code=p.decline_code,
            message=DECLINE_MESSAGES.get(p.decline_code or "", "") if p.decline_code else "",
        )

    def _return_url(self, p: _Payment) -> str:
        url = p.return_url or ""
        return f"{url}{'&' if '?' in url else '?'}{urlencode({'ref': p.reference})}"

    def _event(self, event_type: str, p: _Payment) -> None:
        self._emit({"object": "payment", "id": p.reference, "status": p.status,
                    "amount": p.amount_cents, "metadata": dict(p.metadata)}, event_type, p.account_id)

    def _emit(self, obj: dict[str, Any], event_type: str, account_id: str) -> None:
        self.outbox.append({"id": f"evt_{secrets.token_hex(10)}", "type": event_type,
                            "created": int(clock.now().timestamp()), "account": account_id,
                            "livemode": self.livemode, "data": {"object": obj}})
        if self.webhook_url:
            threading.Timer(1.0, self._post_pending).start()

    def _post_pending(self) -> None:
        """Deliver pending events to ``webhook_url`` (``chalice local``: asynchronous, later)."""
        url = self.webhook_url
        if not url or not url.startswith(("http://", "https://")):
            return

        def send(payload: bytes, headers: dict[str, str]) -> None:
            req = urllib.request.Request(url, data=payload, headers=headers, method="POST")  # noqa: S310
            try:
                urllib.request.urlopen(req, timeout=5).close()  # noqa: S310 - http(s) checked above
            except OSError:
                return

        self.deliver(send)

    def _fault_before(self) -> None:
        f = self.faults
        if f.server_error and f.rng.random() < f.server_error:
            raise ProcessorUnavailable("the processor answered 500")
        if f.rate_limited and f.rng.random() < f.rate_limited:
            raise ProcessorUnavailable("the processor answered 429", retry_after=0.01)
        if f.connection_reset and f.rng.random() < f.connection_reset:
            raise ProcessorUnavailable("the connection to the processor was reset")

    def _fault_after(self, p: _Payment) -> None:
        if p.card is not None and p.card.behaviour is Behaviour.LOST and p.status == "succeeded":
            raise ProcessorTimeout("the processor did not answer in time")
        f = self.faults
        if f.timeout_after and f.rng.random() < f.timeout_after:
            raise ProcessorTimeout("the processor did not answer in time")


EVENT_TYPES = frozenset({"payment.succeeded", "payment.failed", "payment.requires_action",
                         "payment.canceled", "refund.succeeded"})


def _card_from_form(form: Mapping[str, str]) -> _Card:
    number = "".join(ch for ch in form.get("card_number", "") if ch.isdigit())
    if not (13 <= len(number) <= 19 and luhn_ok(number)):
        raise ProcessorRejected("Enter a valid card number.")
    try:
        month, year = (int(x) for x in form.get("expiry", "").replace(" ", "").split("/"))
    except ValueError:
        raise ProcessorRejected("Enter the expiry as MM/YY.") from None
    year = year + 2000 if year < 100 else year
    now = clock.now()
    if not 1 <= month <= 12 or (year, month) < (now.year, now.month):
        raise ProcessorRejected("The expiry date has passed.")
    cvc = form.get("cvc", "")
    if not (cvc.isdigit() and 3 <= len(cvc) <= 4):
        raise ProcessorRejected("Enter the 3 or 4 digit security code.")
    test = TEST_CARDS.get(number, TestCard("visa" if number[0] == "4" else "card", Behaviour.SUCCEED))
    return _Card(CardDetails(test.brand, number[-4:], month, year), test.behaviour, test.decline_code)
