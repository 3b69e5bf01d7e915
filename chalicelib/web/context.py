"""Page data assembled from several selectors, and the theme as CSS custom properties.

Presentation-level assembly only: no writes, no business rules beyond grouping for display.
"""

from __future__ import annotations

from collections import defaultdict
from functools import lru_cache
from typing import Any

from chalicelib.accounts import selectors as account_selectors
from chalicelib.ledger.accounts import (
    BILLED,
    COLLECTIONS,
    INS_ADJUSTED,
    INS_PAID,
    PAT_ADJUSTED,
    PAT_OPEN,
    PAT_PAID,
)
from chalicelib.tenants import selectors as tenant_selectors
from chalicelib.tenants.groups import GroupSettings, Theme


def theme_css(settings: GroupSettings) -> str:
    """``:root{--bg:…}`` from the group's theme; values were validated as ``#rrggbb`` on save."""
    return _theme_css(settings.theme)


@lru_cache(maxsize=256)
def _theme_css(t: Theme) -> str:
    text = "#ffffff" if t.dark else "#1a202c"
    pairs = {"bg": t.background, "surface": t.surface, "primary": t.primary, "secondary": t.secondary,
             "accent": t.accent, "info": t.info, "success": t.success, "error": t.error,
             "warning": t.warning, "text": text}
    return ":root{" + ";".join(f"--{k}:{v}" for k, v in pairs.items()) + "}"


def account_visits(*, clinic_id: str, guarantor_id: str) -> dict[str, Any]:
    """Visits since the last statement grouped by (facility, provider, patient) with billed,
    adjusted, insurance paid, patient paid and remaining (cents), plus the visit history and
    the collections lines (REFERENCE-PORTAL.md G2).

    A line is "since the last statement" when no statement carried it and its date of service,
    or its responsibility date (an insurance answer that came later), is after the newest
    statement's date; with no statement, every line not in collections. Before, any line off
    the newest statement showed, so lines with nothing for the patient to pay (never on a
    statement) stayed there for ever."""
    lines = account_selectors.service_lines_list(clinic_id=clinic_id, guarantor_id=guarantor_id)
    statements = account_selectors.statements_list(clinic_id=clinic_id, guarantor_id=guarantor_id)
    billed_on_statement = {str(x.get("line_id")) for s in statements for x in s.lines}
    last_statement_date = max((s.statement_date for s in statements), default="")
    facilities = tenant_selectors.facility_names(clinic_id=clinic_id)
    providers = tenant_selectors.provider_names(clinic_id=clinic_id)
    patients = {p.patient_id: f"{p.preferred_name or p.first_name} {p.last_name}"
                for p in account_selectors.patients_list(clinic_id=clinic_id, guarantor_id=guarantor_id)}
    groups: dict[tuple[str, str, str], list[dict[str, Any]]] = defaultdict(list)
    history, in_collections = [], []
    for sl in lines:
        m = sl.money
        row = {
            "line": sl, "billed": m.get(BILLED, 0),
            "adjusted": m.get(INS_ADJUSTED, 0) + m.get(PAT_ADJUSTED, 0),
            "insurance_paid": m.get(INS_PAID, 0), "patient_paid": m.get(PAT_PAID, 0),
            "remaining": m.get(PAT_OPEN, 0), "collections": m.get(COLLECTIONS, 0),
        }
        history.append(row)
        if row["collections"]:
            in_collections.append(row)
        elif sl.line_id not in billed_on_statement and max(
                sl.date_of_service, sl.responsibility_date or "") > last_statement_date:
            key = (facilities.get(sl.facility_id or "", "—"), providers.get(sl.rendering_provider_id or "", "—"),
                   patients.get(sl.patient_id, "—"))
            groups[key].append(row)
    return {"since_statement": sorted(groups.items()), "history": list(reversed(history)),
            "collections": in_collections, "statements": statements}


def code_deliver(*, clinic_id: str, request_id: str, channel: str, destination: str, code: str,
                 language: str) -> None:
    """Send a sign-in code through the notification outbox (codes do not wait for quiet hours)."""
    from chalicelib.notify import services as notify

    notify.code_send(clinic_id=clinic_id, request_id=request_id, channel=channel, destination=destination,
                     code=code, language=language)


def contact_change_notice(*, clinic_id: str, guarantor_id: str, channel: str, old_destination: str,
                          language: str) -> bool:
    """Tell the replaced email address or mobile number that it was replaced (SECURITY.md R22)
    through notify's transactional ``contact_change_notice``; True when it was sent."""
    from chalicelib.notify import services as notify

    outcome = notify.contact_change_notice(clinic_id=clinic_id, guarantor_id=guarantor_id, channel=channel,
                                           destination=old_destination, language=language)
    return outcome.status == "sent"


def notification_preferences(*, clinic_id: str, guarantor_id: str, email: str | None,
                             mobile: str | None) -> list[dict[str, Any]]:
    """Per channel (``email``, ``sms``): whether a contact is on file, whether balance
    notifications may go to it now (notify's consent rule: the contact's recorded consent, else
    the profile's flag, else the clinic default; SECURITY.md R41) and its suppression, if any."""
    from chalicelib.notify import rules
    from chalicelib.notify import selectors as notify_selectors

    flags = account_selectors.guarantor_consent(clinic_id=clinic_id, guarantor_id=guarantor_id)
    defaults = notify_selectors.notify_settings_get(clinic_id=clinic_id).consent_defaults
    out = []
    for channel, value in (("email", email), ("sms", mobile)):
        if not value:
            out.append({"channel": channel, "on_file": False, "allowed": False, "suppressed": None})
            continue
        point = notify_selectors.contact_get(clinic_id=clinic_id, channel=channel, destination=value)
        decision = rules.consent_decide(channel=channel, exempt=False, suppressed=point.suppressed,
                                        recorded=point.consent, profile=flags[channel],
                                        clinic_default=defaults.get(channel, "unset"))
        out.append({"channel": channel, "on_file": True, "allowed": decision.allowed, "suppressed": point.suppressed})
    return out


def consent_save(*, clinic_id: str, guarantor_id: str, wanted: dict[str, bool],
                 current: list[dict[str, Any]]) -> list[str]:
    """Record, as consent with time and source ``portal`` (notify's immutable consent events,
    R41), each channel whose wanted state differs from what applies now; return those channels.
    A resubmitted form finds nothing to change and records nothing."""
    from chalicelib.notify import services as notify

    changed = []
    for pref in current:
        channel = pref["channel"]
        if not pref["on_file"] or pref["suppressed"] == "invalid" or wanted.get(channel) == pref["allowed"]:
            continue
        notify.guarantor_consent_record(clinic_id=clinic_id, guarantor_id=guarantor_id, channel=channel,
                                        granted=bool(wanted.get(channel)), source="portal", actor="guarantor")
        changed.append(channel)
    return changed
