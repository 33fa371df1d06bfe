"""The request schemas and error texts of ``/api/v1/tasks``, as the OpenAPI document
shows them: the submission body (spec 5.2, or MIRA's flat shape), its options, the task
record, and the list and log queries.

``tasks`` attaches them to its handlers; nothing here reads a request.
"""

from __future__ import annotations

from typing import Any

from executors.registry import task_module, task_types
from mofsim_core import task_records, task_submit
from mofsim_core.mirror_rows import SORTABLE
from mofsim_core.task_options import NOTIFY_EVENTS
from mofsim_http.openapi_components import (
    MODEL_KEY,
    STRUCTURE_ID,
    order_schema,
    state_list_schema,
)
from spool.layout import SAFE_TOKEN
from spool.limits import DEFAULT_MAX_TIMEOUT_S

SUBMIT_ERRORS = {
    400: "a field is invalid (its name is in error.field)",
    404: "model or structure not found",
    409: "model unavailable",
    413: "body too large",
    415: "unsupported structure format",
    422: "structure unparsable or unphysical",
}
# A user key's request for another key's task answers as for a task that does not exist.
ID_ERRORS = {404: "no such task (or another key's)"}

OPTIONS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "priority": {
            "description": "CRITICAL, HIGH, NORMAL (default) or LOW; or 0-3",
            "oneOf": [{"type": "string"}, {"type": "integer", "minimum": 0, "maximum": 3}],
        },
        "timeout": {
            "type": "number",
            "exclusiveMinimum": 0,
            "maximum": DEFAULT_MAX_TIMEOUT_S,
            "description": "seconds, at most the server's max_timeout_s (30 days by default)",
        },
        "expected_duration": {
            "type": "number",
            "exclusiveMinimum": 0,
            "maximum": DEFAULT_MAX_TIMEOUT_S,
            "description": "seconds the task is expected to run (a Slurm pilot takes it only "
            "with that much time left), at most the server's max_timeout_s",
        },
        "notify_url": {"type": "string", "format": "uri"},
        "notify_events": {
            "type": "array",
            "items": {"type": "string", "enum": list(NOTIFY_EVENTS)},
        },
        "notify_secret": {"type": "string", "maxLength": 512},
        "retry_times": {"type": "integer", "minimum": 0, "maximum": 20},
        "retry_interval_seconds": {"type": "number", "minimum": 0, "maximum": 86400},
        "name": {"type": "string"},
        "description": {"type": "string"},
        "tags": {"type": "array", "items": {"type": "string"}},
    },
}
TASK_RECORD_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["task_id", "task_type", "model", "status", "priority"],
    "properties": {
        "task_id": {"type": "string"},
        "task_type": {"$ref": "#/components/schemas/TaskType"},
        "model": {"type": "string"},
        "status": {"$ref": "#/components/schemas/TaskState"},
        "priority": {"type": "string"},
        "queue_position": {"type": ["integer", "null"]},
        "created_at": {"type": ["string", "null"]},
        "started_at": {"type": ["string", "null"]},
        "completed_at": {"type": ["string", "null"]},
        "progress": {"type": ["number", "null"]},
        "estimated_start": {
            "type": ["string", "null"],
            "description": "when the task should start (queue ahead, free slots, estimates)",
        },
        "estimated_duration_s": {"type": ["number", "null"]},
        "request_id": {
            "type": ["string", "null"],
            "description": "the X-Request-ID of the request that submitted the task",
        },
    },
}
_PAGE_QUERY: dict[str, Any] = {
    "page": {"type": "integer", "minimum": 1, "maximum": 10**9, "description": "1-based page"},
    "page_size": {"type": "integer", "minimum": 1, "maximum": task_records.MAX_PAGE},
    "skip": {
        "type": "integer",
        "minimum": 0,
        "maximum": 10**9,
        "description": "MIRA style: items to skip",
    },
    "limit": {"type": "integer", "minimum": 1, "maximum": task_records.MAX_PAGE},
}


def _names_of(task_type: str) -> list[str]:
    return list(task_types()[task_type].names)


def submit_body_schema(task_type: str | None) -> dict[str, Any]:
    parameters: dict[str, Any] = (
        {"$ref": f"#/components/schemas/Parameters-{task_type}"}
        if task_type
        else {"type": "object", "description": "the task type's parameters"}
    )
    named: dict[str, Any] = (
        {"type": "string", "enum": _names_of(task_type)}
        if task_type
        else {"$ref": "#/components/schemas/TaskTypeName"}
    )
    named["description"] = "optional; must match the path" if task_type else "the task type"
    common: dict[str, Any] = {
        "task_type": named,
        "model": {**MODEL_KEY, "description": "a model key (GET /api/v1/models)"},
        "model_key": {**MODEL_KEY, "description": "MIRA's name for model"},
        "structure": {"$ref": "#/components/schemas/StructureRef"},
        "structure_id": {**STRUCTURE_ID, "description": "MIRA: an uploaded structure"},
        "task_id": {
            "type": "string",
            "pattern": f"^{SAFE_TOKEN.pattern}$",
            "description": "optional; chosen by the client",
        },
    }
    schema: dict[str, Any] = {
        "type": "object",
        "description": "The spec's submission (5.2): parameters and options as objects. "
        "MIRA's flat shape is accepted too: structure_id, model_key, the parameters and "
        "the options at the top level. One body takes one shape, not a mix of both.",
        # A model and a structure are needed, each by one of its two names.
        "allOf": [
            {"oneOf": [{"required": ["model"]}, {"required": ["model_key"]}]},
            {"oneOf": [{"required": ["structure"]}, {"required": ["structure_id"]}]},
        ],
    }
    nested = {**common, "parameters": parameters, "options": OPTIONS_SCHEMA}
    if task_type:
        # The flat shape's parameters are those of this task type, and nothing else is.
        flat_params = task_module(task_type).SCHEMA.to_schema()["properties"]
        flat = {**flat_params, **OPTIONS_SCHEMA["properties"], **common}
        schema["anyOf"] = [
            {"title": "spec", "properties": nested, "additionalProperties": False},
            {"title": "flat", "properties": flat, "additionalProperties": False},
        ]
    else:
        # Which other top-level keys are parameters depends on task_type.
        schema["properties"] = {**nested, **OPTIONS_SCHEMA["properties"]}
        schema["required"] = ["task_type"]
    return schema


BATCH_BODY: dict[str, Any] = {
    "type": "object",
    "required": ["tasks"],
    "properties": {
        "tasks": {
            "type": "array",
            "minItems": 1,
            "maxItems": task_submit.MAX_BATCH,
            "items": submit_body_schema(None),
        }
    },
}
LIST_QUERY: dict[str, Any] = {
    "type": "object",
    "properties": {
        "status": state_list_schema("a state or a comma-separated list"),
        "task_type": {"$ref": "#/components/schemas/TaskTypeName"},
        "model": {"type": "string"},
        "order": order_schema(SORTABLE, "e.g. created_at desc (default)"),
        **_PAGE_QUERY,
    },
}

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
# The filters that the log history and the live stream share.
_LOG_FILTERS: dict[str, Any] = {
    "level": {
        "type": "string",
        "enum": list(LOG_LEVELS),
        "description": "minimum level",
    },
    "types": {
        "type": "string",
        "pattern": r"^\s*(?:log|status|progress)?\s*(?:,\s*(?:log|status|progress)?\s*)*$",
        "description": "comma-separated: log, status, progress",
    },
}
LOGS_QUERY: dict[str, Any] = {
    "type": "object",
    "properties": {
        **_LOG_FILTERS,
        "limit": {"type": "integer", "minimum": 1, "maximum": task_records.MAX_PAGE},
        "offset": {"type": "integer", "minimum": 0, "maximum": 10**9},
        "since": {"type": "string", "description": "an event id or an ISO-8601 time"},
    },
}
EVENTS_QUERY: dict[str, Any] = {"type": "object", "properties": _LOG_FILTERS}
