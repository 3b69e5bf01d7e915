"""``GET /health``: liveness for API Gateway and load checks. Touches no data, logs no PHI."""

from __future__ import annotations

from chalice import Blueprint

health = Blueprint(__name__)


@health.route("/health", methods=["GET"])
def health_check() -> dict[str, object]:
    """Return ``{"ok": true, "service": "frontdesk"}``."""
    return {"ok": True, "service": "frontdesk"}
