"""One exception hierarchy for every error the server can answer, by its 5-digit code.

The server's envelope carries ``code`` (spec 5.4: 10xxx internal, 20xxx auth, 30xxx
resource, 40xxx request, 50xxx task), ``error.type``, ``error.detail`` and
``error.field``; ``error_from_response`` turns that into the class below for its code,
keeping the request id so a failure can be found in the server's access log.  A code
this SDK does not know still lands in the class of its range.  ``ServerUnavailableError``
is the client's own: the server could not be reached even after retries.
"""

from __future__ import annotations

from typing import Any


class MOFSimError(Exception):
    """Base class.  ``code`` is the server's 5-digit code (``None`` when the failure
    happened before the server answered), ``http_status`` the HTTP status, ``field`` the
    request field at fault, ``request_id`` the server's id for the request."""

    default_code: int | None = None

    def __init__(
        self,
        message: str,
        *,
        code: int | None = None,
        http_status: int | None = None,
        field: str | None = None,
        request_id: str | None = None,
        detail: str | None = None,
        error_type: str | None = None,
        task_id: str | None = None,
        body: Any = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code if code is not None else self.default_code
        self.http_status = http_status
        self.field = field
        self.request_id = request_id
        self.detail = detail or message
        self.error_type = error_type
        self.task_id = task_id
        self.body = body

    def __str__(self) -> str:
        parts = [f"[{self.code}] {self.message}" if self.code else self.message]
        if self.detail and self.detail != self.message:
            parts.append(self.detail)
        if self.field:
            parts.append(f"field: {self.field}")
        if self.request_id:
            parts.append(f"request {self.request_id}")
        return " | ".join(parts)


class ServerError(MOFSimError):
    """10xxx: the server failed internally (its log has the trace, under request_id)."""

    default_code = 10001


class ServerUnavailableError(MOFSimError):
    """The server could not be reached (connection refused or reset, timeouts, a proxy's
    502/503/504 without an envelope) even after the configured retries."""


class AuthenticationError(MOFSimError):
    """20001: the API key is missing, unknown or revoked."""

    default_code = 20001


class PermissionDeniedError(MOFSimError):
    """20002: the operation needs an admin key."""

    default_code = 20002


class NotFoundError(MOFSimError):
    """30001/30002/30003/30007/30008: the thing named does not exist."""

    default_code = 30003


class ModelNotFoundError(NotFoundError):
    default_code = 30001


class StructureNotFoundError(NotFoundError):
    default_code = 30002


class TaskNotFoundError(NotFoundError):
    default_code = 30003


class OutputFileNotFoundError(NotFoundError):
    default_code = 30007


class EndpointNotFoundError(NotFoundError):
    """30008: the server has no such route (an older server, or a wrong base URL)."""

    default_code = 30008


class ResourceUnavailableError(MOFSimError):
    """30004 (no device) / 30005 (model weights cannot be obtained or loaded)."""

    default_code = 30004


class QueueFullError(MOFSimError):
    """30006: the server refuses new work for now; retried when it sends Retry-After."""

    default_code = 30006


class ValidationError(MOFSimError):
    """40xxx: the request itself is wrong; ``field`` names the culprit."""

    default_code = 40001


class InvalidStructureError(ValidationError):
    default_code = 40002


class UnsupportedFormatError(ValidationError):
    default_code = 40003


class PayloadTooLargeError(ValidationError):
    default_code = 40004


class RateLimitError(ValidationError):
    """40005: too many requests; ``retry_after`` is the server's hint in seconds."""

    default_code = 40005

    def __init__(self, message: str, *, retry_after: float | None = None, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.retry_after = retry_after


class TaskError(MOFSimError):
    """50xxx: about the task's life, not the request."""

    default_code = 50001


class TaskFailedError(TaskError):
    """50001: the task ran and failed; the message is the task's recorded error."""

    default_code = 50001


class TaskDivergedError(TaskFailedError):
    default_code = 50006


class TaskTimeoutError(TaskError):
    """50002: the task ran past its time limit on the server."""

    default_code = 50002


class ResultNotReadyError(TaskError):
    default_code = 50003


class TaskCancelledError(TaskError):
    default_code = 50004


class TaskAlreadyFinishedError(TaskError):
    """50005: e.g. cancelling a task that has already ended."""

    default_code = 50005


class WaitTimeoutError(MOFSimError, TimeoutError):
    """``Task.wait(timeout=...)`` gave up; the task itself goes on running."""


CODE_CLASSES: dict[int, type[MOFSimError]] = {
    10001: ServerError,
    10002: ServerError,
    10003: ServerError,
    20001: AuthenticationError,
    20002: PermissionDeniedError,
    30001: ModelNotFoundError,
    30002: StructureNotFoundError,
    30003: TaskNotFoundError,
    30004: ResourceUnavailableError,
    30005: ResourceUnavailableError,
    30006: QueueFullError,
    30007: OutputFileNotFoundError,
    30008: EndpointNotFoundError,
    40001: ValidationError,
    40002: InvalidStructureError,
    40003: UnsupportedFormatError,
    40004: PayloadTooLargeError,
    40005: RateLimitError,
    40006: ValidationError,
    40007: ValidationError,
    50001: TaskFailedError,
    50002: TaskTimeoutError,
    50003: ResultNotReadyError,
    50004: TaskCancelledError,
    50005: TaskAlreadyFinishedError,
    50006: TaskDivergedError,
}

# A code newer than this table still lands in its class's family.
_RANGE_CLASSES: dict[int, type[MOFSimError]] = {
    1: ServerError,
    2: AuthenticationError,
    3: NotFoundError,
    4: ValidationError,
    5: TaskError,
}
_STATUS_CLASSES: dict[int, type[MOFSimError]] = {
    400: ValidationError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    409: TaskError,
    413: PayloadTooLargeError,
    415: UnsupportedFormatError,
    422: InvalidStructureError,
    429: RateLimitError,
}


def class_for(code: int | None, http_status: int | None = None) -> type[MOFSimError]:
    if code is not None and code in CODE_CLASSES:
        return CODE_CLASSES[code]
    if code is not None and 10000 <= code < 60000:
        return _RANGE_CLASSES[code // 10000]
    if http_status is not None:
        if http_status in _STATUS_CLASSES:
            return _STATUS_CLASSES[http_status]
        if http_status >= 500:
            return ServerError
    return MOFSimError


def error_from_code(code: int | None, message: str, **kw: Any) -> MOFSimError:
    """The exception for a recorded code (a failed task's ``error.code``)."""
    cls = class_for(code, kw.get("http_status"))
    return cls(message, code=code, **kw)


def error_from_response(
    http_status: int, body: Any, *, request_id: str | None = None, retry_after: float | None = None
) -> MOFSimError:
    """Map an error answer to an exception.  ``body`` is the decoded JSON (the
    ``/api/v1`` envelope, or MIRA's ``{detail, error_code, field}``) or raw text."""
    code: int | None = None
    message = f"HTTP {http_status}"
    detail: str | None = None
    field: str | None = None
    error_type: str | None = None
    if isinstance(body, dict):
        raw_code = body.get("code", body.get("error_code"))
        if isinstance(raw_code, int) and raw_code >= 10000:
            code = raw_code
        raw_error = body.get("error")
        error: dict[str, Any] = raw_error if isinstance(raw_error, dict) else {}
        detail = _text(error.get("detail")) or _text(body.get("detail"))
        message = _text(body.get("message")) or detail or message
        field = _text(error.get("field")) or _text(body.get("field"))
        error_type = _text(error.get("type"))
        request_id = request_id or _text(body.get("request_id"))
    elif isinstance(body, str) and body.strip():
        detail = body.strip()[:500]
    kw: dict[str, Any] = {
        "code": code,
        "http_status": http_status,
        "field": field,
        "request_id": request_id,
        "detail": detail,
        "error_type": error_type,
        "body": body,
    }
    cls = class_for(code, http_status)
    exc = (
        cls(message, retry_after=retry_after, **kw)
        if issubclass(cls, RateLimitError)
        else cls(message, **kw)
    )
    exc.code = code  # None when the answer carried no code (a proxy's page)
    return exc


def _text(value: Any) -> str | None:
    if value is None or value == "":
        return None
    return str(value)
