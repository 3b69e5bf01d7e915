"""Template lint and preview (SERVERLESS-PERF-REL.md R13, SECURITY.md R41/R44, PRODUCT.md §8):
every SMS template is GSM-7 and one 160-character segment with the longest realistic values,
names the practice and carries no PHI; every email names the practice and is transactional;
both languages render every template; missing fields fail loudly."""

from __future__ import annotations

import itertools
import re

import jinja2
import pytest

from chalicelib.core.errors import InvalidInput
from chalicelib.notify import templates
from chalicelib.notify.settings import SMS_NAME_MAX, settings_parse

CASES = [(t, c, lang) for t, spec in templates.TEMPLATES.items() for c in spec.channels
         for lang in templates.LANGUAGES]
SMS = [(t, lang) for t, c, lang in CASES if c == "sms"]
VARIANTS = [{"when": w, "final_notice": f} for w, f in itertools.product(("before", "on", "after"), (False, True))]
#: Words an SMS must never carry (no names of people, procedures, providers or diagnoses).
PHI_MARKERS = ("Jane", "99213", "Dr.", "diagnos", "procedure", "provider", "visit")


@pytest.mark.parametrize(("template", "language"), SMS)
def test_every_sms_is_one_gsm7_segment_with_the_longest_values(template, language):
    for variant in VARIANTS:
        text = templates.render(template, "sms", language, {**templates.LONGEST, **variant}).text
        septets = templates.gsm7_length(text)
        assert septets is not None, (template, language, [ch for ch in text if templates.gsm7_length(ch) is None])
        assert septets <= 160, (template, language, septets, text)
        assert templates.sms_segments(text) == 1
        assert text.startswith(templates.LONGEST["practice_name"])  # names the practice first
        assert not any(m.lower() in text.lower() for m in PHI_MARKERS), text
        assert "\n" not in text


@pytest.mark.parametrize(("template", "language"), SMS)
def test_automated_sms_tell_how_to_stop(template, language):
    text = templates.preview(template, "sms", language).text
    if template not in ("code", "help", "stop_confirm"):
        assert "STOP" in text


@pytest.mark.parametrize("language", templates.LANGUAGES)
def test_consent_confirmation_and_help_carry_what_r41_and_r42_require(language):
    confirm = templates.preview("consent_confirm", "sms", language).text
    words = {"en": ("billing alerts", "msgs/mo", "Msg & data rates may apply"),
             "es": ("alertas de cobro", "msjs/mes", "tarifas de msj y datos")}[language]
    for required in (*words, "HELP", "STOP", templates.SAMPLE["practice_name"]):
        assert required in confirm, required
    help_text = templates.preview("help", "sms", language).text
    assert templates.SAMPLE["practice_phone"] in help_text and "STOP" in help_text


@pytest.mark.parametrize(("template", "channel", "language"), [c for c in CASES if c[1] == "email"])
def test_every_email_renders_names_the_practice_and_escapes_values(template, channel, language):
    spec = templates.TEMPLATES[template]
    assert spec.email_class == "transactional"  # R44: no commercial template exists
    hostile = {**templates.SAMPLE, "guarantor_name": "<script>alert(1)</script>",
               "practice_name": "Smith & Sons <Clinic>"}
    rendered = templates.render(template, channel, language, hostile)
    assert rendered.subject and rendered.subject.startswith("Smith & Sons <Clinic>")
    assert rendered.html and "<script>" not in rendered.html and "Smith &amp; Sons &lt;Clinic&gt;" in rendered.html
    assert "Smith & Sons <Clinic>" in rendered.text
    if "pay_link" in spec.fields:
        assert f'href="{templates.SAMPLE["pay_link"]}"' in rendered.html


def test_fields_are_declared_and_missing_ones_fail():
    for name, spec in templates.TEMPLATES.items():
        for channel in spec.channels:
            source = (templates._DIR / channel / "en.txt").read_text()
            suffix = "_text" if channel == "email" else ""
            block = re.search(r"{% block " + name + suffix + r" %}(.*?){% endblock %}", source, re.S)
            assert block, (name, channel)
            used = set(re.findall(r"{{\s*(\w+)", block.group(1))) | set(re.findall(r"{% if (\w+)", block.group(1)))
            assert used <= set(spec.fields), (name, channel, used - set(spec.fields))
    with pytest.raises(jinja2.UndefinedError):
        templates.render("balance", "sms", "en", {"practice_name": "X"})
    with pytest.raises(InvalidInput):
        templates.render("receipt", "sms", "en", templates.SAMPLE)


def test_preview_uses_sample_data_and_overrides():
    preview = templates.preview("reminder", "email", "es", {"when": "after", "final_notice": True})
    assert preview.subject == "Riverside Family Medicine: aviso final, $125.40 vencido"
    assert "Este es un aviso final." in preview.text


def test_gsm7_measure():
    assert templates.gsm7_length("Hello {x}") == 11  # braces take two septets
    assert templates.gsm7_length("Año ñ É") == 7
    assert templates.gsm7_length("café á") is None and templates.gsm7_length("“quoted”") is None
    assert templates.sms_segments("x" * 160) == 1 and templates.sms_segments("x" * 161) == 2
    assert templates.sms_segments("á" * 70) == 1 and templates.sms_segments("á" * 71) == 2


def test_practice_name_for_sms_is_gsm7_and_short():
    name = templates.sms_practice_name("Clínica Pediátrica del Río Grande Valley")
    assert templates.gsm7_length(name) == len(name) <= SMS_NAME_MAX
    assert name.startswith("Clinica Pediatrica")
    assert settings_parse({"sms_name": "Short Name"}).sms_name == "Short Name"
    for bad in ("x" * 25, "Café ☕", ""):
        with pytest.raises(InvalidInput):
            settings_parse({"sms_name": bad})
