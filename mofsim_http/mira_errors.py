"""How the MIRA dialect states an error: the guide's body, the guide's statuses, the
guide's field names.

The guide's table has 200, 201, 400, 404, 422, 500 and 503, and its errors are
``{detail, error_code, field}`` with ``error_code`` a name such as
``"INVALID_STRUCTURE"``.  Our one error table (``spool.errors``) has more statuses;
here each of those becomes the guide's status a MIRA client handles the same way, and
the numeric code rides along as ``code``.  ``/api/v1`` is untouched by any of this.
"""

from __future__ import annotations

from typing import Any

from spool.errors import ERROR_CODES, MofsimError

MIRA_HTTP_STATUSES = (200, 201, 400, 404, 422, 500, 503)

# The guide documents no API keys, no request limits and no wrong methods: those are
# outside its table.  401, 403 and 429 stay as they are because a client (and any proxy
# or HTTP library between) must tell "send a key" and "back off, see Retry-After" apart
# from a bad request; folding them into 400 would make a MIRA client retry a request
# that can only fail, or hammer a limit it cannot see.  405 stays with its Allow header:
# HTTP itself defines that answer to a method a path does not take.
KEPT_STATUSES = (401, 403, 405, 429)

# Our statuses the guide lacks, per error: what the request means to a MIRA client.
_MIRA_STATUS: dict[str, int] = {
    # A model or device that cannot serve now is the service being unavailable: a
    # later retry may pass (the guide's 503), unlike a bad request.
    "GPU_UNAVAILABLE": 503,
    "MODEL_UNAVAILABLE": 503,
    # Content that is not a structure we read is data that failed validation, as an
    # unparsable one (INVALID_STRUCTURE, 422) already is.
    "UNSUPPORTED_FORMAT": 422,
    # The request itself is wrong; the detail says how.
    "PAYLOAD_TOO_LARGE": 400,
    # Our table's 409s: the task is not in a state that allows this (no result yet,
    # failed, cancelled, already finished); the request is wrong for now.
    "TASK_FAILED": 400,
    "TASK_TIMEOUT": 400,
    "RESULT_NOT_READY": 400,
    "TASK_CANCELLED": 400,
    "TASK_TERMINAL": 400,
    "TASK_DIVERGED": 400,
}

# Fields named as the guide's requests name them (the core names them as /api/v1 does).
_FIELDS: dict[str, str] = {"model": "model_key"}
_UPLOAD_FIELDS: dict[str, dict[str, str]] = {
    # The form upload's fields are name, format, content.
    "/structures/upload": {
        "structure": "content",
        "structure.format": "format",
        "file": "content",
    },
    # The file upload's are file and name.
    "/structures/upload/file": {"structure": "file", "structure.format": "format"},
}


def mira_status_of(name: str) -> int:
    """The HTTP status a MIRA client gets for the error named ``name``."""
    status = ERROR_CODES[name].http_status
    if status in MIRA_HTTP_STATUSES or status in KEPT_STATUSES:
        return status
    return _MIRA_STATUS.get(name, 500 if status >= 500 else 400)


def mira_field(field: str | None, path: str) -> str | None:
    """The guide's name of the request field at fault on ``path``."""
    if field is None:
        return None
    for suffix, names in _UPLOAD_FIELDS.items():
        if path.endswith(suffix):
            return names.get(field, field)
    return _FIELDS.get(field, field)


def mira_error(exc: MofsimError, path: str) -> tuple[int, dict[str, Any]]:
    """The status and body of an error answered on a MIRA path."""
    body = {
        "detail": exc.message,
        "error_code": exc.code_name,
        "field": mira_field(exc.field, path),
        "code": exc.code,
    }
    return mira_status_of(exc.code_name), body


def mira_codes_for_status(status: int) -> list[str]:
    """The error names a MIRA answer with this status may carry (for the docs)."""
    return [name for name in ERROR_CODES if mira_status_of(name) == status]
