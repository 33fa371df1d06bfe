"""The project's exception hierarchy and its one mapping to error codes.

Every error a user can see is one of these classes.  The code table follows the
spec's section 5.4: 10xxx internal, 20xxx auth, 30xxx resource, 40xxx request,
50xxx task.  Each code has exactly one HTTP status.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class ErrorCode:
    code: int
    http_status: int
    name: str
    summary: str


# The whole table: docs and the HTTP layer read it from here.
ERROR_CODES: dict[str, ErrorCode] = {
    e.name: e
    for e in [
        ErrorCode(10001, 500, "INTERNAL", "Internal server error"),
        ErrorCode(10002, 500, "STORAGE", "Storage error (disk full or unwritable)"),
        ErrorCode(10003, 500, "DATABASE", "Database unavailable"),
        ErrorCode(20001, 401, "UNAUTHORIZED", "Missing or invalid API key"),
        ErrorCode(20002, 403, "FORBIDDEN", "Operation needs an admin key"),
        ErrorCode(30001, 404, "MODEL_NOT_FOUND", "Model not found"),
        ErrorCode(30002, 404, "STRUCTURE_NOT_FOUND", "Structure not found"),
        ErrorCode(30003, 404, "TASK_NOT_FOUND", "Task not found"),
        ErrorCode(30004, 409, "GPU_UNAVAILABLE", "No device available"),
        ErrorCode(30005, 409, "MODEL_UNAVAILABLE", "Model weights cannot be obtained or loaded"),
        ErrorCode(30006, 503, "QUEUE_FULL", "Queue is full"),
        ErrorCode(30007, 404, "FILE_NOT_FOUND", "File not found"),
        ErrorCode(30008, 404, "ENDPOINT_NOT_FOUND", "No such endpoint"),
        ErrorCode(40001, 400, "VALIDATION", "Request validation failed"),
        ErrorCode(40002, 422, "INVALID_STRUCTURE", "Structure unparsable or unphysical"),
        ErrorCode(40003, 415, "UNSUPPORTED_FORMAT", "Unsupported file format"),
        ErrorCode(40004, 413, "PAYLOAD_TOO_LARGE", "Upload too large"),
        ErrorCode(40005, 429, "RATE_LIMITED", "Too many requests"),
        ErrorCode(40006, 400, "INVALID_JOB_FILE", "Malformed job file"),
        ErrorCode(40007, 405, "METHOD_NOT_ALLOWED", "Method not allowed on this endpoint"),
        ErrorCode(50001, 409, "TASK_FAILED", "Task execution failed"),
        ErrorCode(50002, 409, "TASK_TIMEOUT", "Task timed out"),
        ErrorCode(50003, 409, "RESULT_NOT_READY", "Result not ready"),
        ErrorCode(50004, 409, "TASK_CANCELLED", "Task was cancelled"),
        ErrorCode(50005, 409, "TASK_TERMINAL", "Task already finished"),
        ErrorCode(50006, 409, "TASK_DIVERGED", "Calculation diverged"),
    ]
}


class MofsimError(Exception):
    """Base class: carries an error-code name, a message and an optional field."""

    code_name = "INTERNAL"

    def __init__(self, message: str, *, field: str | None = None, detail: str | None = None):
        super().__init__(message)
        self.message = message
        self.field = field
        self.detail = detail or message

    @property
    def error(self) -> ErrorCode:
        return ERROR_CODES[self.code_name]

    @property
    def code(self) -> int:
        return self.error.code

    @property
    def http_status(self) -> int:
        return self.error.http_status

    def to_dict(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "type": type(self).__name__,
            "message": self.message,
            "detail": self.detail,
            "field": self.field,
        }


class InternalError(MofsimError):
    code_name = "INTERNAL"


class StorageError(MofsimError):
    code_name = "STORAGE"


class DatabaseError(MofsimError):
    code_name = "DATABASE"


class AuthError(MofsimError):
    code_name = "UNAUTHORIZED"


class ForbiddenError(MofsimError):
    code_name = "FORBIDDEN"


class NotFoundError(MofsimError):
    code_name = "TASK_NOT_FOUND"


class ModelNotFound(NotFoundError):
    code_name = "MODEL_NOT_FOUND"


class StructureNotFound(NotFoundError):
    code_name = "STRUCTURE_NOT_FOUND"


class TaskNotFound(NotFoundError):
    code_name = "TASK_NOT_FOUND"


class FileNotFound(NotFoundError):
    code_name = "FILE_NOT_FOUND"


class EndpointNotFound(NotFoundError):
    code_name = "ENDPOINT_NOT_FOUND"


class QueueFull(MofsimError):
    """The queue holds the configured ``max_queued`` tasks; a retry later may pass."""

    code_name = "QUEUE_FULL"


class ModelUnavailable(MofsimError):
    """Weights cannot be obtained (offline, no cache) or fail to load."""

    code_name = "MODEL_UNAVAILABLE"


class DeviceUnavailable(MofsimError):
    code_name = "GPU_UNAVAILABLE"


class ValidationError(MofsimError):
    code_name = "VALIDATION"


class InvalidStructure(ValidationError):
    code_name = "INVALID_STRUCTURE"


class UnsupportedFormat(ValidationError):
    code_name = "UNSUPPORTED_FORMAT"


class PayloadTooLarge(ValidationError):
    code_name = "PAYLOAD_TOO_LARGE"


class InvalidJobFile(ValidationError):
    code_name = "INVALID_JOB_FILE"


class MethodNotAllowed(ValidationError):
    code_name = "METHOD_NOT_ALLOWED"


class RateLimited(ValidationError):
    code_name = "RATE_LIMITED"


class TaskError(MofsimError):
    code_name = "TASK_FAILED"


class TaskTimeout(TaskError):
    code_name = "TASK_TIMEOUT"


class ResultNotReady(TaskError):
    code_name = "RESULT_NOT_READY"


class TaskCancelled(TaskError):
    """Raised inside an executor at a step boundary once cancel was requested."""

    code_name = "TASK_CANCELLED"


class TaskTerminal(TaskError):
    code_name = "TASK_TERMINAL"


class TaskDiverged(TaskError):
    code_name = "TASK_DIVERGED"


def code_of(kind: type[MofsimError]) -> int:
    """The code of an error class, for records written without raising (an executor's
    report, a recovered task): ``code_of(TaskTimeout)`` rather than a bare number."""
    return ERROR_CODES[kind.code_name].code


def code_name(code: int) -> str | None:
    """The table's name of a numeric code (``30005`` -> ``MODEL_UNAVAILABLE``), the
    MIRA dialect's ``error_code``; None for a code not in the table."""
    return next((e.name for e in ERROR_CODES.values() if e.code == code), None)


def error_from_code(code: int, message: str, field: str | None = None) -> MofsimError:
    """Rebuild an exception from a recorded code (results of failed tasks, SDK)."""
    for cls in _all_subclasses(MofsimError):
        if ERROR_CODES[cls.code_name].code == code:
            return cls(message, field=field)
    return MofsimError(message, field=field)


def _all_subclasses(cls: type[MofsimError]) -> list[type[MofsimError]]:
    out: list[type[MofsimError]] = []
    for sub in cls.__subclasses__():
        out.append(sub)
        out.extend(_all_subclasses(sub))
    return out
