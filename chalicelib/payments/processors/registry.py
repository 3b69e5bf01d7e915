"""Processors built from configuration, once per process (STYLE.md 1.18 item 4).

| variable | meaning | default |
|---|---|---|
| FRONTDESK_SANDBOX_SECRET | signing secret of sandbox webhooks | a local value |
| FRONTDESK_SANDBOX_WEBHOOK_URL | where the sandbox posts its webhooks (``chalice local``) | none: tests drain them |
| FRONTDESK_STRIPE_SECRET_KEY | platform secret key ``sk_test_...``/``sk_live_...`` | Stripe off |
| FRONTDESK_STRIPE_WEBHOOK_SECRET | Connect endpoint signing secret ``whsec_...`` | |
| FRONTDESK_STRIPE_PUBLISHABLE_KEY | ``pk_...`` for the Payment Element | |
| FRONTDESK_STRIPE_API_BASE | another API base (localstripe in tests) | Stripe's |

Nothing here imports ``stripe``: the Stripe adapter is imported on first use (B3). Secrets come
from the environment (in the cloud, from Secrets Manager into the function's environment) and
are never logged.
"""

from __future__ import annotations

import os
import threading

from chalicelib.core import config
from chalicelib.payments.errors import ProcessorRejected
from chalicelib.payments.processors.base import Processor
from chalicelib.payments.processors.sandbox import SandboxProcessor

DEFAULT_SANDBOX_SECRET = "sandbox-local-webhook-secret"  # local development only
_lock = threading.Lock()
_instances: dict[str, Processor] = {}


def get(alias: str) -> Processor:
    """The processor configured under ``alias`` (``sandbox`` or ``stripe``).

    Raises ProcessorRejected for an alias that is not configured.
    """
    found = _instances.get(alias)
    if found is not None:
        return found
    with _lock:
        if alias not in _instances:
            _instances[alias] = _build(alias)
        return _instances[alias]


def sandbox() -> SandboxProcessor:
    """The sandbox processor (typed accessor for its hosted page and tests)."""
    found = get("sandbox")
    assert isinstance(found, SandboxProcessor)
    return found


def aliases() -> list[str]:
    """Aliases that are configured in this environment."""
    out = ["sandbox"]
    if os.environ.get("FRONTDESK_STRIPE_SECRET_KEY"):
        out.append("stripe")
    return out


def register(alias: str, processor: Processor) -> None:
    """Use ``processor`` for ``alias`` (tests, or a processor configured in code)."""
    with _lock:
        _instances[alias] = processor


def reset() -> None:
    """Forget built processors; the next :func:`get` reads the environment again."""
    with _lock:
        _instances.clear()


def check() -> dict[str, list[str]]:
    """Configuration problems per configured alias (empty lists when ready)."""
    out: dict[str, list[str]] = {}
    for alias in aliases():
        try:
            out[alias] = get(alias).check()
        except ProcessorRejected as exc:
            out[alias] = [str(exc)]
    return out


def _build(alias: str) -> Processor:
    env = os.environ
    if alias == "sandbox":
        return SandboxProcessor(
            secret=env.get("FRONTDESK_SANDBOX_SECRET", DEFAULT_SANDBOX_SECRET),
            public_base=config.settings().portal_url,
            webhook_url=env.get("FRONTDESK_SANDBOX_WEBHOOK_URL") or None,
        )
    if alias == "stripe" and env.get("FRONTDESK_STRIPE_SECRET_KEY"):
        from chalicelib.payments.processors.stripe import StripeProcessor  # imports stripe (B3)

        return StripeProcessor(
            api_key=env["FRONTDESK_STRIPE_SECRET_KEY"],
            webhook_secret=env.get("FRONTDESK_STRIPE_WEBHOOK_SECRET", ""),
            publishable_key=env.get("FRONTDESK_STRIPE_PUBLISHABLE_KEY", ""),
            api_base=env.get("FRONTDESK_STRIPE_API_BASE") or None,
        )
    raise ProcessorRejected(f"processor {alias!r} is not configured")
