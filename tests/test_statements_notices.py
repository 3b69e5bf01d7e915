"""A run statement's notifications (PRODUCT.md §1.3, §8): the balance notification and the
reminders are written in the statement's own snapshot transaction (no read of the profile or
the statement after it), built with the dunning count that transaction writes, handed to the
worker once, and written right after the snapshot when they would not fit in its 100 items."""

from __future__ import annotations

from typing import Any

import pytest

from chalicelib.ledger import services as ledger_services
from chalicelib.notify import queue as notify_queue
from chalicelib.notify import selectors as notify_selectors
from chalicelib.notify import services as notify_services
from chalicelib.statements import selectors as st_selectors
from chalicelib.statements import services as statements
from chalicelib.store import keys
from chalicelib.store.db import clinic_scope
from chalicelib.store.models import GuarantorItem
from tests import notify_support as ns
from tests import statements_fixtures as sf
from tests.statements_fixtures import statements_env  # noqa: F401 (fixture)

pytestmark = pytest.mark.usefixtures("dynamodb_endpoint", "statements_env")

MOBILE = "+12175550123"


@pytest.fixture
def console(tmp_path):
    with ns.console(tmp_path / "outbox"):
        yield


def outbox(f) -> list[notify_selectors.MessageView]:
    return notify_selectors.outbox_list(clinic_id=f.clinic_id, guarantor_id=f.guarantor_id)


def handed_to_worker(clinic_id: str) -> list[dict[str, Any]]:
    return [b for b in notify_queue.LOCAL if b.get("op") == "send" and b.get("clinic_id") == clinic_id]


def dunning(f) -> int:
    with clinic_scope(f.clinic_id):
        return int(GuarantorItem.get(keys.guarantor_pk(f.clinic_id, f.guarantor_id), keys.PROFILE).dunning_count)


def run(clinic_id: str, day: str) -> st_selectors.RunView:
    item = statements.statement_run_start(clinic_id=clinic_id, run_date=day)
    return st_selectors.statement_run_get(clinic_id=clinic_id, run_id=item.run_id)


def the_statement(f) -> st_selectors.StatementRow:
    [row] = st_selectors.statement_history(clinic_id=f.clinic_id, guarantor_id=f.guarantor_id)
    return row


@pytest.mark.usefixtures("console")
def test_a_statement_and_its_notifications_are_one_read_and_one_transaction(request_log, monkeypatch):
    c = sf.Clock()
    cid, _ = sf.clinic()
    families = [sf.family(cid, mobile=MOBILE) for _ in range(3)]  # an address, an email and a mobile
    for f in families:
        sf.owes(f, 1_000)
    per_guarantor = sf.requests_per_guarantor(monkeypatch, request_log)
    request_log.reset()
    assert run(cid, c.today).statements_created == 3
    # After the first guarantor (which reads the page's link group, reminder schedule and the
    # clinic's notification context once): the account read and one transaction holding the
    # statement, its links and its messages (the snapshot uses the balance the page read). No
    # profile, statement or balance re-read, no write of the messages' own.
    assert per_guarantor[1:] == [{"Query": 1, "TransactWriteItems": 1}] * 2
    assert request_log.operations["TransactWriteItems"] == 3 + 1  # the statements and the page's close
    for f in families:
        rows = outbox(f)
        assert sorted(r.channel for r in rows if r.kind == "balance") == ["email", "sms"]
        assert sorted(r.rule_id or "" for r in rows if r.kind == "reminder") == [
            "after-14-sms", "after-7-email", "before-3-email", "on-sms"]
        assert {r.statement_id for r in rows} == {the_statement(f).statement_id}
        assert {r.status for r in rows} == {"queued"}
    # Each balance notification goes to the worker at once, once; reminders wait for their time.
    work = handed_to_worker(cid)
    assert len(work) == 6 and len({b["message_id"] for b in work}) == 6


@pytest.mark.usefixtures("console")
def test_reminders_follow_the_dunning_count_the_statement_writes():
    """The profile read before the snapshot holds the old count: the reminders must use the new
    one (the final notice of the default schedule is for a count of 2 and up)."""
    c = sf.Clock()
    cid, _ = sf.clinic(cycle_days=28)
    f = sf.family(cid)
    sf.owes(f, 4_000)
    statements.statement_run_start(clinic_id=cid, run_date=c.today)
    first = the_statement(f).statement_id
    assert dunning(f) == 1
    assert sorted(r.rule_id or "" for r in outbox(f) if r.kind == "reminder") == ["after-7-email", "before-3-email"]
    c.move(days=28)
    statements.statement_run_start(clinic_id=cid, run_date=c.today)
    assert dunning(f) == 2
    second = [r for r in outbox(f) if r.statement_id != first]
    assert sorted(r.rule_id or "" for r in second if r.kind == "reminder") == [
        "after-30-final", "after-7-email", "before-3-email"]
    assert [r.kind for r in second].count("balance") == 1


@pytest.mark.usefixtures("console")
def test_a_resumed_statement_keeps_the_reminders_of_the_count_it_was_issued_with():
    """Breaker finding: a resumed page re-queued an issued statement's messages with the
    profile's dunning count at resume time; a count raised since (here by hand, as a pushed
    statement would) added the final notice's reminder to the old statement."""
    c = sf.Clock()
    cid, _ = sf.clinic(cycle_days=28)
    f = sf.family(cid)
    sf.owes(f, 4_000)
    statements.statement_run_start(clinic_id=cid, run_date=c.today)
    first = the_statement(f).statement_id
    before = sorted(r.rule_id or "" for r in outbox(f) if r.kind == "reminder")
    assert before == ["after-7-email", "before-3-email"]
    with clinic_scope(cid):
        GuarantorItem(keys.guarantor_pk(cid, f.guarantor_id), keys.PROFILE).update(
            actions=[GuarantorItem.dunning_count.set(2)])
    again = notify_services.statement_notifications_queue(clinic_id=cid, guarantor_id=f.guarantor_id,
                                                          statement_id=first)
    assert not any(q.created for q in again)
    assert sorted(r.rule_id or "" for r in outbox(f) if r.kind == "reminder") == before


@pytest.mark.usefixtures("console")
def test_a_snapshot_that_loses_a_race_leaves_no_messages_and_the_retry_uses_the_new_count(monkeypatch):
    """Another writer moves the dunning count between the account read and the snapshot: the
    snapshot (statement, messages and all) is refused, the guarantor is read again, and the one
    statement issued carries messages built from the count it wrote."""
    c = sf.Clock()
    cid, _ = sf.clinic()
    f = sf.family(cid)
    sf.owes(f, 2_000)
    real = ledger_services.statement_snapshot
    tried: list[str] = []

    def racing(**kw):
        if not tried:
            with clinic_scope(cid):
                GuarantorItem(keys.guarantor_pk(cid, f.guarantor_id), keys.PROFILE).update(
                    actions=[GuarantorItem.dunning_count.set(3)])
        tried.append(kw["statement"].statement_id)
        return real(**kw)

    monkeypatch.setattr(ledger_services, "statement_snapshot", racing)
    view = run(cid, c.today)
    assert view.statements_created == 1 and len(tried) == 2
    assert the_statement(f).statement_id == tried[1] and dunning(f) == 4
    rows = outbox(f)
    assert {r.statement_id for r in rows} == {tried[1]}  # nothing of the refused statement
    assert "after-30-final" in {r.rule_id for r in rows}  # built for a count of 4, not 1
    assert [b["message_id"] for b in handed_to_worker(cid)] == [r.message_id for r in rows if r.kind == "balance"]


@pytest.mark.usefixtures("console")
@pytest.mark.parametrize(("rules", "transactions"), [(91, 1), (92, 2)])
def test_messages_that_would_not_fit_the_snapshot_are_written_right_after_it(rules, transactions, request_log):
    """A statement's snapshot holds 8 items (statement, marker, dunning count, reference,
    verification lookup, two links, balance): 92 messages fill it to DynamoDB's 100; one more
    and the messages go in their own transaction after it. Either way each is queued once."""
    c = sf.Clock()
    cid, _ = sf.clinic()
    notify_services.reminder_schedule_set(clinic_id=cid, rules=[
        {"rule_id": f"d{n}", "when": "after", "days": n, "time_of_day": "10:00", "channel": "email"}
        for n in range(1, rules + 1)])
    f = sf.family(cid)  # email only
    sf.owes(f, 1_000)
    request_log.reset()
    assert run(cid, c.today).statements_created == 1
    assert request_log.operations["TransactWriteItems"] == transactions + 1  # and the page's close
    rows = outbox(f)
    assert len(rows) == rules + 1 and {r.statement_id for r in rows} == {the_statement(f).statement_id}
    assert [r.kind for r in rows].count("balance") == 1 and len(handed_to_worker(cid)) == 1
    statements.statement_run_continue(clinic_id=cid, run_id=c.today)  # the run again: nothing new
    assert len(outbox(f)) == rules + 1 and len(handed_to_worker(cid)) == 1


# --- concurrency and resumes (review) ----------------------------------------------------------------


@pytest.mark.usefixtures("console")
def test_a_run_started_twice_at_once_makes_one_statement_and_one_set_of_messages_each():
    import threading

    c = sf.Clock()
    cid, _ = sf.clinic()
    families = [sf.family(cid, mobile=MOBILE) for _ in range(4)]
    for f in families:
        sf.owes(f, 1_000)
    errors: list[BaseException] = []
    barrier = threading.Barrier(2)

    def start():
        barrier.wait()
        try:
            statements.statement_run_start(clinic_id=cid, run_date=c.today)
        except BaseException as exc:  # the test reads them below
            errors.append(exc)

    threads = [threading.Thread(target=start) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:  # a start that lost a race may ask to be retried; the run is joined, not doubled
        statements.statement_run_continue(clinic_id=cid, run_id=c.today)
    for f in families:
        sid = the_statement(f).statement_id
        rows = outbox(f)
        assert {r.statement_id for r in rows} == {sid}
        assert len(rows) == 6 and [r.kind for r in rows].count("balance") == 2
    work = handed_to_worker(cid)
    assert len(work) == len({b["message_id"] for b in work}) == 8


@pytest.mark.usefixtures("console")
def test_a_page_that_crashed_after_some_statements_resumes_without_a_second_message(monkeypatch):
    c = sf.Clock()
    cid, _ = sf.clinic()
    families = [sf.family(cid, mobile=MOBILE) for _ in range(3)]
    for f in families:
        sf.owes(f, 1_000)
    real = statements._bill_guarantor
    calls = [0]

    def crashing(*args, **kwargs):
        out = real(*args, **kwargs)
        calls[0] += 1
        if calls[0] == 2:
            raise RuntimeError("worker killed after the second guarantor's snapshot")
        return out

    monkeypatch.setattr(statements, "PAGE_THREADS", 1)
    monkeypatch.setattr(statements, "_bill_guarantor", crashing)
    with pytest.raises(RuntimeError):
        statements.statement_run_start(clinic_id=cid, run_date=c.today)
    monkeypatch.setattr(statements, "_bill_guarantor", real)
    c.move(hours=1)
    statements.statement_run_continue(clinic_id=cid, run_id=c.today)
    for f in families:
        rows = outbox(f)
        assert {r.statement_id for r in rows} == {the_statement(f).statement_id}
        assert len(rows) == 6
    work = handed_to_worker(cid)
    assert len(work) == len({b["message_id"] for b in work})


@pytest.mark.usefixtures("console")
def test_a_stale_page_balance_read_does_not_write_messages_for_a_refused_snapshot(monkeypatch):
    """A payment posts between the page's balance read and the snapshot: the snapshot with the
    page's read is refused, the guarantor is read again, and the messages are the new statement's
    only, built with the dunning count written."""
    c = sf.Clock()
    cid, _ = sf.clinic()
    f = sf.family(cid, mobile=MOBILE)
    sf.owes(f, 2_000)
    real = statements.account_read
    done = [False]

    def paying(clinic_id, guarantor_id, balance=None, marker=None):
        if not done[0]:
            done[0] = True
            sf.pay(f, 500)
        return real(clinic_id, guarantor_id, balance, marker)

    monkeypatch.setattr(statements, "account_read", paying)
    assert run(cid, c.today).statements_created == 1
    st = the_statement(f)
    rows = outbox(f)
    assert {r.statement_id for r in rows} == {st.statement_id} and len(rows) == 6
    assert dunning(f) == 1
