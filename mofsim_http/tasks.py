"""``/api/v1/tasks``: submit (one type per endpoint, or batch), status, result, cancel,
list, log history and live event streams.

Handlers only parse the request and shape the answer; the work is in ``task_submit``,
``task_listing`` and ``task_service`` (blocking, so it runs in a thread).  The schemas
the OpenAPI document shows for them are in ``task_schemas``.
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web

from executors.registry import task_types
from mofsim_core import task_listing, task_records, task_service, task_submit
from mofsim_http import sse
from mofsim_http.app import CONFIG_KEY, MIRROR_KEY, SHUTDOWN_KEY, SPOOL_KEY
from mofsim_http.auth import caller_of
from mofsim_http.describe import describe
from mofsim_http.envelope import ok
from mofsim_http.json_body import read_json
from mofsim_http.openapi import returns
from mofsim_http.request_pool import quick, short_body
from mofsim_http.task_schemas import (
    BATCH_BODY,
    EVENTS_QUERY,
    ID_ERRORS,
    LIST_QUERY,
    LOG_LEVELS,
    LOGS_QUERY,
    SUBMIT_ERRORS,
    TASK_RECORD_SCHEMA,
    submit_body_schema,
)
from spool.errors import ValidationError

PREFIX = "/api/v1/tasks"


def _services(request: web.Request) -> tuple[Any, Any]:
    return request.app[SPOOL_KEY], request.app[MIRROR_KEY]


def submit_handler(task_type: str | None) -> Any:
    @describe(
        summary=f"Submit a {task_type} task" if task_type else "Submit a task",
        tags=["tasks"],
        body=submit_body_schema(task_type),
        responses={202: "queued: the task record", **SUBMIT_ERRORS},
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
    body=BATCH_BODY,
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
    query=LIST_QUERY,
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


@describe(summary="A task's state", tags=["tasks"], responses={200: "the task record", **ID_ERRORS})
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
        **ID_ERRORS,
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
        200: "CANCELLED (was queued, or stopped within a second or two), else the state"
        " it is still in (RUNNING, ASSIGNED) with cancel_requested: true",
        **ID_ERRORS,
        409: "the task already finished (50005)",
    },
)
async def cancel_task(request: web.Request) -> web.Response:
    """Queued tasks are cancelled at once; running ones stop at their next step and are
    killed if they do not within the daemon's grace period."""
    spool, mirror = _services(request)
    # The default pool: the answer may wait a moment for a running task to stop.
    data = await asyncio.to_thread(
        task_service.cancel_task,
        spool,
        mirror,
        request.match_info["task_id"],
        caller_of(request),
        actor=caller_of(request).actor(f"anonymous@{request.remote}"),
    )
    return ok(request, data, message=data["message"])


@describe(
    summary="A task's log history (SSE with Accept: text/event-stream)",
    tags=["tasks"],
    query=LOGS_QUERY,
    responses={200: "data: {items, pagination, last_id}", **ID_ERRORS},
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
    query=EVENTS_QUERY,
    responses={200: "text/event-stream: log, status, progress, then end", **ID_ERRORS},
)
async def task_events(request: web.Request) -> web.StreamResponse:
    """``event:`` log/status/progress, ``id:`` resumable with ``Last-Event-ID``; a
    comment heartbeat while idle; a final ``end`` event once the task is finished."""
    return await _stream(request)


async def _stream(request: web.Request) -> web.StreamResponse:
    q = request.query
    level = q.get("level")
    if level is not None and level.upper() not in LOG_LEVELS:
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
