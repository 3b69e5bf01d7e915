"""Group settings of PRODUCT.md §7 / REFERENCE-PORTAL.md §3.1, validated, with a contrast check.

The contrast check is WCAG 2.2's relative-luminance ratio (a dozen lines of arithmetic, so
written here rather than adding a dependency): text on background and surface must reach 4.5:1.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field, fields
from functools import lru_cache
from typing import Any

from chalicelib.core.errors import InvalidInput

_HEX = re.compile(r"^#[0-9a-fA-F]{6}$")
LANDING_PAGES = ("home", "account", "pay")
LOGOUT_MODES = ("close", "logout", "none")
SPLIT_MODES = ("none", "facility", "provider")


@dataclass(frozen=True)
class Theme:
    """Theme colours as ``#rrggbb``; ``dark`` switches text to light on dark surfaces."""

    background: str = "#ffffff"
    surface: str = "#f5f7fa"
    primary: str = "#0b5cad"
    secondary: str = "#4a5568"
    accent: str = "#8a4b08"
    info: str = "#0b5cad"
    success: str = "#1e6b35"
    error: str = "#b00020"
    warning: str = "#8a5a00"
    dark: bool = False


@dataclass(frozen=True)
class LinkLifetimes:
    """Payment link lifetimes in minutes (PRODUCT.md §6 defaults)."""

    email_text: int = 60 * 24 * 60
    statement_qr: int = 365 * 24 * 60
    office_qr: int = 15


@dataclass(frozen=True)
class GroupSettings:
    """Every group setting; money in cents. Unknown keys are refused when parsing."""

    favicon_url: str | None = None
    logo_url: str | None = None
    home_image_url: str | None = None
    theme: Theme = field(default_factory=Theme)
    footer_email: str | None = None
    footer_phone: str | None = None
    footer_text: str | None = None
    account_dashboard: bool = True
    include_new_charges: bool = False
    landing_page: str = "home"
    logout_mode: str = "logout"
    show_collections: bool = True
    show_current_balance: bool = True
    show_escrow: bool = True
    cards: bool = True
    apple_pay: bool = False
    google_pay: bool = False
    stored_cards: bool = False
    require_cvv: bool = True
    auto_post: bool = True
    email_receipts: bool = True
    split_payments: str = "none"
    appointments: bool = False
    direct_scheduling: bool = False
    editable_profile_fields: tuple[str, ...] = ("preferred_name", "email", "mobile")
    link_lifetimes: LinkLifetimes = field(default_factory=LinkLifetimes)
    prepayment_allowed: bool = False
    minimum_payment_cents: int = 100

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)


def _luminance(hex_colour: str) -> float:
    def channel(v: int) -> float:
        s = v / 255
        return s / 12.92 if s <= 0.04045 else ((s + 0.055) / 1.055) ** 2.4

    r, g, b = (int(hex_colour[i:i + 2], 16) for i in (1, 3, 5))
    return 0.2126 * channel(r) + 0.7152 * channel(g) + 0.0722 * channel(b)


def contrast_ratio(a: str, b: str) -> float:
    """WCAG 2.2 contrast ratio between two ``#rrggbb`` colours (1.0 to 21.0)."""
    la, lb = sorted((_luminance(a), _luminance(b)), reverse=True)
    return (la + 0.05) / (lb + 0.05)


def contrast_problems(theme: Theme) -> list[str]:
    """Pairs below WCAG AA 4.5:1 for normal text: body text and each status colour as text."""
    text = "#ffffff" if theme.dark else "#1a202c"
    problems = []
    for bg_name in ("background", "surface"):
        bg = getattr(theme, bg_name)
        if contrast_ratio(text, bg) < 4.5:
            problems.append(f"text on {bg_name} is below 4.5:1")
        for fg_name in ("primary", "error", "success", "warning", "info"):
            if contrast_ratio(getattr(theme, fg_name), bg) < 4.5:
                problems.append(f"{fg_name} on {bg_name} is below 4.5:1")
    if contrast_ratio("#ffffff", theme.primary) < 4.5:
        problems.append("button text on primary is below 4.5:1")
    return problems


def _build(cls: type, data: dict[str, Any], where: str) -> Any:
    names = {f.name: f for f in fields(cls)}
    unknown = set(data) - set(names)
    if unknown:
        raise InvalidInput(f"{where}: unknown settings {sorted(unknown)}")
    values = {}
    for name, value in data.items():
        if name == "theme":
            value = _build(Theme, value, f"{where}.theme")
        elif name == "link_lifetimes":
            value = _build(LinkLifetimes, value, f"{where}.link_lifetimes")
        elif name == "editable_profile_fields":
            value = tuple(value)
        values[name] = value
    return cls(**values)


def settings_parse(data: dict[str, Any]) -> GroupSettings:
    """Validate a settings mapping; raise InvalidInput naming the first bad setting."""
    s: GroupSettings = _build(GroupSettings, data, "group")
    for name in ("background", "surface", "primary", "secondary", "accent", "info", "success",
                 "error", "warning"):
        if not _HEX.match(getattr(s.theme, name)):
            raise InvalidInput(f"group.theme.{name} must be a colour like #0b5cad")
    if s.landing_page not in LANDING_PAGES:
        raise InvalidInput(f"group.landing_page must be one of {LANDING_PAGES}")
    if s.logout_mode not in LOGOUT_MODES:
        raise InvalidInput(f"group.logout_mode must be one of {LOGOUT_MODES}")
    if s.split_payments not in SPLIT_MODES:
        raise InvalidInput(f"group.split_payments must be one of {SPLIT_MODES}")
    if isinstance(s.minimum_payment_cents, bool) or not isinstance(s.minimum_payment_cents, int) \
            or s.minimum_payment_cents < 1:
        raise InvalidInput("group.minimum_payment_cents must be a positive integer")
    for name in ("email_text", "statement_qr", "office_qr"):
        minutes = getattr(s.link_lifetimes, name)
        if not isinstance(minutes, int) or minutes < 1:
            raise InvalidInput(f"group.link_lifetimes.{name} must be positive minutes")
    problems = contrast_problems(s.theme)
    if problems:
        raise InvalidInput("group.theme contrast: " + "; ".join(problems))
    return s


@lru_cache(maxsize=256)
def settings_load(text: str) -> GroupSettings:
    """Read stored settings JSON (validated when saved). Cached by the JSON text itself, so a
    changed group is read afresh and an unchanged one costs no re-validation per page view."""
    return settings_parse(json.loads(text))
