"""What ``mofsim top`` shows, whichever source it comes from: the rows and the state.

Both sources, the spool (``top_local``) and a server (``top_remote``), answer the same
three questions: a ``TopState`` (slots, queue, running and recently finished tasks,
active alerts), cancelling a task, and a ``LogFeed`` that hands out a task's newest
events.  The view is written once against them.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Protocol

from spool.events import Event

PRIORITY_NAMES = ("CRITICAL", "HIGH", "NORMAL", "LOW")
QUEUE_HEAD = 50  # queued tasks fetched, in scheduling order; the view shows what fits
RECENT = 10  # finished tasks fetched, newest first
LOG_TAIL = 300  # lines a log pane starts with


@dataclass
class TaskRow:
    task_id: str
    status: str
    task_type: str | None = None
    model: str | None = None
    structure: str | None = None
    priority: str | None = None
    slot: str | None = None
    progress: float | None = None
    detail: dict[str, Any] = field(default_factory=dict)  # step, energy, fmax, stage...
    queue_position: int | None = None
    started_at: str | None = None
    completed_at: str | None = None
    error: str | None = None  # "CODE message" of a task that ended badly
    cancel_requested: bool = False
    # From the daemon's ETA board: when a queued task should start, a running one end.
    estimated_start: str | None = None
    estimated_end: str | None = None


@dataclass
class SlotRow:
    slot_id: str
    name: str | None = None
    device: str | None = None
    state: str | None = None
    utilization: float | None = None
    memory_used_mb: float | None = None
    memory_total_mb: float | None = None
    temperature_c: float | None = None
    available: bool = True
    error: str | None = None
    loaded_models: list[str] = field(default_factory=list)
    task_id: str | None = None
    task: TaskRow | None = None  # the current task's row from ``running``


@dataclass
class TopState:
    source: str  # "spool /path" or "server http://host:port"
    daemon: str = ""  # one line about the daemon
    daemon_ok: bool = False
    slots: list[SlotRow] = field(default_factory=list)
    queue_counts: dict[str, int] = field(default_factory=dict)  # priority -> queued
    queued: list[TaskRow] = field(default_factory=list)  # head of the queue, in order
    running: list[TaskRow] = field(default_factory=list)  # claimed: ASSIGNED / RUNNING
    recent: list[TaskRow] = field(default_factory=list)  # finished, newest first
    alerts: list[dict[str, Any]] = field(default_factory=list)
    fetched_at: float = field(default_factory=time.time)

    @property
    def queued_total(self) -> int:
        return sum(self.queue_counts.values())


class LogFeed(Protocol):
    def poll(self) -> list[Event]:
        """Events written since the last poll (the first poll: the log's tail)."""
        ...


class TopSource(Protocol):
    label: str

    def fetch(self) -> TopState: ...

    def cancel(self, task_id: str) -> str:
        """Request a cancel; the task's state after it (CANCELLED, or the state it is
        still in while the executor gets to its next step)."""
        ...

    def log_feed(self, task_id: str) -> LogFeed: ...

    def close(self) -> None: ...


def failure_text(exc: BaseException) -> str:
    """One line saying what went wrong: the message of the project's and the SDK's
    errors, the type too for anything else (an OSError, a bug)."""
    message = getattr(exc, "message", None)
    if not message:
        message = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    return str(message).splitlines()[0]


def join_slots(slots: list[SlotRow], running: list[TaskRow]) -> None:
    by_id = {t.task_id: t for t in running}
    for s in slots:
        s.task = by_id.get(s.task_id) if s.task_id else None
