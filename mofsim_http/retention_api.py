"""Retention and notifications of a task over HTTP (spec 8.3, 4.6).

``POST /tasks/{id}/keep`` sets or clears the keep flag; ``DELETE /tasks/{id}`` (admin)
removes a finished task's results and files, keeping its record and log, and is
audited; ``GET /tasks/{id}/webhooks`` lists every delivery attempt of its webhooks;
``GET /system/retention`` (admin) shows what the retention policy would do now.
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web

from mofsim_core import retention
from mofsim_core.owners import check_task
from mofsim_core.webhooks import deliveries
from mofsim_http.app import API_PREFIX, CONFIG_KEY, MIRROR_KEY, SPOOL_KEY
from mofsim_http.auth import caller_of
from mofsim_http.describe import describe
from mofsim_http.envelope import ok
from mofsim_http.json_body import read_json
from mofsim_http.paging import page_of, page_query
from spool.errors import TaskNotFound, ValidationError

KEEP_BODY = {"type": "object", "properties": {"keep": {"type": "boolean", "default": True}}}


@describe(
    summary="Set or clear a task's keep flag",
    tags=["tasks"],
    body=KEEP_BODY,
    body_optional=True,
    responses={404: "no such task (or another key's)"},
)
async def keep_task(request: web.Request) -> web.Response:
    """A kept task is never reminded about nor expired by the retention policy."""
    keep = True
    if request.can_read_body:
        body: Any = await read_json(request, allow_empty=True)
        if not isinstance(body, dict) or not isinstance(body.get("keep", True), bool):
            raise ValidationError("keep must be true or false", field="keep")
        keep = body.get("keep", True)
    spool = request.app[SPOOL_KEY]
    await asyncio.to_thread(check_task, spool, caller_of(request), request.match_info["task_id"])
    info = await asyncio.to_thread(retention.set_keep, spool, request.match_info["task_id"], keep)
    return ok(request, {"task_id": request.match_info["task_id"], **info})


@describe(
    summary="Delete a finished task's results and files",
    tags=["tasks"],
    admin=True,
    responses={403: "needs an admin key", 404: "no such task", 409: "not finished"},
)
async def delete_task(request: web.Request) -> web.Response:
    """The task's record and log are kept (they are permanent); the deletion is audited."""
    spool = request.app[SPOOL_KEY]
    task_id = request.match_info["task_id"]
    actor = caller_of(request).actor(f"anonymous@{request.remote}")
    out = await asyncio.to_thread(retention.delete_task_data, spool, task_id, actor=actor)
    mirror = request.app[MIRROR_KEY]
    if mirror is not None:
        await asyncio.to_thread(mirror.upsert_task, spool.record(task_id))
    return ok(request, out, message="Deleted")


@describe(
    summary="Webhook delivery attempts of a task",
    tags=["tasks"],
    query=page_query(),
    responses={404: "no such task (or another key's)"},
)
async def task_webhooks(request: web.Request) -> web.Response:
    spool = request.app[SPOOL_KEY]
    task_id = request.match_info["task_id"]
    if spool.locate(task_id) is None:
        raise TaskNotFound(f"task {task_id} not found")
    await asyncio.to_thread(check_task, spool, caller_of(request), task_id)
    items = deliveries(spool.paths.state_dir / "webhooks", task_id)
    return ok(request, page_of(request.query, items, task_id=task_id))


@describe(summary="What the retention policy would do now (dry run)", tags=["system"], admin=True)
async def retention_plan(request: web.Request) -> web.Response:
    spool = request.app[SPOOL_KEY]
    policy = retention.Policy.from_config(request.app[CONFIG_KEY])
    plan = await asyncio.to_thread(retention.plan, spool, policy)
    return ok(request, {"policy": policy.to_dict(), "actions": [a.to_dict() for a in plan.actions]})


def setup(app: web.Application) -> None:
    r = app.router
    r.add_post(API_PREFIX + "/tasks/{task_id}/keep", keep_task)
    r.add_delete(API_PREFIX + "/tasks/{task_id}", delete_task)
    r.add_get(API_PREFIX + "/tasks/{task_id}/webhooks", task_webhooks)
    r.add_get(API_PREFIX + "/system/retention", retention_plan)
