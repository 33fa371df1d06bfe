"""When each task should start and how long it should take: the queue's ETA board.

The daemon knows the queue order, which slots are busy until when, and each job's
estimated duration (``Job.estimate``); ``plan_eta`` plays the queue forward on the
slots (each job on the slot that frees first, no earlier than its retry backoff) and the
daemon writes the answer to ``<spool>/state/eta.json``.  Readers (status, lists, MIRA,
``mofsim top``) look their tasks up there with ``EtaBoard``.

A task whose own duration is unknown still gets an ``estimated_start``; the slot it
takes then has no known end, so tasks after it on that slot get none.  Without any
estimate at all every value is None: nothing is invented.
"""

from __future__ import annotations

import heapq
import json
import math
import os
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ETA_NAME = "eta.json"


@dataclass(frozen=True)
class Running:
    task_id: str
    started: float  # epoch seconds
    duration_s: float | None


@dataclass(frozen=True)
class Waiting:
    task_id: str
    duration_s: float | None
    not_before: float = 0.0


def iso(t: float | None) -> str | None:
    if t is None or not math.isfinite(t):
        return None
    return datetime.fromtimestamp(t, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S") + "Z"


def plan_eta(
    now: float, slots: int, running: Iterable[Running], queue: Iterable[Waiting]
) -> dict[str, dict[str, Any]]:
    """Per task: ``estimated_start`` and ``estimated_duration_s`` (and the end when both
    are known).  ``queue`` in the order it will be served; ``slots`` counts every slot
    that takes work, busy ones included."""
    out: dict[str, dict[str, Any]] = {}
    free: list[float] = []  # when each slot frees; inf: unknown
    busy = 0
    for r in running:
        busy += 1
        end = r.started + r.duration_s if r.duration_s is not None else math.inf
        # A task past its estimate ends "now" as far as anyone can tell.
        free.append(max(end, now))
        out[r.task_id] = _entry(r.started, r.duration_s)
    free += [now] * max(0, slots - busy)
    if not free:
        return out
    heapq.heapify(free)
    for job in queue:
        at = heapq.heappop(free)
        start = max(at, job.not_before) if math.isfinite(at) else math.inf
        out[job.task_id] = _entry(start if math.isfinite(start) else None, job.duration_s)
        end = start + job.duration_s if job.duration_s is not None else math.inf
        heapq.heappush(free, end)
    return out


def _entry(start: float | None, duration: float | None) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "estimated_start": iso(start),
        "estimated_duration_s": None if duration is None else round(duration, 1),
    }
    if start is not None and duration is not None:
        entry["estimated_end"] = iso(start + duration)
    return entry


def write_board(state_dir: Path, tasks: Mapping[str, dict[str, Any]], now: float) -> None:
    path = Path(state_dir) / ETA_NAME
    tmp = path.with_name(f".{ETA_NAME}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps({"generated_at": iso(now), "tasks": tasks}))
    os.replace(tmp, path)


class EtaBoard:
    """``eta.json`` as readers see it, reread when it changes."""

    _boards: dict[Path, EtaBoard] = {}
    _lock = threading.Lock()

    def __init__(self, state_dir: Path) -> None:
        self.path = Path(state_dir) / ETA_NAME
        self._stamp: tuple[int, int] | None = None
        self._tasks: dict[str, Any] = {}

    @classmethod
    def of(cls, spool_root: Path) -> EtaBoard:
        key = Path(spool_root).resolve() / "state"
        with cls._lock:
            board = cls._boards.get(key)
            if board is None:
                board = cls._boards[key] = EtaBoard(key)
            return board

    def tasks(self) -> dict[str, Any]:
        try:
            st = self.path.stat()
            stamp: tuple[int, int] | None = (st.st_mtime_ns, st.st_size)
        except OSError:
            stamp = None
        if stamp != self._stamp:
            try:
                doc = json.loads(self.path.read_text()) if stamp else {}
            except (OSError, ValueError):
                doc = {}
            tasks = doc.get("tasks") if isinstance(doc, dict) else None
            self._tasks = tasks if isinstance(tasks, dict) else {}
            self._stamp = stamp
        return self._tasks

    def annotate(self, record: dict[str, Any]) -> dict[str, Any]:
        """``record`` with ``estimated_start`` and ``estimated_duration_s`` while the task
        waits or runs (the board's, else the duration its job was estimated at), both
        None once it ended.  The job's full ``estimate`` is left out: list rows from the
        mirror do not carry it, and every answer has one shape."""
        out = dict(record)
        est = out.pop("estimate", None)
        entry = self.tasks().get(str(record.get("task_id"))) or {}
        live = record.get("status") in ("PENDING", "QUEUED", "ASSIGNED", "RUNNING")
        out["estimated_start"] = entry.get("estimated_start") if live else None
        duration = entry.get("estimated_duration_s") if live else None
        if live and duration is None and isinstance(est, dict):
            given = est.get("duration_s")
            duration = given if isinstance(given, int | float) else None
        out["estimated_duration_s"] = duration
        return out
