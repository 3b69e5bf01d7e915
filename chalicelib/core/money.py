"""Money as integer cents (DESIGN.md "Rules that keep money right" 1).

Amounts are ``int`` cents everywhere inside Frontdesk. Decimals are parsed only at the edges
(files, forms) by :func:`parse_cents`, which refuses fractions of a cent instead of rounding.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from chalicelib.core.errors import InvalidAmount

CURRENCY = "USD"
#: No amount Frontdesk handles reaches a trillion dollars; larger input is an error, not money.
MAX_DOLLARS = Decimal(10) ** 12


def require_cents(value: object, *, field: str = "amount_cents") -> int:
    """Return ``value`` if it is an ``int`` (not a bool); else raise :class:`InvalidAmount`."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidAmount(f"{field} must be integer cents, got {type(value).__name__}")
    return value


def require_positive_cents(value: object, *, field: str = "amount_cents") -> int:
    """Return ``value`` if it is integer cents greater than zero; else raise InvalidAmount.

    PRODUCT.md §2 "Bad input": zero and negative amounts are domain errors.
    """
    cents = require_cents(value, field=field)
    if cents <= 0:
        raise InvalidAmount(f"{field} must be greater than zero, got {cents}")
    return cents


def parse_cents(text: str, *, field: str = "amount") -> int:
    """Parse a decimal amount such as ``"125.5"`` or ``"-3.00"`` into integer cents.

    Raises InvalidAmount for anything that is not a finite ASCII decimal with at most two
    places and under a trillion dollars (a huge exponent such as ``1e999999`` included).
    """
    raw = text.strip()
    if not raw.isascii() or "_" in raw:  # Decimal also reads other scripts' digits and 1_000
        raise InvalidAmount(f"{field}: {raw[:40]!r} is not a decimal amount")
    try:
        value = Decimal(raw)
        if not value.is_finite():
            raise InvalidAmount(f"{field}: {raw[:40]!r} is not a finite amount")
        if abs(value) >= MAX_DOLLARS:
            raise InvalidAmount(f"{field}: {raw[:40]!r} is out of range")
        cents = value * 100
        if cents != cents.to_integral_value():
            raise InvalidAmount(f"{field}: {raw[:40]!r} has fractions of a cent")
    except (ArithmeticError, ValueError):  # decimal.InvalidOperation, Overflow (1e999999)
        raise InvalidAmount(f"{field}: {raw[:40]!r} is not a decimal amount") from None
    return int(cents)


def format_cents(cents: int) -> str:
    """Format cents as dollars for people: ``12345 -> "$123.45"``, ``-5 -> "-$0.05"``."""
    sign = "-" if cents < 0 else ""
    whole, frac = divmod(abs(cents), 100)
    return f"{sign}${whole:,}.{frac:02d}"


def allocate(total_cents: int, weights: list[int]) -> list[int]:
    """Split ``total_cents`` in proportion to non-negative ``weights``; the parts sum exactly.

    Remainder cents go to the largest fractional shares first, ties to the earlier weight, so
    the result is deterministic (STYLE.md 3.3). Raises InvalidAmount if all weights are zero.
    """
    if not weights or sum(weights) <= 0 or any(w < 0 for w in weights):
        raise InvalidAmount("allocation needs non-negative weights with a positive sum")
    whole = sum(weights)
    shares = [total_cents * w // whole for w in weights]
    rests = sorted(range(len(weights)), key=lambda i: (-(total_cents * weights[i] % whole), i))
    for i in rests[: total_cents - sum(shares)]:
        shares[i] += 1
    return shares


@dataclass(frozen=True, slots=True)
class Money:
    """An amount in integer cents with its ISO 4217 currency (only USD is used today)."""

    cents: int
    currency: str = CURRENCY

    def __post_init__(self) -> None:
        require_cents(self.cents, field="cents")

    def __add__(self, other: Money) -> Money:
        self._same_currency(other)
        return Money(self.cents + other.cents, self.currency)

    def __sub__(self, other: Money) -> Money:
        self._same_currency(other)
        return Money(self.cents - other.cents, self.currency)

    def __str__(self) -> str:
        return format_cents(self.cents)

    def _same_currency(self, other: Money) -> None:
        if other.currency != self.currency:
            raise InvalidAmount(f"cannot combine {self.currency} with {other.currency}")
