"""``/api/v1/tasks``: submit (one type per endpoint, or batch), status, result, cancel,
list, log history and live event streams.

Handlers only parse the request and shape the answer; the work is in ``task_submit``,
``task_listing`` and ``task_service`` (blocking, so it runs in a thread).
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web

from executors.registry import task_module, task_types
from mofsim_core import task_listing, task_records, task_service, task_submit
from mofsim_core.mirror_rows import SORTABLE
from mofsim_core.task_options import NOTIFY_EVENTS
from mofsim_http import sse
from mofsim_http.app import CONFIG_KEY, MIRROR_KEY, SHUTDOWN_KEY, SPOOL_KEY
from mofsim_http.auth import caller_of
from mofsim_http.describe import describe
from mofsim_http.envelope import ok
from mofsim_http.json_body import read_json
from mofsim_http.openapi import returns
from mofsim_http.openapi_components import (
    MODEL_KEY,
    STRUCTURE_ID,
    order_schema,
    state_list_schema,
)
from mofsim_http.request_pool import quick, short_body
from spool.errors import ValidationError
from spool.layout import SAFE_TOKEN

PREFIX = "/api/v1/tasks"

_SUBMIT_ERRORS = {
    400: "a field is invalid (its name is in error.field)",
    404: "model or structure not found",
    409: "model unavailable",
    413: "body too large",
    415: "unsupported structure format",
    422: "structure unparsable or unphysical",
}
# A user key's request for another key's task answers as for a task that does not exist.
_ID_ERRORS = {404: "no such task (or another key's)"}

OPTIONS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "priority": {
            "description": "CRITICAL, HIGH, NORMAL (default) or LOW; or 0-3",
            "oneOf": [{"type": "string"}, {"type": "integer", "minimum": 0, "maximum": 3}],
        },
        "timeout": {"type": "number", "exclusiveMinimum": 0, "description": "seconds"},
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
    schema: dict[str, Any] = {
        "type": "object",
        "description": "The spec's submission (5.2). MIRA's flat shape is accepted too: "
        "structure_id, model_key and the parameters at the top level.",
        "properties": {
            "task_type": named,
            "model": {**MODEL_KEY, "description": "a model key (GET /api/v1/models)"},
            "model_key": {**MODEL_KEY, "description": "MIRA's name for model"},
            "structure": {"$ref": "#/components/schemas/StructureRef"},
            "structure_id": {**STRUCTURE_ID, "description": "MIRA: an uploaded structure"},
            "parameters": parameters,
            "options": OPTIONS_SCHEMA,
            "task_id": {
                "type": "string",
                "pattern": f"^{SAFE_TOKEN.pattern}$",
                "description": "optional; chosen by the client",
            },
            # The flat shape: each option may also be given at the top level.
            **OPTIONS_SCHEMA["properties"],
        },
        # A model and a structure are needed, each by one of its two names.
        "allOf": [
            {"oneOf": [{"required": ["model"]}, {"required": ["model_key"]}]},
            {"oneOf": [{"required": ["structure"]}, {"required": ["structure_id"]}]},
        ],
    }
    if task_type:
        # The flat shape's parameters are those of this task type, and nothing else is.
        flat = task_module(task_type).SCHEMA.to_schema()["properties"]
        schema["properties"] = {**flat, **schema["properties"]}
        schema["additionalProperties"] = False
    else:
        # Which other top-level keys are parameters depends on task_type.
        schema["required"] = ["task_type"]
    return schema


def _services(request: web.Request) -> tuple[Any, Any]:
    return request.app[SPOOL_KEY], request.app[MIRROR_KEY]


def submit_handler(task_type: str | None) -> Any:
    @describe(
        summary=f"Submit a {task_type} task" if task_type else "Submit a task",
        tags=["tasks"],
        body=submit_body_schema(task_type),
        responses={202: "queued: the task record", **_SUBMIT_ERRORS},
    )
    @returns(schema=TASK_RECORD_SCHEMA, status=202)
    async def submit(request: web.Request) -> web.Response:
        """Validated field by field (task type, model, parameters, options, structure)
        before anything is queued; answers 202 with the record and queue position."""
        body = await read_json(request)
        spool, mirror = _services(request)
        record = await short_body(
            request, task_submit.submit_task, spool, mirror, body, task_type, caller_of(request)
        )
        return ok(request, record, status=202, message="Task queued")

    submit.__name__ = f"submit_{(task_type or 'task').replace('-', '_')}"
    return submit


@describe(
    summary="Submit up to 1000 tasks",
    tags=["tasks"],
    body={
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
    },
    responses={
        202: "the valid tasks were queued; a report per item",
        400: "the list is malformed, or no item is valid",
        413: "body too large",
    },
)
async def submit_batch(request: web.Request) -> web.Response:
    """Every item is validated before any is queued; the valid ones are queued and the
    answer says, per item, its task or why it was refused (a bare JSON list is accepted
    too)."""
    body = await read_json(request)
    items = body.get("tasks") if isinstance(body, dict) else body
    if isinstance(body, dict) and "tasks" not in body:
        raise ValidationError("tasks is required: a list of submissions", field="tasks")
    spool, mirror = _services(request)
    report = await asyncio.to_thread(
        task_submit.submit_batch, spool, mirror, items, None, caller_of(request)
    )
    message = (
        f"{report['accepted']} task(s) queued, {report['rejected']} rejected"
        if report["rejected"]
        else f"{report['accepted']} task(s) queued"
    )
    return ok(request, report, status=202, message=message)


@describe(
    summary="List tasks",
    tags=["tasks"],
    query={
        "type": "object",
        "properties": {
            "status": state_list_schema("a state or a comma-separated list"),
            "task_type": {"$ref": "#/components/schemas/TaskTypeName"},
            "model": {"type": "string"},
            "order": order_schema(SORTABLE, "e.g. created_at desc (default)"),
            **_PAGE_QUERY,
        },
    },
    responses={200: "data: {items, pagination}", 400: "invalid filter"},
)
async def list_tasks(request: web.Request) -> web.Response:
    """Newest first; pages with ``page``/``page_size`` or ``skip``/``limit``.  A user
    key lists its own tasks, an admin key every task."""
    q = request.query
    limit, offset = task_records.page_args(q)
    spool, mirror = _services(request)
    items, total = await quick(
        request,
        task_listing.list_tasks,
        spool,
        mirror,
        status=q.get("status"),
        task_type=q.get("task_type"),
        model=q.get("model"),
        limit=limit,
        offset=offset,
        order=q.get("order") or "created_at desc",
        caller=caller_of(request),
    )
    return ok(
        request, {"items": items, "pagination": task_records.pagination(total, limit, offset)}
    )


@describe(
    summary="A task's state", tags=["tasks"], responses={200: "the task record", **_ID_ERRORS}
)
@returns(schema=TASK_RECORD_SCHEMA)
async def get_task(request: web.Request) -> web.Response:
    spool, _ = _services(request)
    record = await quick(
        request, task_service.get_task, spool, request.match_info["task_id"], caller_of(request)
    )
    return ok(request, record)


@describe(
    summary="A completed task's result",
    tags=["tasks"],
    responses={
        200: "the result (spec 5.3)",
        **_ID_ERRORS,
        409: "not finished (50003), failed (50001), timed out (50002) or cancelled (50004)",
    },
)
async def get_result(request: web.Request) -> web.Response:
    spool, _ = _services(request)
    result = await quick(
        request, task_service.get_result, spool, request.match_info["task_id"], caller_of(request)
    )
    return ok(request, result)


@describe(
    summary="Cancel a task",
    tags=["tasks"],
    responses={
        200: "CANCELLED (was queued) or CANCELLING (stops at its next step)",
        **_ID_ERRORS,
        409: "the task already finished (50005)",
    },
)
async def cancel_task(request: web.Request) -> web.Response:
    """Queued tasks are cancelled at once; running ones stop at their next step and are
    killed if they do not within the daemon's grace period."""
    spool, mirror = _services(request)
    data = await quick(
        request,
        task_service.cancel_task,
        spool,
        mirror,
        request.match_info["task_id"],
        caller_of(request),
    )
    return ok(request, data, message=data["message"])


_LOG_QUERY: dict[str, Any] = {
    "level": {
        "type": "string",
        "enum": ["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"],
        "description": "minimum level",
    },
    "types": {
        "type": "string",
        "pattern": r"^\s*(?:log|status|progress)?\s*(?:,\s*(?:log|status|progress)?\s*)*$",
        "description": "comma-separated: log, status, progress",
    },
}


@describe(
    summary="A task's log history (SSE with Accept: text/event-stream)",
    tags=["tasks"],
    query={
        "type": "object",
        "properties": {
            **_LOG_QUERY,
            "limit": {"type": "integer", "minimum": 1, "maximum": task_records.MAX_PAGE},
            "offset": {"type": "integer", "minimum": 0, "maximum": 10**9},
            "since": {"type": "string", "description": "an event id or an ISO-8601 time"},
        },
    },
    responses={200: "data: {items, pagination, last_id}", **_ID_ERRORS},
)
async def task_logs(request: web.Request) -> web.StreamResponse:
    """Each item is the spec's 6.3 log record plus ``event`` (log, status, progress) and
    ``id``, the id SSE streams use."""
    if sse.wants_sse(request):
        return await _stream(request)
    q = request.query
    # Always offset/limit paging here (an absent one takes its default).
    limit, offset = task_records.page_args(
        {"limit": q.get("limit"), "offset": q.get("offset")}, default_size=100
    )
    spool, _ = _services(request)
    data = await asyncio.to_thread(
        task_service.task_logs,
        spool,
        request.match_info["task_id"],
        level=q.get("level"),
        limit=limit,
        offset=offset,
        since=q.get("since"),
        kinds=task_service.parse_kinds(q.get("types")),
        caller=caller_of(request),
    )
    return ok(request, data)


@describe(
    summary="A task's events, live (SSE)",
    tags=["tasks"],
    sse=True,
    query={"type": "object", "properties": _LOG_QUERY},
    responses={200: "text/event-stream: log, status, progress, then end", **_ID_ERRORS},
)
async def task_events(request: web.Request) -> web.StreamResponse:
    """``event:`` log/status/progress, ``id:`` resumable with ``Last-Event-ID``; a
    comment heartbeat while idle; a final ``end`` event once the task is finished."""
    return await _stream(request)


async def _stream(request: web.Request) -> web.StreamResponse:
    q = request.query
    level = q.get("level")
    if level is not None and level.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
        raise ValidationError(f"unknown log level {level!r}", field="level")
    return await sse.stream_task(
        request,
        request.app[SPOOL_KEY],
        request.match_info["task_id"],
        shutdown=request.app[SHUTDOWN_KEY],
        heartbeat_s=request.app[CONFIG_KEY].sse_heartbeat_s,
        level=level,
        kinds=task_service.parse_kinds(q.get("types")),
        caller=caller_of(request),
    )


def setup(app: web.Application) -> None:
    r = app.router
    r.add_post(PREFIX + "/batch", submit_batch)
    r.add_post(PREFIX, submit_handler(None))
    # One endpoint per task type, and one per alias (``/tasks/single-point``).
    for spec in task_types().values():
        for name in spec.names:
            r.add_post(f"{PREFIX}/{name}", submit_handler(spec.name))
    r.add_get(PREFIX, list_tasks)
    r.add_get(PREFIX + "/{task_id}", get_task)
    r.add_get(PREFIX + "/{task_id}/result", get_result)
    r.add_post(PREFIX + "/{task_id}/cancel", cancel_task)
    r.add_get(PREFIX + "/{task_id}/logs", task_logs)
    r.add_get(PREFIX + "/{task_id}/logs/stream", task_events)
    r.add_get(PREFIX + "/{task_id}/events", task_events)
