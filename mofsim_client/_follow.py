"""What following a task to its end keeps track of, shared by ``Task.wait`` and
``AsyncTask.wait``: the deadline, the id of the last stream event (where to resume),
the status and progress seen so far, the outage bookkeeping while the server is away,
and the ``on_progress`` callback that hears all of it as ``TaskEvent`` objects.

The two waits differ only in how they block (``time.sleep`` or ``asyncio``); every
decision about what a stream event, a polled record or a lost connection means is here.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from mofsim_client.errors import (
    MOFSimError,
    ServerUnavailableError,
    TaskCancelledError,
    TaskDivergedError,
    TaskError,
    TaskFailedError,
    TaskTimeoutError,
    WaitTimeoutError,
)
from mofsim_client.models import TERMINAL_STATES, TaskEvent, TaskInfo
from mofsim_client.results import TaskResult

log = logging.getLogger("mofsim_client")
ProgressCallback = Callable[[TaskEvent], Any]
FOLLOWED = ("status", "progress", "end")
MAX_OUTAGE_PAUSE_S = 5.0
_FAILURE_STATES: dict[type[MOFSimError], str] = {
    TaskFailedError: "FAILED",
    TaskDivergedError: "FAILED",
    TaskTimeoutError: "TIMEOUT",
    TaskCancelledError: "CANCELLED",
}


class Follow:
    """What both waits share: the deadline, the last event id, the outage bookkeeping
    and the progress callback."""

    def __init__(
        self,
        task_id: str,
        timeout: float | None,
        on_progress: ProgressCallback | None,
        poll_interval: float,
    ) -> None:
        self.task_id = task_id
        self.timeout = timeout
        self.deadline = None if timeout is None else time.monotonic() + max(0.0, timeout)
        self.on_progress = on_progress
        self.poll_interval = max(0.05, poll_interval)
        self.last_event_id: str | None = None
        self.status: str | None = None
        self.progress: float | None = None
        self.use_events = True
        self.outage_since: float | None = None
        self.outage_error: str | None = None

    def remaining(self) -> float | None:
        return None if self.deadline is None else self.deadline - time.monotonic()

    def expired(self) -> bool:
        left = self.remaining()
        return left is not None and left <= 0

    def give_up(self) -> MOFSimError:
        """The error for a wait whose timeout is over: the server's absence when that is
        why nothing was heard, else a plain wait timeout."""
        if self.outage_since is not None:
            down = time.monotonic() - self.outage_since
            return ServerUnavailableError(
                f"gave up waiting for task {self.task_id}: the server has been unreachable "
                f"for {down:.0f} s and the wait's timeout ({self.timeout:g} s) is over; "
                f"last error: {self.outage_error}",
                task_id=self.task_id,
            )
        return WaitTimeoutError(
            f"task {self.task_id} still {self.status or 'unfinished'} after waiting "
            f"{self.timeout:g} s; it goes on running on the server",
            task_id=self.task_id,
        )

    def _emit(self, ev: TaskEvent) -> None:
        if self.on_progress is not None:
            self.on_progress(ev)

    def event(self, ev: TaskEvent) -> bool:
        """Take one stream event; True once the task has ended."""
        if ev.id is not None:
            self.last_event_id = ev.id
        if ev.event not in FOLLOWED:
            return False
        if ev.status:
            self.status = ev.status
        if ev.progress is not None:
            self.progress = ev.progress
        self._emit(ev)
        return ev.event == "end" or self.status in TERMINAL_STATES

    def polled(self, info: TaskInfo) -> bool:
        """Take a polled record: progress and status changes become events."""
        changed_status = info.status != self.status
        changed_progress = info.progress is not None and info.progress != self.progress
        self.status = info.status
        if info.progress is not None:
            self.progress = info.progress
        if changed_status or changed_progress:
            kind = "status" if changed_status else "progress"
            self._emit(
                TaskEvent(
                    raw=info.raw,
                    event=kind,
                    task_id=self.task_id,
                    status=info.status,
                    progress=info.progress,
                    message=(info.progress_detail or {}).get("message"),
                )
            )
        return info.is_terminal

    def lost(self, exc: ServerUnavailableError) -> float:
        """The server is unreachable: report it (once per outage), give up when the
        deadline has passed, else say how long to pause before the next try."""
        self.outage_error = exc.message
        if self.outage_since is None:
            self.outage_since = time.monotonic()
            log.warning(
                "task %s: %s; retrying until the server is back%s",
                self.task_id,
                exc.message,
                ""
                if self.deadline is None
                else f" (at most {max(0.0, self.remaining() or 0):.0f} s more)",
            )
            self._emit(
                TaskEvent(
                    event="disconnected",
                    task_id=self.task_id,
                    status=self.status,
                    message=exc.message,
                    error=exc,
                )
            )
        if self.expired():
            raise self.give_up() from exc
        left = self.remaining()
        pause = min(MAX_OUTAGE_PAUSE_S, self.poll_interval)
        return pause if left is None else max(0.0, min(pause, left))

    def finished(self, result: TaskResult) -> TaskResult:
        """The result is in; a final ``end`` event unless the stream already said so."""
        if self.status not in TERMINAL_STATES:
            self.status = result.status or "COMPLETED"
            self._emit(TaskEvent(event="end", task_id=self.task_id, status=self.status))
        return result

    def failed(self, exc: TaskError) -> None:
        """The task ended without a result; a final ``end`` event unless the stream
        already said so."""
        state = _FAILURE_STATES.get(type(exc))
        if state is not None and self.status not in TERMINAL_STATES:
            self.status = state
            self._emit(
                TaskEvent(
                    event="end", task_id=self.task_id, status=state, message=exc.detail, error=exc
                )
            )

    def update(self, info: TaskInfo) -> None:
        """What the wait saw, into the handle's record."""
        if self.status is not None:
            info.status = self.status
        if self.progress is not None:
            info.progress = self.progress

    def regained(self) -> None:
        if self.outage_since is None:
            return
        down = time.monotonic() - self.outage_since
        self.outage_since = None
        log.warning("task %s: server reachable again after %.1f s", self.task_id, down)
        self._emit(
            TaskEvent(
                event="reconnected",
                task_id=self.task_id,
                status=self.status,
                message=f"server reachable again after {down:.1f} s",
            )
        )
