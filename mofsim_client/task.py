"""Task handles: ``Task`` (sync client) and ``AsyncTask`` (async client).

``wait()`` follows the task's event stream (``GET /api/v1/tasks/{id}/events``): status
and progress arrive as they happen, one open connection per task.  A server without
that stream is polled instead.  When the server goes away mid-wait, the handle reports
it (a ``disconnected`` event to ``on_progress`` and a warning on the ``mofsim_client``
logger), keeps trying, and resumes the stream where it left off (``Last-Event-ID``) once
the server is back.  If the server is still away when the wait's timeout runs out, the
``ServerUnavailableError`` is raised.

With the sync client, ``task.stream_logs()`` can be iterated with ``for`` and with
``async for``, and a result can be awaited, so the spec's section 10.2 example runs as
written.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import aclosing, closing
from typing import TYPE_CHECKING, Any

from mofsim_client.errors import (
    EndpointNotFoundError,
    MOFSimError,
    ResultNotReadyError,
    ServerUnavailableError,
    TaskCancelledError,
    TaskDivergedError,
    TaskError,
    TaskFailedError,
    TaskTimeoutError,
    WaitTimeoutError,
)
from mofsim_client.models import (
    TERMINAL_STATES,
    CancelResult,
    LogEntry,
    TaskEvent,
    TaskInfo,
    TaskResult,
)

if TYPE_CHECKING:
    from mofsim_client.aclient import AsyncMOFSimClient
    from mofsim_client.client import MOFSimClient

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


class _Follow:
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


def _tag(exc: MOFSimError, task_id: str) -> MOFSimError:
    exc.task_id = exc.task_id or task_id
    return exc


class LogStream:
    """A task's live log: iterate it with ``for`` (blocking) or ``async for``."""

    def __init__(self, client: MOFSimClient, task_id: str, level: str | None) -> None:
        self._client = client
        self._task_id = task_id
        self._level = level

    def __iter__(self) -> Iterator[LogEntry]:
        return self._client.stream_logs(self._task_id, level=self._level)

    def __aiter__(self) -> AsyncIterator[LogEntry]:
        return self._async()

    async def _async(self) -> AsyncIterator[LogEntry]:
        async with self._client.async_twin() as aclient:
            async for entry in aclient.stream_logs(self._task_id, level=self._level):
                yield entry


class Task:
    """A submitted task, seen through the sync client."""

    def __init__(self, client: MOFSimClient, task_id: str, info: TaskInfo | None = None):
        self._client = client
        self.task_id = task_id
        self.info = info or TaskInfo(task_id=task_id)

    @property
    def id(self) -> str:
        return self.task_id

    @property
    def status(self) -> str | None:
        """The current state, asked from the server unless the task has ended."""
        if not self.info.is_terminal:
            self.refresh()
        return self.info.status

    def __repr__(self) -> str:
        return f"Task({self.task_id!r}, status={self.info.status!r})"

    def refresh(self) -> TaskInfo:
        self.info = self._client.get_task_info(self.task_id)
        return self.info

    def result(self) -> TaskResult:
        """The typed result; ``ResultNotReadyError`` while running, the task's own
        error (``TaskFailedError``, ``TaskCancelledError``...) if it did not complete."""
        try:
            return self._client.get_result(self.task_id)
        except MOFSimError as exc:
            raise _tag(exc, self.task_id) from None

    def cancel(self) -> CancelResult:
        return self._client.cancel_task(self.task_id)

    def stream_logs(self, level: str | None = None) -> LogStream:
        return LogStream(self._client, self.task_id, level)

    def stream_events(self) -> Iterator[TaskEvent]:
        return self._client.stream_events(self.task_id)

    def logs(self, level: str | None = None, limit: int = 1000) -> list[LogEntry]:
        return self._client.get_logs(self.task_id, level=level, limit=limit)

    def wait(
        self,
        timeout: float | None = None,
        on_progress: ProgressCallback | None = None,
        poll_interval: float = 1.0,
    ) -> TaskResult:
        """Block until the task ends; its result (or its error, raised).

        ``timeout`` in seconds (None: no limit) raises ``WaitTimeoutError``;
        ``on_progress`` gets every status and progress ``TaskEvent`` (and
        ``disconnected`` / ``reconnected`` when the server goes away and comes back)."""
        f = _Follow(self.task_id, timeout, on_progress, poll_interval)
        try:
            try:
                # A task that has already ended costs one request.
                return f.finished(self.result())
            except ResultNotReadyError:
                pass
            except ServerUnavailableError as exc:
                f.lost(exc)
            while not self._follow_once(f):
                if f.expired():
                    raise f.give_up()
            return f.finished(self.result())
        except TaskError as exc:
            f.failed(exc)
            raise
        finally:
            f.update(self.info)

    def _follow_once(self, f: _Follow) -> bool:
        """One round of following; True once the task has ended."""
        try:
            if f.use_events:
                with closing(
                    self._client._task_events(self.task_id, f.last_event_id, deadline=f.deadline)
                ) as events:
                    for ev in events:
                        f.regained()
                        if f.event(ev):
                            return True
                        if f.expired():
                            return False
                return False
            info = self.refresh()
            f.regained()
            if f.polled(info):
                return True
            left = f.remaining()
            time.sleep(f.poll_interval if left is None else max(0.0, min(f.poll_interval, left)))
            return False
        except EndpointNotFoundError:
            f.use_events = False  # an older server: poll
            return False
        except ServerUnavailableError as exc:
            time.sleep(f.lost(exc))
            return False


class AsyncTask:
    """A submitted task, seen through the async client (same methods, awaited)."""

    def __init__(self, client: AsyncMOFSimClient, task_id: str, info: TaskInfo | None = None):
        self._client = client
        self.task_id = task_id
        self.info = info or TaskInfo(task_id=task_id)

    @property
    def id(self) -> str:
        return self.task_id

    @property
    def status(self) -> str | None:
        """The last known state (``await task.refresh()`` asks the server)."""
        return self.info.status

    def __repr__(self) -> str:
        return f"AsyncTask({self.task_id!r}, status={self.info.status!r})"

    async def refresh(self) -> TaskInfo:
        self.info = await self._client.get_task_info(self.task_id)
        return self.info

    async def result(self) -> TaskResult:
        try:
            return await self._client.get_result(self.task_id)
        except MOFSimError as exc:
            raise _tag(exc, self.task_id) from None

    async def cancel(self) -> CancelResult:
        return await self._client.cancel_task(self.task_id)

    def stream_logs(self, level: str | None = None) -> AsyncIterator[LogEntry]:
        return self._client.stream_logs(self.task_id, level=level)

    def stream_events(self) -> AsyncIterator[TaskEvent]:
        return self._client.stream_events(self.task_id)

    async def logs(self, level: str | None = None, limit: int = 1000) -> list[LogEntry]:
        return await self._client.get_logs(self.task_id, level=level, limit=limit)

    async def wait(
        self,
        timeout: float | None = None,
        on_progress: ProgressCallback | None = None,
        poll_interval: float = 1.0,
    ) -> TaskResult:
        """Like ``Task.wait``; the timeout is exact (the stream is cancelled at it)."""
        f = _Follow(self.task_id, timeout, on_progress, poll_interval)
        try:
            try:
                return f.finished(await self.result())
            except ResultNotReadyError:
                pass
            except ServerUnavailableError as exc:
                f.lost(exc)
            try:
                async with asyncio.timeout(f.remaining()):
                    while not await self._follow_once(f):
                        pass
            except TimeoutError as exc:
                if isinstance(exc, WaitTimeoutError):
                    raise
                raise f.give_up() from None
            return f.finished(await self.result())
        except TaskError as exc:
            f.failed(exc)
            raise
        finally:
            f.update(self.info)

    async def _follow_once(self, f: _Follow) -> bool:
        try:
            if f.use_events:
                async with aclosing(
                    self._client._task_events(self.task_id, f.last_event_id)
                ) as events:
                    async for ev in events:
                        f.regained()
                        if f.event(ev):
                            return True
                return False
            info = await self.refresh()
            f.regained()
            if f.polled(info):
                return True
            await asyncio.sleep(f.poll_interval)
            return False
        except EndpointNotFoundError:
            f.use_events = False
            return False
        except ServerUnavailableError as exc:
            await asyncio.sleep(f.lost(exc))
            return False
