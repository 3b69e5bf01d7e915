"""Stripe, through the official ``stripe`` SDK, with Stripe Connect: each clinic's own
connected account is the merchant of record (direct charges, ``Stripe-Account`` header), so
the platform never holds the money (SERVERLESS-PERF-REL.md §6.4). The only module that imports
``stripe``; the registry imports this module on first use, so ``import app`` never does (B3).

Set-up (keys never in code or logs; in the cloud they are fields of the application secret in
Secrets Manager, read on first use: ``chalicelib.core.secrets``, ``registry``):

1. Platform account: Dashboard -> Developers -> API keys: ``FRONTDESK_STRIPE_SECRET_KEY``
   (``sk_test_...``; ``sk_live_...`` in production) and ``FRONTDESK_STRIPE_PUBLISHABLE_KEY``.
2. Connect: onboard each clinic as a Standard connected account; store its ``acct_...`` with
   ``payments_config_set(clinic_id=..., processor="stripe", account_id="acct_...")`` (and one
   per facility or provider for split payments).
3. A Connect webhook endpoint ``https://<host>/webhooks/stripe`` listening to events "on
   connected accounts": ``payment_intent.succeeded``, ``payment_intent.payment_failed``,
   ``payment_intent.requires_action``, ``payment_intent.canceled``,
   ``checkout.session.completed``, ``checkout.session.expired``, ``charge.refunded``,
   ``refund.updated``; its signing secret is ``FRONTDESK_STRIPE_WEBHOOK_SECRET``.
4. Apple Pay: register the portal's domain for each connected account (Payment method
   domains); Google Pay needs no registration. Both are "card" payment methods.

Calls: PaymentIntents (created unconfirmed with our idempotency key, the id stored by the
caller before confirming, so a PaymentIntent charges at most once even where idempotency keys
are ignored: localstripe), Checkout Sessions for the hosted page, refunds, customers and saved
payment methods. Timeouts: connect 2 s + read 4 s, one network retry: 12 s at worst per call
(R6: with DynamoDB's 9 s and Secrets Manager's 6 s, 27 s < API Gateway's 29 s and at most half
the 60 s Lambda timeout of every function that calls the processor; tests/test_infra.py).
Metadata carries opaque ids only (R6). Tests run the server calls against localstripe and
recorded exchanges where localstripe falls short (Checkout Sessions).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

import stripe

from chalicelib.payments.errors import ProcessorRejected, ProcessorTimeout, ProcessorUnavailable, WebhookRejected
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
)

#: R6: (connect, read) seconds per attempt, retries after the first attempt, and their product.
TIMEOUT = (2.0, 4.0)
MAX_NETWORK_RETRIES = 1
WORST_CASE_SECONDS = sum(TIMEOUT) * (1 + MAX_NETWORK_RETRIES)
TOLERANCE_SECONDS = 300
PAYMENT_EVENTS = frozenset({"payment_intent.succeeded", "payment_intent.payment_failed",
                            "payment_intent.requires_action", "payment_intent.canceled",
                            "payment_intent.processing", "checkout.session.completed",
                            "checkout.session.expired"})
REFUND_EVENTS = frozenset({"charge.refunded", "refund.created", "refund.updated"})


class StripeProcessor(Processor):
    """Stripe Connect direct charges; see the module docstring for keys and set-up."""

    alias = "stripe"
    capabilities = Capabilities(wallets=True, stored_cards=True, refunds=True, split=True)

    def __init__(self, *, api_key: str, webhook_secret: str, publishable_key: str = "",
                 api_base: str | None = None, livemode: bool | None = None,
                 http_client: stripe.HTTPClient | None = None) -> None:
        self.api_key = api_key
        self.webhook_secret = webhook_secret
        self.publishable_key = publishable_key
        self.api_base = api_base
        self.livemode = api_key.startswith(("sk_live_", "rk_live_")) if livemode is None else livemode
        self.client = stripe.StripeClient(
            api_key,
            base_addresses={"api": api_base} if api_base else None,
            max_network_retries=MAX_NETWORK_RETRIES,
            http_client=http_client or stripe.RequestsClient(timeout=TIMEOUT),
        )

    # --- payments -----------------------------------------------------------------------------

    def checkout_create(self, request: PaymentRequest) -> PaymentResult:
        """A Stripe Checkout Session (redirect): Stripe's page takes the card, Apple Pay or
        Google Pay. The session id is the reference until it is paid."""
        metadata = check_metadata(request.metadata)
        params: Any = {
            "mode": "payment",
            "line_items": [{"quantity": 1, "price_data": {
                "currency": request.currency.lower(), "unit_amount": request.amount_cents,
                "product_data": {"name": request.description or "Payment"}}}],
            "payment_method_types": ["card"],
            "payment_intent_data": {"metadata": metadata},
            "metadata": metadata,
            "client_reference_id": metadata.get("attempt_key"),
            "success_url": request.return_url,
            "cancel_url": request.return_url,
        }
        if request.customer:
            params["customer"] = request.customer
        session = self._do(lambda: self.client.v1.checkout.sessions.create(
            params, options=self._options(request.account_id, request.idempotency_key)))
        return PaymentResult(Outcome.PENDING, reference=session.id, amount_cents=request.amount_cents,
                             redirect_url=session.url)

    def charge(self, request: PaymentRequest, *, reference: str | None = None,
               on_reference: Callable[[str], None] | None = None) -> PaymentResult:
        """Create the PaymentIntent (unconfirmed), report its id, then confirm it once."""
        if not request.token:
            raise ProcessorRejected("a charge needs a payment method")
        account = request.account_id
        if reference:
            intent = self._retrieve_intent(reference, account)
        else:
            params: Any = {"amount": request.amount_cents, "currency": request.currency.lower(),
                                      "payment_method": request.token, "payment_method_types": ["card"],
                                      "metadata": check_metadata(request.metadata)}
            if request.customer:
                params["customer"] = request.customer
            if request.save_card:
                params["setup_future_usage"] = "off_session"
            intent = self._do(lambda: self.client.v1.payment_intents.create(
                params, options=self._options(account, request.idempotency_key)))
        if on_reference is not None:
            on_reference(intent.id)
        if intent.status == "requires_confirmation":
            try:
                intent = self._do(lambda: self.client.v1.payment_intents.confirm(
                    intent.id, options=self._options(account, f"{request.idempotency_key}_confirm")))
            except ProcessorRejected:
                intent = self._retrieve_intent(intent.id, account)  # declined, or confirmed already
        return self._intent_result(intent, account, save_card=request.save_card)

    def payment_retrieve(self, *, reference: str, account_id: str) -> PaymentResult:
        try:
            if reference.startswith("cs_"):
                session = self.client.v1.checkout.sessions.retrieve(reference, options=self._options(account_id))
                if session.payment_intent:
                    pi = _field(session, "payment_intent")
                    pi = pi if isinstance(pi, str) else pi["id"]
                    return self._intent_result(self._retrieve_intent(pi, account_id), account_id)
                if session.status == "expired":
                    return PaymentResult(Outcome.CANCELED, reference=reference)
                return PaymentResult(Outcome.PENDING, reference=reference, amount_cents=session.amount_total or 0,
                                     redirect_url=session.url)
            return self._intent_result(self._retrieve_intent(reference, account_id), account_id)
        except ProcessorRejected:
            return PaymentResult(Outcome.NOT_FOUND, reference=reference)

    def payment_find(self, *, idempotency_key: str, account_id: str) -> PaymentResult:
        """Stripe cannot look a payment up by idempotency key. The caller stores the
        PaymentIntent's id before confirming it, so an attempt without a stored id was never
        confirmed: nothing was charged."""
        return PaymentResult(Outcome.NOT_FOUND)

    def payment_cancel(self, *, reference: str, account_id: str) -> PaymentResult:
        try:
            if reference.startswith("cs_"):
                self._do(lambda: self.client.v1.checkout.sessions.expire(reference, options=self._options(account_id)))
            else:
                self._do(lambda: self.client.v1.payment_intents.cancel(reference, options=self._options(account_id)))
        except ProcessorRejected:
            pass  # already paid or finished: the retrieve below tells which
        return self.payment_retrieve(reference=reference, account_id=account_id)

    def refund(self, request: RefundRequest) -> RefundResult:
        """Refunds (and voids, which Stripe makes refunds of a captured payment) by
        PaymentIntent, with the refund's own idempotency key (R38)."""
        params: Any = {"payment_intent": request.reference, "amount": request.amount_cents,
                  "metadata": check_metadata(request.metadata)}
        refund = self._do(lambda: self.client.v1.refunds.create(
            params, options=self._options(request.account_id, request.idempotency_key)))
        status = getattr(refund, "status", "succeeded")
        outcome = {"succeeded": Outcome.SUCCEEDED, "pending": Outcome.PENDING}.get(status, Outcome.DECLINED)
        return RefundResult(outcome, reference=refund.id, amount_cents=int(refund.amount), message=status)

    # --- stored cards -------------------------------------------------------------------------

    def customer_create(self, *, account_id: str, metadata: Mapping[str, str]) -> str:
        customer = self._do(lambda: self.client.v1.customers.create(
            {"metadata": check_metadata(metadata)}, options=self._options(account_id)))
        return str(customer.id)

    def card_save(self, *, token: str, customer: str, account_id: str) -> tuple[str, CardDetails]:
        method = self._do(lambda: self.client.v1.payment_methods.attach(
            token, {"customer": customer}, options=self._options(account_id)))
        return str(method.id), _card(method)

    def card_remove(self, *, token: str, account_id: str) -> None:
        try:
            self._do(lambda: self.client.v1.payment_methods.detach(token, options=self._options(account_id)))
        except ProcessorRejected:
            pass  # already detached

    def settlement_report(self, *, account_id: str, start: datetime, end: datetime) -> list[SettlementLine]:
        """Charges and refunds created in ``[start, end)`` from the account's balance
        transactions (Stripe filters by ``created``; pages followed)."""
        listed = self._do(lambda: self.client.v1.balance_transactions.list(
            {"limit": 100, "created": {"gte": int(start.timestamp()), "lt": int(end.timestamp())}},
            options=self._options(account_id)))
        out = []
        for txn in listed.auto_paging_iter():
            on = datetime.fromtimestamp(int(txn.created), UTC).date()
            if txn.type in ("charge", "payment", "refund"):
                out.append(SettlementLine(str(txn.source), "refund" if txn.type == "refund" else "charge",
                                          int(txn.amount), account_id, on.isoformat()))
        return out

    # --- webhooks -----------------------------------------------------------------------------

    def parse_webhook(self, *, payload: bytes, headers: Mapping[str, str]) -> ProcessorEvent:
        """Verify ``Stripe-Signature`` over the raw body with a 300 s tolerance (R32), then the
        mode and the event type; the clinic is resolved from ``account`` by the caller."""
        header = {k.lower(): v for k, v in headers.items()}.get("stripe-signature", "")
        if not self.webhook_secret:
            raise WebhookRejected("no webhook secret is configured")
        try:
            event = stripe.Webhook.construct_event(payload, header, self.webhook_secret, tolerance=TOLERANCE_SECONDS)
        except (stripe.SignatureVerificationError, ValueError):
            raise WebhookRejected("webhook signature does not verify") from None
        if bool(event.livemode) != self.livemode:
            raise WebhookRejected("webhook mode does not match this deployment")
        if event.type not in PAYMENT_EVENTS | REFUND_EVENTS:
            raise WebhookRejected(f"unexpected webhook type {event.type!r}")
        obj = _plain(event.data.object)
        metadata = {str(k): str(v) for k, v in (obj.get("metadata") or {}).items()}
        if event.type.startswith("checkout.session."):
            reference = obj.get("payment_intent") or obj.get("id")
        elif event.type == "charge.refunded":
            reference = obj.get("payment_intent")
        else:
            reference = obj.get("id")
        return ProcessorEvent(
            processor=self.alias, event_id=str(event.id), event_type=str(event.type),
            account_id=_plain(event).get("account"), livemode=bool(event.livemode),
            created=int(event.created), object_kind="refund" if event.type in REFUND_EVENTS else "payment",
            reference=str(reference) if reference else None, metadata=metadata,
        )

    def check(self) -> list[str]:
        problems = []
        if not self.api_key.startswith(("sk_test_", "sk_live_", "rk_test_", "rk_live_")):
            problems.append("FRONTDESK_STRIPE_SECRET_KEY is not a Stripe secret key")
        if not self.webhook_secret.startswith("whsec_"):
            problems.append("FRONTDESK_STRIPE_WEBHOOK_SECRET is missing or not a webhook secret")
        if self.publishable_key and self.publishable_key.startswith("pk_live_") != self.livemode:
            problems.append("publishable and secret keys are not both live or both test")
        if self.api_base and self.livemode:
            problems.append("a live key must use Stripe's own API base")
        return problems

    # --- internals ----------------------------------------------------------------------------

    def _options(self, account_id: str, idempotency_key: str | None = None) -> Any:
        options: dict[str, Any] = {"stripe_account": account_id}
        if idempotency_key:
            options["idempotency_key"] = idempotency_key[:255]
        return options

    def _retrieve_intent(self, reference: str, account_id: str) -> Any:
        return self._do(lambda: self.client.v1.payment_intents.retrieve(reference, options=self._options(account_id)))

    def _intent_result(self, intent: Any, account_id: str, *, save_card: bool = False) -> PaymentResult:
        status = intent.status
        error = _field(intent, "last_payment_error") or None
        card = None
        method_id = _field(intent, "payment_method")
        if status == "succeeded" and method_id:
            method_id = method_id if isinstance(method_id, str) else method_id.id
            method = self._do(lambda: self.client.v1.payment_methods.retrieve(
                method_id, options=self._options(account_id)))
            card = _card(method)
        if status == "succeeded":
            outcome = Outcome.SUCCEEDED
        elif status == "requires_action":
            outcome = Outcome.REQUIRES_ACTION
        elif status == "canceled":
            outcome = Outcome.CANCELED
        elif status == "requires_payment_method" and error:
            outcome = Outcome.DECLINED
        else:
            outcome = Outcome.PENDING
        code = (error or {}).get("decline_code") or (error or {}).get("code") if error else None
        return PaymentResult(
            outcome=outcome, reference=str(intent.id), amount_cents=int(intent.amount), card=card,
            reusable_token=str(method_id) if save_card and card else None,
            client_secret=_field(intent, "client_secret") if outcome is Outcome.REQUIRES_ACTION else None,
            decline_code=code,
            message="The card was declined. Please use another card." if outcome is Outcome.DECLINED else "",
        )

    def _do(self, call: Callable[[], Any]) -> Any:
        """Call Stripe and map its errors to ours (R49: fail closed, bounded retries)."""
        try:
            return call()
        except stripe.CardError as exc:
            raise ProcessorRejected(exc.user_message or "The card was declined.") from exc
        except stripe.RateLimitError as exc:
            retry_after = (exc.headers or {}).get("retry-after")
            raise ProcessorUnavailable("Stripe is rate limiting", retry_after=float(retry_after or 1)) from exc
        except stripe.APIConnectionError as exc:
            raise ProcessorTimeout("no answer from Stripe") from exc
        except (stripe.IdempotencyError, stripe.InvalidRequestError, stripe.AuthenticationError,
                stripe.PermissionError) as exc:
            raise ProcessorRejected(exc.user_message or "Stripe refused the request") from exc
        except stripe.APIError as exc:
            raise ProcessorUnavailable("Stripe failed; try again") from exc


def _plain(obj: Any) -> dict[str, Any]:
    """A Stripe object (or dict) as a plain dict."""
    if isinstance(obj, dict):
        return obj
    return dict(obj.to_dict()) if hasattr(obj, "to_dict") else {}


def _field(obj: Any, name: str) -> Any:
    value = _plain(obj).get(name)
    return _plain(value) if hasattr(value, "to_dict") else value


def _card(method: Any) -> CardDetails:
    card = _plain(method).get("card") or {}
    return CardDetails(brand=str(card.get("brand", "card")), last4=str(card.get("last4", "")),
                       exp_month=int(card.get("exp_month", 0)), exp_year=int(card.get("exp_year", 0)))
