"""Response shapes of the two dialects, and the one place errors become responses.

``/api/v1`` (the spec): every body is the envelope ``{success, code, message, data,
timestamp, request_id}``; errors carry ``error: {type, detail, field}`` and a 5-digit
code from ``spool.errors.ERROR_CODES``.
``/mira/api/v1`` (the MIRA guide): bare bodies; errors are ``{detail, error_code, field,
code}`` with the guide's names and statuses (``mira_errors``).
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from mofsim_core.request_ids import new_request_id
from mofsim_http.mira_errors import mira_error
from spool.errors import MofsimError
from spool.events import iso_now

MIRA_PREFIX = "/mira"

# Per-request values set by the middlewares.
REQUEST_ID = web.RequestKey("request_id", str)
API_KEY_ID = web.RequestKey("api_key_id", str)
API_KEY = web.RequestKey("api_key", dict)


def is_mira(request: web.Request) -> bool:
    return request.path.startswith(MIRA_PREFIX + "/")


def _dumps(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False, default=str)


def request_id_of(request: web.Request) -> str:
    rid = request.get(REQUEST_ID)
    return rid if isinstance(rid, str) else new_request_id()


def ok(
    request: web.Request,
    data: Any = None,
    *,
    status: int = 200,
    message: str = "OK",
    headers: dict[str, str] | None = None,
    **top_level: Any,
) -> web.Response:
    """A success in the caller's dialect: the envelope for /api/v1, bare for /mira."""
    if is_mira(request):
        return web.Response(
            text=_dumps(data), status=status, headers=headers, content_type="application/json"
        )
    body = {
        "success": True,
        "code": status,
        "message": message,
        "data": data,
        "timestamp": iso_now(),
        "request_id": request_id_of(request),
        **top_level,
    }
    return web.Response(
        text=_dumps(body), status=status, headers=headers, content_type="application/json"
    )


def error_response(
    request: web.Request, exc: MofsimError, headers: dict[str, str] | None = None
) -> web.Response:
    status = exc.http_status
    body: dict[str, Any]
    if is_mira(request):
        status, body = mira_error(exc, request.path)
    else:
        body = {
            "success": False,
            "code": exc.code,
            "message": exc.error.summary,
            "error": {"type": type(exc).__name__, "detail": exc.detail, "field": exc.field},
            "timestamp": iso_now(),
            "request_id": request_id_of(request),
        }
    return web.Response(
        text=_dumps(body), status=status, headers=headers, content_type="application/json"
    )


def http_error_to_mofsim(exc: web.HTTPException) -> MofsimError:
    """aiohttp's own 404/405/413 become errors of our table."""
    from spool.errors import (
        EndpointNotFound,
        InternalError,
        MethodNotAllowed,
        PayloadTooLarge,
        UnsupportedFormat,
        ValidationError,
    )

    if exc.status == 404:
        return EndpointNotFound("no such endpoint")
    if exc.status == 405:
        return MethodNotAllowed("method not allowed on this endpoint")
    if exc.status == 413:
        return PayloadTooLarge("request body too large")
    if exc.status == 415:
        return UnsupportedFormat(exc.reason or "unsupported media type")
    if 400 <= exc.status < 500:
        return ValidationError(exc.reason or "bad request")
    return InternalError("internal server error")
