"""Pure payment rules: amounts from the browser, the amount a choice means, and auto-post.

No storage here, so each rule is tested on its own. Money is integer cents.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from enum import StrEnum

from chalicelib.accounts.selectors import ServiceLine
from chalicelib.core.errors import InvalidAmount
from chalicelib.core.money import require_positive_cents
from chalicelib.ledger.accounts import PAT_OPEN
from chalicelib.ledger.selectors import Balances
from chalicelib.payments.errors import PaymentInProgress, PaymentNotAllowed
from chalicelib.tenants.groups import GroupSettings

#: The largest single payment taken online ($100,000.00): a sanity bound on typed amounts.
MAX_PAYMENT_CENTS = 10_000_000
_AMOUNT = re.compile(r"^\d{1,7}(\.\d{1,2})?$")
METHODS = frozenset({"card", "apple_pay", "google_pay"})
WALLETS = frozenset({"apple_pay", "google_pay"})


class AmountChoice(StrEnum):
    """The three amount choices of REFERENCE-PORTAL.md C1."""

    CURRENT_BALANCE = "current_balance"
    AMOUNT_DUE = "amount_due"
    OTHER = "other"


def amount_parse(values: Sequence[str] | str, *, field: str = "amount") -> int:
    """Parse the amount a browser sent (``"40"``, ``"40.5"``, ``"40.50"``) into cents.

    SECURITY.md R29: refuses negative, zero-padded exponents (``1e9``), ``NaN``, fractions of a
    cent, more than one value (HTTP parameter pollution) and anything not plain decimal.
    Raises InvalidAmount naming the field.
    """
    if not isinstance(values, str):
        if len(values) != 1:
            raise InvalidAmount(f"{field} must be given exactly once")
        values = values[0]
    text = values.strip().removeprefix("$").replace(",", "")
    if not _AMOUNT.match(text):
        raise InvalidAmount(f"{field} must be a plain amount such as 40.00")
    whole, _, frac = text.partition(".")
    return int(whole) * 100 + int((frac + "00")[:2])


def currency_check(currency: str | None) -> None:
    """Only USD is taken; any other currency the browser sends is refused (R29)."""
    if currency not in (None, "", "USD", "usd"):
        raise InvalidAmount("only payments in US dollars are accepted")


def amount_resolve(*, choice: AmountChoice, requested_cents: int | None, balances: Balances,
                   settings: GroupSettings, held_cents: int) -> int:
    """The amount to charge for ``choice``, computed on the server (R29).

    Current Balance and Amount Due come from the ledger, whatever the browser sent. Other
    Amount must be at least the group's minimum (default $1.00) and at most the Current
    Balance unless the group allows prepayment (the excess then lands in escrow). Amounts
    already held by payments in flight are not available again (R31): raises
    PaymentInProgress. Raises PaymentNotAllowed with the reason otherwise.
    """
    if choice is AmountChoice.CURRENT_BALANCE:
        cents = balances.current_balance
    elif choice is AmountChoice.AMOUNT_DUE:
        cents = balances.amount_due
    else:
        if requested_cents is None or isinstance(requested_cents, bool) or not isinstance(requested_cents, int):
            raise PaymentNotAllowed("enter the amount to pay")
        cents = require_positive_cents(requested_cents, field="amount")
        if cents < settings.minimum_payment_cents:
            raise PaymentNotAllowed(
                f"the smallest payment accepted is ${settings.minimum_payment_cents // 100}."
                f"{settings.minimum_payment_cents % 100:02d}")
    if cents <= 0:
        raise PaymentNotAllowed("there is no balance to pay")
    if cents > MAX_PAYMENT_CENTS:
        raise PaymentNotAllowed("the amount is larger than a single online payment allows")
    if settings.prepayment_allowed:
        return cents
    if cents > balances.current_balance:
        raise PaymentNotAllowed("the amount is more than the current balance")
    if cents > balances.current_balance - held_cents:
        raise PaymentInProgress("a payment of this balance is already in progress; "
                                "please wait a minute before paying again")
    return cents


def method_check(*, method: str, settings: GroupSettings, wallets_supported: bool, split: bool) -> None:
    """Card needs *Enable Credit Card Transactions*; Apple Pay and Google Pay need the group's
    option and a processor with wallets, and are never offered on a split payment (D1-D3, C6)."""
    if method not in METHODS:
        raise PaymentNotAllowed(f"payment method must be one of {sorted(METHODS)}")
    if method == "card" and not settings.cards:
        raise PaymentNotAllowed("card payments are not enabled")
    if method in WALLETS:
        if split:
            raise PaymentNotAllowed("wallets are not available when a payment is split")
        if not wallets_supported or not getattr(settings, method):
            raise PaymentNotAllowed(f"{method.replace('_', ' ')} is not enabled")


def wallets_offered(*, settings: GroupSettings, wallets_supported: bool, split: bool,
                    user_agent: str) -> list[str]:
    """The wallets a pay page may show: Apple Pay only on Safari on an Apple device (D2)."""
    if split or not wallets_supported:
        return []
    out = []
    ua = user_agent or ""
    apple_device = any(t in ua for t in ("iPhone", "iPad", "Macintosh"))
    safari = "Safari" in ua and not any(t in ua for t in ("Chrome", "CriOS", "Firefox", "FxiOS", "Edg"))
    if settings.apple_pay and apple_device and safari:
        out.append("apple_pay")
    if settings.google_pay:
        out.append("google_pay")
    return out


def held_cents(holds: Mapping[str, Mapping[str, int]], *, now_epoch: int, except_key: str | None = None) -> int:
    """Sum of live holds (not expired), leaving out ``except_key`` and its split children."""
    total = 0
    for key, hold in holds.items():
        if except_key and (key == except_key or key.startswith(f"{except_key}.")):
            continue
        if int(hold.get("u", 0)) > now_epoch:
            total += int(hold.get("c", 0))
    return total


def auto_post_plan(*, amount_cents: int, lines: Sequence[ServiceLine], auto_post: bool,
                   copay_cents: int = 0, part_key: str | None = None) -> dict[str, int]:
    """Service line id -> cents to apply from a receipt (REFERENCE-PORTAL.md E4).

    Oldest first by responsibility date, else date of service (``lines`` come in that order
    from ``service_lines_list``); lines in collections are skipped; never more than a line's
    open patient balance, so no credit is created and the rest stays in escrow. Blocked (all to
    escrow for staff) when the group has auto-post off or the receipt carries a copay amount.
    ``part_key`` (``facility:<id>`` / ``provider:<id>``) keeps a split payment to its part.
    """
    if not auto_post or copay_cents > 0 or amount_cents <= 0:
        return {}
    left = amount_cents
    plan: dict[str, int] = {}
    for line in lines:
        if left <= 0:
            break
        if line.in_collections or not _in_part(line, part_key):
            continue
        take = min(left, line.money.get(PAT_OPEN, 0))
        if take > 0:
            plan[line.line_id] = take
            left -= take
    return plan


def part_of(line: ServiceLine, mode: str) -> str | None:
    """The split part of a line: ``facility:<id>`` or ``provider:<id>`` (None when unknown)."""
    if mode == "facility" and line.facility_id:
        return f"facility:{line.facility_id}"
    if mode == "provider" and line.rendering_provider_id:
        return f"provider:{line.rendering_provider_id}"
    return None


def _in_part(line: ServiceLine, part_key: str | None) -> bool:
    if part_key is None:
        return True
    mode = part_key.split(":", 1)[0]
    return part_of(line, mode) == part_key
