"""Tasks as both API dialects see them: submit, read, cancel, list, log history.

Plain blocking functions over the spool and the mirror (file system, SQLite, structure
parsing): handlers call them through ``asyncio.to_thread`` and only parse requests and
shape answers (``/api/v1`` in ``tasks.py``, the MIRA adapters elsewhere).  Submissions
are validated by ``task_validation.build_job`` before anything is published.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import TYPE_CHECKING, Any

from loguru import logger

from executors.registry import canonical_task_type
from mofsim_core.eta import EtaBoard
from mofsim_core.model_service import visible_model
from mofsim_core.output_files import output_file_urls
from mofsim_core.owners import OWNER, Caller, check_task, structure_owner_visible
from mofsim_core.result_document import result_document
from mofsim_core.task_records import (
    MAX_PAGE,
    failure_of,
    list_from_spool,
    mirror_record,
    mirror_task,
    page_args,
    pagination,
    public_record,
    queue_position,
    queue_positions,
    queued_record,
)
from mofsim_core.task_validation import build_job
from spool.errors import (
    DatabaseError,
    ModelNotFound,
    MofsimError,
    TaskNotFound,
    ValidationError,
)
from spool.events import Event, filter_events, ms_from_iso, read_events
from spool.job import Job
from spool.states import TERMINAL_STATES, TaskState
from spool.store import Spool

if TYPE_CHECKING:
    from mofsim_core.mirror import Mirror

__all__ = [
    "MAX_BATCH",
    "MAX_PAGE",
    "submit_task",
    "submit_batch",
    "get_task",
    "get_result",
    "cancel_task",
    "list_tasks",
    "task_logs",
    "normalize_states",
    "parse_kinds",
    "page_args",
    "pagination",
    "public_record",
    "queue_positions",
    "queued_record",
    "failure_of",
    "event_item",
]

MAX_BATCH = 1000
EVENT_KINDS = ("log", "status", "progress")


# --- submitting -----------------------------------------------------------------------------


def _owned_job(spool: Spool, body: Any, task_type: str | None, caller: Caller) -> Job:
    """The job of a submission, owned by the caller; a structure upload or a custom
    model of another key is refused as if it did not exist."""
    _check_model_visible(spool, body, caller)
    job = build_job(spool, body, task_type)
    ref = job.structure
    if ref.get("source") == "upload" and isinstance(ref.get("file_id"), str):
        field = "structure_id" if "structure_id" in body else "structure.file_id"
        structure_owner_visible(spool, caller, ref["file_id"], field)
    return dataclasses.replace(job, owner=caller.owner)


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


# --- reading --------------------------------------------------------------------------------


def get_task(spool: Spool, task_id: str, caller: Caller = OWNER) -> dict[str, Any]:
    record = spool.record(task_id)
    if not caller.may_see(record.get("owner")):
        raise TaskNotFound(f"task {task_id} not found")
    board = EtaBoard.of(spool.root)
    if record["status"] != "QUEUED":
        return board.annotate(public_record(record))
    return board.annotate(public_record(record, {task_id: queue_position(spool, task_id)}))


def get_result(spool: Spool, task_id: str, caller: Caller = OWNER) -> dict[str, Any]:
    """The spec's 5.3 result, its output files as download URLs; 50003 while
    unfinished, the task's error (50xxx) when it did not complete."""
    record = spool.record(task_id)
    if not caller.may_see(record.get("owner")):
        raise TaskNotFound(f"task {task_id} not found")
    return result_document(record, failure=failure_of, locate=output_file_urls)


def cancel_task(
    spool: Spool, mirror: Mirror | None, task_id: str, caller: Caller = OWNER
) -> dict[str, Any]:
    """QUEUED: cancelled now.  ASSIGNED/RUNNING: the executor stops at its next step
    (killed after the daemon's grace period).  Terminal: TaskTerminal (50005)."""
    check_task(spool, caller, task_id)
    state = spool.request_cancel(task_id)
    if state == "CANCELLED":
        mirror_task(spool, mirror, task_id)
        message = "Task cancelled"
    else:
        message = "Cancel requested; the task stops at its next step"
    return {"task_id": task_id, "status": state, "message": message}


# --- lists ----------------------------------------------------------------------------------


def normalize_states(value: str | list[str] | None) -> list[str] | None:
    """``running``, ``QUEUED,RUNNING``, MIRA's lowercase names: the states meant."""
    if value is None or value == "":
        return None
    parts = value if isinstance(value, list) else str(value).split(",")
    out = []
    for part in parts:
        state = TaskState.parse(str(part))
        if state is None:
            raise ValidationError(
                f"unknown status {str(part).strip()!r}; expected one of {', '.join(TaskState)}",
                field="status",
            )
        out.append(state.value)
    return out


def _canonical_model(model: str, spool: Spool) -> str:
    from executors.models import resolve_model

    try:
        return resolve_model(model, spool.paths.models).key
    except MofsimError:
        return model  # not a model this server knows: nothing matches, which is the answer


_CLAIMED = (TaskState.ASSIGNED.value, TaskState.RUNNING.value)


def _list_from_mirror(
    spool: Spool,
    mirror: Mirror,
    states: list[str] | None,
    kind: str | None,
    model_key: str | None,
    limit: int,
    offset: int,
    order: str,
    owner: str | None,
) -> tuple[list[dict[str, Any]], int]:
    """The mirror's page and total.  A claimed task's row says ASSIGNED until the task
    ends (the executor, not the daemon, records that it started), so a filter on one of
    ASSIGNED and RUNNING asks for both and counts only the claimed tasks whose state in
    the spool matches; the page is filtered the same way by ``list_tasks``."""
    query = functools.partial(
        mirror.list_tasks, task_type=kind, model=model_key, order=order, owner=owner
    )
    split = states is not None and sum(s in states for s in _CLAIMED) == 1
    if not split or states is None:
        return query(status=states, limit=limit, offset=offset)
    wide = [*states, *(s for s in _CLAIMED if s not in states)]
    rows, total = query(status=wide, limit=limit, offset=offset)
    # Claimed tasks are few (one per slot, plus rows not yet caught up with their end).
    claimed, _ = query(status=list(_CLAIMED), limit=10_000, offset=0)
    for row in claimed:
        try:
            now = spool.record(str(row["task_id"])).get("status")
        except MofsimError:
            now = row.get("status")
        if now not in states:
            total -= 1
    return rows, max(total, 0)


def list_tasks(
    spool: Spool,
    mirror: Mirror | None,
    *,
    status: str | list[str] | None = None,
    task_type: str | None = None,
    model: str | None = None,
    limit: int = 20,
    offset: int = 0,
    order: str = "created_at desc",
    caller: Caller = OWNER,
) -> tuple[list[dict[str, Any]], int]:
    """A page of task records (newest first) and the total count matching; a caller
    who does not see all gets its own tasks only.

    From the mirror when it answers, else by reading the spool.  Rows of tasks not yet
    finished are refreshed from the spool, whose state is always the latest."""
    owner = caller.only_owner
    states = normalize_states(status)
    kind = canonical_task_type(task_type) if task_type else None
    model_key = _canonical_model(model, spool) if model else None
    rows: list[dict[str, Any]] | None = None
    if mirror is not None:
        try:
            rows, total = _list_from_mirror(
                spool, mirror, states, kind, model_key, limit, offset, order, owner
            )
        except DatabaseError as exc:
            logger.warning("mirror unavailable, listing from the spool: {}", exc.message)
    if rows is None:
        rows, total = list_from_spool(spool, states, kind, model_key, limit, offset, order, owner)
    items = []
    # Listing the queue costs in proportion to its length: only for pages that show it.
    queue = functools.cache(lambda: queue_positions(spool))
    for row in rows:
        if row.get("status") not in TERMINAL_STATES:
            task_id = str(row["task_id"])
            if row.get("status") == "QUEUED" and task_id in queue():
                items.append(public_record(row, queue()))  # still waiting: the row is true
                continue
            try:
                fresh = spool.record(task_id)
            except MofsimError:
                fresh = row  # gone from the spool: the mirror's row is all there is
            if fresh.get("status") != row.get("status"):
                # Changed behind the mirror's back (e.g. cancelled from the CLI while
                # queued, or started): repair the row, and keep the page true to its
                # filter.
                mirror_task(spool, mirror, str(row["task_id"]))
            if states is not None and fresh.get("status") not in states:
                continue
            row = fresh
        items.append(public_record(row, queue() if row.get("status") == "QUEUED" else None))
    board = EtaBoard.of(spool.root)
    return [board.annotate(item) for item in items], total


# --- log history ----------------------------------------------------------------------------


def parse_kinds(value: str | None) -> tuple[str, ...] | None:
    if not value:
        return None
    kinds = tuple(k.strip() for k in value.split(",") if k.strip())
    bad = [k for k in kinds if k not in EVENT_KINDS]
    if bad:
        raise ValidationError(
            f"unknown event type(s) {', '.join(bad)}; expected {', '.join(EVENT_KINDS)}",
            field="types",
        )
    return kinds


def event_item(ev: Event) -> dict[str, Any]:
    """One events.jsonl entry as the API shows it: the spec's 6.3 log record plus its
    ``id`` (the byte offset SSE streams use too)."""
    return {"id": ev.offset, **ev.data}


def task_logs(
    spool: Spool,
    task_id: str,
    *,
    level: str | None = None,
    limit: int = 100,
    offset: int = 0,
    since: str | None = None,
    kinds: tuple[str, ...] | None = None,
    caller: Caller = OWNER,
) -> dict[str, Any]:
    """A task's events, oldest first.  ``level`` is a minimum; ``since`` an event id
    (events after it) or an ISO time (events later than it)."""
    if spool.locate(task_id) is None:
        raise TaskNotFound(f"task {task_id} not found")
    check_task(spool, caller, task_id)
    if level is not None and level.upper() not in (
        "DEBUG",
        "INFO",
        "WARNING",
        "WARN",
        "ERROR",
        "CRITICAL",
    ):
        raise ValidationError(f"unknown log level {level!r}", field="level")
    floor = "WARNING" if level and level.upper() == "WARN" else level
    after_id, after_ms = _since(since)
    events = filter_events(
        read_events(spool.paths.events_file(task_id), after_id if after_id is not None else 0),
        level=floor,
        kinds=kinds,
    )
    if after_id is not None:
        events = [e for e in events if e.offset > after_id]
    if after_ms is not None:
        events = [e for e in events if _event_ms(e) > after_ms]
    page = events[offset : offset + limit]
    return {
        "task_id": task_id,
        "items": [event_item(e) for e in page],
        "pagination": pagination(len(events), limit, offset),
        "last_id": page[-1].offset if page else after_id,
    }


def _since(since: str | None) -> tuple[int | None, int | None]:
    if since is None or since == "":
        return None, None
    if since.isdigit():
        return int(since), None
    try:
        return None, ms_from_iso(since)
    except ValueError:
        raise ValidationError(
            "since must be an event id or an ISO-8601 time", field="since"
        ) from None


def _event_ms(ev: Event) -> int:
    try:
        return ms_from_iso(str(ev.data.get("timestamp")))
    except ValueError:
        return 0
