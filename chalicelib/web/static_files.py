"""``/static/portal.css``: the one stylesheet, read once per process, cacheable for a day; and
``/favicon.ico`` answered empty."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from chalice import Blueprint, Response

static = Blueprint(__name__)
STATIC = Path(__file__).resolve().parent / "static"


@lru_cache(maxsize=1)
def _css() -> str:
    return (STATIC / "portal.css").read_text(encoding="utf-8")


@static.route("/static/portal.css", methods=["GET"])
def portal_css() -> Response:
    """The stylesheet; the theme's colours come per page as CSS custom properties."""
    return Response(body=_css(), status_code=200,
                    headers={"Content-Type": "text/css; charset=utf-8", "Cache-Control": "public, max-age=86400",
                             "X-Content-Type-Options": "nosniff"})


@static.route("/favicon.ico", methods=["GET"])
def favicon() -> Response:
    """No icon (the practice's logo is on the page): an empty answer browsers cache for a day,
    instead of API Gateway's 403 for an unknown path on every page load."""
    return Response(body="", status_code=204, headers={"Cache-Control": "public, max-age=86400"})
