"""Notification settings of the process, from the environment, read on first use and cached.

| variable | meaning | default |
|---|---|---|
| FRONTDESK_CHANNEL | ``console`` (embedded default: a JSON-lines file) or ``aws`` (SES, SNS) | ``console`` |
| FRONTDESK_OUTBOX_DIR | where the console channel writes ``outbox.jsonl`` | ``var/outbox`` under the repository |
| FRONTDESK_NOTIFY_QUEUE_URL | the SQS queue of notification work (``aws``); else the queue named ``<table>-notify`` | |
| FRONTDESK_SES_CONFIGURATION_SET | SES configuration set (events to SNS) | ``<table>-notify`` |
| FRONTDESK_SENDER_EMAIL | From address when a clinic has none | ``billing@frontdesk.example`` |
| FRONTDESK_SMS_ORIGINATION_NUMBER | SMS origination number when a clinic has none | none (the account's) |
| FRONTDESK_SES_RATE / FRONTDESK_SMS_RATE | sends per second per process | 10 / 3 |
| FRONTDESK_NOTIFY_KEEP_BODIES | keep rendered bodies on outbox rows (``1``/``0``) | ``1`` on console, ``0`` on aws |
| FRONTDESK_NOTIFY_LEASE_SECONDS | how long a send claim lasts before the sweeper calls it ``unknown`` | 300 |
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from chalicelib.core import config as core_config

ROOT = Path(__file__).resolve().parent.parent.parent


@dataclass(frozen=True)
class NotifyConfig:
    """Immutable notification settings of this process. Rates per second; times in seconds."""

    channel_mode: str
    outbox_dir: Path
    queue_url: str | None
    queue_name: str
    ses_configuration_set: str
    sender_email: str
    sms_origination_number: str | None
    ses_rate: float
    sms_rate: float
    keep_bodies: bool
    lease_seconds: int
    region: str

    @property
    def is_console(self) -> bool:
        return self.channel_mode != "aws"


@lru_cache(maxsize=1)
def settings() -> NotifyConfig:
    """Read the environment once; :func:`reset` forgets it (tests, CLI)."""
    env = os.environ
    core = core_config.settings()
    mode = env.get("FRONTDESK_CHANNEL", "console").strip().lower()
    if mode not in ("console", "aws"):
        raise ValueError("FRONTDESK_CHANNEL must be 'console' or 'aws'")
    keep = env.get("FRONTDESK_NOTIFY_KEEP_BODIES")
    return NotifyConfig(
        channel_mode=mode,
        outbox_dir=Path(env.get("FRONTDESK_OUTBOX_DIR") or ROOT / "var" / "outbox"),
        queue_url=env.get("FRONTDESK_NOTIFY_QUEUE_URL") or None,
        queue_name=f"{core.table_name}-notify",
        ses_configuration_set=env.get("FRONTDESK_SES_CONFIGURATION_SET") or f"{core.table_name}-notify",
        sender_email=env.get("FRONTDESK_SENDER_EMAIL") or "billing@frontdesk.example",
        sms_origination_number=env.get("FRONTDESK_SMS_ORIGINATION_NUMBER") or None,
        ses_rate=float(env.get("FRONTDESK_SES_RATE", "10")),
        sms_rate=float(env.get("FRONTDESK_SMS_RATE", "3")),
        keep_bodies=(keep == "1") if keep in ("0", "1") else mode != "aws",
        lease_seconds=int(env.get("FRONTDESK_NOTIFY_LEASE_SECONDS", "300")),
        region=core.region,
    )


def reset() -> None:
    """Forget cached settings (and the channels and queue built from them)."""
    settings.cache_clear()
