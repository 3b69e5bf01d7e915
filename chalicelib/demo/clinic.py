"""Generate a realistic demo clinic through the real services (no shortcuts into storage).

Facilities, providers, a default group, an admin user, and guarantors with families whose
visits are charged, adjudicated by insurance (payments, CO-45 adjustments, deductible,
coinsurance and copay), billed on a statement, and sometimes paid. Deterministic per seed.
Names are invented. Later the 837/835 generator and importers replace the direct postings.
"""

from __future__ import annotations

import random
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import date, timedelta

from chalicelib.accounts import services as accounts
from chalicelib.ledger.accounts import ResponsibilityKind
from chalicelib.tenants import services as tenants

FIRST = ["Ana", "Luis", "Maria", "James", "Linda", "Robert", "Sofia", "Chen", "Aisha", "David",
         "Emily", "Omar", "Grace", "Mateo", "Olivia", "Noah", "Priya", "Ethan", "Zoe", "Hiro"]
LAST = ["García", "Smith", "Johnson", "Nguyen", "Patel", "Brown", "Martínez", "Lee", "Wilson",
        "Okafor", "Kim", "Davis", "Hernández", "Clark", "Lewis", "Walker", "Young", "Allen"]
PROCEDURES = [("99213", 15000), ("99214", 22000), ("99203", 18000), ("36415", 2500),
              ("85025", 4500), ("90471", 3500), ("93000", 6000), ("71046", 12000)]


@dataclass(frozen=True)
class DemoClinic:
    """Ids of what was generated; ``admin_password`` is a demo credential, printed once."""

    clinic_id: str
    group_id: str
    admin_email: str
    admin_password: str
    guarantor_ids: tuple[str, ...]


def generate(*, guarantors: int = 120, seed: int = 7, today: date | None = None,
             workers: int = 8) -> DemoClinic:
    """Create the demo clinic with ``guarantors`` families; return their ids."""
    today = today or date.today()
    rng = random.Random(seed)
    clinic_id = tenants.clinic_create(name="Riverside Family Medicine", time_zone="America/Chicago",
                                      phone="+15555550100")
    group_id = tenants.group_create(clinic_id=clinic_id, name="Riverside Family Medicine",
                                    settings={"footer_phone": "(555) 555-0100"}, is_default=True)
    facilities = [tenants.facility_create(clinic_id=clinic_id, name=n, nickname=k, tax_id=t)
                  for n, k, t in [("Riverside Main Clinic", "Main", "74-1234567"),
                                  ("Riverside Northside", "North", "74-1234567")]]
    providers = [tenants.provider_create(clinic_id=clinic_id, first_name=f, last_name=la, npi=npi,
                                         roles=("billing", "rendering"))
                 for f, la, npi in [("Helen", "Park", "1467583920"), ("Samuel", "Ortiz", "1730291845"),
                                    ("Rita", "Chou", "1902847561")]]
    admin_email, admin_password = "admin@riverside.example", "demo-password-123"
    tenants.staff_user_create(clinic_id=clinic_id, email=admin_email, name="Demo Admin",
                              password=admin_password, roles=("admin",))
    plans = [(i, rng.randrange(1 << 30)) for i in range(guarantors)]

    def one(plan: tuple[int, int]) -> str:
        return _family(clinic_id, facilities, providers, plan[0], random.Random(plan[1]), today)

    with ThreadPoolExecutor(max_workers=workers) as pool:
        ids = tuple(pool.map(one, plans))
    return DemoClinic(clinic_id, group_id, admin_email, admin_password, ids)


def _family(clinic_id: str, facilities: list[str], providers: list[str], n: int,
            rng: random.Random, today: date) -> str:
    first, last = rng.choice(FIRST), rng.choice(LAST)
    gid = accounts.guarantor_create(
        clinic_id=clinic_id, first_name=first, last_name=last,
        email=f"{first.lower()}.{n}@example.com", mobile=f"+1555555{n:04d}",
        language="es" if rng.random() < 0.2 else "en",
        address={"line1": f"{100 + n} Main St", "city": "Springfield", "state": "IL",
                 "postal_code": "62701"},
        consent={"email": True, "sms": rng.random() < 0.6},
    )
    patients = [accounts.patient_link(clinic_id=clinic_id, guarantor_id=gid, first_name=first,
                                      last_name=last, relationship="self")]
    for _ in range(rng.choice([0, 0, 1, 2])):
        patients.append(accounts.patient_link(clinic_id=clinic_id, guarantor_id=gid,
                                              first_name=rng.choice(FIRST), last_name=last,
                                              relationship="child"))
    for v in range(rng.randint(1, 3)):
        encounter = f"E{n:05d}{v}"
        dos = today - timedelta(days=rng.randint(10, 120))
        patient, facility, provider = rng.choice(patients), rng.choice(facilities), rng.choice(providers)
        for ln, (code, billed) in enumerate(rng.sample(PROCEDURES, rng.randint(1, 3)), start=1):
            accounts.service_line_charge(
                clinic_id=clinic_id, guarantor_id=gid, encounter_number=encounter,
                line_number=ln, patient_id=patient, date_of_service=dos.isoformat(),
                procedure_code=code, billed_cents=billed, facility_id=facility,
                rendering_provider_id=provider, billing_provider_id=provider,
                responsibility_date=(dos + timedelta(days=21)).isoformat())
            _adjudicate(clinic_id, gid, f"{encounter}-{ln}", billed, rng)
    if rng.random() < 0.8:
        accounts.statement_create(clinic_id=clinic_id, guarantor_id=gid,
                                  statement_date=(today - timedelta(days=5)).isoformat(),
                                  due_date=(today + timedelta(days=25)).isoformat())
    return gid


def _adjudicate(clinic_id: str, gid: str, line_id: str, billed: int, rng: random.Random) -> None:
    allowed = billed * rng.randint(55, 85) // 100
    patient_share = min(allowed, rng.choice([0, 2000, 3000, allowed // 5, allowed]))
    kind = rng.choice([ResponsibilityKind.DEDUCTIBLE, ResponsibilityKind.COINSURANCE,
                       ResponsibilityKind.COPAY])
    if allowed - patient_share > 0:
        accounts.insurance_payment_post(clinic_id=clinic_id, guarantor_id=gid, line_id=line_id,
                                        amount_cents=allowed - patient_share,
                                        source_key=f"demo-ins:{line_id}")
    accounts.insurance_adjustment_post(clinic_id=clinic_id, guarantor_id=gid, line_id=line_id,
                                       amount_cents=billed - allowed, carc_group="CO",
                                       carc_reason="45", source_key=f"demo-co:{line_id}")
    if patient_share > 0:
        accounts.patient_responsibility_post(clinic_id=clinic_id, guarantor_id=gid,
                                             line_id=line_id, amount_cents=patient_share,
                                             kind=kind, source_key=f"demo-pr:{line_id}")


def pay_links(demo: DemoClinic, guarantor_ids: list[str]) -> list[str]:
    """Issue an email payment link into the demo group for each guarantor; return the URLs."""
    from chalicelib.links import services as links

    return [links.link_issue(clinic_id=demo.clinic_id, guarantor_id=gid, group_id=demo.group_id,
                             kind=links.LinkKind.EMAIL).url for gid in guarantor_ids]
