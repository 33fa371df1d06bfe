"""Per-task ``events.jsonl``: the structured log format of the spec (section 6.3).

Each line is ``{timestamp, level, logger, message, task_id, gpu_id, extra, event}`` where
``event`` is ``log``, ``status`` or ``progress``.  Several processes append to the same
file (supervisor and executor): each line goes out in one ``write`` on an ``O_APPEND``
descriptor, which keeps lines whole.  An event's id is its byte offset in the file:
monotonic, and a reader resumes from it with one seek (SSE ``Last-Event-ID``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from spool.errors import StorageError

LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
LEVEL_RANK = {name: i for i, name in enumerate(LEVELS)}
EVENT_KINDS = ("log", "status", "progress")


def iso_now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def iso_from_ms(ms: int | float | None) -> str | None:
    if ms is None:
        return None
    stamp = datetime.fromtimestamp(ms / 1000, UTC)
    return stamp.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def ms_from_iso(text: str) -> int:
    return int(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1000)


def make_event(
    task_id: str,
    message: str,
    *,
    event: str = "log",
    level: str = "INFO",
    logger: str = "task",
    gpu_id: int | None = None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    if event not in EVENT_KINDS:
        raise ValueError(f"unknown event kind {event!r}")
    level = level.upper()
    if level not in LEVEL_RANK:
        level = "INFO"
    return {
        "timestamp": iso_now(),
        "level": level,
        "logger": logger,
        "message": message,
        "task_id": task_id,
        "gpu_id": gpu_id,
        "extra": extra or {},
        "event": event,
    }


def append_event(path: Path, record: dict[str, Any]) -> None:
    """Append one line.  A full disk raises ``StorageError`` and may leave a torn line
    (a short write); the next append ends it first, so the fragment becomes one line
    that readers skip, and later lines stay whole."""
    line = (json.dumps(record, default=str, separators=(",", ":")) + "\n").encode()
    try:
        fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
    except OSError as exc:
        raise StorageError(f"cannot write {path.name}: {exc.strerror or exc}") from exc
    try:
        size = os.fstat(fd).st_size
        if size and os.pread(fd, 1, size - 1) != b"\n":
            line = b"\n" + line
        written = os.write(fd, line)
        if written < len(line):
            raise StorageError(f"cannot write {path.name}: no space left for a whole line")
    except OSError as exc:
        raise StorageError(f"cannot write {path.name}: {exc.strerror or exc}") from exc
    finally:
        os.close(fd)


@dataclass(frozen=True)
class Event:
    offset: int  # byte offset of the line: the event id
    data: dict[str, Any]

    @property
    def kind(self) -> str:
        return str(self.data.get("event", "log"))


def read_events(path: Path, offset: int = 0) -> Iterator[Event]:
    """Events from ``offset`` on; a torn last line (writer mid-write) is left for later."""
    try:
        fh = open(path, "rb")
    except FileNotFoundError:
        return
    with fh:
        fh.seek(offset)
        pos = offset
        for raw in fh:
            if not raw.endswith(b"\n"):
                break
            try:
                data = json.loads(raw)
            except (ValueError, RecursionError):
                data = None  # a fragment a full disk cut short, ended by the next line
            if isinstance(data, dict):
                yield Event(pos, data)
            pos += len(raw)


def filter_events(
    events: Iterator[Event] | list[Event],
    *,
    level: str | None = None,
    kinds: tuple[str, ...] | None = None,
) -> list[Event]:
    floor = LEVEL_RANK.get(level.upper(), 0) if level else 0
    out = []
    for ev in events:
        if kinds and ev.kind not in kinds:
            continue
        if LEVEL_RANK.get(str(ev.data.get("level", "INFO")), 1) < floor:
            continue
        out.append(ev)
    return out


class EventWriter:
    """Appends events for one task; used by the supervisor and inside executors."""

    def __init__(
        self,
        path: Path,
        task_id: str,
        *,
        gpu_id: int | None = None,
        logger: str = "task",
        request_id: str | None = None,
    ) -> None:
        self.path = path
        self.task_id = task_id
        self.gpu_id = gpu_id
        self.logger = logger
        # The submitting request's id, in every line's extra: a request is followed from
        # the access log through the task's log.
        self.request_id = request_id

    def emit(
        self,
        message: str,
        *,
        event: str = "log",
        level: str = "INFO",
        logger: str | None = None,
        **extra: Any,
    ) -> dict[str, Any]:
        if self.request_id is not None:
            extra.setdefault("request_id", self.request_id)
        record = make_event(
            self.task_id,
            message,
            event=event,
            level=level,
            logger=logger or self.logger,
            gpu_id=self.gpu_id,
            extra=extra,
        )
        append_event(self.path, record)
        return record

    def status(self, status: str, message: str | None = None, **extra: Any) -> dict[str, Any]:
        return self.emit(
            message or f"Task {status.lower()}",
            event="status",
            logger="task.lifecycle",
            status=status,
            **extra,
        )
