"""Our payment routes: processor webhooks in. They never receive card data (SECURITY.md R1): the card is typed on the
processor's own page (for the sandbox, ``/sandbox-processor/``), and comes back as a result.

- ``POST /webhooks/{processor}``: verify the signature over the raw body (R32; 400 before any
  write when it fails), record the event once by its id, hand it to the handler, answer 200
  (duplicates and unknown accounts too, R20).

The page the processor returns the browser to is the portal's ``/pay/done`` (chalicelib.web).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from chalice import Blueprint, Response

from chalicelib.core import lazy
from chalicelib.core.errors import TryAgainLater
from chalicelib.payments.errors import WebhookRejected
from chalicelib.payments.faults import crash_point

if TYPE_CHECKING:
    from chalicelib.payments import queue, services
    from chalicelib.payments.processors import registry
else:
    queue = lazy.module("chalicelib.payments.queue")
    services = lazy.module("chalicelib.payments.services")
    registry = lazy.module("chalicelib.payments.processors.registry")

payments_api = Blueprint(__name__)
log = logging.getLogger(__name__)

PAGE_HEADERS: dict[str, str | list[str]] = {
    "Content-Type": "text/html; charset=utf-8",
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "Content-Security-Policy": "default-src 'self'; script-src 'none'; object-src 'none'; base-uri 'none'; "
                               "frame-ancestors 'none'; form-action 'self'",
    "X-Content-Type-Options": "nosniff",
}


@payments_api.route("/webhooks/{processor}", methods=["POST"],
                    content_types=["application/json", "application/json; charset=utf-8"])
def processor_webhook(processor: str) -> Response:
    """Webhook inbox (SERVERLESS.md 3.8): verify, record once, hand off, acknowledge."""
    request = payments_api.current_request
    if processor not in registry.aliases():
        return Response(body={"error": "unknown processor"}, status_code=404)
    try:
        raw = request.raw_body
        event = registry.get(processor).parse_webhook(payload=raw if isinstance(raw, bytes) else raw.encode(),
                                                      headers=dict(request.headers))
    except WebhookRejected as exc:
        log.warning("SECURITY webhook rejected", extra={"processor": processor, "reason": str(exc)})
        return Response(body={"error": "rejected"}, status_code=400)
    recorded = services.processor_event_record(event=event)
    crash_point("webhook.after_record")
    if recorded.needs_handling:
        try:
            queue.processor_event_enqueue(recorded)
        except TryAgainLater:
            return Response(body={"error": "try again"}, status_code=503)
    return Response(body={"received": True}, status_code=200)
