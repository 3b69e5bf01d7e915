"""Corrections against DynamoDB Local, with the smallest hand-written files: 837 replacement
and void claims (CLM05-3 = 7 / 8, DATA-FORMATS.md §3) and secondary-payer 835s (CLP02 = 2/20
after the primary's CLP02 = 1/19, §2.3). Every test ends with ledger-verify clean.
"""

from __future__ import annotations

import pytest

from chalicelib.imports import services
from chalicelib.imports.files import Source
from chalicelib.ledger.verify import ledger_verify
from chalicelib.store import keys
from chalicelib.store.db import clinic_scope
from chalicelib.store.models import BalanceItem, EntryItem, GuarantorItem, ServiceLineItem
from chalicelib.store.models_imports import ClaimRefItem
from chalicelib.tenants import services as tenants

pytestmark = pytest.mark.usefixtures("dynamodb_endpoint")

ISA = "ISA*00*          *00*          *ZZ*SENDER         *ZZ*RECEIVER       *260301*1200*^*00501*{ctl:09d}*0*P*:~"


def x12(kind: str, body: list[str], ctl: int) -> bytes:
    """An interchange with one transaction set of ``kind`` (837 or 835) around ``body``."""
    functional, version = ("HC", "005010X222A1") if kind == "837" else ("HP", "005010X221A1")
    st = [f"ST*{kind}*0001", *body]
    segments = [ISA.format(ctl=ctl)[:-1], f"GS*{functional}*S*R*20260301*1200*{ctl}*X*{version}", *st,
                f"SE*{len(st) + 1}*0001", f"GE*1*{ctl}", f"IEA*1*{ctl:09d}"]
    return ("~".join(segments) + "~").encode()


def claim_837(frequency: str, lines: list[tuple[str, str, str]], ctl: int, clm01: str = "ACCT1",
              last: str = "SMITH") -> bytes:
    """One subscriber (SMITH JANE, self) and one claim CLM01 with ``lines`` of
    (procedure, charge, REF*6R); CLM05-3 = ``frequency``; date of service 2026-01-10."""
    total = sum(int(charge) for _, charge, _ in lines)
    body = ["BHT*0019*00*1*20260301*1200*CH", "HL*1**20*1", "NM1*85*2*CLINIC*****XX*1912301953",
            "HL*2*1*22*0", "SBR*P*18*******CI", f"NM1*IL*1*{last}*JANE****MI*M100",
            "NM1*PR*2*PAYER*****PI*999", f"CLM*{clm01}*{total}***11:B:{frequency}*Y*A*Y*Y", "DTP*472*D8*20260110"]
    for n, (code, charge, control) in enumerate(lines, 1):
        body += [f"LX*{n}", f"SV1*HC:{code}*{charge}*UN*1***1", "DTP*472*D8*20260110", f"REF*6R*{control}"]
    return x12("837", body, ctl)


def remit_835(claims: list[str], ctl: int, paid: str, trace: str) -> bytes:
    """One payment (BPR02 = ``paid``, TRN02 = ``trace``) carrying the claim loops ``claims``."""
    body = [f"BPR*I*{paid}*C*ACH*CCP*01*999*DA*1*1512345678**01*999*DA*2*20260301", f"TRN*1*{trace}*1999",
            "N1*PR*PAYER", "N1*PE*CLINIC*XX*1912301953", "LX*1", *claims]
    return x12("835", body, ctl)


def run(clinic_id: str, data: bytes, name: str) -> services.ImportResult:
    result = services.import_file(clinic_id=clinic_id, source=Source(data=data, name=name))
    assert result.status == "imported", (result.error, result.warnings)
    return result


def only_guarantor(clinic_id: str) -> str:
    with clinic_scope(clinic_id):
        [g] = [g for g in GuarantorItem.gsi1.query(keys.guarantors_gsi1pk(clinic_id)) if isinstance(g, GuarantorItem)]
    return g.guarantor_id


def line_money(clinic_id: str, guarantor_id: str) -> dict[str, dict[str, int]]:
    """Service line id -> its stored figures (billed, ins_open, pat_open, ...)."""
    with clinic_scope(clinic_id):
        return {it.line_id: dict(it.money) for it in ServiceLineItem.query(
            keys.guarantor_pk(clinic_id, guarantor_id), ServiceLineItem.sk.startswith(keys.LINE_PREFIX),
            consistent_read=True)}


def totals(clinic_id: str, guarantor_id: str) -> dict[str, int]:
    with clinic_scope(clinic_id):
        return dict(BalanceItem.get(keys.guarantor_pk(clinic_id, guarantor_id), keys.BALANCE,
                                    consistent_read=True).totals)


def entries(clinic_id: str, guarantor_id: str) -> list[EntryItem]:
    with clinic_scope(clinic_id):
        return list(EntryItem.query(keys.guarantor_pk(clinic_id, guarantor_id),
                                    EntryItem.sk.startswith(keys.ENTRY_PREFIX), consistent_read=True))


def verified(clinic_id: str) -> None:
    report = ledger_verify(clinic_id=clinic_id)
    assert report.ok, report.mismatches[:3]


@pytest.fixture
def clinic_id() -> str:
    return tenants.clinic_create(name="Corrections", time_zone="America/Chicago")


# --- 837 replacement (CLM05-3 = 7) ---------------------------------------------------------------


def test_a_replacement_moves_each_line_to_its_new_charge_and_drops_lines_no_longer_billed(clinic_id):
    run(clinic_id, claim_837("1", [("99213", "100", "A1"), ("90471", "30", "A2")], 1), "original.837")
    gid = only_guarantor(clinic_id)
    # 99213 billed again at 120, 90471 no longer billed, 85025 new
    result = run(clinic_id, claim_837("7", [("99213", "120", "A1"), ("85025", "40", "A3")], 2), "replace.837")
    assert result.outcomes == {"replaced": 1}
    money = line_money(clinic_id, gid)
    assert {lid: m.get("billed", 0) for lid, m in money.items()} == {
        "ACCT1.20260110-1": 12000, "ACCT1.20260110-2": 0, "ACCT1.20260110-3": 4000}
    assert totals(clinic_id, gid)["billed"] == 16000
    [original, replacement] = sorted(entries(clinic_id, gid), key=lambda e: int(e.seq))
    assert sum(int(ln.cents) for ln in original.lines if ln.account == "revenue") == -13000  # history kept
    assert sorted((ln.line_id, int(ln.cents)) for ln in replacement.lines if ln.account == "ins_ar") == [
        ("ACCT1.20260110-1", 2000), ("ACCT1.20260110-2", -3000), ("ACCT1.20260110-3", 4000)]
    with clinic_scope(clinic_id):
        [ref] = list(ClaimRefItem.query(keys.claim_refs_pk(clinic_id)))
    assert int(ref.charge_cents) == 16000 and [int(s) for s in ref.charge_seqs] == [1, 2]
    assert [bool(dict(x).get("dropped")) for x in ref.lines] == [False, True, False]
    verified(clinic_id)


def test_a_replacement_that_corrects_the_patients_name_replaces_the_original(clinic_id):
    run(clinic_id, claim_837("1", [("99213", "100", "A1"), ("90471", "30", "A2")], 1), "original.837")
    gid = only_guarantor(clinic_id)
    result = run(clinic_id, claim_837("7", [("99213", "90", "A1")], 2, last="SMYTHE"), "replace.837")
    assert result.outcomes == {"replaced": 1}
    assert totals(clinic_id, gid)["billed"] == 9000
    verified(clinic_id)


def test_the_same_replacement_twice_posts_once(clinic_id):
    run(clinic_id, claim_837("1", [("99213", "100", "A1")], 1), "original.837")
    gid = only_guarantor(clinic_id)
    run(clinic_id, claim_837("7", [("99213", "80", "A1")], 2), "replace.837")
    again = run(clinic_id, claim_837("7", [("99213", "80", "A1")], 3), "replace-again.837")  # other bytes
    assert again.outcomes == {"not_posted": 1}  # it changes no charge any more
    assert totals(clinic_id, gid)["billed"] == 8000 and len(entries(clinic_id, gid)) == 2
    verified(clinic_id)


def test_a_replacement_of_a_claim_never_imported_is_charged_as_new_and_flagged(clinic_id):
    result = run(clinic_id, claim_837("7", [("99213", "100", "A1")], 1), "replace.837")
    assert result.outcomes == {"posted": 1}
    assert any("replacement (CLM05-3 = 7) of a claim never imported" in w for w in result.warnings)
    assert totals(clinic_id, only_guarantor(clinic_id))["billed"] == 10000
    verified(clinic_id)


def test_a_remittance_after_a_replacement_matches_the_replaced_lines(clinic_id):
    run(clinic_id, claim_837("1", [("99213", "100", "A1"), ("90471", "30", "A2")], 1), "original.837")
    run(clinic_id, claim_837("7", [("99213", "120", "A1")], 2), "replace.837")
    gid = only_guarantor(clinic_id)
    clp = ["CLP*ACCT1*1*120*100*20*12*ICN1", "NM1*QC*1*SMITH*JANE****MI*M100", "SVC*HC:99213*120*100",
           "DTM*472*20260110", "CAS*PR*2*20", "REF*6R*A1"]
    result = run(clinic_id, remit_835(clp, 3, "100", "T1"), "remit.835")
    assert result.outcomes == {"posted": 1}
    money = line_money(clinic_id, gid)["ACCT1.20260110-1"]
    assert (money.get("ins_open", 0), money.get("pat_open", 0)) == (0, 2000)
    verified(clinic_id)


# --- 837 void (CLM05-3 = 8) ---------------------------------------------------------------------


def test_a_void_reverses_the_original_and_its_replacements(clinic_id):
    run(clinic_id, claim_837("1", [("99213", "100", "A1"), ("90471", "30", "A2")], 1), "original.837")
    run(clinic_id, claim_837("7", [("99213", "120", "A1")], 2), "replace.837")
    gid = only_guarantor(clinic_id)
    result = run(clinic_id, claim_837("8", [("99213", "120", "A1")], 3), "void.837")
    assert result.outcomes == {"voided": 1}
    got = sorted(entries(clinic_id, gid), key=lambda e: int(e.seq))
    assert [(int(e.seq), e.reverses) for e in got] == [(1, None), (2, None), (3, 2), (4, 1)]
    assert all(m.get("billed", 0) == 0 and m.get("ins_open", 0) == 0 for m in line_money(clinic_id, gid).values())
    assert totals(clinic_id, gid).get("billed", 0) == 0
    # the same void again (another file) reverses nothing twice
    again = run(clinic_id, claim_837("8", [("99213", "120", "A1")], 4), "void-again.837")
    assert again.outcomes == {"already_posted": 1} and len(entries(clinic_id, gid)) == 4
    verified(clinic_id)


def test_a_void_of_a_claim_never_imported_is_held(clinic_id):
    result = run(clinic_id, claim_837("8", [("99213", "100", "A1")], 1), "void.837")
    assert result.outcomes == {"held": 1}
    verified(clinic_id)


# --- secondary payer (CLP02 = 2 after 1 / 19) ------------------------------------------------------

PRIMARY = ["CLP*ACCT1*{status}*100*70*20*12*ICN1", "NM1*QC*1*SMITH*JANE****MI*M100", "SVC*HC:99213*100*70",
           "DTM*472*20260110", "CAS*CO*45*10", "CAS*PR*2*20", "REF*6R*A1"]
SECONDARY = ["CLP*ACCT1*2*100*15*5*12*ICN2", "NM1*QC*1*SMITH*JANE****MI*M100", "SVC*HC:99213*100*15",
             "DTM*472*20260110", "CAS*OA*23*80", "CAS*PR*2*5", "REF*6R*A1"]
LINE = "ACCT1.20260110-1"


@pytest.mark.parametrize("primary_status", ["1", "19"])
def test_a_secondary_payment_nets_the_patient_share_left_by_the_primary(clinic_id, primary_status):
    run(clinic_id, claim_837("1", [("99213", "100", "A1")], 1), "claim.837")
    gid = only_guarantor(clinic_id)
    run(clinic_id, remit_835([s.format(status=primary_status) for s in PRIMARY], 2, "70", "P1"), "primary.835")
    before = line_money(clinic_id, gid)[LINE]
    assert (before.get("pat_open", 0), before.get("ins_open", 0)) == ((2000, 0) if primary_status == "1" else (0, 2000))
    result = run(clinic_id, remit_835(SECONDARY, 3, "15", "S1"), "secondary.835")
    assert result.outcomes == {"posted": 1}
    after = line_money(clinic_id, gid)[LINE]
    # the patient owes the secondary's PR (5.00), not 20.00 + 5.00; nothing left with insurance
    assert (after.get("pat_open", 0), after.get("ins_open", 0), after.get("ins_paid", 0)) == (500, 0, 8500)
    assert after.get("pr_coinsurance", 0) == 500 and totals(clinic_id, gid).get("pat_open", 0) == 500
    assert totals(clinic_id, gid).get("escrow", 0) == 0
    again = services.import_file(clinic_id=clinic_id, source=Source(data=remit_835(SECONDARY, 3, "15", "S1"),
                                                                   name="secondary.835"))
    assert again.status == "duplicate" and line_money(clinic_id, gid)[LINE] == after
    verified(clinic_id)


def test_a_secondary_payment_beyond_what_the_patient_still_owes_becomes_unapplied_funds(clinic_id):
    from chalicelib.ledger import services as ledger
    from chalicelib.ledger.accounts import Account, EntryCode, Line

    run(clinic_id, claim_837("1", [("99213", "100", "A1")], 1), "claim.837")
    gid = only_guarantor(clinic_id)
    run(clinic_id, remit_835([s.format(status="1") for s in PRIMARY], 2, "70", "P1"), "primary.835")
    ledger.entry_post(clinic_id=clinic_id, guarantor_id=gid, code=EntryCode.PATIENT_PAYMENT,  # the patient paid 20
                      lines=[Line(Account.PAT_CASH, 2000), Line(Account.PAT_AR, -2000, LINE)], source_key="pay:1")
    result = run(clinic_id, remit_835(SECONDARY, 3, "15", "S1"), "secondary.835")
    assert result.outcomes == {"posted": 1} and any("unapplied funds" in w for w in result.warnings)
    after = line_money(clinic_id, gid)[LINE]
    assert after.get("pat_open", 0) == 0 and totals(clinic_id, gid).get("escrow", 0) == 1500
    verified(clinic_id)
