"""The demo clinic: its set-up (as a practice's administrator would do it) and its files.

:func:`setup` creates what a practice configures by hand: the clinic, its default portal
group, a default statement profile (pay URL and QR code on paper, billing office, remit
address) and an administrator. Everything else comes in through the importers, as a real
practice's data does: :func:`write_files` writes the practice-management roster (CSV with
contacts and consent), the claims (837P) and the payer's remittance (835) of the same visits
with the project's generator (chalicelib/imports/generator.py). People are invented.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

from chalicelib.imports import generator
from chalicelib.statements import services as statements
from chalicelib.tenants import services as tenants

NAME = "Riverside Family Medicine"
ADMIN_EMAIL, ADMIN_PASSWORD = "admin@riverside.example", "demo-password-123"
OFFICE = {
    "name": f"{NAME} Billing Office", "phone": "(555) 555-0100", "hours_1": "Mon-Fri 8:00-17:00",
    "email": "billing@riverside.example",
    "return_address": {"line1": "100 River Rd", "city": "Springfield", "state": "IL", "postal_code": "62701"},
    "remit_address": {"line1": NAME, "line2": "PO Box 4100", "city": "Springfield", "state": "IL",
                      "postal_code": "62701"},
}


@dataclass(frozen=True)
class DemoClinic:
    """Ids of the configured clinic and its administrator's email (the staff console, when it is
    built, signs in with it; the demo prints no password for a console that does not exist)."""

    clinic_id: str
    group_id: str
    admin_email: str


def setup() -> DemoClinic:
    """Create the demo clinic, its default group and statement profile, and an administrator."""
    clinic_id = tenants.clinic_create(name=NAME, time_zone="America/Chicago", phone="+15555550100")
    group_id = tenants.group_create(clinic_id=clinic_id, name=NAME, settings={"footer_phone": "(555) 555-0100"},
                                    is_default=True)
    statements.statement_profile_save(clinic_id=clinic_id, profile={
        "profile_id": "standard", "description": "Standard statement", "is_default": True, "group_id": group_id,
        "cycle_days": 28, "due_days": 21, "pay_link": "url_and_qr", "billing_office": OFFICE,
    })
    tenants.staff_user_create(clinic_id=clinic_id, email=ADMIN_EMAIL, name="Demo Admin", password=ADMIN_PASSWORD,
                              roles=("admin",))
    return DemoClinic(clinic_id, group_id, ADMIN_EMAIL)


def write_files(folder: Path, *, families: int, seed: int = 7, today: date | None = None) -> list[Path]:
    """Write ``roster.csv``, ``claims.837`` and ``remittance.835`` for about ``families``
    families (1.5 claims each, dates of service in the 200 days before ``today``, default the
    local date) into ``folder``; return the paths in import order."""
    today = today or date.today()
    claims = max(1, families * 3 // 2)
    start = today - timedelta(days=200)
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for name, write in (("roster.csv", generator.write_roster), ("claims.837", generator.write_837),
                        ("remittance.835", generator.write_835)):
        buf = io.StringIO()
        write(buf, claims=claims, seed=seed, families=families, start=start)
        path = folder / name
        path.write_text(buf.getvalue(), encoding="utf-8")
        out.append(path)
    return out
