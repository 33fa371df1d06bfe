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
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import aclosing, closing
from typing import TYPE_CHECKING

from mofsim_client._follow import Follow, ProgressCallback
from mofsim_client.errors import (
    EndpointNotFoundError,
    MOFSimError,
    ResultNotReadyError,
    ServerUnavailableError,
    TaskError,
    WaitTimeoutError,
)
from mofsim_client.models import CancelResult, LogEntry, TaskEvent, TaskInfo
from mofsim_client.results import TaskResult

if TYPE_CHECKING:
    from mofsim_client.aclient import AsyncMOFSimClient
    from mofsim_client.client import MOFSimClient


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
        f = Follow(self.task_id, timeout, on_progress, poll_interval)
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

    def _follow_once(self, f: Follow) -> bool:
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
        f = Follow(self.task_id, timeout, on_progress, poll_interval)
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

    async def _follow_once(self, f: Follow) -> bool:
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
