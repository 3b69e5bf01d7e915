"""Message templates per template id, channel and language (English, Spanish), their mappable
fields, a preview with sample data, and the GSM-7 measure used by the SMS lint (R13).

Files under ``templates/``: ``sms/<lang>.txt`` (one block per template), ``email/<lang>.txt``
(blocks ``<template>_subject`` and ``<template>_text``) and ``email/layout.html``, the HTML part
built from the text's paragraphs with autoescape on (a value can never inject markup). Every
body names the practice; SMS bodies carry the practice name, an amount at most and the pay
link, never names of people, procedures, providers or diagnoses (PRODUCT.md §8, SECURITY.md).
Rendering uses StrictUndefined: a missing field is an error, never a blank.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from functools import lru_cache
from pathlib import Path
from typing import Any

import jinja2

from chalicelib.core.errors import InvalidInput

LANGUAGES = ("en", "es")
_DIR = Path(__file__).resolve().parent / "templates"

#: GSM 03.38 basic character set (one septet each) and its extension table (two septets).
GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM7_EXTENDED = frozenset("^{}\\[~]|€\f")
SMS_SEGMENT = 160


@dataclass(frozen=True)
class TemplateSpec:
    """A template: the channels it exists for, its mappable fields, and its email class
    (every template here is ``transactional``; commercial ones would need the CAN-SPAM parts
    of SECURITY.md R44)."""

    template: str
    channels: tuple[str, ...]
    fields: tuple[str, ...]
    email_class: str = "transactional"


_COMMON = ("practice_name", "practice_phone")
_BALANCE = (*_COMMON, "guarantor_name", "amount_due", "due_date", "pay_link")
_PLAN = (*_COMMON, "guarantor_name", "plan_amount", "charge_date")

TEMPLATES: dict[str, TemplateSpec] = {
    spec.template: spec
    for spec in (
        TemplateSpec("balance", ("email", "sms"), _BALANCE),
        TemplateSpec("reminder", ("email", "sms"), (*_BALANCE, "when", "final_notice")),
        TemplateSpec("on_demand", ("email", "sms"), _BALANCE),
        TemplateSpec("receipt", ("email",), (*_COMMON, "guarantor_name", "receipt_number", "account_number",
                                            "paid_on", "transaction_number", "card_brand", "card_last4",
                                            "amount_paid")),
        TemplateSpec("code", ("email", "sms"), (*_COMMON, "code", "code_minutes")),
        TemplateSpec("contact_changed", ("email", "sms"), _COMMON),
        TemplateSpec("plan_upcoming", ("email", "sms"), _PLAN),
        TemplateSpec("plan_processed", ("email", "sms"), _PLAN),
        TemplateSpec("plan_failed", ("email", "sms"), _PLAN),
        TemplateSpec("consent_confirm", ("sms",), _COMMON),
        TemplateSpec("help", ("sms",), _COMMON),
        TemplateSpec("stop_confirm", ("sms",), _COMMON),
    )
}

#: Sample values for previews (PRODUCT.md §8 "a preview").
SAMPLE: dict[str, Any] = {
    "practice_name": "Riverside Family Medicine", "practice_phone": "(555) 555-0100",
    "guarantor_name": "Jane", "amount_due": "$125.40", "due_date": "12/15/2026",
    "pay_link": "https://pay.example.org/l/c_0123456789abcdef.sample", "when": "before",
    "final_notice": False, "receipt_number": "R-000123", "account_number": "A-100234",
    "paid_on": "11/30/2026", "transaction_number": "txn_0123456789", "card_brand": "Visa",
    "card_last4": "4242", "amount_paid": "$125.40", "code": "123456", "code_minutes": 10,
    "plan_amount": "$50.00", "charge_date": "12/01/2026",
}

#: The longest realistic values an SMS is rendered with by the lint (R13): a 24-character
#: practice name (settings.SMS_NAME_MAX), $99,999.99, a portal URL of up to 26 characters and a
#: link token as links issues it (a generated clinic id, '.', 43 characters), a 14-character
#: phone number.
LONGEST: dict[str, Any] = {
    **SAMPLE,
    "practice_name": "W" * 24, "practice_phone": "(555) 555-0100", "amount_due": "$99,999.99",
    "plan_amount": "$99,999.99", "charge_date": "12/31/2026", "code": "999999", "code_minutes": 10,
    "pay_link": "https://pay.frontdesk.care" + "/l/" + "c_" + "f" * 16 + "." + "A" * 43,
}


def gsm7_length(text: str) -> int | None:
    """Septets ``text`` takes in GSM-7, or ``None`` if a character needs UCS-2."""
    total = 0
    for ch in text:
        if ch in GSM7_BASIC:
            total += 1
        elif ch in GSM7_EXTENDED:
            total += 2
        else:
            return None
    return total


def sms_segments(text: str) -> int:
    """Message parts an SMS takes (GSM-7: 160 / 153 per part; UCS-2: 70 / 67)."""
    septets = gsm7_length(text)
    if septets is None:
        units = len(text.encode("utf-16-le")) // 2
        return 1 if units <= 70 else -(-units // 67)
    return 1 if septets <= SMS_SEGMENT else -(-septets // 153)


@lru_cache(maxsize=1)
def _env() -> jinja2.Environment:
    """One environment, compiled templates cached (module scope holds compiled templates only)."""
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(_DIR)),
        autoescape=jinja2.select_autoescape(enabled_extensions=("html",), default_for_string=False,
                                            default=False),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=False,
    )


def _block(path: str, block: str, fields: Mapping[str, Any]) -> str:
    template = _env().get_template(path)
    try:
        render = template.blocks[block]
    except KeyError:
        raise InvalidInput(f"no template {block!r} in {path}") from None
    return "".join(render(template.new_context(dict(fields)))).strip()


@dataclass(frozen=True)
class Rendered:
    """A rendered message: ``subject`` and ``html`` for email only; ``text`` always."""

    subject: str | None
    text: str
    html: str | None


def _paragraphs(text: str, link: str | None) -> list[list[list[tuple[str, str | None]]]]:
    out = []
    for block in text.split("\n\n"):
        lines = []
        for line in block.split("\n"):
            if link and link in line:
                before, _, after = line.partition(link)
                lines.append([(before, None), (link, link), (after, None)])
            else:
                lines.append([(line, None)])
        out.append(lines)
    return out


def render(template: str, channel: str, language: str, fields: Mapping[str, Any]) -> Rendered:
    """Render ``template`` for ``channel`` in ``language`` (unknown languages fall back to
    English). Raises InvalidInput for an unknown template/channel, jinja2's UndefinedError for
    a missing field."""
    spec = TEMPLATES.get(template)
    if spec is None or channel not in spec.channels:
        raise InvalidInput(f"no {channel} template {template!r}")
    lang = language if language in LANGUAGES else "en"
    if channel == "sms":
        return Rendered(None, _block(f"sms/{lang}.txt", template, fields), None)
    subject = _block(f"email/{lang}.txt", f"{template}_subject", fields)
    text = _block(f"email/{lang}.txt", f"{template}_text", fields)
    link = fields.get("pay_link")
    html = _env().get_template("email/layout.html").render(
        subject=subject, language=lang, practice_name=fields["practice_name"],
        practice_phone=fields.get("practice_phone"), paragraphs=_paragraphs(text, link if link else None))
    return Rendered(subject, text, html)


def preview(template: str, channel: str, language: str, fields: Mapping[str, Any] | None = None) -> Rendered:
    """Render with :data:`SAMPLE` values, overridden by ``fields`` (a staff preview)."""
    return render(template, channel, language, {**SAMPLE, **(fields or {})})


def format_date(value: str | date, language: str) -> str:
    """``MM/DD/YYYY`` in English, ``DD/MM/YYYY`` in Spanish."""
    day = value if isinstance(value, date) else date.fromisoformat(value)
    return day.strftime("%d/%m/%Y" if language == "es" else "%m/%d/%Y")


def sms_practice_name(name: str) -> str:
    """A practice name fit for SMS: GSM-7 characters only (accents folded where GSM-7 lacks
    them) and at most 24 characters, cut at a word boundary."""
    import unicodedata

    out = []
    for ch in name.strip():
        if gsm7_length(ch) == 1:
            out.append(ch)
            continue
        folded = "".join(c for c in unicodedata.normalize("NFKD", ch) if not unicodedata.combining(c))
        out.append(folded if folded and gsm7_length(folded) == len(folded) else "")
    text = " ".join("".join(out).split())
    if len(text) <= 24:
        return text or "Your clinic"
    cut = text[:24].rsplit(" ", 1)[0]
    return cut if len(cut) >= 8 else text[:24]
