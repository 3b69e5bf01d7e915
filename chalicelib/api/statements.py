"""JSON API for practice-management systems: statement pay codes, pushed statements, and the
public verification-code check (PRODUCT.md §3, §4, §11).

Authentication: ``Authorization: Bearer <clinic API key>`` (``chalicelib.tenants.api_keys``;
create one with ``python -m chalicelib.cli api-key-create --clinic ID``). The key names its
clinic, so a request can only ever touch that clinic's data (R16). Errors are JSON
``{"error": "..."}``: 401 for any key problem, 400 bad input, 404 not found, 503 try again.
Responses carry pay URLs (bearer links): they are never logged.
"""

from __future__ import annotations

import base64
from typing import TYPE_CHECKING, Any

from chalice import Blueprint, Response

from chalicelib.core import lazy
from chalicelib.core.errors import DomainError, InvalidInput, NotFound, TryAgainLater

if TYPE_CHECKING:
    from chalicelib.statements import selectors as statement_selectors
    from chalicelib.statements import services as statement_services
    from chalicelib.tenants import api_keys
else:
    statement_selectors = lazy.module("chalicelib.statements.selectors")
    statement_services = lazy.module("chalicelib.statements.services")
    api_keys = lazy.module("chalicelib.tenants.api_keys")

statements_api = Blueprint(__name__)
JSON = ["application/json"]
HEADERS: dict[str, str | list[str]] = {"Cache-Control": "no-store", "Content-Type": "application/json"}


def _error(exc: DomainError) -> Response:
    status = 401 if isinstance(exc, api_keys.ApiKeyRefused) else 404 if isinstance(exc, NotFound) else (
        503 if isinstance(exc, TryAgainLater) else 400)
    return Response(body={"error": str(exc)}, status_code=status, headers=HEADERS)


def _clinic() -> str:
    request = statements_api.current_request
    return api_keys.api_key_check(authorization=request.headers.get("authorization"))


def _body() -> dict[str, Any]:
    body = statements_api.current_request.json_body
    if not isinstance(body, dict):
        raise InvalidInput("the body must be a JSON object")
    return body


@statements_api.route("/v1/statements/pay-codes", methods=["POST"], content_types=JSON)
def pay_codes() -> Response:
    """``{"guarantor_ids": [...]}`` or ``{"statement_ids": [...]}`` -> each statement's pay URL,
    QR URL, QR as SVG text and base64 PNG, and ``manifest_csv`` for the print vendor."""
    try:
        clinic_id = _clinic()
        body = _body()
        codes = statement_services.statement_pay_codes(
            clinic_id=clinic_id, guarantor_ids=list(body.get("guarantor_ids") or []),
            statement_ids=list(body.get("statement_ids") or []))
    except DomainError as exc:
        return _error(exc)
    items = [{"guarantor_id": c.guarantor_id, "statement_id": c.statement_id, "account_number": c.account_number,
              "pay_url": c.url, "qr_url": c.qr_url, "qr_svg": c.qr_svg,
              "qr_png_base64": base64.b64encode(c.qr_png).decode() if c.qr_png else None, "error": c.error}
             for c in codes.items]
    return Response(body={"items": items, "manifest_csv": codes.manifest_csv}, status_code=200, headers=HEADERS)


@statements_api.route("/v1/statements", methods=["POST"], content_types=JSON)
def statements_push() -> Response:
    """``{"statements": [...]}`` (see ``statement_push``) -> one result per statement."""
    try:
        clinic_id = _clinic()
        items = _body().get("statements")
        if not isinstance(items, list):
            raise InvalidInput("statements must be a list")
        results = statement_services.statement_push(clinic_id=clinic_id, statements=items)
    except DomainError as exc:
        return _error(exc)
    return Response(body={"results": [
        {"statement_id": r.statement_id, "status": r.status, "reason": r.reason,
         "verification_code": r.verification_code, "warnings": list(r.warnings)} for r in results]},
        status_code=200, headers=HEADERS)


@statements_api.route("/v1/clinics/{clinic_id}/statements/verify/{code}", methods=["GET"])
def statement_verify(clinic_id: str, code: str) -> Response:
    """Public: is a statement carrying ``code`` a real bill of this practice? Answers the
    practice's name and statement date(s) only (PRODUCT.md §11); unknown is ``genuine: false``."""
    result = statement_selectors.statement_verify(clinic_id=clinic_id, code=code)
    return Response(body={"genuine": result.genuine, "practice": result.practice,
                          "statement_dates": list(result.statement_dates)}, status_code=200, headers=HEADERS)
