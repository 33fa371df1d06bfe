"""``mofsim top --server URL``: the same ``TopState`` as the local source, from the
HTTP API through the SDK.

A refresh is seven GETs (health, devices, queue statistics, queue head, running tasks,
recently finished tasks, active alerts).  The client is made for a live view: no
retries and a short timeout, since the next refresh is the retry, and a view that
hangs for half a minute on a dead server is worse than one that says so at once.
"""

from __future__ import annotations

from typing import Any

from mofsim_cli.top_data import (
    LOG_TAIL,
    PRIORITY_NAMES,
    QUEUE_HEAD,
    RECENT,
    SlotRow,
    TaskRow,
    TopState,
    join_slots,
)
from spool.events import Event
from spool.states import TaskState

TIMEOUT_S = 5.0
FINISHED = [s.value for s in TaskState if s.is_terminal]


class RemoteSource:
    def __init__(self, server: str, api_key: str | None = None, timeout: float = TIMEOUT_S) -> None:
        from mofsim_client import MOFSimClient

        self.client = MOFSimClient(
            server, api_key=api_key, timeout=timeout, retries=0, retry_after_budget=timeout
        )
        self.label = f"server {self.client.base_url}"

    def close(self) -> None:
        self.client.close()

    def _tasks(self, status: str | list[str], order: str, size: int) -> list[TaskRow]:
        listed = self.client.list_tasks(status=status, order=order, page_size=size, limit=size)
        return [task_row(t.raw) for t in listed]

    def cancel(self, task_id: str) -> str:
        return str(self.client.cancel_task(task_id).status or "RUNNING")

    def log_feed(self, task_id: str) -> RemoteLogFeed:
        self.client.get_task_info(task_id)  # a mistyped id fails here, not in the pane
        return RemoteLogFeed(self, task_id)

    def fetch(self) -> TopState:
        status = self.client.get_system_status()
        queue = status.queue or {}
        by_priority = (queue.get("queued") or {}).get("by_priority") or {}
        counts = {p: int(by_priority.get(p) or 0) for p in PRIORITY_NAMES}
        head = self._tasks("QUEUED", "created_at asc", QUEUE_HEAD)
        head.sort(key=lambda r: (r.queue_position is None, r.queue_position or 0))
        running = [
            task_row(t.raw)
            for t in self.client.list_tasks(
                status=["ASSIGNED", "RUNNING"], page_size=100, limit=200
            )
        ]
        recent = self._tasks(FINISHED, "completed_at desc", RECENT)
        alerts = self.client.get_alerts("active").items
        gpus = [g for g in status.gpus if isinstance(g, dict)]
        slots = [slot_row(g) for g in gpus]
        cancelling = {
            s.task_id
            for s, g in zip(slots, gpus, strict=True)
            if (g.get("current_task") or {}).get("cancel_requested")
        }
        for row in running:
            row.cancel_requested = row.task_id in cancelling
        join_slots(slots, running)
        daemon = (status.health or {}).get("daemon") or {}
        return TopState(
            source=self.label,
            daemon=_daemon_line(status.status, daemon),
            daemon_ok=bool(daemon.get("responsive")),
            slots=slots,
            queue_counts=counts,
            queued=head,
            running=running,
            recent=recent,
            alerts=alerts,
        )


class RemoteLogFeed:
    """A task's newest events through ``GET /tasks/{id}/logs``: the tail first (from the
    total the first answer reports), then what came after the last event id."""

    def __init__(self, source: RemoteSource, task_id: str, tail: int = LOG_TAIL) -> None:
        self.client = source.client
        self.task_id = task_id
        self.tail = tail
        self.last_id: int | None = None

    def poll(self) -> list[Event]:
        get_page = self.client.get_log_page
        if self.last_id is None:
            total = get_page(self.task_id, limit=1).total or 0
            if not total:
                return []
            page = get_page(self.task_id, limit=self.tail, offset=max(0, total - self.tail))
        else:
            page = get_page(self.task_id, since=self.last_id, limit=1000)
        events = [Event(e.id, e.raw) for e in page.items if isinstance(e.id, int)]
        if events:
            self.last_id = events[-1].offset
        return events


def task_row(r: dict[str, Any]) -> TaskRow:
    error = r.get("error")
    error_text = None
    if isinstance(error, dict):
        error_text = (
            " ".join(
                str(x) for x in (error.get("code"), error.get("message")) if x not in (None, "")
            )
            or None
        )
    frac = r.get("progress")
    detail = r.get("progress_detail")
    return TaskRow(
        str(r.get("task_id")),
        str(r.get("status") or "?"),
        task_type=r.get("task_type"),
        model=r.get("model"),
        structure=r.get("structure_name"),
        priority=r.get("priority"),
        slot=r.get("slot"),
        progress=float(frac) if isinstance(frac, int | float) else None,
        detail=dict(detail) if isinstance(detail, dict) else {},
        queue_position=r.get("queue_position"),
        started_at=r.get("started_at"),
        completed_at=r.get("completed_at"),
        error=error_text,
        estimated_start=r.get("estimated_start"),
        estimated_end=_end_of(r),
    )


def _end_of(r: dict[str, Any]) -> str | None:
    """When a running task should end: its start plus its estimated duration."""
    from datetime import UTC, datetime, timedelta

    start, duration = r.get("started_at") or r.get("estimated_start"), r.get("estimated_duration_s")
    if not isinstance(start, str) or not isinstance(duration, int | float):
        return None
    try:
        moment = datetime.fromisoformat(start.replace("Z", "+00:00"))
    except ValueError:
        return None
    end = moment.astimezone(UTC) + timedelta(seconds=float(duration))
    return end.strftime("%Y-%m-%dT%H:%M:%SZ")


def slot_row(g: dict[str, Any]) -> SlotRow:
    current = g.get("current_task") or {}
    return SlotRow(
        slot_id=str(g.get("slot_id")),
        name=g.get("name"),
        device=g.get("device"),
        state=g.get("state"),
        utilization=g.get("utilization_percent"),
        memory_used_mb=g.get("memory_used_mb"),
        memory_total_mb=g.get("memory_total_mb"),
        temperature_c=g.get("temperature_c"),
        available=g.get("available") is not False,
        error=g.get("error"),
        loaded_models=[str(m) for m in g.get("loaded_models") or []],
        task_id=current.get("task_id") if isinstance(current, dict) else None,
    )


def _daemon_line(health: str | None, daemon: dict[str, Any]) -> str:
    state = f"server {health}" if health else "server"
    if daemon.get("responsive"):
        return f"{state}, daemon pid {daemon.get('pid')} running"
    if daemon.get("alive"):
        return f"{state}, daemon pid {daemon.get('pid')} not responding"
    return f"{state}, no daemon running: tasks queue but do not run"
