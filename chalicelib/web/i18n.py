"""English and Spanish through gettext catalogs and Jinja2's i18n extension (PRODUCT.md §6).

Catalogs live in ``locale/<lang>/LC_MESSAGES/messages.po`` and are compiled to ``.mo`` by
``python -m chalicelib.web.i18n`` (Babel, a development tool); a test keeps the committed
``.mo`` in step with the ``.po``. At run time only the standard library's gettext reads them.
"""

from __future__ import annotations

import gettext
from functools import lru_cache
from pathlib import Path

LOCALE_DIR = Path(__file__).resolve().parent / "locale"
LANGUAGES = ("en", "es")
LANGUAGE_NAMES = {"en": "English", "es": "Español"}


@lru_cache(maxsize=4)
def translations(language: str) -> gettext.NullTranslations:
    """The catalog for ``language`` (English is the source text, so it has no catalog)."""
    if language == "en":
        return gettext.NullTranslations()
    return gettext.translation("messages", localedir=LOCALE_DIR, languages=[language])


def choose(*, requested: str | None, cookie: str | None, on_file: str | None, accept: str | None) -> str:
    """The page language: an explicit choice, else the cookie, else the guarantor's language
    on file, else the browser's Accept-Language, else English."""
    for value in (requested, cookie, on_file):
        if value in LANGUAGES:
            return value
    for part in (accept or "").split(","):
        tag = part.split(";")[0].strip().lower()[:2]
        if tag in LANGUAGES:
            return tag
    return "en"


def compile_catalogs() -> list[Path]:
    """Compile every ``.po`` to ``.mo`` with Babel; return the written paths (development)."""
    from babel.messages.mofile import write_mo
    from babel.messages.pofile import read_po

    written = []
    for po in sorted(LOCALE_DIR.glob("*/LC_MESSAGES/messages.po")):
        with po.open("rb") as fh:
            catalog = read_po(fh)
        mo = po.with_suffix(".mo")
        with mo.open("wb") as out:
            write_mo(out, catalog)
        written.append(mo)
    return written


if __name__ == "__main__":
    for path in compile_catalogs():
        print(f"wrote {path}")


def template_messages() -> list[str]:
    """Every message id used in the templates, in order of first use (development)."""
    from babel.messages.extract import extract_from_dir

    found: list[str] = []
    options = {"**.html": {"extensions": "jinja2.ext.i18n", "trim_blocks": "true", "newstyle_gettext": "true"}}
    for _, _, message, _, _ in extract_from_dir(str(LOCALE_DIR.parent / "templates"),
                                                method_map=[("**.html", "jinja2")], options_map=options):
        if isinstance(message, str) and message not in found:
            found.append(message)
    return found


def catalog_update(language: str, translations_: dict[str, str]) -> list[str]:
    """Rewrite ``language``'s .po with the templates' messages in order, keeping existing
    translations and adding ``translations_``; return the ids still untranslated (development)."""
    from babel.messages.catalog import Catalog
    from babel.messages.pofile import read_po, write_po

    po = LOCALE_DIR / language / "LC_MESSAGES" / "messages.po"
    with po.open("rb") as fh:
        old = {m.id: m.string for m in read_po(fh) if m.id}
    catalog = Catalog(locale=language, project="Frontdesk", charset="utf-8", fuzzy=False)
    missing = []
    for message in template_messages():
        text = translations_.get(message) or old.get(message) or ""
        if not text:
            missing.append(message)
        catalog.add(message, text)
    with po.open("wb") as out:
        write_po(out, catalog, width=100)
    compile_catalogs()
    return missing
