"""Test data for the statements tests, built through the real services (like tests/factories)."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from chalicelib.accounts import services as accounts
from chalicelib.core import clock, config
from chalicelib.ledger.accounts import ResponsibilityKind
from chalicelib.statements import services as statements
from chalicelib.statements import storage
from chalicelib.store import keys
from chalicelib.tenants import services as tenants
from tests import factories

PORTAL = "https://pay.example.org"
ADDRESS = {"line1": "12 Elm St", "city": "Springfield", "state": "IL", "postal_code": "62704"}
_n = itertools.count(1)


class Clock:
    """A movable clock (UTC), restored by the conftest after each test."""

    def __init__(self, at: datetime | None = None) -> None:
        self.at = at or datetime(2026, 11, 2, 15, 0, tzinfo=UTC)
        clock.set_source(lambda: self.at)

    def move(self, **kw: float) -> None:
        self.at += timedelta(**kw)

    @property
    def today(self) -> str:
        return self.at.date().isoformat()


@pytest.fixture
def statements_env(tmp_path, monkeypatch) -> Iterator[str]:
    """A portal base URL and a local PDF folder of the test's own; settings re-read."""
    monkeypatch.setenv("FRONTDESK_PORTAL_URL", PORTAL)
    monkeypatch.setenv("FRONTDESK_STORAGE", "local")
    monkeypatch.setenv("FRONTDESK_STATEMENTS_DIR", str(tmp_path / "statements"))
    monkeypatch.delenv("FRONTDESK_STATEMENTS_QUEUE_URL", raising=False)
    config.reset()
    storage.reset()
    yield str(tmp_path / "statements")
    monkeypatch.undo()
    config.reset()
    storage.reset()


def profile(clinic_id: str, group_id: str | None, **overrides: Any) -> dict[str, Any]:
    """A complete profile mapping (defaults: per guarantor, URL and QR, 28 cycle days)."""
    data: dict[str, Any] = {
        "profile_id": "std", "description": "Standard", "is_default": True, "group_id": group_id,
        "cycle_days": 28, "due_days": 21, "pay_link": "url_and_qr",
        "billing_office": {"name": "Sunrise Family Medicine", "phone": "(555) 555-0100", "hours_1": "Mon-Fri 8-5",
                           "email": "billing@sunrise.example",
                           "return_address": {"line1": "1 Clinic Way", "city": "Springfield", "state": "IL",
                                              "postal_code": "62701"},
                           "remit_address": {"line1": "Sunrise Family Medicine", "line2": "PO Box 100",
                                             "city": "Springfield", "state": "IL", "postal_code": "62701"}},
    }
    data.update(overrides)
    return data


def clinic(**profile_overrides: Any) -> tuple[str, str]:
    """A clinic with a portal group and a default profile; returns (clinic id, group id)."""
    cid = factories.clinic("Sunrise Family Medicine")
    gid = tenants.group_create(clinic_id=cid, name="Sunrise", is_default=True)
    statements.statement_profile_save(clinic_id=cid, profile=profile(cid, gid, **profile_overrides))
    return cid, gid


def family(clinic_id: str, *, address: dict[str, str] | None = ADDRESS, patients: int = 1,
           consent: dict[str, Any] | None = None, email: str | None = "jane@example.com",
           mobile: str | None = None) -> factories.Family:
    """A guarantor with a mailing address and ``patients`` linked patients (the first is 'self')."""
    fac = tenants.facility_create(clinic_id=clinic_id, name="Main", nickname="Main")
    prv = tenants.provider_create(clinic_id=clinic_id, last_name="Welby", npi="1234567893")
    gid = accounts.guarantor_create(clinic_id=clinic_id, first_name="Jane", last_name=f"Doe{next(_n)}",
                                    email=email, mobile=mobile, address=address, consent=consent)
    pid = accounts.patient_link(clinic_id=clinic_id, guarantor_id=gid, first_name="Jane", last_name="Doe")
    for i in range(1, patients):
        accounts.patient_link(clinic_id=clinic_id, guarantor_id=gid, first_name=f"Kid{i}", last_name="Doe",
                              relationship="child", patient_id=f"{pid}-{i}")
    return factories.Family(clinic_id, gid, pid, fac, prv)


def owes(f: factories.Family, cents: int, *, patient_id: str | None = None, dos: str = "2026-10-01",
         provider_id: str | None = None, encounter: str | None = None) -> str:
    """A line whose insurance left ``cents`` to the patient; returns the line id."""
    enc = encounter or f"E{next(_n)}"
    billed = cents * 3
    accounts.service_line_charge(
        clinic_id=f.clinic_id, guarantor_id=f.guarantor_id, encounter_number=enc, line_number=1,
        patient_id=patient_id or f.patient_id, date_of_service=dos, procedure_code="99213",
        billed_cents=billed, facility_id=f.facility_id, rendering_provider_id=provider_id or f.provider_id,
        description="Office visit")
    lid = keys.service_line_id(enc, 1)
    accounts.insurance_payment_post(clinic_id=f.clinic_id, guarantor_id=f.guarantor_id, line_id=lid,
                                    amount_cents=billed - cents, source_key=f"ins:{lid}")
    accounts.patient_responsibility_post(clinic_id=f.clinic_id, guarantor_id=f.guarantor_id, line_id=lid,
                                         amount_cents=cents, kind=ResponsibilityKind.COINSURANCE,
                                         source_key=f"pr:{lid}")
    return lid


def pay(f: factories.Family, cents: int, applications: dict[str, int] | None = None) -> None:
    accounts.patient_payment_post(clinic_id=f.clinic_id, guarantor_id=f.guarantor_id, amount_cents=cents,
                                  applications=applications or {}, source_key=f"receipt:{next(_n)}")


def fanned_out_run(monkeypatch: pytest.MonkeyPatch, *, guarantors: int, page_size: int
                   ) -> tuple[str, list[factories.Family], list[dict[str, Any]], str]:
    """A clinic whose run is started with the fan-out on: pages of ``page_size`` are "sent" into
    the returned list instead of SQS. Returns (clinic id, families, messages, run id)."""
    from chalicelib.statements import queue

    c = Clock()
    cid, _ = clinic()
    monkeypatch.setattr(statements, "PAGE_SIZE", page_size)
    families = [family(cid) for _ in range(guarantors)]
    for f in families:
        owes(f, 1_000)
    sent: list[dict[str, Any]] = []
    queue.set_sender(sent.extend)
    try:
        run_id = statements.statement_run_start(clinic_id=cid, run_date=c.today).run_id
    finally:
        queue.set_sender(None)
    return cid, families, sent, run_id


def requests_per_guarantor(patch: pytest.MonkeyPatch, request_log: Any) -> list[Any]:
    """Record each guarantor's DynamoDB requests in a run: ``_bill_guarantor`` wrapped, pages
    billed one guarantor at a time (``PAGE_THREADS`` 1) so the counts are its own. Returns the
    list the run fills (one Counter per guarantor billed, in order)."""
    per_guarantor: list[Any] = []
    real_bill = statements._bill_guarantor

    def counted(*args: Any, **kwargs: Any) -> str:
        before = request_log.operations.copy()
        out = real_bill(*args, **kwargs)
        per_guarantor.append(request_log.operations - before)
        return out

    patch.setattr(statements, "_bill_guarantor", counted)
    patch.setattr(statements, "PAGE_THREADS", 1)
    return per_guarantor
