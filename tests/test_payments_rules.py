"""Pure payment rules: amounts from the browser (R29), the amount choices, auto-post (E4),
methods and wallets (D1-D3), the transition tables, and the card-number scanner (R1, R2, R6)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chalicelib.accounts.selectors import ServiceLine
from chalicelib.core.errors import InvalidAmount
from chalicelib.ledger.selectors import Balances
from chalicelib.payments import rules
from chalicelib.payments.errors import PaymentInProgress, PaymentNotAllowed, ProcessorRejected
from chalicelib.payments.processors.base import check_metadata, find_pans, luhn_ok
from chalicelib.payments.processors.sandbox import TEST_CARDS
from chalicelib.payments.states import (
    ATTEMPT_TRANSITIONS,
    BATCH_TRANSITIONS,
    REFUND_TRANSITIONS,
    AttemptStatus,
)
from chalicelib.tenants.groups import GroupSettings


def bal(current: int = 10_000, due: int = 4_000) -> Balances:
    return Balances(statement_balance=due, amount_due=due, current_balance=current, unapplied_funds=0,
                    collections_balance=0, credit_on_account=0, has_statement=True)


def line(line_id: str, open_cents: int, dos: str, collections: int = 0, facility: str = "f1") -> ServiceLine:
    money = {"pat_open": open_cents} | ({"collections": collections} if collections else {})
    return ServiceLine(line_id=line_id, encounter_number=line_id, line_number=1, patient_id="p", facility_id=facility,
                       rendering_provider_id="prv", date_of_service=dos, responsibility_date=None,
                       procedure_code="99213", modifiers=(), units=1, money=money)


@pytest.mark.parametrize("text,cents", [("40", 4_000), ("40.5", 4_050), ("40.05", 4_005), ("$1,200.00", 120_000),
                                        (["12.34"], 1_234)])
def test_browser_amounts_parse_to_cents(text, cents):
    assert rules.amount_parse(text) == cents


@pytest.mark.parametrize("text", ["-5", "0.001", "1e9", "NaN", "Infinity", "", "12.", "0x10", "1 000", "+5",
                                  ["5", "4"], []])
def test_tampered_amounts_are_refused(text):
    """R29: negative, fractional cents, exponents, NaN and parameter pollution (amount=5&amount=4)."""
    with pytest.raises(InvalidAmount):
        rules.amount_parse(text)


@given(st.text(max_size=12))
def test_any_string_is_either_refused_or_exact_cents(text):
    try:
        cents = rules.amount_parse(text)
    except InvalidAmount:
        return
    assert isinstance(cents, int) and cents >= 0
    assert rules.amount_parse(f"{cents // 100}.{cents % 100:02d}") == cents


def test_only_dollars_are_taken():
    rules.currency_check("USD")
    with pytest.raises(InvalidAmount):
        rules.currency_check("JPY")


def test_choices_take_the_amount_from_the_ledger_not_the_browser():
    s = GroupSettings()
    assert rules.amount_resolve(choice=rules.AmountChoice.CURRENT_BALANCE, requested_cents=1, balances=bal(),
                                settings=s, held_cents=0) == 10_000
    assert rules.amount_resolve(choice=rules.AmountChoice.AMOUNT_DUE, requested_cents=99_999, balances=bal(),
                                settings=s, held_cents=0) == 4_000


def test_other_amount_minimum_balance_and_prepayment():
    s = GroupSettings()
    assert rules.amount_resolve(choice=rules.AmountChoice.OTHER, requested_cents=100, balances=bal(), settings=s,
                                held_cents=0) == 100
    with pytest.raises(PaymentNotAllowed, match=r"smallest payment accepted is \$1\.00"):
        rules.amount_resolve(choice=rules.AmountChoice.OTHER, requested_cents=1, balances=bal(), settings=s,
                             held_cents=0)
    with pytest.raises(PaymentNotAllowed, match="more than the current balance"):
        rules.amount_resolve(choice=rules.AmountChoice.OTHER, requested_cents=10_001, balances=bal(), settings=s,
                             held_cents=0)
    prepay = GroupSettings(prepayment_allowed=True)
    assert rules.amount_resolve(choice=rules.AmountChoice.OTHER, requested_cents=50_000, balances=bal(current=0),
                                settings=prepay, held_cents=0) == 50_000
    with pytest.raises(PaymentNotAllowed, match="no balance"):
        rules.amount_resolve(choice=rules.AmountChoice.CURRENT_BALANCE, requested_cents=None,
                             balances=bal(current=0), settings=s, held_cents=0)


def test_held_amounts_are_not_payable_twice():
    """R31: what a payment in flight holds is not available to a second tab."""
    with pytest.raises(PaymentInProgress):
        rules.amount_resolve(choice=rules.AmountChoice.CURRENT_BALANCE, requested_cents=None, balances=bal(),
                             settings=GroupSettings(), held_cents=10_000)
    holds = {"a": {"c": 500, "u": 200}, "b": {"c": 700, "u": 50}, "k": {"c": 900, "u": 200}, "k.1": {"c": 1, "u": 200}}
    assert rules.held_cents(holds, now_epoch=100, except_key="k") == 500


def test_auto_post_is_oldest_first_skips_collections_and_never_credits():
    lines = [line("old", 2_000, "2026-01-01"), line("coll", 3_000, "2026-02-01", collections=3_000),
             line("mid", 1_500, "2026-03-01"), line("new", 4_000, "2026-04-01")]
    assert rules.auto_post_plan(amount_cents=3_000, lines=lines, auto_post=True) == {"old": 2_000, "mid": 1_000}
    assert rules.auto_post_plan(amount_cents=99_000, lines=lines, auto_post=True) == {
        "old": 2_000, "mid": 1_500, "new": 4_000}  # the rest stays in escrow: no credit
    assert rules.auto_post_plan(amount_cents=3_000, lines=lines, auto_post=False) == {}
    assert rules.auto_post_plan(amount_cents=3_000, lines=lines, auto_post=True, copay_cents=2_000) == {}
    split = [line("a", 1_000, "2026-01-01", facility="f1"), line("b", 1_000, "2026-01-02", facility="f2")]
    assert rules.auto_post_plan(amount_cents=1_000, lines=split, auto_post=True, part_key="facility:f2") == {"b": 1_000}


def test_wallets_need_the_group_the_processor_and_no_split():
    s = GroupSettings(apple_pay=True, google_pay=True)
    rules.method_check(method="apple_pay", settings=s, wallets_supported=True, split=False)
    with pytest.raises(PaymentNotAllowed):
        rules.method_check(method="apple_pay", settings=s, wallets_supported=True, split=True)
    with pytest.raises(PaymentNotAllowed):
        rules.method_check(method="google_pay", settings=GroupSettings(), wallets_supported=True, split=False)
    with pytest.raises(PaymentNotAllowed):
        rules.method_check(method="bitcoin", settings=s, wallets_supported=True, split=False)
    safari = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605 Version/17.0 Mobile Safari/604.1"
    chrome = "Mozilla/5.0 (Windows NT 10.0) AppleWebKit/537.36 Chrome/120.0 Safari/537.36"
    assert rules.wallets_offered(settings=s, wallets_supported=True, split=False, user_agent=safari) == [
        "apple_pay", "google_pay"]
    assert rules.wallets_offered(settings=s, wallets_supported=True, split=False, user_agent=chrome) == ["google_pay"]
    assert rules.wallets_offered(settings=s, wallets_supported=True, split=True, user_agent=safari) == []


def test_attempt_transition_table_is_a_forward_only_graph():
    """Every state is listed; terminal states lead nowhere; nothing goes back to created."""
    assert set(ATTEMPT_TRANSITIONS) == set(AttemptStatus)
    for old, news in ATTEMPT_TRANSITIONS.items():
        assert AttemptStatus.CREATED not in news, old
    for terminal in (AttemptStatus.FAILED, AttemptStatus.CANCELED, AttemptStatus.REFUNDED):
        assert ATTEMPT_TRANSITIONS[terminal] == frozenset()
    assert AttemptStatus.SUCCEEDED not in ATTEMPT_TRANSITIONS[AttemptStatus.CREATED]
    for table in (REFUND_TRANSITIONS, BATCH_TRANSITIONS):
        for news in table.values():
            assert news <= set(table)


def test_test_cards_are_luhn_valid_and_the_scanner_finds_them():
    assert all(luhn_ok(n) for n in TEST_CARDS)
    assert find_pans("card_number=4242424242424242&cvc=123") == ["4242424242424242"]
    assert find_pans("attempt 123e4567-e89b-12d3-a456-426614174000 ref sbx_0011223344556677") == []
    assert find_pans("v1=4f8f7847157266293d3a") == []  # digits inside a hex signature are not a card


def test_processor_metadata_carries_opaque_ids_only():
    """R6: only allow-listed id keys; nothing that looks like a CPT or ICD code."""
    assert check_metadata({"clinic_id": "c_1", "attempt_key": "k"}) == {"clinic_id": "c_1", "attempt_key": "k"}
    with pytest.raises(ProcessorRejected):
        check_metadata({"patient_name": "Jane Doe"})
    with pytest.raises(ProcessorRejected):
        check_metadata({"receipt_id": "99213"})
