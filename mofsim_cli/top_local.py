"""``mofsim top`` on this machine: the ``TopState`` read straight from the spool.

The local source never parses a whole ``events.jsonl``: a task that runs for days at a
few progress events per second writes hundreds of megabytes, and the view refreshes
every second.  It reads only the tail of a running task's log, and finished tasks are
described from their job file, ``error.json`` and the time of their last rename.
"""

from __future__ import annotations

import contextlib
import heapq
import os
from collections import OrderedDict
from collections.abc import Iterable
from pathlib import Path
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
from spool.errors import InvalidJobFile, MofsimError, TaskNotFound
from spool.events import Event, iso_from_ms, read_events
from spool.job import Job, priority_name
from spool.states import TERMINAL_DIRS
from spool.store import Spool, read_job, structure_label

TAIL_BYTES = 64 * 1024  # how much of a log is read to find a task's latest progress


# --- reading a log's tail -------------------------------------------------------------------


def tail_events(path: Path, max_bytes: int = TAIL_BYTES) -> list[Event]:
    """The events in the last ``max_bytes`` of a log, with their true offsets."""
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return []
    start = max(0, size - max_bytes)
    if start:
        with open(path, "rb") as fh:
            fh.seek(start)
            # Cut mid-line: the next line starts after the first newline.
            start += len(fh.readline())
    return list(read_events(path, start))


def summarize_tail(events: Iterable[Event]) -> dict[str, Any]:
    """State, progress and start of a claimed task from its log's tail.  A progress
    event comes only from a running task, so a tail of progress events alone still
    says RUNNING."""
    info: dict[str, Any] = {"running": False, "progress": None, "detail": {}, "started_at": None}
    for ev in events:
        extra = ev.data.get("extra") or {}
        if ev.kind == "status":
            status = extra.get("status")
            info["running"] = status == "RUNNING"
            if status == "RUNNING":
                info["started_at"] = ev.data.get("timestamp")
            if status in ("QUEUED", "RUNNING"):
                info["progress"], info["detail"] = None, {}
        elif ev.kind == "progress":
            info["running"] = True
            frac = extra.get("progress")
            info["progress"] = float(frac) if isinstance(frac, int | float) else None
            info["detail"] = {k: v for k, v in extra.items() if k != "progress"}
    return info


class LocalLogFeed:
    def __init__(self, path: Path, tail: int = LOG_TAIL) -> None:
        self.path = path
        self.tail = tail
        self._last: int | None = None  # offset of the last event handed out

    def poll(self) -> list[Event]:
        if self._last is None:
            fresh = tail_events(self.path)[-self.tail :]
        else:
            # Offsets are line starts: re-read from the last one and skip it.
            fresh = [
                ev for ev in read_events(self.path, max(self._last, 0)) if ev.offset > self._last
            ]
        if fresh:
            self._last = fresh[-1].offset
        elif self._last is None and self.path.exists():
            self._last = -1
        return fresh


# --- local: the spool -----------------------------------------------------------------------


class LocalSource:
    """Reads the spool directly: job files, log tails, the daemon's slot snapshot and
    the alert engine's active set."""

    def __init__(self, spool: Spool) -> None:
        self.spool = spool
        self.label = f"spool {spool.root}"
        self._jobs: dict[Path, Job | None] = {}  # job files never change once published
        self._finished: OrderedDict[tuple[str, str], TaskRow] = OrderedDict()
        # state -> (directory mtime, {name: ctime}, newest (ctime, task id) first)
        self._listings: dict[str, tuple[int, dict[str, float], list[tuple[float, str]]]] = {}

    def close(self) -> None:
        self._jobs.clear()

    def cancel(self, task_id: str) -> str:
        import getpass

        from mofsim_core.task_service import cancel_task

        out = cancel_task(self.spool, None, task_id, actor=f"cli:{getpass.getuser()}")
        return str(out["status"])

    def log_feed(self, task_id: str) -> LocalLogFeed:
        if self.spool.locate(task_id) is None:
            raise TaskNotFound(f"task {task_id} not found")
        return LocalLogFeed(self.spool.paths.events_file(task_id))

    def fetch(self) -> TopState:
        from mofsim_core.alerts import read_active
        from mofsim_core.slot_state import daemon_status, read_snapshot

        snap = read_snapshot(self.spool.root)
        daemon = daemon_status(self.spool.root, snapshot=snap)
        current = snap is not None and daemon["snapshot_current"]
        slots = [_slot_from_snapshot(s) for s in snap["slots"]] if current and snap else []
        currents = {
            str(s["current_task"].get("task_id")): s["current_task"]
            for s in (snap["slots"] if current and snap else [])
            if isinstance(s.get("current_task"), dict)
        }
        running = self._running(currents)
        join_slots(slots, running)
        counts, queued = self._queue()
        from mofsim_core.eta import EtaBoard

        board = EtaBoard.of(self.spool.root).tasks()
        for row in (*running, *queued):
            entry = board.get(row.task_id) or {}
            row.estimated_start = entry.get("estimated_start")
            row.estimated_end = entry.get("estimated_end")
        alerts = read_active(self.spool.paths.state_dir / "alerts")
        return TopState(
            source=self.label,
            daemon=_daemon_line(daemon),
            daemon_ok=bool(daemon["responsive"]),
            slots=slots,
            queue_counts=counts,
            queued=queued,
            running=running,
            recent=self._recent(),
            alerts=alerts,
        )

    def _job(self, path: Path) -> Job | None:
        if path not in self._jobs:
            try:
                self._jobs[path] = read_job(path)
            except TaskNotFound:
                return None  # moved on while we looked; the next refresh finds it
            except (InvalidJobFile, MofsimError):
                self._jobs[path] = None  # malformed: the daemon will reject it
        return self._jobs[path]

    def _queue(self) -> tuple[dict[str, int], list[TaskRow]]:
        counts = dict.fromkeys(PRIORITY_NAMES, 0)
        head: list[TaskRow] = []
        queued = self.spool.queued()
        for position, q in enumerate(queued, start=1):
            counts[PRIORITY_NAMES[q.priority]] += 1
            if len(head) >= QUEUE_HEAD:
                continue
            job = self._job(q.path)
            if job is None or q.task_id is None:
                # Dropped in by hand and not yet adopted: all we know is its name.
                head.append(
                    TaskRow(
                        q.task_id or q.name,
                        "QUEUED",
                        priority=PRIORITY_NAMES[q.priority],
                        queue_position=position,
                    )
                )
                continue
            row = _row_from_job(job, "QUEUED")
            row.queue_position = position
            head.append(row)
        live = {q.path for q in queued[:QUEUE_HEAD]}
        for path in [
            p for p in self._jobs if p.parent.parent == self.spool.paths.incoming and p not in live
        ]:
            del self._jobs[path]
        return counts, head

    def _running(self, currents: dict[str, dict[str, Any]]) -> list[TaskRow]:
        rows: list[TaskRow] = []
        claimed = self.spool.paths.claimed
        seen: set[Path] = set()
        for slot in _listdir(claimed):
            for name in _listdir(claimed / slot):
                if not name.endswith(".json") or name.startswith("."):
                    continue
                path = claimed / slot / name
                seen.add(path)
                job = self._job(path)
                if job is None:
                    continue
                info = summarize_tail(tail_events(self.spool.paths.events_file(job.task_id)))
                row = _row_from_job(job, "RUNNING" if info["running"] else "ASSIGNED")
                row.slot = slot
                row.progress, row.detail = info["progress"], info["detail"]
                current = currents.get(job.task_id) or {}
                stamp = current.get("started_at")
                row.started_at = info["started_at"] or (
                    iso_from_ms(float(stamp) * 1000) if isinstance(stamp, int | float) else None
                )
                row.cancel_requested = bool(current.get("cancel_requested")) or (
                    self.spool.cancel_requested(job.task_id)
                )
                rows.append(row)
        for path in [p for p in self._jobs if p.parent.parent == claimed and p not in seen]:
            del self._jobs[path]
        return rows

    def _listing(self, state: str) -> list[tuple[float, str]]:
        """(time of the move, task id) of one terminal directory's newest tasks.  The
        directory is listed again only when it changed, and only new names are stat'ed:
        ``done/`` may hold a hundred thousand files."""
        folder = self.spool.paths.terminal_dir(state)
        try:
            stamp = folder.stat().st_mtime_ns
        except FileNotFoundError:
            return []
        cached = self._listings.get(state)
        if cached is not None and cached[0] == stamp:
            return cached[2]
        known = cached[1] if cached is not None else {}
        names = {n for n in os.listdir(folder) if n.endswith(".json") and not n.startswith(".")}
        moved: dict[str, float] = {}
        for name in names:
            if name in known:
                moved[name] = known[name]
                continue
            with contextlib.suppress(FileNotFoundError):
                # A rename changes the inode's ctime, not the mtime: ctime is when the
                # task reached this directory.
                moved[name] = (folder / name).stat().st_ctime
        newest = heapq.nlargest(RECENT, ((t, n[:-5]) for n, t in moved.items()))
        self._listings[state] = (stamp, moved, newest)
        return newest

    def _recent(self) -> list[TaskRow]:
        newest = sorted(
            ((t, state, tid) for state in TERMINAL_DIRS for t, tid in self._listing(state)),
            reverse=True,
        )[:RECENT]
        rows = []
        for stamp, state, tid in newest:
            key = (state, tid)
            row = self._finished.get(key) or self._finished_row(state, tid, stamp)
            if row is None:
                continue
            self._finished[key] = row
            self._finished.move_to_end(key)
            rows.append(row)
        while len(self._finished) > 4 * RECENT:
            self._finished.popitem(last=False)
        return rows

    def _finished_row(self, state: str, task_id: str, stamp: float) -> TaskRow | None:
        path = self.spool.paths.terminal_dir(state) / f"{task_id}.json"
        try:
            job = read_job(path)
        except (TaskNotFound, InvalidJobFile, MofsimError):
            return None
        row = _row_from_job(job, state)
        row.completed_at = iso_from_ms(stamp * 1000)
        if state != "COMPLETED":
            row.error = _error_text(self.spool.paths.error_file(task_id))
        return row


def _row_from_job(job: Job, status: str) -> TaskRow:
    return TaskRow(
        job.task_id,
        status,
        task_type=job.task_type,
        model=job.model,
        structure=str(job.structure.get("name") or structure_label(job.structure)),
        priority=priority_name(job.priority),
    )


def _error_text(path: Path) -> str | None:
    import json

    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if isinstance(doc, dict) and isinstance(doc.get("error"), dict):
        doc = doc["error"]
    if not isinstance(doc, dict):
        return None
    code, message = doc.get("code"), doc.get("message")
    return " ".join(str(x) for x in (code, message) if x not in (None, "")) or None


def _slot_from_snapshot(s: dict[str, Any]) -> SlotRow:
    dev = s.get("device_status") or {}
    current = s.get("current_task") or {}
    return SlotRow(
        slot_id=str(s.get("slot_id")),
        name=dev.get("name") or s.get("name"),
        device=s.get("device"),
        state=s.get("state"),
        utilization=dev.get("utilization_percent"),
        memory_used_mb=dev.get("memory_used_mb"),
        memory_total_mb=dev.get("memory_total_mb"),
        temperature_c=dev.get("temperature_c"),
        available=bool(dev.get("available", True)),
        error=dev.get("error"),
        loaded_models=[str(m) for m in s.get("loaded_models") or []],
        task_id=current.get("task_id"),
    )


def _daemon_line(status: dict[str, Any]) -> str:
    if status.get("responsive"):
        return f"daemon pid {status.get('pid')} running"
    if status.get("alive"):
        age = status.get("snapshot_age_seconds")
        since = f" (no update for {age:.0f} s)" if isinstance(age, int | float) else ""
        return f"daemon pid {status.get('pid')} not responding{since}"
    return "no daemon running on this spool: tasks queue but do not run"


def _listdir(d: Path) -> list[str]:
    try:
        return sorted(os.listdir(d))
    except FileNotFoundError:
        return []
