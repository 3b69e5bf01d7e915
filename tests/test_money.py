"""Amounts parsed at the edges (files, forms) become integer cents or a clear error."""

from __future__ import annotations

import pytest

from chalicelib.core.errors import InvalidAmount
from chalicelib.core.money import allocate, format_cents, parse_cents


@pytest.mark.parametrize(("text", "cents"), [("125.5", 12_550), ("-3.00", -300), (" 42 ", 4_200), (".5", 50),
                                             ("1E+1", 1_000), ("0", 0)])
def test_decimals_become_cents(text, cents):
    assert parse_cents(text) == cents


@pytest.mark.parametrize("text", ["1e999999", "-1e999999", "9" * 5_000, "1_0", "٤٢", "NaN", "Infinity", "abc",
                                  "0.001", "", "1e12"])
def test_anything_else_is_a_clear_error_never_a_crash(text):
    """Regression: ``1e999999`` raised decimal.Overflow (an HTTP 500 from the pay form)."""
    with pytest.raises(InvalidAmount):
        parse_cents(text)


def test_format_and_allocate():
    assert (format_cents(123_456), format_cents(-5)) == ("$1,234.56", "-$0.05")
    assert allocate(100, [1, 1, 1]) == [34, 33, 33] and sum(allocate(1_001, [3, 7])) == 1_001
