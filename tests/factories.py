"""Test data built through the real services (never written into storage directly)."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

from chalicelib.accounts import services as accounts
from chalicelib.ledger.accounts import ResponsibilityKind
from chalicelib.store import keys
from chalicelib.store.db import clinic_scope
from chalicelib.store.models import Item
from chalicelib.tenants import services as tenants

_n = itertools.count(1)


@dataclass(frozen=True)
class Family:
    clinic_id: str
    guarantor_id: str
    patient_id: str
    facility_id: str
    provider_id: str


def clinic(name: str = "Test Clinic") -> str:
    return tenants.clinic_create(name=name, time_zone="America/New_York")


def family(clinic_id: str | None = None, *, last_name: str = "Doe", email: str = "jane@example.com") -> Family:
    cid = clinic_id or clinic()
    fac = tenants.facility_create(clinic_id=cid, name="Main", nickname="Main", tax_id="11-1111111")
    prv = tenants.provider_create(clinic_id=cid, last_name="Welby", npi="1234567893")
    gid = accounts.guarantor_create(clinic_id=cid, first_name="Jane", last_name=last_name,
                                    email=email, mobile="+15555550123")
    pid = accounts.patient_link(clinic_id=cid, guarantor_id=gid, first_name="Jane", last_name=last_name)
    return Family(cid, gid, pid, fac, prv)


def line(f: Family, *, billed: int = 10_000, dos: str = "2026-10-01", encounter: str | None = None,
         line_number: int = 1, self_pay: bool = False, responsibility_date: str | None = None) -> str:
    """Charge one service line; return its line id."""
    enc = encounter or f"E{next(_n)}"
    accounts.service_line_charge(
        clinic_id=f.clinic_id, guarantor_id=f.guarantor_id, encounter_number=enc,
        line_number=line_number, patient_id=f.patient_id, date_of_service=dos,
        procedure_code="99213", billed_cents=billed, facility_id=f.facility_id,
        rendering_provider_id=f.provider_id, self_pay=self_pay,
        responsibility_date=responsibility_date)
    return keys.service_line_id(enc, line_number)


def patient_owes(f: Family, cents: int, *, billed: int | None = None, dos: str = "2026-10-01") -> str:
    """A line whose insurance left ``cents`` to the patient (coinsurance); returns the line id."""
    billed = billed or cents * 3
    lid = line(f, billed=billed, dos=dos)
    accounts.insurance_payment_post(clinic_id=f.clinic_id, guarantor_id=f.guarantor_id, line_id=lid,
                                    amount_cents=billed - cents, source_key=f"ins:{lid}")
    accounts.patient_responsibility_post(clinic_id=f.clinic_id, guarantor_id=f.guarantor_id, line_id=lid,
                                         amount_cents=cents, kind=ResponsibilityKind.COINSURANCE,
                                         source_key=f"pr:{lid}")
    return lid


def collection(f: Family) -> list[dict[str, Any]]:
    """Every item of the guarantor's collection as raw attribute maps (for unchanged checks)."""
    with clinic_scope(f.clinic_id):
        items = Item.query(keys.guarantor_pk(f.clinic_id, f.guarantor_id), consistent_read=True)
        return sorted((it.serialize() for it in items), key=lambda d: d["sk"]["S"])
