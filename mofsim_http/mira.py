"""The MIRA dialect: ``/mira/api/v1/...`` and ``/mira/health``.

A MIRA client works unmodified against this server with
``MIRA_GATEWAY_URL=http://host:port/mira``.  Everything here is request parsing and
response shaping around the same core functions ``/api/v1`` uses (``task_submit``,
``task_listing``, ``task_service``, ``structure_service``, ``model_service``, ``files``);
the shapes are in ``mira_shapes``.  Bodies are bare (no envelope), statuses the guide's
four (``state`` beside holds ours), errors ``{detail, error_code, field, code}`` with the
guide's HTTP statuses (``mira_errors``; the shared error middleware does that for every
path under ``/mira/``).

This module holds tasks, results and health (their schemas are in ``mira_schemas``);
``mira_resources`` structures and models.
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web

from executors.registry import task_types
from mofsim_core.mira_shapes import mira_result, mira_summary, mira_task
from mofsim_core.output_files import find_output
from mofsim_core.owners import OWNER, Caller, check_task
from mofsim_core.task_listing import list_tasks
from mofsim_core.task_service import cancel_task, get_result, get_task
from mofsim_core.task_submit import submit_task
from mofsim_http import mira_resources
from mofsim_http.app import MIRA_API_PREFIX, MIRROR_KEY, SPOOL_KEY
from mofsim_http.auth import caller_of
from mofsim_http.describe import describe
from mofsim_http.envelope import ok
from mofsim_http.files import file_response
from mofsim_http.json_body import read_json_object
from mofsim_http.mira_resources import int_query
from mofsim_http.mira_schemas import (
    CANCEL_SCHEMA,
    DEFAULT_LIMIT,
    DOWNLOAD_KINDS,
    HEALTH_EXAMPLE,
    HEALTH_SCHEMA,
    LIST_QUERY,
    MAX_LIMIT,
    RESULT_SCHEMA,
    SUMMARY_SCHEMA,
    TAGS,
    TASK_EXAMPLE,
    TASK_PAGE_SCHEMA,
    TASK_SCHEMA,
    UNKNOWN_TASK,
    submit_body_schema,
)
from mofsim_http.openapi import path_params, returns
from mofsim_http.request_pool import quick, short_body
from mofsim_http.system import health_info
from spool.errors import ValidationError
from spool.events import iso_now
from spool.states import MIRA_STATUSES, TaskState, states_of_mira_status

MIRA_ROOT = "/mira"


# --- tasks -------------------------------------------------------------------------------------


def _submit_handler(task_type: str) -> Any:
    @returns(schema=TASK_SCHEMA, status=201)
    @describe(
        summary=f"Submit a {task_type} task",
        tags=TAGS,
        body=submit_body_schema(task_type),
        responses={
            201: "queued (status pending)",
            400: "invalid parameter",
            404: "unknown structure or model",
            422: "structure unusable for this task or model",
            503: "model cannot be loaded, or the queue is full",
        },
    )
    async def submit(request: web.Request) -> web.Response:
        body = await _json_body(request)
        app = request.app
        record = await short_body(
            request,
            submit_task,
            app[SPOOL_KEY],
            app[MIRROR_KEY],
            body,
            task_type,
            caller_of(request),
        )
        # estimated_time_minutes comes from the job's estimate; None without a cost
        # model: unknown, not guessed.
        return ok(request, mira_task(record), status=201)

    submit.__name__ = f"submit_{task_type.replace('-', '_')}"
    submit.__doc__ = (
        f"The guide's `POST /tasks/{task_type}`: a flat JSON body, e.g. "
        '`{"structure_id": ..., "model_key": ..., "fmax": 0.05}`.'
    )
    return submit


async def _json_body(request: web.Request) -> dict[str, Any]:
    return await read_json_object(request)


def _states(value: str | None) -> list[str] | None:
    """The guide's four statuses (``failed`` also takes cancelled and timed-out tasks)
    or our states by name, comma-separated."""
    if not value:
        return None
    out: list[str] = []
    for part in value.split(","):
        name = part.strip().lower()
        if name in MIRA_STATUSES:
            out.extend(states_of_mira_status(name))
            continue
        state = TaskState.parse(name)
        if state is None:
            raise ValidationError(
                f"unknown status {part.strip()!r}; expected one of "
                f"{', '.join(MIRA_STATUSES)} or a state "
                f"({', '.join(s.mira_detail for s in TaskState)})",
                field="status",
            )
        out.append(state.value)
    return list(dict.fromkeys(out))


def _with_task_details(spool: Any, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """List rows from the mirror carry neither the structure reference nor the last
    progress step; the spool's record has both, as ``GET /tasks/{id}`` shows them."""
    from spool.errors import MofsimError

    out = []
    for item in items:
        if "structure" not in item or "progress_detail" not in item:
            try:
                record = spool.record(str(item["task_id"]))
            except MofsimError:
                record = {}
            item = {
                **item,
                "structure": item.get("structure", record.get("structure")),
                "progress_detail": item.get("progress_detail", record.get("progress_detail")),
            }
        out.append(item)
    return out


@returns(schema=TASK_PAGE_SCHEMA)
@describe(
    summary="List tasks",
    tags=TAGS,
    query=LIST_QUERY,
    responses={200: "a page of tasks, newest first", 400: "bad filter"},
)
async def list_handler(request: web.Request) -> web.Response:
    """`status`, `task_type`, `skip`, `limit` as in the guide."""
    skip = int_query(request, "skip", 0, 0, 10**9)
    limit = int_query(request, "limit", DEFAULT_LIMIT, 1, MAX_LIMIT)
    app = request.app
    items, total = await quick(
        request,
        list_tasks,
        app[SPOOL_KEY],
        app[MIRROR_KEY],
        status=_states(request.query.get("status")),
        task_type=request.query.get("task_type") or None,
        limit=limit,
        offset=skip,
        caller=caller_of(request),
    )
    items = await asyncio.to_thread(_with_task_details, app[SPOOL_KEY], items)
    return ok(
        request,
        {"total": total, "skip": skip, "limit": limit, "tasks": [mira_task(r) for r in items]},
    )


@returns(schema=TASK_SCHEMA, example=TASK_EXAMPLE)
@describe(summary="Task status", tags=TAGS, responses={200: "the task", 404: UNKNOWN_TASK})
async def status_handler(request: web.Request) -> web.Response:
    """Poll this until `status` is completed or failed; a failed task (also one
    cancelled or timed out: `state` says which) carries `error_message` and
    `error_code`."""
    record = await quick(
        request, get_task, request.app[SPOOL_KEY], request.match_info["task_id"], caller_of(request)
    )
    return ok(request, mira_task(record))


@returns(schema=CANCEL_SCHEMA)
@describe(
    summary="Cancel a task",
    tags=TAGS,
    responses={
        200: "cancelled, or cancel requested for a running task",
        404: UNKNOWN_TASK,
        400: "the task has already finished (TASK_TERMINAL)",
    },
)
async def cancel_handler(request: web.Request) -> web.Response:
    """A queued task is cancelled at once; a running one stops at its next step."""
    app = request.app
    caller = caller_of(request)
    # The default pool: the answer may wait a moment for a running task to stop.
    out = await asyncio.to_thread(
        cancel_task,
        app[SPOOL_KEY],
        app[MIRROR_KEY],
        request.match_info["task_id"],
        caller,
        actor=caller.actor(f"anonymous@{request.remote}"),
    )
    done = out["status"] == "CANCELLED"
    message = (
        "Task cancelled successfully"
        if done
        else "Cancellation requested; the task stops at its next step"
    )
    # The guide's status of the task now: a running task runs until its next step.
    now = TaskState.parse(str(out["status"]))
    return ok(
        request,
        {
            "message": message,
            "task_id": out["task_id"],
            "status": now.mira if now is not None else None,
            "state": now.mira_detail if now is not None else None,
            "cancel_requested": bool(out.get("cancel_requested")),
        },
    )


# --- results -----------------------------------------------------------------------------------


def _optimized_structure(spool: Any, task_id: str) -> dict[str, Any] | None:
    """The guide's ``optimized_structure``: symbols, positions and cell of the output."""
    from executors.structure_io import read_structure_file
    from spool.errors import MofsimError

    try:
        out = find_output(spool, task_id, "structure")
        atoms = read_structure_file(out.path)
    except MofsimError:
        return None
    return {
        "symbols": atoms.get_chemical_symbols(),
        "positions": [[float(x) for x in row] for row in atoms.positions],
        "cell": [[float(x) for x in row] for row in atoms.cell.array],
        "pbc": [bool(x) for x in atoms.pbc],
    }


def full_result(spool: Any, task_id: str, caller: Caller = OWNER) -> dict[str, Any]:
    """``GET /results/{id}``: the result flat, with the guide's key names."""
    doc = get_result(spool, task_id, caller)
    record = spool.record(task_id)
    structure = _optimized_structure(spool, task_id) if doc["task_type"] == "optimization" else None
    return mira_result(doc, record, structure)


@returns(schema=RESULT_SCHEMA)
@describe(
    summary="Task result",
    tags=TAGS,
    responses={
        200: "the result",
        404: UNKNOWN_TASK,
        400: "not finished yet (RESULT_NOT_READY), or failed, cancelled or timed out",
    },
)
async def result_handler(request: web.Request) -> web.Response:
    """Optimization results carry `optimized_structure` (symbols, positions, cell)."""
    data = await asyncio.to_thread(
        full_result, request.app[SPOOL_KEY], request.match_info["task_id"], caller_of(request)
    )
    return ok(request, data)


@returns(schema=SUMMARY_SCHEMA)
@describe(
    summary="Result summary",
    tags=TAGS,
    responses={200: "the key numbers", 404: UNKNOWN_TASK, 400: "no result"},
)
async def summary_handler(request: web.Request) -> web.Response:
    """`key_metrics` holds the few numbers that characterise the result."""
    doc = await quick(
        request,
        get_result,
        request.app[SPOOL_KEY],
        request.match_info["task_id"],
        caller_of(request),
    )
    return ok(request, mira_summary(doc))


@path_params(file_type={"type": "string", "enum": list(DOWNLOAD_KINDS)})
# The type follows the kind and the file (the 200 text lists them): any, in the document.
@returns(media_type="*/*")
@describe(
    summary="Download a result file",
    tags=TAGS,
    responses={
        200: "the file (chemical/x-cif, application/octet-stream for ASE "
        "trajectories, application/x-ndjson for the log)",
        400: "bad file_type, or not finished yet",
        404: "unknown task (or another key's) or no such file",
    },
)
async def download_handler(request: web.Request) -> web.StreamResponse:
    """`file_type`: structure (the optimized or relaxed structure), trajectory, or log
    (the task's structured event log, one JSON record per line)."""
    kind = request.match_info["file_type"]
    if kind not in DOWNLOAD_KINDS:
        raise ValidationError(
            f"file_type must be one of {', '.join(DOWNLOAD_KINDS)}", field="file_type"
        )
    spool, task_id = request.app[SPOOL_KEY], request.match_info["task_id"]
    await asyncio.to_thread(check_task, spool, caller_of(request), task_id)
    out = await asyncio.to_thread(find_output, spool, task_id, kind)
    return file_response(out)


# --- health ------------------------------------------------------------------------------------


@returns(schema=HEALTH_SCHEMA, example=HEALTH_EXAMPLE)
@describe(
    summary="Health (MIRA shape)",
    tags=TAGS,
    public=True,
    responses={200: "healthy, or degraded (no daemon runs the tasks)", 503: "unhealthy"},
)
async def health_handler(request: web.Request) -> web.Response:
    """As `GET /health` judges it: `healthy` (spool writable, daemon running),
    `degraded` (no daemon: tasks queue but do not run) or `unhealthy` (spool not
    writable, 503); in the guide's shape, with `daemon_running` beside."""
    info = await asyncio.to_thread(health_info, request.app)
    body = {
        "status": info["status"],
        "version": info["version"],
        "timestamp": iso_now(),
        "daemon_running": bool(info["daemon"]["alive"]),
    }
    return web.json_response(body, status=503 if info["status"] == "unhealthy" else 200)


def setup(app: web.Application) -> None:
    p = MIRA_API_PREFIX
    app.router.add_get(MIRA_ROOT + "/health", health_handler)
    for spec in task_types().values():  # aliases too, as /api/v1 answers them
        for name in spec.names:
            app.router.add_post(f"{p}/tasks/{name}", _submit_handler(spec.name))
    app.router.add_get(p + "/tasks", list_handler)
    app.router.add_get(p + "/tasks/{task_id}", status_handler)
    app.router.add_post(p + "/tasks/{task_id}/cancel", cancel_handler)
    app.router.add_get(p + "/results/{task_id}", result_handler)
    app.router.add_get(p + "/results/{task_id}/summary", summary_handler)
    app.router.add_get(p + "/results/{task_id}/download/{file_type}", download_handler)
    mira_resources.setup(app)
