"""Named crash points (SECURITY.md 3.1 item 4): a test arms a name and the payment path raises
:class:`CrashInjected` there, as a process killed at that boundary would stop. Unarmed (always
in production) a crash point is one set lookup.
"""

from __future__ import annotations

import threading

_armed: set[str] = set()
_lock = threading.Lock()

#: Every crash point of the payment path, in order (the T4 sweep walks them).
CRASH_POINTS = (
    "attempt.before_record",
    "attempt.after_record",
    "attempt.after_claim",
    "processor.after_call",
    "posting.after_commit",
    "webhook.after_record",
    "webhook.after_handle",
    "refund.after_processor",
)


class CrashInjected(BaseException):
    """Raised at an armed crash point. A BaseException, so no ``except Exception`` swallows it."""


def crash_point(name: str) -> None:
    """Raise CrashInjected if ``name`` is armed (once: the point disarms itself)."""
    if name in _armed:
        with _lock:
            if name in _armed:
                _armed.discard(name)
                raise CrashInjected(name)


def arm(name: str) -> None:
    """Arm ``name`` for its next pass (tests)."""
    if name not in CRASH_POINTS:
        raise ValueError(f"unknown crash point {name!r}")
    with _lock:
        _armed.add(name)


def disarm_all() -> None:
    with _lock:
        _armed.clear()
