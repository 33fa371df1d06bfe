"""The schemas and examples the OpenAPI document shows for the MIRA dialect's tasks,
results and health (``mira``): the guide's field names, lowercase states, bare bodies.

Nothing here reads a request; ``mira`` attaches these to its handlers.
"""

from __future__ import annotations

from typing import Any

from executors.registry import task_module
from mofsim_http.openapi_components import MODEL_KEY, STRUCTURE_ID, state_list_schema
from mofsim_http.task_schemas import OPTIONS_SCHEMA
from spool.limits import DEFAULT_MAX_TIMEOUT_S

TAGS = ["MIRA"]
DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
# A user key's request for another key's task answers as for a task that does not exist.
UNKNOWN_TASK = "unknown task (or another key's)"
DOWNLOAD_KINDS = ("structure", "trajectory", "log")

TASK_ID: dict[str, Any] = {"type": "string"}
TASK_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "task_id": TASK_ID,
        "task_type": {"$ref": "#/components/schemas/TaskType"},
        "status": {"$ref": "#/components/schemas/MiraTaskState"},
        "state": {"$ref": "#/components/schemas/MiraTaskDetail"},
        "model_key": {"type": "string"},
        "structure_id": {"type": ["string", "null"]},
        "structure_name": {"type": ["string", "null"]},
        "created_at": {"type": "string"},
        "started_at": {"type": ["string", "null"]},
        "completed_at": {"type": ["string", "null"]},
        "progress": {"type": "integer", "minimum": 0, "maximum": 100, "description": "percent"},
        "current_step": {"type": ["integer", "null"]},
        "total_steps": {"type": ["integer", "null"]},
        "estimated_remaining_minutes": {"type": ["number", "null"]},
        "estimated_time_minutes": {"type": ["number", "null"]},
        "estimated_start": {"type": ["string", "null"]},
        "error_message": {"type": ["string", "null"]},
        "error_code": {"type": ["string", "null"], "description": "e.g. MODEL_UNAVAILABLE"},
        "error_code_numeric": {"type": ["integer", "null"], "description": "e.g. 30005"},
    },
}
TASK_EXAMPLE = {
    "task_id": "task_7c9e66797425",
    "task_type": "optimization",
    "status": "running",
    "state": "running",
    "model_key": "sevennet-0",
    "structure_id": "struct_550e8400e29b41d4",
    "created_at": "2025-12-30T10:35:00Z",
    "started_at": "2025-12-30T10:35:15Z",
    "progress": 42,
    "current_step": 210,
    "total_steps": 500,
    "estimated_remaining_minutes": 3,
}


def submit_body_schema(task_type: str) -> dict[str, Any]:
    """The guide's flat body: ``structure_id``, ``model_key`` and the task's parameters
    side by side (plus the spec's options, also flat)."""
    params = task_module(task_type).SCHEMA.to_schema()["properties"]
    props: dict[str, Any] = {
        "structure_id": {**STRUCTURE_ID, "description": "an uploaded structure's id"},
        "model_key": {**MODEL_KEY, "description": "a model key (GET /models)"},
        **params,
        **OPTIONS_SCHEMA["properties"],
        "priority": {"type": "string", "enum": ["CRITICAL", "HIGH", "NORMAL", "LOW"]},
        "timeout": {
            "type": "number",
            "exclusiveMinimum": 0,
            "maximum": DEFAULT_MAX_TIMEOUT_S,
            "description": "seconds, at most the server's max_timeout_s (30 days by default)",
        },
        "notify_url": {"type": "string", "format": "uri"},
    }
    # Any other key is refused as an unknown parameter (400), so the document says so.
    schema: dict[str, Any] = {
        "type": "object",
        "required": ["structure_id", "model_key"],
        "properties": props,
        "additionalProperties": False,
    }
    if task_type == "interaction-energy":
        schema["oneOf"] = [_given(name) for name in GUEST_SOURCES]
    return schema


# An interaction energy needs exactly one guest: its atoms in the complex, or a gas.
GUEST_SOURCES = ("guest_indices", "guest_tag", "gas")


def _given(name: str) -> dict[str, Any]:
    return {"required": [name], "properties": {name: {"not": {"type": "null"}}}}


LIST_QUERY = {
    "type": "object",
    "properties": {
        "status": state_list_schema(
            "pending (not started yet), running, completed or failed (failed, cancelled "
            "or timed out), or a state: queued, assigned, cancelled, timeout; "
            "comma-separated for several"
        ),
        "task_type": {"$ref": "#/components/schemas/TaskTypeName"},
        "skip": {"type": "integer", "minimum": 0, "maximum": 10**9},
        "limit": {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT},
    },
}
TASK_PAGE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "total": {"type": "integer"},
        "skip": {"type": "integer"},
        "limit": {"type": "integer"},
        "tasks": {"type": "array", "items": TASK_SCHEMA},
    },
}
CANCEL_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "message": {"type": "string"},
        "task_id": TASK_ID,
        "status": {"$ref": "#/components/schemas/MiraTaskState"},
        "state": {
            "type": "string",
            "description": "the task's state now: cancelled, or (stopping at its next "
            "step) running or assigned; a task that ended first says how",
        },
        "cancel_requested": {"type": "boolean"},
    },
}
RESULT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "identity and timing, then every value "
    "of the result: our names (energy_eV, ...) and the guide's (final_energy, "
    "num_steps, ...)",
}
SUMMARY_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "task_id": TASK_ID,
        "task_type": {"type": "string"},
        "status": {"type": "string"},
        "model_key": {"type": "string"},
        "key_metrics": {"type": "object"},
        "computation_time_seconds": {"type": ["number", "null"]},
        "completed_at": {"type": ["string", "null"]},
    },
}
HEALTH_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "status": {"type": "string", "enum": ["healthy", "degraded", "unhealthy"]},
        "version": {"type": "string"},
        "timestamp": {"type": "string"},
        "daemon_running": {"type": "boolean"},
    },
}
HEALTH_EXAMPLE = {"status": "healthy", "version": "0.1.0", "timestamp": "2025-12-30T10:30:00Z"}
