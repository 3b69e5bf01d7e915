"""Page data assembled from several selectors, and the theme as CSS custom properties.

Presentation-level assembly only: no writes, no business rules beyond grouping for display.
"""

from __future__ import annotations

from collections import defaultdict
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
from chalicelib.tenants.groups import GroupSettings


def theme_css(settings: GroupSettings) -> str:
    """``:root{--bg:…}`` from the group's theme; values were validated as ``#rrggbb`` on save."""
    t = settings.theme
    text = "#ffffff" if t.dark else "#1a202c"
    pairs = {"bg": t.background, "surface": t.surface, "primary": t.primary, "secondary": t.secondary,
             "accent": t.accent, "info": t.info, "success": t.success, "error": t.error,
             "warning": t.warning, "text": text}
    return ":root{" + ";".join(f"--{k}:{v}" for k, v in pairs.items()) + "}"


def account_visits(*, clinic_id: str, guarantor_id: str) -> dict[str, Any]:
    """Visits since the last statement grouped by (facility, provider, patient) with billed,
    adjusted, insurance paid, patient paid and remaining (cents), plus the visit history and
    the collections lines (REFERENCE-PORTAL.md G2)."""
    lines = account_selectors.service_lines_list(clinic_id=clinic_id, guarantor_id=guarantor_id)
    statements = account_selectors.statements_list(clinic_id=clinic_id, guarantor_id=guarantor_id)
    billed_on_statement = {str(x.get("line_id")) for x in statements[0].lines} if statements else set()
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
        elif sl.line_id not in billed_on_statement:
            key = (facilities.get(sl.facility_id or "", "—"), providers.get(sl.rendering_provider_id or "", "—"),
                   patients.get(sl.patient_id, "—"))
            groups[key].append(row)
    return {"since_statement": sorted(groups.items()), "history": list(reversed(history)),
            "collections": in_collections, "statements": statements}


def statement_rows(*, clinic_id: str, guarantor_id: str) -> list[dict[str, Any]]:
    """Statements newest due date first with a paid flag: the latest is paid when its Amount
    Due is 0; an older one is paid when nothing is owed any more (its open lines carried into
    the latest statement otherwise) (REFERENCE-PORTAL.md G5)."""
    statements = account_selectors.statements_list(clinic_id=clinic_id, guarantor_id=guarantor_id)
    balances = account_selectors.guarantor_summary(clinic_id=clinic_id, guarantor_id=guarantor_id).figures.balances
    rows = []
    for i, st in enumerate(statements):
        latest = i == 0
        paid = st.statement_balance == 0 or (balances.amount_due == 0 if latest else balances.current_balance == 0)
        rows.append({"statement": st, "paid": paid, "latest": latest,
                     "due_now": balances.amount_due if latest else 0})
    return rows


def code_deliver(*, clinic_id: str, request_id: str, channel: str, destination: str, code: str,
                 language: str) -> None:
    """Send a sign-in code through the notification outbox (codes do not wait for quiet hours)."""
    from chalicelib.notify import services as notify

    notify.code_send(clinic_id=clinic_id, request_id=request_id, channel=channel, destination=destination,
                     code=code, language=language)
