"""Statement profiles (PRODUCT.md §4, REFERENCE-PORTAL.md §3.2, H1, K1): validated settings.

A profile decides, for the guarantors and lines it applies to: one statement per guarantor or
per patient (which also decides the account number), whether it holds balances back, the cycle
days between statements, the pay link printed on paper (none / URL / QR / URL and QR) and the
portal group it opens, the billing office and remit address, the payment rules that move the
dunning count, the due date, and the reminder schedule the notifications package reads.

Stored per clinic as JSON on :class:`chalicelib.store.models_statements.StatementProfileItem`.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from functools import lru_cache
from typing import Any

from chalicelib.core.errors import InvalidInput
from chalicelib.core.ids import require_id

ONE_PER = ("guarantor", "patient")
PAY_LINKS = ("none", "url", "qr", "url_and_qr")
DUNNING_ACTIONS = ("reset", "decrement")
ADDRESS_FIELDS = ("line1", "line2", "city", "state", "postal_code")


@dataclass(frozen=True)
class Address:
    """A postal address; ``line1`` of the remit address becomes "Make check payable to"."""

    line1: str = ""
    line2: str = ""
    city: str = ""
    state: str = ""
    postal_code: str = ""

    @property
    def complete(self) -> bool:
        """A line, a city and a postal code: enough for the post office."""
        return bool(self.line1.strip() and self.city.strip() and self.postal_code.strip())

    def lines(self) -> list[str]:
        """Printable lines (empty ones dropped)."""
        city = " ".join(x for x in (f"{self.city}," if self.city else "", self.state, self.postal_code) if x)
        return [x for x in (self.line1, self.line2, city.strip(" ,")) if x.strip()]


@dataclass(frozen=True)
class BillingOffice:
    """Billing-office details printed on the statement (K1): hours, phone, fax, email, return
    and remit addresses, and free contact text."""

    name: str = ""
    hours_1: str = ""
    hours_2: str = ""
    phone: str = ""
    fax: str = ""
    email: str = ""
    return_address: Address = field(default_factory=Address)
    remit_address: Address = field(default_factory=Address)
    contact_info: str = ""


@dataclass(frozen=True)
class PaymentRule:
    """A payment since the last statement of at least ``min_cents`` or ``min_percent`` of that
    statement's balance moves the dunning count: ``reset`` to 0 or ``decrement`` by one
    (REFERENCE-PORTAL.md K1 "Payment Rules", K2). Zero thresholds are ignored."""

    min_cents: int = 0
    min_percent: int = 0
    action: str = "reset"


@dataclass(frozen=True)
class StatementProfile:
    """One statement profile. Money in integer cents; days are whole days.

    ``one_statement_per``: ``guarantor`` (account number = guarantor id) or ``patient``
    (account number = patient id). ``hold``: a hold profile; lines it covers are not billed.
    ``cycle_days``: minimum days between statements to one guarantor. ``due_days``: due date =
    statement date + due_days. ``pay_link``: what is printed (none / url / qr / url_and_qr);
    ``group_id``: the portal group the link opens (required unless ``pay_link`` is none).
    ``runs``: statements are produced by Frontdesk's statement runs (off when the practice
    management system prints them and only asks for pay codes). ``notification_schedule_id``:
    the reminder schedule (notifications package). ``minimum_cents``: balances below it are
    not billed.
    """

    profile_id: str
    description: str = ""
    one_statement_per: str = "guarantor"
    is_default: bool = False
    hold: bool = False
    cycle_days: int = 28
    due_days: int = 21
    minimum_cents: int = 100
    pay_link: str = "url_and_qr"
    group_id: str | None = None
    runs: bool = True
    billing_office: BillingOffice = field(default_factory=BillingOffice)
    payment_rules: tuple[PaymentRule, ...] = ()
    notification_schedule_id: str = "default"

    @property
    def prints_qr(self) -> bool:
        return self.pay_link in ("qr", "url_and_qr")

    @property
    def prints_url(self) -> bool:
        return self.pay_link in ("url", "url_and_qr")

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)


def _build(cls: type, data: dict[str, Any], where: str) -> Any:
    if not isinstance(data, dict):
        raise InvalidInput(f"{where} must be an object")
    names = {f.name for f in fields(cls)}
    unknown = set(data) - names
    if unknown:
        raise InvalidInput(f"{where}: unknown settings {sorted(unknown)}")
    values: dict[str, Any] = {}
    for name, value in data.items():
        if name in ("return_address", "remit_address"):
            value = _build(Address, value, f"{where}.{name}")
        elif name == "billing_office":
            value = _build(BillingOffice, value, f"{where}.billing_office")
        elif name == "payment_rules":
            if not isinstance(value, list | tuple):
                raise InvalidInput(f"{where}.payment_rules must be a list")
            value = tuple(_build(PaymentRule, r, f"{where}.payment_rules[{i}]") for i, r in enumerate(value))
        values[name] = value
    return cls(**values)


def _int(value: object, where: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise InvalidInput(f"{where} must be a whole number from {low} to {high}")
    return value


def profile_parse(data: dict[str, Any]) -> StatementProfile:
    """Validate a profile mapping (as stored, or from staff) and return it.

    Raises InvalidInput naming the first bad setting: unknown keys, a ``one_statement_per`` or
    ``pay_link`` outside its choices, days out of range (cycle 0-365, due 0-120), negative
    money, a pay link without a group, a rule without a threshold, non-text office fields.
    """
    p: StatementProfile = _build(StatementProfile, data, "profile")
    require_id(p.profile_id, field="profile.profile_id")
    if p.one_statement_per not in ONE_PER:
        raise InvalidInput(f"profile.one_statement_per must be one of {ONE_PER}")
    if p.pay_link not in PAY_LINKS:
        raise InvalidInput(f"profile.pay_link must be one of {PAY_LINKS}")
    _int(p.cycle_days, "profile.cycle_days", 0, 365)
    _int(p.due_days, "profile.due_days", 0, 120)
    _int(p.minimum_cents, "profile.minimum_cents", 0, 10_000_00)
    if p.pay_link != "none":
        if not p.group_id:
            raise InvalidInput("profile.group_id is required when a pay link is printed")
    if p.group_id is not None:
        require_id(p.group_id, field="profile.group_id")
    require_id(p.notification_schedule_id, field="profile.notification_schedule_id")
    for name in ("is_default", "hold", "runs"):
        if not isinstance(getattr(p, name), bool):
            raise InvalidInput(f"profile.{name} must be true or false")
    if not isinstance(p.description, str) or len(p.description) > 200:
        raise InvalidInput("profile.description must be text of at most 200 characters")
    office = p.billing_office
    for f in fields(BillingOffice):
        value = getattr(office, f.name)
        if isinstance(value, Address):
            for a in ADDRESS_FIELDS:
                if not isinstance(getattr(value, a), str) or len(getattr(value, a)) > 100:
                    raise InvalidInput(f"profile.billing_office.{f.name}.{a} must be text of at most 100 characters")
        elif not isinstance(value, str) or len(value) > 200:
            raise InvalidInput(f"profile.billing_office.{f.name} must be text of at most 200 characters")
    for i, rule in enumerate(p.payment_rules):
        _int(rule.min_cents, f"profile.payment_rules[{i}].min_cents", 0, 10_000_000_00)
        _int(rule.min_percent, f"profile.payment_rules[{i}].min_percent", 0, 100)
        if not rule.min_cents and not rule.min_percent:
            raise InvalidInput(f"profile.payment_rules[{i}] needs min_cents or min_percent")
        if rule.action not in DUNNING_ACTIONS:
            raise InvalidInput(f"profile.payment_rules[{i}].action must be one of {DUNNING_ACTIONS}")
    return p


@lru_cache(maxsize=256)
def profile_load(text: str) -> StatementProfile:
    """A stored profile (validated when saved); cached by its JSON text."""
    return profile_parse(json.loads(text))


def dunning_next(profile: StatementProfile, *, current: int, paid_since_cents: int,
                 last_statement_cents: int) -> int:
    """The dunning count after a new statement (REFERENCE-PORTAL.md K1, K2).

    First the payment rules: a payment since the last statement (``paid_since_cents``) that
    reaches a rule's ``min_cents`` or ``min_percent`` of ``last_statement_cents`` resets the count
    to 0 or moves it back by one (the first matching rule, in profile order; floor 0). Then the
    new statement adds one.
    """
    count = max(0, current)
    for rule in profile.payment_rules:
        by_amount = rule.min_cents > 0 and paid_since_cents >= rule.min_cents
        by_share = (rule.min_percent > 0 and last_statement_cents > 0
                    and paid_since_cents * 100 >= rule.min_percent * last_statement_cents)
        if by_amount or by_share:
            count = 0 if rule.action == "reset" else max(0, count - 1)
            break
    return count + 1
