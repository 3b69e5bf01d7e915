"""Statement runs (PRODUCT.md §4, REFERENCE-PORTAL.md K1, K2, J6): selection by balance, cycle
days and hold; per-guarantor and per-patient statements; the dunning count in the snapshot's
transaction; no address; a run started twice; the portal-URL check; resuming a run."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from chalicelib.accounts import services as accounts
from chalicelib.core import config
from chalicelib.core.errors import InvalidInput
from chalicelib.ledger import selectors as ledger_selectors
from chalicelib.ledger.verify import ledger_verify
from chalicelib.statements import selectors as st_selectors
from chalicelib.statements import services as statements
from chalicelib.store import keys
from chalicelib.store.db import clinic_scope
from chalicelib.store.models import GuarantorItem
from chalicelib.store.models_statements import StatementRecordItem, StatementRunMarkerItem, StatementRunPageItem
from tests import statements_fixtures as sf
from tests.statements_fixtures import statements_env  # noqa: F401 (fixture)

pytestmark = pytest.mark.usefixtures("dynamodb_endpoint", "statements_env")


def run(clinic_id: str, day: str) -> st_selectors.RunView:
    item = statements.statement_run_start(clinic_id=clinic_id, run_date=day)
    return st_selectors.statement_run_get(clinic_id=clinic_id, run_id=item.run_id)


def history(f):
    return st_selectors.statement_history(clinic_id=f.clinic_id, guarantor_id=f.guarantor_id)


def balances(f):
    return ledger_selectors.guarantor_figures(clinic_id=f.clinic_id, guarantor_id=f.guarantor_id).balances


def dunning(f) -> int:
    with clinic_scope(f.clinic_id):
        return int(GuarantorItem.get(keys.guarantor_pk(f.clinic_id, f.guarantor_id), keys.PROFILE).dunning_count)


def verified(clinic_id: str) -> None:
    report = ledger_verify(clinic_id=clinic_id)
    assert report.ok, report.mismatches


def test_run_bills_guarantors_with_a_balance_and_figures_match_the_ledger():
    c = sf.Clock()
    cid, _ = sf.clinic()
    owing, paid_up, nothing = sf.family(cid), sf.family(cid), sf.family(cid)
    sf.owes(owing, 6_000)
    sf.owes(owing, 1_500)
    lid = sf.owes(paid_up, 2_000)
    sf.pay(paid_up, 2_000, {lid: 2_000})
    view = run(cid, c.today)
    assert (view.status, view.guarantors_billed, view.statements_created) == ("done", 1, 1)
    assert view.skipped == {"no_balance": 2} and view.errors == ()
    [row] = history(owing)
    b = balances(owing)
    assert (row.statement_balance, row.amount_due) == (b.statement_balance, b.amount_due) == (7_500, 7_500)
    assert row.account_balance == 7_500 and row.account_number == owing.guarantor_id
    assert (row.new_cents, row.previously_billed_cents) == (7_500, 0)
    assert row.due_date == "2026-11-23" and row.latest and not row.paid
    assert (row.delivery_channel, row.delivery_status) == ("paper", "not_yet_mailed")
    assert len(row.verification_code or "") == 9 and row.pdf_available
    assert [x["status"] for x in row.lines] == ["new", "new"]
    assert dunning(owing) == 1 and dunning(nothing) == 0
    assert history(nothing) == [] and history(paid_up) == []
    verified(cid)


def test_cycle_days_and_previously_billed_lines_and_dunning_rules():
    c = sf.Clock()
    cid, _ = sf.clinic(cycle_days=28, payment_rules=[{"min_percent": 50, "action": "reset"},
                                                      {"min_cents": 1_000, "action": "decrement"}])
    f = sf.family(cid)
    old = sf.owes(f, 4_000)
    assert run(cid, c.today).statements_created == 1
    new = sf.owes(f, 3_000, dos="2026-11-10")
    c.move(days=27)
    assert run(cid, c.today).skipped == {"cycle_days": 1}  # 27 days after: too soon
    c.move(days=1)
    assert run(cid, c.today).statements_created == 1  # 28 days after the first
    latest, first = history(f)
    assert {x["line_id"]: x["status"] for x in latest.lines} == {old: "previously_billed", new: "new"}
    assert (latest.previously_billed_cents, latest.new_cents) == (4_000, 3_000)
    assert dunning(f) == 2 and latest.latest and not first.latest
    # A payment of 1,500 (< 50 % of 7,000, >= 1,000) moves the count back by one before the new statement.
    sf.pay(f, 1_500, {old: 1_500})
    c.move(days=28)
    run(cid, c.today)
    assert dunning(f) == 2
    # A payment of half the statement resets it: the next statement is the first again.
    sf.pay(f, 2_750, {old: 2_500, new: 250})
    c.move(days=28)
    run(cid, c.today)
    assert dunning(f) == 1
    verified(cid)


def test_hold_at_patient_visit_and_provider_level():
    c = sf.Clock()
    cid, _ = sf.clinic()
    statements.statement_profile_save(clinic_id=cid, profile=sf.profile(cid, None, profile_id="hold", hold=True,
                                                                          is_default=False, pay_link="none"))
    whole = sf.family(cid)
    sf.owes(whole, 5_000)
    statements.statement_profile_assign(clinic_id=cid, profile_id="hold", guarantor_id=whole.guarantor_id,
                                        patient_id=whole.patient_id)
    partial = sf.family(cid)
    held_line = sf.owes(partial, 2_000, encounter="HOLDME")
    kept = sf.owes(partial, 3_000)
    statements.statement_profile_assign(clinic_id=cid, profile_id="hold", guarantor_id=partial.guarantor_id,
                                        encounter_number="HOLDME")
    by_provider = sf.family(cid)
    sf.owes(by_provider, 4_000, encounter="PRVHOLD")
    statements.statement_profile_assign(clinic_id=cid, profile_id="hold", provider_id=by_provider.provider_id)
    view = run(cid, c.today)
    assert view.skipped == {"hold": 2} and view.statements_created == 1
    [row] = history(partial)
    assert [x["line_id"] for x in row.lines] == [kept] and held_line not in str(row.lines)
    b = balances(partial)
    assert (row.statement_balance, b.statement_balance, b.amount_due, b.current_balance) == (3_000, 3_000, 3_000, 5_000)
    # Releasing the visit (a non-hold profile on the encounter) beats the provider hold.
    statements.statement_profile_assign(clinic_id=cid, profile_id="std", guarantor_id=by_provider.guarantor_id,
                                        encounter_number="PRVHOLD")
    c.move(days=1)
    view = run(cid, c.today)
    assert view.statements_created == 1 and view.skipped == {"hold": 1, "cycle_days": 1}
    assert [r.account_balance for r in history(by_provider)] == [4_000]
    verified(cid)


def test_per_patient_statements_use_patient_account_numbers_and_parts():
    c = sf.Clock()
    cid, _ = sf.clinic(one_statement_per="patient")
    f = sf.family(cid, patients=2)
    kid = f"{f.patient_id}-1"
    sf.owes(f, 2_500)
    sf.owes(f, 1_000, patient_id=kid)
    sf.owes(f, 500, patient_id=kid)
    sf.pay(f, 300)  # unapplied: guarantor-level, not on a patient's part
    assert run(cid, c.today).statements_created == 2
    rows = {r.account_number: r for r in history(f)}
    assert set(rows) == {f.patient_id, kid}
    b = balances(f)
    parts = ledger_selectors.guarantor_figures(clinic_id=f.clinic_id, guarantor_id=f.guarantor_id).parts
    for patient, row in rows.items():
        assert (row.statement_balance, row.amount_due) == (b.statement_balance, b.amount_due) == (3_700, 3_700)
        assert row.account_kind == "patient" and row.latest and not row.paid
        assert row.account_balance == sum(p.statement_balance for p in parts if p.patient_id == patient)
    assert (rows[f.patient_id].account_balance, rows[kid].account_balance) == (2_500, 1_500)
    assert dunning(f) == 1  # one run, one dunning step, however many accounts
    verified(cid)


def test_guarantor_without_address_gets_an_error_not_a_crash():
    c = sf.Clock()
    cid, _ = sf.clinic()
    lost, paperless, fine = (sf.family(cid, address=None), sf.family(cid, address=None, consent={"email": True}),
                             sf.family(cid))
    for f in (lost, paperless, fine):
        sf.owes(f, 1_000)
    view = run(cid, c.today)
    assert view.errors == ((lost.guarantor_id, "no_address"),)
    assert view.statements_created == 2 and view.status == "done"
    assert history(lost) == [] and dunning(lost) == 0 and balances(lost).statement_balance == 0
    [row] = history(paperless)
    assert (row.delivery_channel, row.delivery_status) == ("electronic", "e_delivered")
    with clinic_scope(cid):
        marker = StatementRunMarkerItem.get(keys.guarantor_pk(cid, lost.guarantor_id),
                                            keys.statement_run_marker_sk(view.run_id))
    assert (marker.status, marker.reason) == ("error", "no_address")


def test_guarantors_with_nothing_open_are_skipped_without_reading_their_accounts(monkeypatch):
    """Most of a clinic's guarantors owe nothing on a run day: their balance (read with the page)
    decides, with the same outcome the account read would give, unless a profile that is not
    billed here could make it ``not_billed_here``."""
    c = sf.Clock()
    cid, _ = sf.clinic()
    owing, paid_up, nothing, credit = (sf.family(cid) for _ in range(4))
    sf.owes(owing, 1_000)
    lid = sf.owes(paid_up, 2_000)
    sf.pay(paid_up, 2_000, {lid: 2_000})
    sf.pay(credit, 500)  # unapplied funds, nothing open
    read: list[str] = []
    real_read = statements.account_read

    def counted(clinic_id, guarantor_id, *args, **kwargs):
        read.append(guarantor_id)
        return real_read(clinic_id, guarantor_id, *args, **kwargs)

    monkeypatch.setattr(statements, "account_read", counted)
    view = run(cid, c.today)
    assert (view.statements_created, view.skipped) == (1, {"no_balance": 3})
    assert read == [owing.guarantor_id]
    # A profile the PM system bills: its guarantors are not_billed_here, so every account is read.
    statements.statement_profile_save(clinic_id=cid, profile=sf.profile(cid, None, profile_id="pm", runs=False,
                                                                          is_default=False, pay_link="none"))
    statements.statement_profile_assign(clinic_id=cid, profile_id="pm", guarantor_id=nothing.guarantor_id)
    read.clear()
    c.move(days=1)
    view = run(cid, c.today)
    assert view.skipped == {"no_balance": 2, "not_billed_here": 1, "cycle_days": 1}
    assert sorted(read) == sorted(f.guarantor_id for f in (owing, paid_up, nothing, credit))


def test_a_run_started_twice_at_once_makes_one_set_of_statements():
    c = sf.Clock()
    cid, _ = sf.clinic()
    families = [sf.family(cid) for _ in range(6)]
    for f in families:
        sf.owes(f, 1_000)
    barrier = threading.Barrier(3)

    def start() -> str:
        barrier.wait()
        return statements.statement_run_start(clinic_id=cid, run_date=c.today).run_id

    with ThreadPoolExecutor(3) as pool:
        run_ids = set(pool.map(lambda _: start(), range(3)))
    assert len(run_ids) == 1
    view = st_selectors.statement_run_get(clinic_id=cid, run_id=run_ids.pop())
    assert (view.status, view.guarantors_billed, view.statements_created, view.pages_done) == ("done", 6, 6, 1)
    assert all(len(history(f)) == 1 and dunning(f) == 1 for f in families)
    assert run(cid, c.today).statements_created == 6  # the same run again: nothing new
    assert all(len(history(f)) == 1 for f in families)
    verified(cid)


def test_a_qr_profile_without_portal_url_fails_the_run_up_front(monkeypatch):
    c = sf.Clock()
    cid, _ = sf.clinic(pay_link="qr")
    f = sf.family(cid)
    sf.owes(f, 1_000)
    monkeypatch.delenv("FRONTDESK_PORTAL_URL")
    config.reset()
    with pytest.raises(InvalidInput, match=r"prints a QR code.*FRONTDESK_PORTAL_URL"):
        statements.statement_run_start(clinic_id=cid, run_date=c.today)
    assert st_selectors.statement_runs_list(clinic_id=cid) == [] and history(f) == []


def test_fan_out_pages_are_idempotent_and_a_crashed_run_resumes(monkeypatch):
    cid, families, sent, run_id = sf.fanned_out_run(monkeypatch, guarantors=5, page_size=2)
    assert [m["page"] for m in sent] == [1, 2, 3]
    assert st_selectors.statement_run_get(clinic_id=cid, run_id=run_id, outcomes=False).status == "processing"
    # A worker dies after billing page 1's guarantors but before closing the page.
    first = sent[0]
    real_commit = statements.Tx.commit
    calls = {"n": 0}

    def crash_on_page_close(self):
        if any(isinstance(i, StatementRunPageItem) for i, *_ in self._updates):
            calls["n"] += 1
            raise RuntimeError("worker crashed")
        return real_commit(self)

    monkeypatch.setattr(statements.Tx, "commit", crash_on_page_close)
    with pytest.raises(RuntimeError):
        statements.statement_run_page(**first)
    monkeypatch.setattr(statements.Tx, "commit", real_commit)
    # SQS redelivers page 1 (twice), page 2 once; page 3's message is lost: continue resends it.
    for body in (first, first, sent[1]):
        statements.statement_run_page(**body)
    resumed = statements.statement_run_continue(clinic_id=cid, run_id=run_id)
    assert resumed.status == "done"
    view = st_selectors.statement_run_get(clinic_id=cid, run_id=run_id)
    assert (view.pages_total, view.pages_done, view.statements_created) == (3, 3, 5)
    assert all(len(history(f)) == 1 and dunning(f) == 1 for f in families)
    with clinic_scope(cid):
        records = [r for f in families for r in StatementRecordItem.query(
            keys.guarantor_pk(cid, f.guarantor_id), StatementRecordItem.sk.startswith(keys.STATEMENT_PREFIX))]
    assert len(records) == 5
    verified(cid)


def test_paid_flag_follows_payments_as_they_arrive():
    c = sf.Clock()
    cid, _ = sf.clinic(cycle_days=0)
    f = sf.family(cid)
    a = sf.owes(f, 4_000)
    run(cid, c.today)
    [first] = history(f)
    assert (first.paid, first.amount_due_now) == (False, 4_000)
    sf.pay(f, 1_000, {a: 1_000})
    [first] = history(f)
    assert (first.paid, first.amount_due_now) == (False, 3_000)
    b = sf.owes(f, 2_000)  # a new charge does not make the latest statement unpaid again once paid
    c.move(days=1)
    run(cid, c.today)
    second, first = history(f)
    assert (second.latest, first.latest, second.amount_due_now, first.paid) == (True, False, 5_000, False)
    sf.pay(f, 3_000, {a: 3_000})  # the first statement's lines are covered
    second, first = history(f)
    assert first.paid and not second.paid and second.amount_due_now == 2_000
    assert st_selectors.statement_history(clinic_id=cid, guarantor_id=f.guarantor_id, hide_paid=True) == [second]
    sf.pay(f, 2_000, {b: 2_000})
    assert all(r.paid for r in history(f))
    assert balances(f).amount_due == 0
    accounts.statement_create(clinic_id=cid, guarantor_id=f.guarantor_id, statement_date="2026-11-05",
                              due_date="2026-11-30")  # a ledger-only statement of nothing is paid
    assert history(f)[0].paid
    verified(cid)


def test_electronic_statements_queue_their_notifications_once_even_when_a_page_is_redone(monkeypatch, tmp_path):
    from chalicelib.notify import queue as notify_queue
    from chalicelib.notify import selectors as notify_selectors
    from chalicelib.statements import queue
    from tests import notify_support as ns

    with ns.console(tmp_path / "outbox"):
        c = sf.Clock()
        cid, _ = sf.clinic()
        paper = sf.family(cid, email=None)
        emailed = sf.family(cid, address=None, consent={"email": True})
        for f in (paper, emailed):
            sf.owes(f, 1_000)
        sent: list[dict] = []
        queue.set_sender(sent.extend)
        try:
            run_id = statements.statement_run_start(clinic_id=cid, run_date=c.today).run_id
        finally:
            queue.set_sender(None)
        [page] = sent
        real_commit = statements.Tx.commit

        def crash_on_page_close(self):
            if any(isinstance(i, StatementRunPageItem) for i, *_ in self._updates):
                raise RuntimeError("worker crashed")
            return real_commit(self)

        monkeypatch.setattr(statements.Tx, "commit", crash_on_page_close)
        with pytest.raises(RuntimeError):
            statements.statement_run_page(**page)  # billed and notified, the page not closed
        monkeypatch.setattr(statements.Tx, "commit", real_commit)
        [statement] = history(emailed)
        rows = notify_selectors.outbox_list(clinic_id=cid, guarantor_id=emailed.guarantor_id)
        kinds = sorted(r.kind for r in rows)
        assert kinds[0] == "balance" and set(kinds) <= {"balance", "reminder"}
        assert {r.channel for r in rows} == {"email"} and {r.statement_id for r in rows} == {statement.statement_id}
        work = [b for b in notify_queue.LOCAL if b.get("op") == "send"]
        assert len(work) == 1  # the balance notice goes to the worker at once; reminders wait
        for _ in range(2):  # SQS redelivers the page, before and after it is closed
            statements.statement_run_page(**page)
        again = notify_selectors.outbox_list(clinic_id=cid, guarantor_id=emailed.guarantor_id)
        assert sorted(r.message_id for r in again) == sorted(r.message_id for r in rows)
        assert [b for b in notify_queue.LOCAL if b.get("op") == "send"] == work
        assert notify_selectors.outbox_list(clinic_id=cid, guarantor_id=paper.guarantor_id) == []  # nothing on file
        assert statement.delivery_channel == "electronic"
        assert st_selectors.statement_run_get(clinic_id=cid, run_id=run_id, outcomes=False).status == "done"


def test_a_statement_is_one_read_and_one_transaction_that_also_stores_its_pay_links(request_log):
    from chalicelib.links import services as links
    from chalicelib.statements import render
    from chalicelib.store.models_links import LinkItem

    c = sf.Clock()
    cid, _ = sf.clinic()
    # No email or mobile on file: the statement's own requests only (a guarantor with contacts
    # adds the notification's, test_a_paper_statement_also_notifies_the_contacts_on_file).
    families = [sf.family(cid, email=None) for _ in range(3)]
    for f in families:
        sf.owes(f, 1_000)
    printed: list = []
    real_pdf = render.statement_pdf

    def keep_doc(doc):
        printed.append(doc)
        return real_pdf(doc)

    render_patch = pytest.MonkeyPatch()
    render_patch.setattr(render, "statement_pdf", keep_doc)
    try:
        per_guarantor = sf.requests_per_guarantor(render_patch, request_log)
        request_log.reset()
        assert run(cid, c.today).statements_created == 3
    finally:
        render_patch.undo()
    # The account read and one transaction (the snapshot uses the balance the page read); the
    # links' group is read once per page (by the first guarantor); no link write of its own
    # (the links ride in the snapshot transaction).
    assert per_guarantor[0] == {"Query": 1, "GetItem": 1, "TransactWriteItems": 1}
    assert per_guarantor[1:] == [{"Query": 1, "TransactWriteItems": 1}] * 2
    assert request_log.operations["TransactWriteItems"] == 3 + 1  # the statements and the page's close
    for f in families:
        with clinic_scope(cid):
            stored = [it for it in LinkItem.gsi1.query(keys.guarantor_links_gsi1pk(cid, f.guarantor_id))]
        assert sorted(it.link_kind for it in stored) == ["statement_qr", "statement_url"]
        [row] = history(f)
        assert {it.statement_id for it in stored} == {row.statement_id}
    for doc in printed:  # the printed URL and the QR code open their own link, for their guarantor
        url, qr = (links.link_resolve(token=u.rsplit("/l/", 1)[1]) for u in (doc.pay_url, doc.qr_url))
        assert (url.kind, qr.kind) == (links.LinkKind.STATEMENT_URL, links.LinkKind.STATEMENT_QR)
        assert url.guarantor_id == qr.guarantor_id == doc.account_number


def test_a_paper_statement_also_notifies_the_contacts_on_file(tmp_path):
    """PRODUCT.md §1.3: the statement's notification goes out at once, paper or electronic."""
    from chalicelib.notify import selectors as notify_selectors
    from tests import notify_support as ns

    with ns.console(tmp_path / "outbox"):
        c = sf.Clock()
        cid, _ = sf.clinic()
        mailed = sf.family(cid, consent={"email": True})  # an address and an email
        sf.owes(mailed, 2_500)
        statements.statement_run_start(clinic_id=cid, run_date=c.today)
        [statement] = st_selectors.statement_history(clinic_id=cid, guarantor_id=mailed.guarantor_id)
        assert statement.delivery_channel == "paper"
        rows = notify_selectors.outbox_list(clinic_id=cid, guarantor_id=mailed.guarantor_id)
        assert "balance" in {r.kind for r in rows} and {r.statement_id for r in rows} == {statement.statement_id}


def test_a_new_balance_from_a_remittance_is_billed_at_once_and_only_once(tmp_path):
    """An import marks the guarantor due a balance notice; the notice step bills them (the run's
    own per-guarantor step), queues the notification, and takes the notice off the index."""
    import io

    from chalicelib.imports import generator
    from chalicelib.imports import services as imports
    from chalicelib.imports.files import Source
    from chalicelib.notify import selectors as notify_selectors
    from tests import notify_support as ns

    with ns.console(tmp_path / "outbox"):
        sf.Clock()
        cid, _ = sf.clinic()
        for name, write in (("r.csv", generator.write_roster), ("c.837", generator.write_837),
                            ("p.835", generator.write_835)):
            buf = io.StringIO()
            write(buf, claims=4, seed=5, families=2)
            imports.import_file(clinic_id=cid, source=Source(data=buf.getvalue().encode(), name=name))
        from chalicelib.imports import selectors as import_selectors

        due = import_selectors.notices_due(clinic_id=cid)
        assert due, "the remittance left patient responsibility"
        counts = statements.balance_notices_bill(clinic_id=cid)
        assert counts.get("created") == len(due)
        assert import_selectors.notices_due(clinic_id=cid) == []
        for notice in due:
            assert len(st_selectors.statement_history(clinic_id=cid, guarantor_id=notice.guarantor_id)) == 1
            kinds = {r.kind for r in notify_selectors.outbox_list(clinic_id=cid, guarantor_id=notice.guarantor_id)}
            assert "balance" in kinds
        assert statements.balance_notices_bill(clinic_id=cid) == {}  # nothing left: nothing billed twice
        assert ledger_verify(clinic_id=cid).ok


def test_statements_print_the_practices_account_number_else_the_guarantor_id():
    """New-user trial: statements showed our ``g_...`` id as "Account number", a number the
    billing office does not know. A roster's guarantor_id is the practice's number: the
    statement record, its PDF, the print manifest, the pay codes and a PM push without a number
    of its own carry it (a pushed number still wins); a guarantor without one keeps our id."""
    import csv
    import io

    from pypdf import PdfReader

    from chalicelib.imports import services as imports
    from chalicelib.imports.files import Source
    from chalicelib.statements import storage
    from chalicelib.store.models import PatientItem
    from tests import factories

    c = sf.Clock()
    cid, _ = sf.clinic()
    plain = sf.family(cid)
    roster = ("guarantor_id,guarantor_first_name,guarantor_last_name,address_line1,city,state,postal_code\n"
              "ACC-1001,Rosa,Banks,12 Elm St,Springfield,IL,62704\n")
    assert imports.import_file(clinic_id=cid, source=Source(data=roster.encode(), name="r.csv")).status == "imported"
    with clinic_scope(cid):
        [banks] = [g for g in GuarantorItem.gsi1.query(keys.guarantors_gsi1pk(cid))
                   if isinstance(g, GuarantorItem) and g.last_name == "Banks"]
        [patient] = PatientItem.query(banks.pk, PatientItem.sk.startswith(keys.PATIENT_PREFIX))
    numbered = factories.Family(cid, banks.guarantor_id, patient.patient_id, plain.facility_id, plain.provider_id)
    for f in (numbered, plain):
        sf.owes(f, 1_000)
    run_id = statements.statement_run_start(clinic_id=cid, run_date=c.today).run_id
    [mine], [theirs] = history(numbered), history(plain)
    assert (mine.account_number, theirs.account_number) == ("ACC-1001", plain.guarantor_id)
    store = storage.storage()
    with clinic_scope(cid):
        record = StatementRecordItem.get(keys.guarantor_pk(cid, numbered.guarantor_id),
                                         keys.statement_sk(mine.statement_id))
    text = PdfReader(io.BytesIO(store.get(str(record.pdf_key)))).pages[0].extract_text()
    assert "ACC-1001" in text and numbered.guarantor_id not in text
    manifest = csv.DictReader(io.StringIO(store.get(storage.print_manifest_key(cid, run_id)).decode()))
    assert {r["guarantor_id"]: r["account_number"] for r in manifest} == {
        numbered.guarantor_id: "ACC-1001", plain.guarantor_id: plain.guarantor_id}
    codes = statements.statement_pay_codes(clinic_id=cid, guarantor_ids=[numbered.guarantor_id, plain.guarantor_id])
    assert [it.account_number for it in codes.items] == ["ACC-1001", plain.guarantor_id]
    by_statement = statements.statement_pay_codes(clinic_id=cid, statement_ids=[mine.statement_id])
    assert by_statement.items[0].account_number == "ACC-1001"
    base = {"guarantor_id": numbered.guarantor_id, "statement_date": c.today, "due_date": "2026-11-30"}
    results = statements.statement_push(clinic_id=cid, statements=[
        {**base, "statement_id": "PM-1"}, {**base, "statement_id": "PM-2", "account_number": "PM-77"}])
    assert [r.status for r in results] == ["created", "created"]
    pushed = {r.statement_id: r.account_number for r in history(numbered)}
    assert (pushed["PM-1"], pushed["PM-2"]) == ("ACC-1001", "PM-77")
