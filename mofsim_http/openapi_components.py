"""The shared components of the OpenAPI document: what every operation refers to.

The two dialects' envelopes and error shapes, the domain schemas handlers point at
(``#/components/schemas/...``), the error code table from ``spool.errors.ERROR_CODES``,
the parameter schema of each task type (from its module's ``SCHEMA.to_schema()``) and
the API-key security schemes.  ``openapi.build_openapi`` puts them beside the paths.
"""

from __future__ import annotations

from typing import Any

from spool.errors import ERROR_CODES
from spool.states import MIRA_STATUSES, STATE_SYNONYMS, TaskState

# Names as the submission's validation accepts them: a model key that is not blank, a
# structure id that is not empty.
MODEL_KEY: dict[str, Any] = {"type": "string", "pattern": r"\S"}
# An upload's id: what executors.structure_io accepts (no "..", so it stays in its folder).
STRUCTURE_ID: dict[str, Any] = {
    "type": "string",
    "pattern": r"^[A-Za-z0-9][A-Za-z0-9_-]*(\.[A-Za-z0-9_-]+)*\.?$",
    "maxLength": 128,
}


def error_code_table_markdown() -> str:
    rows = ["| code | HTTP | name | meaning |", "|---|---|---|---|"]
    rows += [
        f"| {e.code} | {e.http_status} | `{e.name}` | {e.summary} |" for e in ERROR_CODES.values()
    ]
    return "\n".join(rows)


def codes_for_status(status: int) -> list[int]:
    return [e.code for e in ERROR_CODES.values() if e.http_status == status]


def any_case(word: str) -> str:
    """A regular expression matching ``word`` in any case (JSON Schema patterns have no
    flags)."""
    return "".join(f"[{c.upper()}{c.lower()}]" if c.isalpha() else c for c in word)


def state_list_schema(description: str) -> dict[str, Any]:
    """A query value naming task states as ``TaskState.parse`` reads them: either
    dialect's spelling or a synonym, in any case, comma-separated; empty means all."""
    names = sorted({s.value for s in TaskState} | set(STATE_SYNONYMS))
    one = rf"\s*(?:{'|'.join(any_case(n) for n in names)})\s*"
    return {"type": "string", "pattern": rf"^(?:{one}(?:,{one})*)?$", "description": description}


def order_schema(columns: tuple[str, ...] | list[str], description: str) -> dict[str, Any]:
    """A list's ``order`` as ``mirror_rows.order_clause`` reads it: a column, then
    ``asc`` or ``desc``, or ``-column`` for descending; any case; empty means default."""
    column = f"(?:{'|'.join(any_case(c) for c in columns)})"
    way = f"(?:{any_case('asc')}|{any_case('desc')})"
    pattern = rf"^(?:\s*(?:-{column}|{column}(?:\s+{way})?)\s*)?$"
    return {"type": "string", "pattern": pattern, "description": description}


def shared_schemas() -> dict[str, Any]:
    """Envelope, errors, task states: the shapes every operation refers to."""
    codes = [e.code for e in ERROR_CODES.values()]
    return {
        "Envelope": {
            "type": "object",
            "description": "Every /api/v1 success: the spec's unified response (section 5.1).",
            "required": ["success", "code", "message", "data", "timestamp", "request_id"],
            "properties": {
                "success": {"const": True},
                "code": {"type": "integer", "description": "the HTTP status"},
                "message": {"type": "string"},
                "data": {"description": "the payload"},
                "timestamp": {"type": "string", "format": "date-time"},
                "request_id": {"type": "string"},
            },
            "example": {
                "success": True,
                "code": 200,
                "message": "OK",
                "data": {},
                "timestamp": "2025-12-30T10:00:00Z",
                "request_id": "req_abc123",
            },
        },
        "ErrorDetail": {
            "type": "object",
            "required": ["type", "detail"],
            "properties": {
                "type": {"type": "string", "description": "the exception class"},
                "detail": {"type": "string"},
                "field": {
                    "type": ["string", "null"],
                    "description": "the request field at fault, if any",
                },
            },
        },
        "ErrorEnvelope": {
            "type": "object",
            "description": "Every /api/v1 error; `code` is one of the table in the "
            "document's description (also `x-error-codes`).",
            "required": ["success", "code", "message", "error", "timestamp", "request_id"],
            "properties": {
                "success": {"const": False},
                "code": {"type": "integer", "enum": codes},
                "message": {"type": "string"},
                "error": {"$ref": "#/components/schemas/ErrorDetail"},
                "timestamp": {"type": "string", "format": "date-time"},
                "request_id": {"type": "string"},
            },
            "example": {
                "success": False,
                "code": 40001,
                "message": "Request validation failed",
                "error": {
                    "type": "ValidationError",
                    "detail": "fmax must be > 0.0, got -1",
                    "field": "parameters.fmax",
                },
                "timestamp": "2025-12-30T10:00:00Z",
                "request_id": "req_abc123",
            },
        },
        "MiraError": {
            "type": "object",
            "description": "Every /mira error (the MIRA guide's shape): `error_code` is "
            "the table's name, `code` its number.",
            "required": ["detail", "error_code"],
            "properties": {
                "detail": {"type": "string"},
                "error_code": {"type": "string", "enum": list(ERROR_CODES)},
                "field": {"type": ["string", "null"]},
                "code": {"type": "integer", "enum": codes},
            },
            "example": {
                "detail": "structure 'x' not found",
                "error_code": "STRUCTURE_NOT_FOUND",
                "field": "structure_id",
                "code": 30002,
            },
        },
        "TaskState": {"type": "string", "enum": [s.value for s in TaskState]},
        "MiraTaskState": {
            "type": "string",
            "enum": list(MIRA_STATUSES),
            "description": "the guide's four statuses; failed covers failed, cancelled "
            "and timed out (`state` tells them apart)",
        },
        "MiraTaskDetail": {"type": "string", "enum": [s.mira_detail for s in TaskState]},
        "StructureRef": {
            "description": "Where a task's structure comes from.",
            "oneOf": [
                {
                    "type": "object",
                    "required": ["source", "file_id"],
                    "properties": {"source": {"const": "upload"}, "file_id": STRUCTURE_ID},
                },
                {
                    "type": "object",
                    "required": ["source", "name"],
                    "properties": {
                        "source": {"const": "builtin"},
                        "name": {"type": "string"},
                        "primitive": {"type": "boolean", "default": True},
                    },
                },
                {
                    "type": "object",
                    "required": ["source", "content"],
                    "properties": {
                        "source": {"const": "inline"},
                        "format": {"type": "string", "enum": ["cif", "xyz", "extxyz", "poscar"]},
                        "content": {"type": "string", "minLength": 1},
                        "name": {"type": "string"},
                    },
                },
            ],
        },
    }


def task_parameter_schemas() -> dict[str, Any]:
    """The task types of this build: ``TaskType`` (the canonical names records carry),
    ``TaskTypeName`` (every name a request may use) and ``Parameters-<task type>`` for
    each, from its module."""
    from executors.registry import task_module, task_types

    specs = task_types()
    out: dict[str, Any] = {
        "TaskType": {
            "type": "string",
            "enum": list(specs),
            "description": "; ".join(f"`{n}`: {s.summary}" for n, s in specs.items()),
        },
        "TaskTypeName": {
            "type": "string",
            "enum": [name for spec in specs.values() for name in spec.names],
            "description": "a task type or one of its aliases",
        },
    }
    for task_type in specs:
        schema = task_module(task_type).SCHEMA.to_schema(title=f"{task_type} parameters")
        out[f"Parameters-{task_type}"] = schema
    return out


def security_schemes() -> dict[str, Any]:
    return {
        "ApiKeyHeader": {
            "type": "apiKey",
            "in": "header",
            "name": "X-API-Key",
            "description": "An API key (`mofsim keys create`).",
        },
        "BearerAuth": {
            "type": "http",
            "scheme": "bearer",
            "description": "The same API key as `Authorization: Bearer KEY`.",
        },
    }
