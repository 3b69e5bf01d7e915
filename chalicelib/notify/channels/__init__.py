"""Delivery channels. Only these modules create SES and SNS clients, lazily on first use
(DESIGN.md; B3: importing the app creates none). ``FRONTDESK_CHANNEL`` picks ``console`` (the
embedded default) or ``aws`` (SES for email, SNS for SMS)."""

from __future__ import annotations

import threading

from chalicelib.notify import config
from chalicelib.notify.channels.base import Channel

_lock = threading.Lock()
_channels: dict[tuple[str, str], Channel] = {}


def get(channel: str) -> Channel:
    """The channel object for ``email`` or ``sms`` under the configured mode (cached)."""
    mode = config.settings().channel_mode
    key = (mode, channel)
    found = _channels.get(key)
    if found is not None:
        return found
    with _lock:
        found = _channels.get(key)
        if found is None:
            found = _build(mode, channel)
            _channels[key] = found
        return found


def _build(mode: str, channel: str) -> Channel:
    if channel not in ("email", "sms"):
        raise ValueError(f"unknown channel {channel!r}")
    if mode != "aws":
        from chalicelib.notify.channels.console import ConsoleChannel

        return ConsoleChannel(channel)
    if channel == "email":
        from chalicelib.notify.channels.ses import SesChannel

        return SesChannel()
    from chalicelib.notify.channels.sns import SnsChannel

    return SnsChannel()


def reset() -> None:
    """Drop cached channels and their clients (tests, after changing the environment)."""
    with _lock:
        _channels.clear()
