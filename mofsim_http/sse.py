"""Server-sent events: a task's ``events.jsonl`` followed live.

Each event goes out as ``event: log|status|progress``, ``id: <byte offset in
events.jsonl>`` and ``data: <the spec's 6.3 JSON log record>``.  A client that reconnects
with ``Last-Event-ID`` resumes with one seek.  A comment line is sent as a heartbeat when
nothing else was sent for a while (proxies close idle connections).  Once the task
reaches a terminal state a final ``end`` event is sent and the stream closes; it also
ends at once when the server shuts down or the client goes away.

The file is tailed by polling its size (a ``stat`` every ``poll_s``): cheap, and it works
on every file system the spool may live on.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path
from typing import Any

from aiohttp import web

from mofsim_core.owners import OWNER, Caller, check_task
from mofsim_http.envelope import REQUEST_ID
from spool.errors import TaskNotFound, ValidationError
from spool.events import LEVEL_RANK, Event
from spool.states import TERMINAL_STATES
from spool.store import Spool

POLL_S = 0.2
# How often the job file's location is checked: it catches a task that ended without
# writing its terminal event (a crash between the rename and the event).
LOCATE_EVERY_S = 1.0
RETRY_MS = 3000


def wants_sse(request: web.Request) -> bool:
    return "text/event-stream" in request.headers.get("Accept", "")


def resume_offset(request: web.Request) -> int | None:
    """The id a reconnecting client last saw (header, or ``last_event_id`` in the query
    for clients that cannot set headers)."""
    raw = request.headers.get("Last-Event-ID") or request.query.get("last_event_id")
    if raw is None or raw.strip() == "":
        return None
    if not raw.strip().isdigit():
        raise ValidationError(
            "Last-Event-ID must be an event id (a non-negative integer)", field="Last-Event-ID"
        )
    return int(raw.strip())


def format_event(event: str, data: Any, event_id: int | None = None) -> bytes:
    lines = [f"event: {event}"]
    if event_id is not None:
        lines.append(f"id: {event_id}")
    text = json.dumps(data, ensure_ascii=False, default=str, separators=(",", ":"))
    lines.extend(f"data: {line}" for line in text.split("\n"))
    return ("\n".join(lines) + "\n\n").encode()


def read_new(path: Path, offset: int) -> tuple[list[Event], int]:
    """Complete lines from ``offset`` on, and the offset after the last complete one."""
    try:
        if os.stat(path).st_size <= offset:
            return [], offset  # the usual case while a task is quiet: one stat
        with open(path, "rb") as fh:
            fh.seek(offset)
            chunk = fh.read()
    except FileNotFoundError:
        return [], offset
    end = chunk.rfind(b"\n")
    if end < 0:
        return [], offset
    events: list[Event] = []
    pos = offset
    for raw in chunk[: end + 1].splitlines(keepends=True):
        try:
            data = json.loads(raw)
        except ValueError:
            data = None
        if isinstance(data, dict):
            events.append(Event(pos, data))
        pos += len(raw)
    return events, pos


def terminal_status(ev: Event) -> str | None:
    if ev.kind != "status":
        return None
    status = (ev.data.get("extra") or {}).get("status")
    return str(status) if status in TERMINAL_STATES else None


class EventStream:
    """One client's stream of one task."""

    def __init__(
        self,
        request: web.Request,
        spool: Spool,
        task_id: str,
        *,
        shutdown: asyncio.Event,
        heartbeat_s: float = 15.0,
        poll_s: float = POLL_S,
        level: str | None = None,
        kinds: tuple[str, ...] | None = None,
    ) -> None:
        self.request = request
        self.spool = spool
        self.task_id = task_id
        self.path = spool.paths.events_file(task_id)
        self.shutdown = shutdown
        self.heartbeat_s = heartbeat_s
        self.poll_s = poll_s
        self.floor = LEVEL_RANK.get(level.upper(), 0) if level else 0
        self.kinds = kinds
        self.response = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream; charset=utf-8",
                "Cache-Control": "no-cache",
                "X-Accel-Buffering": "no",  # nginx would otherwise hold the stream back
            }
        )
        self._last_sent = 0.0

    def _wanted(self, ev: Event) -> bool:
        if self.kinds and ev.kind not in self.kinds:
            return False
        # Status and progress always pass the level floor: they are not log lines.
        return ev.kind != "log" or LEVEL_RANK.get(str(ev.data.get("level")), 1) >= self.floor

    async def _send(self, chunk: bytes) -> None:
        await self.response.write(chunk)
        self._last_sent = time.monotonic()

    def _client_gone(self) -> bool:
        transport = self.request.transport
        return transport is None or transport.is_closing()

    async def run(self, resume_from: int | None = None) -> web.StreamResponse:
        if self.spool.locate(self.task_id) is None:
            raise TaskNotFound(f"task {self.task_id} not found")
        request_id = self.request.get(REQUEST_ID)
        if isinstance(request_id, str):
            self.response.headers["X-Request-ID"] = request_id
        await self.response.prepare(self.request)
        await self._send(f"retry: {RETRY_MS}\n\n".encode())
        offset = 0
        skip = None
        if resume_from is not None:
            # The event at that offset was the last one the client saw.
            offset, skip = resume_from, resume_from
        stop = asyncio.ensure_future(self.shutdown.wait())
        next_locate = 0.0
        ended_on_disk_at: float | None = None
        # Resuming after the end: the terminal event lies before the offset.
        finished_before = await asyncio.to_thread(self._terminal_before, offset) if offset else None
        try:
            while not self.shutdown.is_set() and not self._client_gone():
                events, offset = read_new(self.path, offset)
                finished, finished_before = finished_before, None
                done = finished is not None
                for ev in events:
                    if ev.offset == skip:
                        continue
                    if self._wanted(ev):
                        await self._send(format_event(ev.kind, ev.data, ev.offset))
                    if terminal_status(ev):
                        finished, done = terminal_status(ev), True
                now = time.monotonic()
                if not done and now >= next_locate:
                    next_locate = now + LOCATE_EVERY_S
                    state = await asyncio.to_thread(self._state)
                    if state is None or state in TERMINAL_STATES:
                        # Give the terminal event one more round to land, then stop.
                        if ended_on_disk_at is not None and not events:
                            finished, done = state, True
                        ended_on_disk_at = ended_on_disk_at or now
                if done:
                    # status null: the task was deleted while it was followed.
                    await self._send(
                        format_event("end", {"task_id": self.task_id, "status": finished}, offset)
                    )
                    break
                if now - self._last_sent >= self.heartbeat_s:
                    await self._send(f": heartbeat {int(time.time())}\n\n".encode())
                await asyncio.wait({stop}, timeout=self.poll_s)
        except (ConnectionResetError, ConnectionError):
            pass  # the client went away mid-write
        finally:
            stop.cancel()
        if not self._client_gone():
            try:
                await self.response.write_eof()
            except (ConnectionResetError, ConnectionError):
                pass
        return self.response

    def _terminal_before(self, offset: int) -> str | None:
        events, _ = read_new(self.path, 0)
        return next(
            (terminal_status(e) for e in events if e.offset <= offset and terminal_status(e)), None
        )

    def _state(self) -> str | None:
        loc = self.spool.locate(self.task_id)
        return loc.state if loc is not None else None


async def stream_task(
    request: web.Request,
    spool: Spool,
    task_id: str,
    *,
    shutdown: asyncio.Event,
    heartbeat_s: float,
    level: str | None = None,
    kinds: tuple[str, ...] | None = None,
    poll_s: float = POLL_S,
    caller: Caller = OWNER,
) -> web.StreamResponse:
    """Answer ``request`` with the live event stream of ``task_id``; another key's
    task is not found, as with every other task route."""
    await asyncio.to_thread(check_task, spool, caller, task_id)
    resume = resume_offset(request)
    stream = EventStream(
        request,
        spool,
        task_id,
        shutdown=shutdown,
        heartbeat_s=heartbeat_s,
        poll_s=poll_s,
        level=level,
        kinds=kinds,
    )
    return await stream.run(resume)
