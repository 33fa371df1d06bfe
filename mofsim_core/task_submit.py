"""Submitting tasks, one or a batch, for both API dialects.

Plain blocking functions over the spool and the mirror: handlers call them through
``asyncio.to_thread``.  Each submission is validated by ``task_validation.build_job``
and owned by the calling key before anything is published; a batch is validated whole
first, then its valid items are published.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

from mofsim_core.eta import EtaBoard
from mofsim_core.model_service import visible_model
from mofsim_core.owners import OWNER, Caller, structure_owner_visible
from mofsim_core.request_ids import current_request_id
from mofsim_core.task_records import (
    mirror_record,
    public_record,
    queue_position,
    queue_positions,
    queued_record,
)
from mofsim_core.task_validation import build_job
from spool.errors import ModelNotFound, MofsimError, ValidationError
from spool.job import Job
from spool.store import Spool

if TYPE_CHECKING:
    from mofsim_core.mirror import Mirror

__all__ = ["MAX_BATCH", "submit_task", "submit_batch"]

MAX_BATCH = 1000


def _owned_job(spool: Spool, body: Any, task_type: str | None, caller: Caller) -> Job:
    """The job of a submission, owned by the caller; a structure upload or a custom
    model of another key is refused as if it did not exist."""
    _check_model_visible(spool, body, caller)
    job = build_job(spool, body, task_type)
    ref = job.structure
    if ref.get("source") == "upload" and isinstance(ref.get("file_id"), str):
        field = "structure_id" if "structure_id" in body else "structure.file_id"
        structure_owner_visible(spool, caller, ref["file_id"], field)
    # A batch's tasks all keep the id of the one request that submitted them.
    return dataclasses.replace(job, owner=caller.owner, request_id=current_request_id())


def _check_model_visible(spool: Spool, body: Any, caller: Caller) -> None:
    """Before any other check, so that nothing tells another key's model exists."""
    if caller.admin or not isinstance(body, dict):
        return
    field = "model" if body.get("model") is not None else "model_key"
    key = body.get(field)
    if not isinstance(key, str):
        return  # build_job says what is wrong with it
    try:
        visible_model(spool, key, caller)
    except ModelNotFound as exc:
        exc.field = field
        raise


def submit_task(
    spool: Spool,
    mirror: Mirror | None,
    body: Any,
    task_type: str | None = None,
    caller: Caller = OWNER,
) -> dict[str, Any]:
    """Validate and publish one task; its record (with ``queue_position``)."""
    job = _owned_job(spool, body, task_type, caller)
    # An id the server generated just now cannot belong to an earlier task.
    spool.submit(job, fresh_id=not (isinstance(body, dict) and body.get("task_id") is not None))
    record = queued_record(job)
    mirror_record(mirror, record)
    out = public_record(record, {job.task_id: queue_position(spool, job.task_id)})
    return EtaBoard.of(spool.root).annotate(out)


def submit_batch(
    spool: Spool,
    mirror: Mirror | None,
    items: Any,
    task_type: str | None = None,
    caller: Caller = OWNER,
) -> dict[str, Any]:
    """Validate every item first, then publish the valid ones.  Per item: the record,
    or the error (code, message, field).  Raises only when the list itself is bad or
    no item is valid."""
    if not isinstance(items, list) or not items:
        raise ValidationError("tasks must be a non-empty list", field="tasks")
    if len(items) > MAX_BATCH:
        raise ValidationError(
            f"a batch holds at most {MAX_BATCH} tasks, got {len(items)}", field="tasks"
        )
    jobs: list[tuple[int, Job]] = []
    errors: dict[int, MofsimError] = {}
    for i, item in enumerate(items):
        try:
            job = _owned_job(spool, item, task_type, caller)
        except MofsimError as exc:
            errors[i] = exc
            continue
        if any(j.task_id == job.task_id for _, j in jobs):
            errors[i] = ValidationError(
                f"task id {job.task_id} appears twice in the batch", field="task_id"
            )
            continue
        jobs.append((i, job))
    if not jobs:
        first = min(errors)
        worst = errors[first]
        summary = "; ".join(f"tasks[{i}]: {errors[i].message}" for i in sorted(errors)[:10])
        raise type(worst)(
            f"no task in the batch is valid ({len(errors)} rejected); {summary}",
            field=f"tasks[{first}].{worst.field or 'body'}",
            detail=summary,
        )
    published: dict[int, dict[str, Any]] = {}
    for i, job in jobs:
        try:
            spool.submit(job, fresh_id=items[i].get("task_id") is None)
        except MofsimError as failed:
            errors[i] = failed
            continue
        published[i] = queued_record(job)
        mirror_record(mirror, published[i])
    queue = queue_positions(spool)
    results: list[dict[str, Any]] = []
    for i in range(len(items)):
        if i in published:
            task = EtaBoard.of(spool.root).annotate(public_record(published[i], queue))
            results.append({"index": i, "accepted": True, "task": task})
        else:
            err = errors[i]
            results.append(
                {
                    "index": i,
                    "accepted": False,
                    "error": {
                        "code": err.code,
                        "type": type(err).__name__,
                        "message": err.message,
                        "field": f"tasks[{i}].{err.field}" if err.field else f"tasks[{i}]",
                    },
                }
            )
    return {
        "accepted": len(published),
        "rejected": len(items) - len(published),
        "task_ids": [published[i]["task_id"] for i in sorted(published)],
        "items": results,
    }
