"""Importing generated 837/835 pairs against DynamoDB Local: matching, patient responsibility
on the guarantor's ledger, reversals, denials, PLB, balance notices, exactly-once (R1, R3, B6).
Every test that posts money ends with ledger-verify clean.
"""

from __future__ import annotations

import io
import threading
from collections import Counter

import pytest

from chalicelib.core.errors import InvalidInput
from chalicelib.imports import generator, selectors, services
from chalicelib.imports.files import Source
from chalicelib.ledger import selectors as ledger_selectors
from chalicelib.ledger.verify import ledger_verify
from chalicelib.store import keys
from chalicelib.store.db import clinic_scope
from chalicelib.store.models import EntryItem, GuarantorItem, Item
from chalicelib.store.models_imports import ClaimRefItem, ImportItem
from chalicelib.tenants import services as tenants

pytestmark = pytest.mark.usefixtures("dynamodb_endpoint")


def clinic() -> str:
    return tenants.clinic_create(name="Import Clinic", time_zone="America/Chicago")


def verified(clinic_id: str) -> None:
    report = ledger_verify(clinic_id=clinic_id)
    assert report.ok, report.mismatches[:3]


def pair(claims: int, seed: int, **kwargs: object) -> tuple[Source, Source, generator.Totals]:
    a, b, totals = generator.pair(claims=claims, seed=seed, **kwargs)
    return Source(data=a, name=f"claims-{seed}.837"), Source(data=b, name=f"remit-{seed}.835"), totals


def guarantors(clinic_id: str) -> dict[str, str]:
    """Member id -> guarantor id of the clinic's guarantors."""
    with clinic_scope(clinic_id):
        return {g.external_id: g.guarantor_id for g in GuarantorItem.gsi1.query(keys.guarantors_gsi1pk(clinic_id))
                if isinstance(g, GuarantorItem) and g.external_id}


def entries(clinic_id: str, guarantor_id: str) -> list[EntryItem]:
    with clinic_scope(clinic_id):
        return list(EntryItem.query(keys.guarantor_pk(clinic_id, guarantor_id),
                                    EntryItem.sk.startswith(keys.ENTRY_PREFIX), consistent_read=True))


def expected_patient_cents(seed: int, count: int) -> dict[str, int]:
    """What each family owes after the 835, from the generator's own claims (not the importer)."""
    owed: Counter[str] = Counter()
    families = max(1, count * 2 // 3)
    for claim in generator.claims(seed, count):
        member = str(generator.family_of(seed, claim.family)["member"])
        if claim.denied:
            continue
        cut = claim.reversed  # reversed, then corrected with 2/5 of the deductible
        owed[member] += sum((ln.deductible // 2 * 2 // 5 if cut else ln.deductible) + ln.coinsurance + ln.copay
                            for ln in claim.lines)
    assert families
    return dict(owed)


def assert_owed(clinic_id: str, seed: int, count: int) -> dict[str, int]:
    """Each family's guarantor owes what the generator says (member id -> cents)."""
    owed = expected_patient_cents(seed, count)
    by_member = guarantors(clinic_id)
    for member, cents in owed.items():
        figures = ledger_selectors.guarantor_figures(clinic_id=clinic_id, guarantor_id=by_member[member])
        assert figures.balances.current_balance == cents, member
    return owed


def test_837_then_835_posts_patient_responsibility_to_each_guarantor(request_log):
    cid = clinic()
    claims_file, remit_file, totals = pair(80, seed=21, claims_per_transaction=30)
    charged = services.import_file(clinic_id=cid, source=claims_file)
    assert charged.status == "imported" and charged.outcomes == {"posted": 80}
    request_log.reset()
    result = services.import_file(clinic_id=cid, source=remit_file)
    assert result.status == "imported"
    assert (result.claims, result.insurance_paid_cents, result.patient_responsibility_cents, result.plb_cents) == (
        totals.claims, totals.paid, totals.patient, totals.plb)
    outcomes = Counter(result.outcomes)
    assert outcomes["reversed"] == totals.reversals
    assert outcomes["not_posted"] == totals.denials  # denied and matched: nothing to post, flagged
    assert outcomes["posted"] == totals.claims - totals.reversals - totals.denials
    # B6: exactly one transaction per posted claim; a reversal is one more (entry_reverse).
    assert request_log.operations["TransactWriteItems"] == outcomes["posted"] + outcomes["reversed"]
    assert request_log.operations["Scan"] == 0
    owed = assert_owed(cid, 21, 80)
    by_member = guarantors(cid)
    record = selectors.import_get(clinic_id=cid, sha256=result.sha256)
    assert record.status == "imported" and record.plb_cents == totals.plb and record.plbs
    assert all(p["balanced"] for p in record.payments)
    review = selectors.review_list(clinic_id=cid)
    assert {r.outcome for r in review} >= {"not_posted"} and all("denied" in r.review for r in review
                                                                  if r.outcome == "not_posted")
    due = {n.guarantor_id for n in selectors.notices_due(clinic_id=cid)}
    assert due == {by_member[m] for m, cents in owed.items() if cents > 0}
    verified(cid)


def test_a_reversal_takes_back_exactly_what_the_original_posted():
    cid = clinic()
    seed = next(s for s in range(100, 400) if any(c.reversed for c in generator.claims(s, 40)))
    claims_file, remit_file, _ = pair(40, seed=seed)
    services.import_file(clinic_id=cid, source=claims_file)
    services.import_file(clinic_id=cid, source=remit_file)
    reversed_claim = next(c for c in generator.claims(seed, 40) if c.reversed)
    member = str(generator.family_of(seed, reversed_claim.family)["member"])
    gid = guarantors(cid)[member]
    items = entries(cid, gid)
    reversals = [e for e in items if e.reverses is not None]
    assert reversals
    for reversal in reversals:
        original = next(e for e in items if int(e.seq) == int(reversal.reverses))
        assert [(ln.account, -int(ln.cents), ln.line_id, ln.kind) for ln in original.lines] == [
            (ln.account, int(ln.cents), ln.line_id, ln.kind) for ln in reversal.lines]
    verified(cid)


def test_unmatched_claims_create_their_visit_and_are_flagged(request_log):
    cid = clinic()
    _, remit_file, _ = pair(12, seed=33)
    result = services.import_file(clinic_id=cid, source=remit_file)
    assert result.status == "imported"
    review = selectors.review_list(clinic_id=cid)
    assert any("unmatched" in r.review for r in review)
    with clinic_scope(cid):
        refs = list(ClaimRefItem.query(keys.claim_refs_pk(cid)))
    assert {r.origin for r in refs} == {"835"} and len({r.claim_id for r in refs}) == 12
    assert_owed(cid, 33, 12)
    verified(cid)


def test_the_same_file_twice_is_a_duplicate_and_posts_nothing(request_log):
    cid = clinic()
    claims_file, remit_file, _ = pair(20, seed=41)
    services.import_file(clinic_id=cid, source=claims_file)
    first = services.import_file(clinic_id=cid, source=remit_file)
    request_log.reset()
    again = services.import_file(clinic_id=cid, source=remit_file)
    assert again.status == "duplicate" and again.claims == first.claims
    assert request_log.operations["TransactWriteItems"] == 0 and request_log.requests == 1  # one GetItem
    verified(cid)


def test_the_same_remittance_in_another_envelope_posts_nothing_new():
    """Business keys, not file hashes, make postings unique: a payer re-sending the same 835
    with a new interchange control number changes the file's bytes, not the facts."""
    cid = clinic()
    claims_file, remit_file, _ = pair(15, seed=43)
    services.import_file(clinic_id=cid, source=claims_file)
    services.import_file(clinic_id=cid, source=remit_file)
    assert remit_file.data is not None
    resent = remit_file.data.replace(b"*000005043*", b"*000009999*").replace(b"IEA*1*000005043", b"IEA*1*000009999")
    before = sum(len(entries(cid, g)) for g in guarantors(cid).values())
    result = services.import_file(clinic_id=cid, source=Source(data=resent, name="resent.835"))
    assert result.status == "imported"
    assert set(result.outcomes) <= {"already_posted", "not_posted", "reversed"}
    assert sum(len(entries(cid, g)) for g in guarantors(cid).values()) == before
    verified(cid)


class Crash(Exception):
    pass


def test_a_crash_mid_file_resumes_from_the_status_item(monkeypatch):
    """R3: crash after N claims; the record stays unfinished with its resume point; a re-run
    completes the file and posts no claim twice."""
    monkeypatch.setattr(services, "CHECKPOINT_EVERY", 4)
    cid = clinic()
    claims_file, remit_file, totals = pair(30, seed=47)
    services.import_file(clinic_id=cid, source=claims_file)

    def crash_after(n: int):
        def hook(ordinal: int) -> None:
            if ordinal == n:
                raise Crash(f"crash after claim {n}")
        return hook

    with pytest.raises(Crash):
        services.import_file(clinic_id=cid, source=remit_file, on_unit=crash_after(10))
    sha = remit_file.sha256()
    record = selectors.import_get(clinic_id=cid, sha256=sha)
    assert record.status == "failed" and record.next_ordinal == 9  # the last checkpoint: claims 1-8 done
    verified(cid)  # every posting is whole
    with pytest.raises(Crash):  # crash again, later
        services.import_resume(clinic_id=cid, source=remit_file, on_unit=crash_after(22))
    assert selectors.import_get(clinic_id=cid, sha256=sha).next_ordinal == 21
    result = services.import_resume(clinic_id=cid, source=remit_file)
    assert result.status == "imported"
    record = selectors.import_get(clinic_id=cid, sha256=sha)
    assert record.status == "imported" and sum(record.outcomes.values()) == totals.claims
    assert_owed(cid, 47, 30)
    assert services.import_file(clinic_id=cid, source=remit_file).status == "duplicate"
    verified(cid)


def test_the_same_file_imported_concurrently_posts_each_claim_once():
    """R1: S3 may deliver an event twice at the same time."""
    cid = clinic()
    claims_file, remit_file, _ = pair(24, seed=53)
    services.import_file(clinic_id=cid, source=claims_file)
    results: list[str] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            results.append(services.import_file(clinic_id=cid, source=remit_file).status)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and "imported" in results
    assert_owed(cid, 53, 24)
    verified(cid)


def test_a_rejected_file_writes_nothing_but_its_record(request_log):
    cid = clinic()
    _, remit_file, _ = pair(10, seed=59)
    assert remit_file.data is not None
    data = remit_file.data
    last_clp = data.rindex(b"CLP*")
    paid_at = data.index(b"*", data.index(b"*", data.index(b"*", last_clp + 4) + 1) + 1) + 1
    bad = data[:paid_at] + b"12x4" + data[data.index(b"*", paid_at):]
    request_log.reset()
    result = services.import_file(clinic_id=cid, source=Source(data=bad, name="bad.835"))
    assert result.status == "rejected" and result.error is not None
    assert result.error["segment_id"] == "CLP" and result.error["message"] == "CLP04 is not a decimal amount"
    writes = {op: n for op, n in request_log.operations.items() if op in ("PutItem", "TransactWriteItems",
                                                                          "UpdateItem", "BatchWriteItem")}
    assert writes == {"PutItem": 1}  # the import record
    assert guarantors(cid) == {}
    with clinic_scope(cid):
        assert list(Item.query(keys.claim_refs_pk(cid))) == []
    record = selectors.import_get(clinic_id=cid, sha256=result.sha256)
    assert record.status == "rejected" and record.error == result.error


def test_forwarded_claims_hold_patient_responsibility_with_insurance():
    """CLP02=19: paid as primary and forwarded; PR waits for the secondary (§2.3)."""
    cid = clinic()
    claims_file, remit_file, _ = pair(6, seed=61)
    services.import_file(clinic_id=cid, source=claims_file)
    assert remit_file.data is not None
    forwarded = remit_file.data.replace(b"*1*", b"*19*")  # every CLP02 1 -> 19 (no other element is "1" alone)
    clp_count = forwarded.count(b"CLP*")
    assert forwarded.count(b"*19*") >= clp_count - 1
    result = services.import_file(clinic_id=cid, source=Source(data=forwarded, name="forwarded.835"))
    assert result.status == "imported"
    for gid in guarantors(cid).values():
        figures = ledger_selectors.guarantor_figures(clinic_id=cid, guarantor_id=gid)
        assert figures.balances.current_balance == 0
    assert selectors.notices_due(clinic_id=cid) == []
    verified(cid)


def test_line_matching_uses_ref_6r_then_procedure_and_date():
    cid = clinic()
    claims_file, remit_file, _ = pair(30, seed=67)
    services.import_file(clinic_id=cid, source=claims_file)
    result = services.import_file(clinic_id=cid, source=remit_file)
    assert Counter(result.outcomes)["posted"] >= 25
    claims = list(generator.claims(67, 30))
    assert any(not ln.control_in_835 for c in claims for ln in c.lines)  # some lines have no REF*6R
    with clinic_scope(cid):
        records = [r for r in ImportItem.gsi1.query(keys.imports_gsi1pk(cid)) if isinstance(r, ImportItem)]
    assert {r.status for r in records} == {"imported"}
    review = selectors.review_list(clinic_id=cid)
    assert not any("unmatched" in r.review for r in review)  # every claim found its 837 claim
    verified(cid)


def test_fuzzy_match_by_patient_date_and_procedure_is_flagged_for_confirmation():
    """A payer that mangles CLP01 still pays the right visit: patient name + day + procedure."""
    cid = clinic()
    claims_file, remit_file, _ = pair(5, seed=71)
    services.import_file(clinic_id=cid, source=claims_file)
    assert remit_file.data is not None
    mangled = remit_file.data.replace(b"CLP*PCN71", b"CLP*ZZ71")
    result = services.import_file(clinic_id=cid, source=Source(data=mangled, name="mangled.835"))
    assert result.status == "imported"
    review = selectors.review_list(clinic_id=cid)
    assert any("patient, date and procedure" in r.review for r in review)
    assert not any("unmatched" in r.review for r in review)
    verified(cid)


def test_resume_refuses_a_file_never_started():
    with pytest.raises(InvalidInput):
        services.import_resume(clinic_id=clinic(), source=Source(data=b"ISA*", name="x"))


def test_generated_835_streams_without_holding_claims():
    out = io.StringIO()
    totals = generator.write_835(out, claims=50, seed=2)
    assert out.getvalue().count("CLP*") == totals.claims
