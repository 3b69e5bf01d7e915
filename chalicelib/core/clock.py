"""The one seam for time (DESIGN.md rule 7). Every "now" in Frontdesk is UTC from here."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

_source: Callable[[], datetime] = lambda: datetime.now(UTC)  # noqa: E731


def now() -> datetime:
    """Return the current time as an aware UTC datetime."""
    return _source()


def set_source(source: Callable[[], datetime] | None) -> None:
    """Replace the clock (tests); ``None`` restores the system clock. Times must be aware UTC."""
    global _source
    _source = source if source is not None else (lambda: datetime.now(UTC))
