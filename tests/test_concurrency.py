"""Real threads against DynamoDB Local: no lost update, one posting per business fact."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from chalicelib.accounts import services as accounts
from chalicelib.core.errors import AlreadyPosted, ConcurrentPosting
from chalicelib.ledger import selectors as ledger_selectors
from chalicelib.ledger.verify import ledger_verify
from tests import factories

pytestmark = pytest.mark.usefixtures("dynamodb_endpoint")


def _pay(f: factories.Family, key: str, cents: int) -> str:
    """Post like an SQS consumer would: a busy guarantor is redelivered, the same key again."""
    for _ in range(30):
        try:
            accounts.patient_payment_post(clinic_id=f.clinic_id, guarantor_id=f.guarantor_id, amount_cents=cents,
                                          applications={}, source_key=key)
            return "posted"
        except AlreadyPosted:
            return "duplicate"
        except ConcurrentPosting:
            continue
    return "gave up"


def test_twenty_threads_posting_to_one_guarantor_lose_no_update():
    f = factories.family()
    with ThreadPoolExecutor(max_workers=20) as pool:
        outcomes = list(pool.map(lambda i: _pay(f, f"receipt:{i}", 100 + i), range(20)))
    assert outcomes == ["posted"] * 20
    figures = ledger_selectors.guarantor_figures(clinic_id=f.clinic_id, guarantor_id=f.guarantor_id)
    assert figures.balances.unapplied_funds == sum(100 + i for i in range(20))
    assert figures.last_seq == 20
    assert ledger_verify(clinic_id=f.clinic_id).ok


def test_fifty_threads_posting_one_fact_post_it_once():
    f = factories.family()
    with ThreadPoolExecutor(max_workers=50) as pool:
        outcomes = list(pool.map(lambda _: _pay(f, "receipt:same", 1_000), range(50)))
    assert outcomes.count("posted") == 1
    assert outcomes.count("duplicate") == 49
    figures = ledger_selectors.guarantor_figures(clinic_id=f.clinic_id, guarantor_id=f.guarantor_id)
    assert (figures.balances.unapplied_funds, figures.last_seq) == (1_000, 1)
    assert ledger_verify(clinic_id=f.clinic_id).ok


def test_guarantors_of_one_clinic_do_not_contend():
    clinic = factories.clinic()
    families = [factories.family(clinic) for _ in range(10)]
    with ThreadPoolExecutor(max_workers=10) as pool:
        outcomes = list(pool.map(lambda f: _pay(f, "receipt:1", 500), families))
    assert outcomes == ["posted"] * 10
    assert ledger_verify(clinic_id=clinic).balances_checked == 10
