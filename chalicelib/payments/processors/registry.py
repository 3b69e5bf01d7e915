"""Processors built from configuration (STYLE.md 1.18 item 4).

| variable | meaning | default |
|---|---|---|
| FRONTDESK_PROCESSOR | ``sandbox``: the sandbox is on; anything else (``stripe`` in the cloud): off | ``sandbox`` |
| FRONTDESK_SANDBOX_SECRET | signing secret of sandbox webhooks | a local value |
| FRONTDESK_SANDBOX_WEBHOOK_URL | where the sandbox posts its webhooks (``chalice local``) | none: tests drain them |
| FRONTDESK_STRIPE_SECRET_KEY | platform key ``sk_test_...``/``sk_live_...`` (``stripe_secret_key``) | Stripe off |
| FRONTDESK_STRIPE_WEBHOOK_SECRET | Connect webhook signing secret ``whsec_...`` (``stripe_webhook_secret``) | |
| FRONTDESK_STRIPE_PUBLISHABLE_KEY | ``pk_...`` for the Payment Element (``stripe_publishable_key``) | |
| FRONTDESK_STRIPE_API_BASE | another API base (localstripe in tests) | Stripe's |

The sandbox keeps its payments in process memory and its hosted pages stand for a processor's
domain: it is for the embedded default and tests, never a cloud stage (the stack sets
``FRONTDESK_PROCESSOR=stripe``, so its pages answer 404 and it is no alias there).

Stripe's keys are secrets (:mod:`chalicelib.core.secrets`): in the cloud they are fields of the
application secret in Secrets Manager, read on first use and cached for minutes; locally the
environment variables above. The Stripe processor is rebuilt when its keys change (a rotated
key is used without a deploy). Nothing here imports ``stripe``: the Stripe adapter is imported
on first use (B3). Secrets are never logged.
"""

from __future__ import annotations

import os
import threading

from chalicelib.core import config, secrets
from chalicelib.payments.errors import ProcessorRejected
from chalicelib.payments.processors.base import Processor
from chalicelib.payments.processors.sandbox import SandboxProcessor

DEFAULT_SANDBOX_SECRET = "sandbox-local-webhook-secret"  # local development only
_lock = threading.Lock()
_instances: dict[str, Processor] = {}
#: Aliases given a processor by :func:`register`: used as is, whatever the configuration.
_registered: set[str] = set()
#: The keys the built Stripe processor was made with (it is rebuilt when they change).
_stripe_built_with: tuple[str, str, str] | None = None


def get(alias: str) -> Processor:
    """The processor configured under ``alias`` (``sandbox`` or ``stripe``).

    A processor given to :func:`register` is returned as is. Raises ProcessorRejected for an
    alias that is not configured (the sandbox outside ``FRONTDESK_PROCESSOR=sandbox``, Stripe
    without a secret key); secrets.SecretsUnavailable when the secret cannot be read.
    """
    global _stripe_built_with
    found = _instances.get(alias)
    if found is not None and alias in _registered:
        return found
    if alias == "sandbox":
        if not sandbox_enabled():
            raise ProcessorRejected("the sandbox processor is off in this deployment")
        if found is not None:
            return found
        with _lock:
            if "sandbox" not in _instances:
                _instances["sandbox"] = _sandbox_build()
            return _instances["sandbox"]
    if alias == "stripe":
        keys = _stripe_keys()
        if keys is None:
            raise ProcessorRejected("processor 'stripe' is not configured")
        if found is not None and _stripe_built_with == keys:
            return found
        with _lock:
            if _stripe_built_with != keys or alias not in _instances:
                _instances[alias] = _stripe_build(keys)
                _stripe_built_with = keys
            return _instances[alias]
    raise ProcessorRejected(f"processor {alias!r} is not configured")


def sandbox_enabled() -> bool:
    """Whether this deployment runs the sandbox processor (``FRONTDESK_PROCESSOR=sandbox``, the
    default): its hosted pages answer 404 and it is no alias otherwise (a cloud stage)."""
    return config.settings().processor == "sandbox"


def sandbox() -> SandboxProcessor:
    """The sandbox processor (typed accessor for its hosted page and tests).

    Raises ProcessorRejected when the sandbox is off (:func:`sandbox_enabled`)."""
    found = get("sandbox")
    assert isinstance(found, SandboxProcessor)
    return found


def aliases() -> list[str]:
    """Aliases that are configured in this environment (may read the application secret)."""
    out = ["sandbox"] if sandbox_enabled() else []
    if _stripe_keys() is not None:
        out.append("stripe")
    return out


def register(alias: str, processor: Processor) -> None:
    """Use ``processor`` for ``alias`` (tests, or a processor configured in code)."""
    with _lock:
        _instances[alias] = processor
        _registered.add(alias)


def reset() -> None:
    """Forget built processors; the next :func:`get` reads the environment again."""
    global _stripe_built_with
    with _lock:
        _instances.clear()
        _registered.clear()
        _stripe_built_with = None


def check() -> dict[str, list[str]]:
    """Configuration problems per configured alias (empty lists when ready)."""
    out: dict[str, list[str]] = {}
    for alias in aliases():
        try:
            out[alias] = get(alias).check()
        except ProcessorRejected as exc:
            out[alias] = [str(exc)]
    return out


def _stripe_keys() -> tuple[str, str, str] | None:
    """(secret key, webhook secret, publishable key), or None when Stripe is off."""
    key = secrets.value("stripe_secret_key", env="FRONTDESK_STRIPE_SECRET_KEY")
    if not key:
        return None
    return (key, secrets.value("stripe_webhook_secret", env="FRONTDESK_STRIPE_WEBHOOK_SECRET") or "",
            secrets.value("stripe_publishable_key", env="FRONTDESK_STRIPE_PUBLISHABLE_KEY") or "")


def _sandbox_build() -> SandboxProcessor:
    env = os.environ
    return SandboxProcessor(
        secret=env.get("FRONTDESK_SANDBOX_SECRET", DEFAULT_SANDBOX_SECRET),
        public_base=config.settings().portal_url,
        webhook_url=env.get("FRONTDESK_SANDBOX_WEBHOOK_URL") or None,
    )


def _stripe_build(keys: tuple[str, str, str]) -> Processor:
    from chalicelib.payments.processors.stripe import StripeProcessor  # imports stripe (B3)

    api_key, webhook_secret, publishable_key = keys
    return StripeProcessor(api_key=api_key, webhook_secret=webhook_secret, publishable_key=publishable_key,
                           api_base=os.environ.get("FRONTDESK_STRIPE_API_BASE") or None)
