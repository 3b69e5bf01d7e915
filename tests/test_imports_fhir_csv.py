"""FHIR R4 (single resources, bundles, Synthea) and CSV roster imports against DynamoDB Local."""

from __future__ import annotations

import json
import logging
from collections import Counter
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

import pytest

from chalicelib.accounts import selectors as account_selectors
from chalicelib.imports import selectors as import_selectors
from chalicelib.imports import services
from chalicelib.imports.csv_roster import read_roster
from chalicelib.imports.errors import ImportRejected, Warnings
from chalicelib.imports.files import Source
from chalicelib.ledger import selectors as ledger_selectors
from chalicelib.ledger.verify import ledger_verify
from chalicelib.store import keys
from chalicelib.store.db import clinic_scope
from chalicelib.store.models import GuarantorItem, PatientItem
from chalicelib.tenants import services as tenants

pytestmark = pytest.mark.usefixtures("dynamodb_endpoint")
DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
SYNTHEA = DATA / "fhir" / "synthea-r4" / "Gustavo_Mejia_59a8543c-e24f-4a01-b28b-47ccde6bc11d.json"
SPEC = DATA / "fhir" / "r4-spec-examples"
PATIENT_SHARE = {"https://bluebutton.cms.gov/resources/variables/line_coinsrnc_amt",
                 "https://bluebutton.cms.gov/resources/variables/line_bene_ptb_ddctbl_amt"}


def clinic() -> str:
    return tenants.clinic_create(name="FHIR Clinic", time_zone="America/Denver")


def people(clinic_id: str) -> list[tuple[GuarantorItem, list[PatientItem]]]:
    with clinic_scope(clinic_id):
        out = []
        for g in GuarantorItem.gsi1.query(keys.guarantors_gsi1pk(clinic_id)):
            assert isinstance(g, GuarantorItem)
            patients = list(PatientItem.query(g.pk, PatientItem.sk.startswith(keys.PATIENT_PREFIX)))
            out.append((g, patients))
        return out


def verified(clinic_id: str) -> None:
    report = ledger_verify(clinic_id=clinic_id)
    assert report.ok, report.mismatches[:3]


def bundle(*resources: dict) -> bytes:
    return json.dumps({"resourceType": "Bundle", "type": "collection",
                       "entry": [{"fullUrl": f"http://example.org/fhir/{r['resourceType']}/{r['id']}", "resource": r}
                                 for r in resources]}).encode()


def spec(name: str) -> dict:
    return json.loads((SPEC / name).read_text())


# --- FHIR ----------------------------------------------------------------------------------------


def test_synthea_bundle_charges_claims_and_posts_the_eob_patient_share():
    cid = clinic()
    result = services.import_file(clinic_id=cid, source=Source(path=SYNTHEA))
    assert result.status == "imported" and result.file_format == "fhir"
    assert any("rounded half-up" in w for w in result.warnings)
    assert any("resource types not imported" in w for w in result.warnings)
    [(guarantor, patients)] = people(cid)
    assert guarantor.last_name == "Mejía" and [p.relationship for p in patients] == ["self"]
    data = json.loads(SYNTHEA.read_text(), parse_float=Decimal)
    share = 0
    for entry in data["entry"]:
        eob = entry["resource"]
        if eob["resourceType"] != "ExplanationOfBenefit":
            continue
        for item in eob.get("item", []):
            for adj in item.get("adjudication", []):
                if adj["category"]["coding"][0]["code"] in PATIENT_SHARE and "amount" in adj:
                    share += int((Decimal(str(adj["amount"]["value"])) * 100).quantize(Decimal(1), ROUND_HALF_UP))
    figures = ledger_selectors.guarantor_figures(clinic_id=cid, guarantor_id=guarantor.guarantor_id)
    assert share > 0 and figures.balances.current_balance == share == result.patient_responsibility_cents
    lines = account_selectors.service_lines_list(clinic_id=cid, guarantor_id=guarantor.guarantor_id)
    assert len(lines) >= 14 and sum(ln.money.get("billed", 0) for ln in lines) == result.charge_cents
    # Synthea has no Coverage resource, only a stub contained in each EOB (payor "private"): not stored.
    assert not any(e["resource"]["resourceType"] == "Coverage" for e in data["entry"])
    assert import_selectors.coverages_list(clinic_id=cid, guarantor_id=guarantor.guarantor_id) == []
    verified(cid)


def test_account_guarantor_is_the_related_person_and_the_patient_their_spouse():
    cid = clinic()
    data = bundle(spec("Account-ewg.json"), spec("RelatedPerson-benedicte.json"), spec("Patient-example.json"))
    result = services.import_file(clinic_id=cid, source=Source(data=data, name="account.json"))
    assert result.status == "imported"
    [(guarantor, patients)] = people(cid)
    assert (guarantor.first_name, guarantor.last_name) == ("Bénédicte", "du Marché")
    assert [(p.first_name, p.last_name, p.relationship, p.date_of_birth) for p in patients] == [
        ("Peter", "Chalmers", "spouse", "1974-12-25")]


def test_single_resources_link_across_files_and_non_usd_is_not_imported():
    cid = clinic()
    assert services.import_file(clinic_id=cid, source=Source(path=SPEC / "Patient-pat1.json")).status == "imported"
    eob = services.import_file(clinic_id=cid, source=Source(path=SPEC / "ExplanationOfBenefit-EB3500.json"))
    assert eob.status == "imported" and eob.outcomes == {"posted": 1}  # Patient/pat1 from the first file
    charge = services.import_file(clinic_id=cid, source=Source(path=SPEC / "ChargeItem-example.json"))
    assert charge.outcomes == {"not_posted": 1}  # EUR
    invoice = services.import_file(clinic_id=cid, source=Source(path=SPEC / "Invoice-example.json"))
    assert invoice.status == "imported" and "Invoice ×1" in invoice.warnings[0]
    assert len(people(cid)) == 1
    verified(cid)


def test_invalid_fhir_is_rejected_with_its_entry_and_type_and_writes_nothing():
    cid = clinic()
    patient = spec("Patient-pat1.json")
    broken = dict(spec("Patient-example.json"), birthDate="the twelfth", id="broken")
    result = services.import_file(clinic_id=cid, source=Source(data=bundle(patient, broken), name="bad.json"))
    assert result.status == "rejected" and result.error is not None
    assert (result.error["segment"], result.error["segment_id"]) == (2, "Patient")
    assert "birthDate" in result.error["message"] and "twelfth" not in result.error["message"]
    assert people(cid) == []
    not_json = services.import_file(clinic_id=cid, source=Source(data=b"{ nope", name="x.json"))
    assert not_json.status == "rejected"


# --- FHIR Coverage -------------------------------------------------------------------------------


def test_spec_coverage_is_held_until_its_patient_is_known_then_stored_once_and_updated():
    cid = clinic()
    coverage = spec("Coverage-9876B1.json")
    assert coverage["beneficiary"] == {"reference": "Patient/4"}
    held = services.import_file(clinic_id=cid, source=Source(path=SPEC / "Coverage-9876B1.json"))
    assert held.status == "imported" and held.outcomes == {"held": 1}
    assert [r.review for r in import_selectors.review_list(clinic_id=cid)] == [
        "coverage: the patient is in no imported file"]
    assert people(cid) == []
    patient = dict(spec("Patient-example.json"), id="4")  # the Coverage's Patient/4
    assert services.import_file(clinic_id=cid, source=Source(data=json.dumps(patient).encode(),
                                                             name="p4.json")).outcomes == {"posted": 1}
    stored = services.import_file(clinic_id=cid, source=Source(data=bundle(patient, coverage), name="b.json"))
    assert stored.outcomes == {"posted": 2}
    [(guarantor, [pat])] = people(cid)
    [cov] = import_selectors.coverages_list(clinic_id=cid, guarantor_id=guarantor.guarantor_id)
    assert (cov.patient_id, cov.payer_name, cov.payer_ref, cov.member_id, cov.relationship) == (
        pat.patient_id, "", "Organization/2", "12345", "self")
    assert (cov.period_start, cov.period_end, cov.order, cov.status, cov.coverage_id) == (
        "2011-05-23", "2012-05-23", None, "active", "9876B1")
    assert "12345" not in repr(cov)
    # The same coverage again in another file, now cancelled: the one item is updated, none added.
    cancelled = dict(coverage, status="cancelled", period={"start": "2011-05-23", "end": "2011-12-31"})
    again = services.import_file(clinic_id=cid, source=Source(data=bundle(cancelled), name="c.json"))
    assert again.outcomes == {"posted": 1}
    [cov] = import_selectors.coverages_list(clinic_id=cid, guarantor_id=guarantor.guarantor_id)
    assert (cov.status, cov.period_end, cov.member_id) == ("cancelled", "2011-12-31", "12345")


def test_bundle_coverages_land_on_the_guarantor_listed_in_one_query_and_never_logged(request_log, caplog):
    """Synthea-style transaction bundle (urn:uuid references) with an Account naming a
    RelatedPerson guarantor: the spouse's primary and secondary coverages go to the guarantor's
    collection; a coverage of a patient in no file is held; member ids stay out of the logs."""
    cid = clinic()
    member, member2 = "ZQ8841X7", "MBR-77Y3302"
    patient = spec("Patient-example.json")
    related, account = spec("RelatedPerson-benedicte.json"), spec("Account-ewg.json")
    org = {"resourceType": "Organization", "id": "acme", "name": "Acme Health Plan"}
    primary = {"resourceType": "Coverage", "id": "c1", "status": "active", "subscriberId": member, "order": 1,
               "beneficiary": {"reference": "urn:uuid:pat"}, "payor": [{"reference": "urn:uuid:org"}],
               "relationship": {"coding": [{"code": "spouse"}]}, "period": {"start": "2024-01-01T00:00:00Z"}}
    secondary = {"resourceType": "Coverage", "id": "c2", "status": "active", "order": 2,
                 "identifier": [{"system": "urn:x:group", "value": "GRP-1"},
                                {"type": {"coding": [{"code": "MB"}]}, "value": member2}],
                 "beneficiary": {"reference": "urn:uuid:pat"}, "payor": [{"display": "Medicare Part B"}],
                 "relationship": {"coding": [{"code": "self"}]}}
    stranger = dict(primary, id="c3", beneficiary={"reference": "Patient/nobody"})
    entries = [("urn:uuid:pat", patient), ("urn:uuid:org", org), ("urn:uuid:c2", secondary),
               ("urn:uuid:c1", primary), ("urn:uuid:c3", stranger), ("urn:uuid:rp", related),
               ("urn:uuid:acct", account)]
    data = json.dumps({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": url, "resource": res, "request": {"method": "POST", "url": res["resourceType"]}}
        for url, res in entries]}).encode()
    caplog.set_level(logging.INFO)  # the most a deployed function emits; the application's own at DEBUG
    caplog.set_level(logging.DEBUG, logger="chalicelib")
    result = services.import_file(clinic_id=cid, source=Source(data=data, name="family.json"))
    assert result.status == "imported" and result.outcomes == {"posted": 3, "held": 1}
    assert services.import_file(clinic_id=cid, source=Source(data=data, name="again.json")).status == "duplicate"
    [(guarantor, [pat])] = people(cid)
    assert (guarantor.first_name, pat.relationship) == ("Bénédicte", "spouse")
    before = Counter(request_log.operations)
    found = import_selectors.coverages_list(clinic_id=cid, guarantor_id=guarantor.guarantor_id)
    assert Counter(request_log.operations) - before == Counter({"Query": 1})
    assert [(c.order, c.payer_name, c.payer_ref, c.member_id, c.relationship, c.period_start, c.patient_id)
            for c in found] == [
        (1, "Acme Health Plan", "Organization/acme", member, "spouse", "2024-01-01", pat.patient_id),
        (2, "Medicare Part B", "", member2, "self", None, pat.patient_id)]
    logged = caplog.text + "".join(str(vars(r)) for r in caplog.records)
    assert member not in logged and member2 not in logged
    assert not any(member in w or member2 in w for w in result.warnings)
    # The same primary coverage from another file (other resource id, same payer and member id): one item.
    moved = dict(primary, id="other-id", period={"start": "2024-02-01"}, beneficiary={"reference": "Patient/example"},
                 payor=[{"reference": "Organization/acme"}])
    more = services.import_file(clinic_id=cid, source=Source(data=bundle(org, moved), name="more.json"))
    assert more.outcomes == {"posted": 1}
    after = import_selectors.coverages_list(clinic_id=cid, guarantor_id=guarantor.guarantor_id)
    assert [(c.order, c.period_start, c.coverage_id) for c in after] == [(1, "2024-02-01", "other-id"),
                                                                          (2, None, "c2")]


# --- CSV roster ----------------------------------------------------------------------------------

ROSTER = """guarantor_id,guarantor_first_name,guarantor_last_name,email,mobile,language,consent_email,consent_sms,\
patient_id,patient_first_name,patient_last_name,patient_date_of_birth,relationship
A100,Maria,García,maria@example.com,(555) 555-0101,es,yes,no,P1,Maria,García,1980-02-03,self
A100,Maria,García,maria@example.com,(555) 555-0101,es,yes,no,P2,Lucía,García,2015-06-07,child
B200,John,Smith,,+44 20 7946 0958,en,no,yes,,,,,
"""


def test_roster_creates_guarantors_with_contacts_consent_and_patients():
    cid = clinic()
    result = services.import_file(clinic_id=cid, source=Source(data=ROSTER.encode(), name="roster.csv"))
    assert result.status == "imported" and result.file_format == "csv" and result.transactions == 3
    found = {g.last_name: (g, p) for g, p in people(cid)}
    maria, kids = found["García"]
    assert (maria.email, maria.mobile, maria.language) == ("maria@example.com", "+15555550101", "es")
    assert maria.consent.as_dict() == {"email": True, "sms": False}
    assert sorted((p.first_name, p.relationship) for p in kids) == [("Lucía", "child"), ("Maria", "self")]
    john, johns = found["Smith"]
    assert john.mobile == "+442079460958" and john.consent.as_dict() == {"email": False, "sms": True}
    assert [p.relationship for p in johns] == ["self"]
    again = services.import_file(clinic_id=cid, source=Source(data=ROSTER.encode(), name="roster.csv"))
    assert again.status == "duplicate"
    more = ROSTER + "C300,Ann,Lee,ann@example.com,,,,,,,,,\n"
    added = services.import_file(clinic_id=cid, source=Source(data=more.encode(), name="roster2.csv"))
    assert added.status == "imported" and len(people(cid)) == 3


def test_a_roster_with_member_ids_gives_the_837_and_835_subscribers_their_contacts():
    """The practice's roster first, then its claims and remittance: one guarantor per family,
    with the roster's email and consent, and each dependent one patient (matched by name)."""
    import io

    from chalicelib.imports import generator

    cid = clinic()
    files = {}
    for name, write in (("roster.csv", generator.write_roster), ("c.837", generator.write_837),
                        ("r.835", generator.write_835)):
        buf = io.StringIO()
        write(buf, claims=6, seed=11, families=3)
        files[name] = buf.getvalue().encode()
    for name, data in files.items():
        assert services.import_file(clinic_id=cid, source=Source(data=data, name=name)).status == "imported"
    roster_rows = files["roster.csv"].decode().splitlines()[1:]
    found = people(cid)
    assert len(found) == len({row.split(",")[0] for row in roster_rows})
    assert all(g.email and g.email.endswith("@example.com") and g.consent.as_dict()["email"] for g, _ in found)
    assert sum(len(patients) for _, patients in found) == len(roster_rows)
    # The 837 and 835 name no account number: the roster's stays on every guarantor.
    assert sorted(g.account_number for g, _ in found) == sorted({row.split(",")[0] for row in roster_rows})
    assert ledger_verify(clinic_id=cid).ok


def test_one_account_number_is_one_guarantor_with_or_without_member_id():
    """Rows of one guarantor_id that spell the name differently are one guarantor (the first
    row's, with a warning); a later roster naming only the account number finds them too."""
    cid = clinic()
    first = ("guarantor_id,guarantor_first_name,guarantor_last_name,member_id\n"
             "G3,Ann,Lee,M3\nG3,Anne,Lee,M3\n")
    result = services.import_file(clinic_id=cid, source=Source(data=first.encode(), name="a.csv"))
    assert result.status == "imported" and any("differ from row 2" in w for w in result.warnings)
    assert [(g.first_name, g.last_name) for g, _ in people(cid)] == [("Ann", "Lee")]
    later = "guarantor_id,guarantor_first_name,guarantor_last_name,email\nG3,Ann,Lee,ann@example.com\n"
    assert services.import_file(clinic_id=cid, source=Source(data=later.encode(), name="b.csv")).status == "imported"
    assert len(people(cid)) == 1


def test_the_roster_guarantor_id_is_kept_as_the_practices_account_number():
    """Statements printed our guarantor id as "Account number", a number the billing office
    does not know. The roster's guarantor_id (as spelt, stripped) is stored on the profile;
    importing it again changes nothing; a roster renumbering a guarantor updates it; a file
    without one (FHIR) sets none."""
    from chalicelib.accounts import services as accounts

    cid = clinic()
    head = "guarantor_id,guarantor_first_name,guarantor_last_name,member_id\n"
    text = head + " acc-7 ,Ann,Lee,M7\nB-8,Bo,Kim,\n"
    assert services.import_file(clinic_id=cid, source=Source(data=text.encode(), name="a.csv")).status == "imported"
    numbers = {g.last_name: g.account_number for g, _ in people(cid)}
    assert numbers == {"Lee": "acc-7", "Kim": "B-8"}
    lee = next(g.guarantor_id for g, _ in people(cid) if g.last_name == "Lee")
    assert not accounts.guarantor_account_number_set(clinic_id=cid, guarantor_id=lee, account_number="acc-7")
    grown = text + "C-9,Cy,Day,\n"  # other bytes, so imported again rather than a duplicate
    assert services.import_file(clinic_id=cid, source=Source(data=grown.encode(), name="b.csv")).status == "imported"
    assert {g.last_name: g.account_number for g, _ in people(cid)} == {**numbers, "Day": "C-9"}
    renumbered = head + "ACC-70,Ann,Lee,M7\n"  # the member id keys her: same guarantor, new number
    assert services.import_file(clinic_id=cid, source=Source(data=renumbered.encode(), name="c.csv")).status == (
        "imported")
    after = {g.last_name: (g.guarantor_id, g.account_number) for g, _ in people(cid)}
    assert after["Lee"] == (lee, "ACC-70") and len(after) == 3
    odd = read_roster((head + "d\x0b-1,Al,Ng,\n").encode(), Warnings()).units[0].guarantor
    assert odd.account_number == "D1"  # a character that does not print: the letters and digits
    fhir = bundle({"resourceType": "Patient", "id": "p9", "name": [{"family": "Ray", "given": ["Al"]}]})
    assert services.import_file(clinic_id=cid, source=Source(data=fhir, name="p.json")).status == "imported"
    assert {g.last_name: g.account_number for g, _ in people(cid)}["Ray"] is None


def test_a_roster_longer_than_the_row_limit_is_rejected_before_it_fills_memory(monkeypatch):
    from chalicelib.imports import csv_roster

    monkeypatch.setattr(csv_roster, "MAX_ROWS", 3)
    text = "guarantor_id,guarantor_first_name,guarantor_last_name\n" + "".join(f"G{i},Ann,Lee\n" for i in range(4))
    with pytest.raises(ImportRejected) as err:
        read_roster(text.encode(), Warnings())
    assert err.value.position == 5 and "more than 3 rows" in err.value.message


def test_a_roster_member_id_must_be_letters_or_digits():
    text = "guarantor_id,guarantor_first_name,guarantor_last_name,member_id\nA1,Ann,Lee,---\n"
    with pytest.raises(ImportRejected) as err:
        read_roster(text.encode(), Warnings())
    assert (err.value.position, err.value.segment_id) == (2, "member_id")


@pytest.mark.parametrize(("csv_text", "row", "column"), [
    (ROSTER.replace("maria@example.com,(555)", "not-an-email,(555)", 1), 2, "email"),
    (ROSTER.replace(",es,yes", ",fr,yes", 1), 2, "language"),
    (ROSTER.replace("2015-06-07", "2015-13-45"), 3, "patient_date_of_birth"),
    (ROSTER.replace(",no,yes,", ",no,perhaps,"), 4, "consent_sms"),
    ("guarantor_first_name,guarantor_last_name\nA,B\n", 1, "guarantor_id"),
])
def test_roster_errors_reject_the_file_with_row_and_column(csv_text, row, column):
    with pytest.raises(ImportRejected) as rejected:
        read_roster(csv_text.encode(), Warnings())
    assert (rejected.value.position, rejected.value.segment_id) == (row, column)
    cid = clinic()
    result = services.import_file(clinic_id=cid, source=Source(data=csv_text.encode(), name="r.csv"))
    assert result.status == "rejected" and people(cid) == []
