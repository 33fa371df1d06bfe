"""One task by its id, as both API dialects see it: record, result, cancel, log history.

Plain blocking functions over the spool and the mirror: handlers call them through
``asyncio.to_thread`` and only parse requests and shape answers (``/api/v1`` in
``tasks.py``, the MIRA adapters elsewhere).  A key that may not see a task is answered
as if the task did not exist.  Submitting is ``task_submit``; lists are
``task_listing``.
"""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING, Any

from mofsim_core.eta import EtaBoard
from mofsim_core.logs import audit
from mofsim_core.output_files import output_file_urls
from mofsim_core.owners import OWNER, Caller, check_task
from mofsim_core.result_document import result_document
from mofsim_core.task_records import (
    failure_of,
    mirror_task,
    pagination,
    public_record,
    queue_position,
)
from spool.errors import TaskNotFound, ValidationError
from spool.events import Event, filter_events, ms_from_iso, read_events
from spool.states import TERMINAL_STATES
from spool.store import Spool

if TYPE_CHECKING:
    from mofsim_core.mirror import Mirror

__all__ = [
    "get_task",
    "get_result",
    "cancel_task",
    "task_logs",
    "parse_kinds",
    "event_item",
]

EVENT_KINDS = ("log", "status", "progress")
# How long a cancel of a running task waits for it to stop before answering.
CANCEL_WAIT_S = 2.0
# Never set: its wait is an interruptible pause between looks at the spool.
_pause = threading.Event()


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
    spool: Spool,
    mirror: Mirror | None,
    task_id: str,
    caller: Caller = OWNER,
    *,
    actor: str | None = None,
    wait_s: float = CANCEL_WAIT_S,
) -> dict[str, Any]:
    """QUEUED: cancelled now.  ASSIGNED/RUNNING: the executor stops at its next step
    (killed after the daemon's grace period); the answer waits up to ``wait_s`` for the
    task to end and says the state it is in then: CANCELLED (or whatever end it reached
    first), or still RUNNING/ASSIGNED with ``cancel_requested``.  Terminal:
    TaskTerminal (50005).  Audited: who, which task, its state when asked."""
    check_task(spool, caller, task_id)
    before = spool.record(task_id)["status"]
    now = spool.request_cancel(task_id)
    audit("task.cancel", task_id=task_id, by=actor or caller.actor(), state=before)
    if now != "CANCELLED":
        ended = await_end(spool, task_id, wait_s)
        now = ended or str(spool.record(task_id)["status"])
    if now in TERMINAL_STATES:
        mirror_task(spool, mirror, task_id)
    pending = now not in TERMINAL_STATES
    if now == "CANCELLED":
        message = "Task cancelled"
    elif pending:
        message = "Cancel requested; the task stops at its next step"
    else:
        message = f"The task ended as {now} before the cancel took effect"
    return {"task_id": task_id, "status": now, "cancel_requested": pending, "message": message}


def await_end(spool: Spool, task_id: str, wait_s: float) -> str | None:
    """The task's terminal state as soon as it reaches one, or None after ``wait_s``.
    Checks a few file names, more often at first: a cooperative stop takes one step."""
    deadline = time.monotonic() + max(0.0, wait_s)
    pause = 0.01
    while True:
        loc = spool.locate(task_id)
        if loc is None or loc.state in TERMINAL_STATES:
            return loc.state if loc is not None else None
        left = deadline - time.monotonic()
        if left <= 0:
            return None
        _pause.wait(min(pause, left))
        pause = min(pause * 2, 0.1)


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
