"""Sending rules as pure functions: quiet hours, consent, frequency-cap windows, inbound keywords.

No storage and no clock of their own: callers pass the time (UTC) and the facts read at send
time, so the same decision is made by the sender, the scheduler and the tests.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

# --- quiet hours (SECURITY.md R43, PRODUCT.md §8) --------------------------------------------

QUIET_END = time(8, 0)  # sending may start at 08:00 local
QUIET_START = time(21, 0)  # and must stop before 21:00 local

#: The zones a US recipient may be in, for an unknown or invalid time zone (R43: "use the
#: window valid in all candidate zones"). Arizona (no DST) and Hawaii included.
US_ZONES: tuple[str, ...] = (
    "America/New_York", "America/Chicago", "America/Denver", "America/Phoenix",
    "America/Los_Angeles", "America/Anchorage", "Pacific/Honolulu",
)


def zone_or_none(name: str | None) -> ZoneInfo | None:
    """``ZoneInfo(name)``, or ``None`` for a missing or unknown name."""
    if not name:
        return None
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return None


def candidate_zones(recipient_zone: str | None, clinic_zone: str) -> tuple[ZoneInfo, ...]:
    """The zones a recipient may be in: their own when known and valid; the clinic's when none
    is on file (the practice's patients live near it); and when the one on file is not a
    valid zone, the clinic's and every US zone, so the allowed window is the one valid in all
    of them (R43 "unknown or conflicting")."""
    own = zone_or_none(recipient_zone)
    if own is not None:
        return (own,)
    clinic = zone_or_none(clinic_zone)
    if not recipient_zone and clinic is not None:
        return (clinic,)
    zones = {z: ZoneInfo(z) for z in US_ZONES}
    if clinic is not None:
        zones.setdefault(clinic_zone, clinic)
    return tuple(zones.values())


def within_quiet_window(at: datetime, zones: tuple[ZoneInfo, ...]) -> bool:
    """True when ``at`` (aware) is between 08:00 and 21:00 local in every zone."""
    return all(QUIET_END <= at.astimezone(z).time() < QUIET_START for z in zones)


def next_send_time(at: datetime, zones: tuple[ZoneInfo, ...]) -> datetime:
    """The earliest UTC time ≥ ``at`` inside the allowed window of every zone.

    Candidates are each zone's next local 08:00 (DST-aware through zoneinfo); the first one
    inside all windows wins. Raises ValueError if the zones share no window within 3 days
    (they always do for US zones).
    """
    at = at.astimezone(UTC)
    if within_quiet_window(at, zones):
        return at
    candidates: list[datetime] = []
    for zone in zones:
        local_day = at.astimezone(zone).date()
        for offset in range(0, 4):
            start = datetime.combine(local_day + timedelta(days=offset), QUIET_END, tzinfo=zone)
            if start.astimezone(UTC) >= at:
                candidates.append(start.astimezone(UTC))
    for candidate in sorted(candidates):
        if within_quiet_window(candidate, zones):
            return candidate
    raise ValueError("the zones share no sending window")


def local_time_to_utc(day: date, hh_mm: str, zone: ZoneInfo) -> datetime:
    """``day`` at ``HH:MM`` wall time in ``zone``, as UTC. A wall time skipped by a DST
    change (02:30 in spring) resolves forward, as zoneinfo's fold=0 does."""
    hours, minutes = (int(x) for x in hh_mm.split(":"))
    local = datetime.combine(day, time(hours, minutes), tzinfo=zone)
    return local.astimezone(UTC)


# --- consent (R41, REFERENCE-PORTAL H4, H7) ------------------------------------------------


@dataclass(frozen=True)
class ConsentDecision:
    """Whether a channel may be used, and why (the reason is stored on a suppressed message)."""

    allowed: bool
    reason: str


def consent_decide(*, channel: str, exempt: bool, suppressed: str | None, recorded: str | None,
                   profile: object, clinic_default: str) -> ConsentDecision:
    """Decide consent for one message.

    - ``exempt``: sign-in codes (H7: opting out of texts does not stop codes), keyword replies
      (a STOP is confirmed to the number that just opted out) and receipts: only an invalid,
      bounced or complaining address stops them.
    - ``suppressed``: the contact point's suppression (``invalid``, ``bounced``, ``complained``,
      ``opted_out``) stops every other message.
    - ``recorded``: the contact point's latest consent record (``granted``/``revoked``) decides.
    - ``profile``: the guarantor profile's consent flag for the channel (``True``/``False``,
      recorded at registration or import; ``False`` reads ``declined``); then
      ``clinic_default`` (``in``/``out``/``unset``, unset meaning out). No consent means no billing SMS (R41).
    """
    if suppressed == "invalid":
        return ConsentDecision(False, "invalid_address")
    if exempt:
        if suppressed in ("bounced", "complained"):
            return ConsentDecision(False, suppressed)
        return ConsentDecision(True, "exempt")
    if suppressed:
        return ConsentDecision(False, suppressed)
    if recorded == "revoked":
        return ConsentDecision(False, "opted_out")
    if recorded == "granted":
        return ConsentDecision(True, "recorded")
    if profile is False:  # declined at registration or import: no STOP was ever received
        return ConsentDecision(False, "declined")
    if profile is True:
        return ConsentDecision(True, "profile")
    if clinic_default == "in":
        return ConsentDecision(True, "clinic_default")
    return ConsentDecision(False, "no_consent")


# --- frequency caps ---------------------------------------------------------------------------


def cap_windows(at: datetime) -> tuple[str, str]:
    """``(ISO week "2026-W05", UTC day "2026-01-27")`` of ``at``."""
    day = at.astimezone(UTC).date()
    year, week, _ = day.isocalendar()
    return f"{year}-W{week:02d}", day.isoformat()


def cap_retry_at(at: datetime, *, week_full: bool) -> datetime:
    """When a capped message may try again: the next UTC day, or the next ISO week."""
    day = at.astimezone(UTC).date()
    nxt = day + timedelta(days=7 - day.weekday()) if week_full else day + timedelta(days=1)
    return datetime.combine(nxt, time(0, 0), tzinfo=UTC)


# --- inbound keywords (R42, CTIA) -------------------------------------------------------------

STOP_WORDS = frozenset({"stop", "stopall", "unsubscribe", "cancel", "end", "quit", "revoke", "optout",
                        "parar", "alto", "baja", "cancelar"})
HELP_WORDS = frozenset({"help", "info", "ayuda"})
START_WORDS = frozenset({"start", "unstop", "yes", "si", "sí"})
_CONTACT_WORDS = frozenset({"text", "texts", "texting", "message", "messages", "messaging", "sms", "msg",
                            "msgs", "contact", "contacting", "mensajes"})


def keyword_classify(body: str) -> str:
    """``stop`` / ``help`` / ``start`` / ``other`` for an inbound SMS (case- and
    whitespace-insensitive; "STOP ALL", "Opt-Out" and "pls stop texting me" are stops)."""
    words = re.findall(r"[a-záéíóúñ]+", body.casefold())
    if not words:
        return "other"
    joined = "".join(words)
    if joined in STOP_WORDS or (words[0] in STOP_WORDS and len(words) <= 2):
        return "stop"
    if joined in HELP_WORDS or (words[0] in HELP_WORDS and len(words) == 1):
        return "help"
    if joined in START_WORDS:
        return "start"
    if ({"stop", "unsubscribe", "quit"} & set(words) or ("opt" in words and "out" in words)) and (
            _CONTACT_WORDS & set(words) or len(words) <= 4):
        return "stop"
    return "other"
