"""The sandbox processor's own pages, under ``/sandbox-processor/``: this path stands for the
processor's domain. The card form posts here, to the processor, never to a Frontdesk route;
our handlers never see a card number (SECURITY.md R1). Plain string templates, no scripts.

Only a deployment running the sandbox serves them (``FRONTDESK_PROCESSOR=sandbox``, the embedded
default; ``registry.sandbox_enabled``): in a cloud stage every one of them answers 404, as if
the routes did not exist.
"""

from __future__ import annotations

import html
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

from chalice import Blueprint, Response

from chalicelib.core import lazy
from chalicelib.core.money import format_cents
from chalicelib.payments.errors import ProcessorRejected
from chalicelib.payments.processors import SANDBOX_PAGE_PREFIX

if TYPE_CHECKING:
    from chalicelib.payments.processors import registry
    from chalicelib.payments.processors.sandbox import SandboxProcessor
else:
    registry = lazy.module("chalicelib.payments.processors.registry")

sandbox_pages = Blueprint(__name__)
FORM = ["application/x-www-form-urlencoded"]
HEADERS: dict[str, str | list[str]] = {"Content-Type": "text/html; charset=utf-8", "Cache-Control": "no-store",
           "Referrer-Policy": "no-referrer",
           "Content-Security-Policy": "default-src 'self'; script-src 'none'; frame-ancestors 'none'"}


def _sandbox() -> SandboxProcessor | None:
    """The sandbox, or None when this deployment does not run it (the pages then answer 404)."""
    return registry.sandbox() if registry.sandbox_enabled() else None


def _not_found() -> Response:
    return _page("Not found", "<p>No such payment.</p>", 404)


@sandbox_pages.route(SANDBOX_PAGE_PREFIX + "/pay/{reference}", methods=["GET"])
def sandbox_pay_page(reference: str) -> Response:
    sandbox = _sandbox()
    view = sandbox.page_view(reference) if sandbox else None
    if view is None:
        return _not_found()
    if view["status"] == "requires_action":  # the card went into its 3-D Secure check
        return Response(body="", status_code=303, headers={"Location": f"{SANDBOX_PAGE_PREFIX}/3ds/{reference}",
                                                           "Cache-Control": "no-store"})
    if view["status"] != "requires_payment_method":
        return _closed(view)
    return _pay_form(view, error=None)


@sandbox_pages.route(SANDBOX_PAGE_PREFIX + "/pay/{reference}", methods=["POST"], content_types=FORM)
def sandbox_pay_submit(reference: str) -> Response:
    sandbox = _sandbox()
    view = sandbox.page_view(reference) if sandbox else None
    if sandbox is None or view is None:
        return _not_found()
    form = _form(sandbox_pages.current_request.raw_body)
    try:
        next_url = sandbox.page_submit(reference, form)
    except ProcessorRejected as exc:
        return _pay_form(view, error=str(exc), status=400)
    return Response(body="", status_code=303, headers={"Location": next_url, "Cache-Control": "no-store"})


@sandbox_pages.route(SANDBOX_PAGE_PREFIX + "/3ds/{reference}", methods=["GET"])
def sandbox_challenge_page(reference: str) -> Response:
    sandbox = _sandbox()
    if sandbox is None or sandbox.page_view(reference) is None:
        return _not_found()
    action = html.escape(f"{SANDBOX_PAGE_PREFIX}/3ds/{reference}")
    return _page("Verify your card", f"<p>Sandbox 3-D Secure check.</p><form method=\"post\" action=\"{action}\">"
                 "<button name=\"action\" value=\"complete\">Complete authentication</button> "
                 "<button name=\"action\" value=\"fail\">Fail authentication</button></form>", 200)


@sandbox_pages.route(SANDBOX_PAGE_PREFIX + "/3ds/{reference}", methods=["POST"], content_types=FORM)
def sandbox_challenge_submit(reference: str) -> Response:
    sandbox = _sandbox()
    if sandbox is None:
        return _not_found()
    form = _form(sandbox_pages.current_request.raw_body)
    try:
        next_url = sandbox.challenge_submit(reference, passed=form.get("action") == "complete")
    except ProcessorRejected:
        return _not_found()
    return Response(body="", status_code=303, headers={"Location": next_url, "Cache-Control": "no-store"})


def _form(raw: bytes | str | None) -> dict[str, str]:
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else (raw or "")
    parsed = parse_qs(text, keep_blank_values=True)
    return {k: v[0] for k, v in parsed.items() if len(v) == 1}


def _pay_form(view: dict[str, Any], *, error: str | None, status: int = 200) -> Response:
    action = html.escape(f"{SANDBOX_PAGE_PREFIX}/pay/{view['reference']}")
    amount = html.escape(format_cents(int(view["amount_cents"])))
    err = f"<p role=\"alert\">{html.escape(error)}</p>" if error else ""
    if view["mode"] == "wallet":
        fields = f"<button>Pay {amount} with {html.escape(str(view['wallet']).replace('_', ' '))} (sandbox)</button>"
    elif view["mode"] == "cvc":
        fields = (f"<p>{html.escape(str(view['brand']))} •••• {html.escape(str(view['last4']))}</p>"
                  "<label>Security code <input name=\"cvc\" inputmode=\"numeric\" autocomplete=\"cc-csc\"></label>"
                  f"<button>Pay {amount}</button>")
    else:
        fields = ("<label>Card number <input name=\"card_number\" inputmode=\"numeric\" autocomplete=\"cc-number\">"
                  "</label><label>Expiry (MM/YY) <input name=\"expiry\" autocomplete=\"cc-exp\"></label>"
                  "<label>Security code <input name=\"cvc\" inputmode=\"numeric\" autocomplete=\"cc-csc\"></label>"
                  f"<button>Pay {amount}</button>")
    return _page("Sandbox card payment", f"{err}<p>Amount: {amount}</p><form method=\"post\" action=\"{action}\">"
                 f"{fields}</form>{TEST_CARD_HINT}", status)


#: What the sandbox's own page tells a tester (the cards of ``sandbox.TEST_CARDS``).
TEST_CARD_HINT = ("<p>Sandbox processor: test cards only. Pay with 4242 4242 4242 4242, any future expiry "
                  "and any 3-digit security code; 4000 0000 0000 0002 is declined; 4000 0025 0000 3155 asks "
                  "for a 3-D Secure check.</p>")


def _closed(view: dict[str, Any]) -> Response:
    """A page whose payment is no longer open (paid, canceled because the guarantor started
    another payment, failed): says so instead of showing a form that can only fail."""
    done = view["status"] == "succeeded"
    return _page("Payment complete" if done else "This payment page is closed",
                 "<p>This payment was completed. You can close this page.</p>" if done else
                 "<p>Nothing was charged on this page. Please go back to the practice's payment link to "
                 "pay.</p>", 200 if done else 410)


def _page(title: str, body: str, status: int) -> Response:
    doc = (f"<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">"
           f"<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
           f"<title>{html.escape(title)}</title><link rel=\"stylesheet\" href=\"/static/portal.css\">"
           f"</head><body><main><h1>{html.escape(title)}</h1>{body}</main></body></html>")
    return Response(body=doc, status_code=status, headers=HEADERS)
