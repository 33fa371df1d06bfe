"""The spool as a whole: submit, find, describe and cancel tasks.

Every reader (CLI in local mode, HTTP server, mirror rebuild) goes through ``Spool``;
state is always derived from where the job file sits plus the task's event log.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from spool import jsonsafe, transitions
from spool.errors import (
    InvalidJobFile,
    QueueFull,
    StorageError,
    TaskNotFound,
    TaskTerminal,
    ValidationError,
)
from spool.events import EventWriter, iso_from_ms, read_events
from spool.job import Job, priority_name
from spool.layout import CANONICAL_NAME, SpoolPaths, is_safe_token
from spool.limits import Limits
from spool.queue_count import QueueCounter
from spool.states import TERMINAL_DIRS

# A job file larger than this is refused unread (inline structures make the big ones).
MAX_JOB_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True)
class Located:
    task_id: str
    state: str  # QUEUED, CLAIMED, or a terminal state
    path: Path
    slot: str | None = None


@dataclass(frozen=True)
class QueuedFile:
    priority: int
    name: str
    path: Path

    @property
    def task_id(self) -> str | None:
        m = CANONICAL_NAME.fullmatch(self.name)
        return m.group(2) if m else None


class Spool:
    """``limits`` are what submissions through this object may ask for (the daemon's
    configuration; the defaults otherwise): ``submit`` enforces the queue length, the
    validators of a submission read the rest from here."""

    def __init__(
        self, root: Path | str, *, create: bool = True, limits: Limits | None = None
    ) -> None:
        self.paths = SpoolPaths(Path(root).expanduser().resolve())
        self.limits = limits or Limits()
        self.queue_counter = QueueCounter(self.paths)
        if create:
            self.paths.ensure()

    @property
    def root(self) -> Path:
        return self.paths.root

    # -- writing -----------------------------------------------------------------------
    def submit(self, job: Job, *, fresh_id: bool = False) -> Path:
        """Publish a validated job.  Its workspace and first event exist before it is
        visible in the queue, so a claimer always finds them.

        Creating the workspace reserves the id: of two submissions of one id, one fails.
        An id chosen by the client is also looked for among existing jobs (retention
        may have removed an old task's workspace); ``fresh_id`` says the id was
        generated for this job, which spares that search of the whole queue.  A queue
        already holding ``limits.max_queued`` job files refuses it (QueueFull)."""
        queued = self.queue_counter.count()
        if queued >= self.limits.max_queued:
            raise QueueFull(
                f"the queue holds {queued} tasks, this server's limit is "
                f"{self.limits.max_queued}; try again when some have run"
            )
        workspace = self.paths.workspace(job.task_id)
        taken = ValidationError(f"task id {job.task_id} already exists", field="task_id")
        if not fresh_id and self.locate(job.task_id) is not None:
            raise taken
        try:
            workspace.mkdir(parents=True)
        except FileExistsError:
            raise taken from None
        except OSError as exc:  # a full disk answers with the storage code, not a crash
            raise StorageError(f"cannot create the task workspace: {exc.strerror or exc}") from exc
        try:
            self.events(job.task_id, request_id=job.request_id).status(
                "QUEUED",
                f"Task queued ({priority_name(job.priority)})",
                priority=priority_name(job.priority),
            )
            published = transitions.publish(self.paths, job)
        except BaseException:
            shutil.rmtree(workspace, ignore_errors=True)  # the id stays free for a retry
            raise
        self.queue_counter.published(published.parent)
        return published

    def events(
        self, task_id: str, gpu_id: int | None = None, request_id: str | None = None
    ) -> EventWriter:
        return EventWriter(
            self.paths.events_file(task_id), task_id, gpu_id=gpu_id, request_id=request_id
        )

    def request_cancel(self, task_id: str) -> str:
        """QUEUED tasks are cancelled here and now; running ones get a marker that the
        executor sees at its next step.  Returns the state after the request."""
        loc = self.locate(task_id)
        if loc is None:
            raise TaskNotFound(f"task {task_id} not found")
        if loc.state in TERMINAL_DIRS:
            raise TaskTerminal(f"task {task_id} is already {loc.state}; nothing to cancel")
        if loc.state == "QUEUED":
            if transitions.cancel_queued(self.paths, loc.path, task_id) is not None:
                self.events(task_id).status("CANCELLED", "Task cancelled while queued")
                return "CANCELLED"
        transitions.atomic_write(self.paths, self.paths.cancel_marker(task_id), b"")
        return "CANCELLING"

    def cancel_requested(self, task_id: str) -> bool:
        return self.paths.cancel_marker(task_id).exists()

    # -- finding -----------------------------------------------------------------------
    def locate(self, task_id: str) -> Located | None:
        """Where the job file is now.  Directories are scanned in the order jobs move
        through them (queue, claims, terminal), so a job renamed during the scan is
        still found further on; a requeue moves backwards, hence one more pass."""
        if not is_safe_token(task_id):
            return None
        # Most lookups are of finished tasks, and a terminal file stays put: a few stats
        # answer them without listing a queue that may hold thousands of files.
        finished = self._terminal(task_id)
        if finished is not None:
            return finished
        for _ in range(2):
            found = self._scan(task_id)
            if found is not None:
                return found
        return None

    def _scan(self, task_id: str) -> Located | None:
        suffix = f"-{task_id}.json"
        for _, d in self.paths.priority_dirs():
            for name in _listdir(d):
                if name.endswith(suffix) and CANONICAL_NAME.fullmatch(name):
                    return Located(task_id, "QUEUED", d / name)
        claimed = self.paths.claimed
        for slot in _listdir(claimed):
            p = claimed / slot / f"{task_id}.json"
            if p.exists():
                return Located(task_id, "CLAIMED", p, slot)
        return self._terminal(task_id)

    def _terminal(self, task_id: str) -> Located | None:
        for state, dirname in TERMINAL_DIRS.items():
            p = self.paths.root / dirname / f"{task_id}.json"
            if p.exists():
                return Located(task_id, state, p)
        return None

    def queued(self) -> list[QueuedFile]:
        """Every file in incoming/, in scheduling order (priority, then FIFO by name)."""
        out: list[QueuedFile] = []
        for level, d in self.paths.priority_dirs():
            try:
                names = sorted(os.listdir(d))
            except OSError:  # missing, or not a directory any more
                continue
            out.extend(
                QueuedFile(level, n, d / n)
                for n in names
                if n.endswith(".json") and not n.startswith(".")
            )
        return out

    def iter_task_ids(self) -> Iterator[str]:
        seen: set[str] = set()
        for q in self.queued():
            if q.task_id and q.task_id not in seen:
                seen.add(q.task_id)
                yield q.task_id
        dirs = [self.paths.claimed / s for s in _listdir(self.paths.claimed)]
        dirs += [self.paths.root / d for d in TERMINAL_DIRS.values()]
        for d in dirs:
            for name in _listdir(d):
                if name.endswith(".json") and not name.startswith("."):
                    tid = name[:-5]
                    if tid not in seen:
                        seen.add(tid)
                        yield tid

    # -- describing --------------------------------------------------------------------
    def load_job(self, task_id: str) -> Job:
        for _ in range(5):
            loc = self.locate(task_id)
            if loc is None:
                break
            try:
                return read_job(loc.path)
            except TaskNotFound:
                continue  # renamed between locating and reading it: look again
        raise TaskNotFound(f"task {task_id} not found")

    def record(self, task_id: str) -> dict[str, Any]:
        """The task as the API shows it (the mirror stores the same dict)."""
        for _ in range(5):
            loc = self.locate(task_id)
            if loc is None:
                raise TaskNotFound(f"task {task_id} not found")
            try:
                job = read_job(loc.path)
                break
            except TaskNotFound:
                continue  # renamed between locating and reading it: look again
        else:
            raise TaskNotFound(f"task {task_id} keeps moving; try again")
        info = summarize_events(self.paths.events_file(task_id))
        state = loc.state
        if state == "CLAIMED":
            state = "RUNNING" if info["running"] else "ASSIGNED"
        record: dict[str, Any] = {
            "task_id": task_id,
            "task_type": job.task_type,
            "model": job.model,
            "status": state,
            "priority": priority_name(job.priority),
            "created_at": iso_from_ms(job.created_at),
            "started_at": info["started_at"],
            "completed_at": info["completed_at"] if state in TERMINAL_DIRS else None,
            "slot": loc.slot or info["slot"],
            "gpu_id": info["gpu_id"],
            "attempts": job.attempts,
            "progress": 1.0 if state == "COMPLETED" else info["progress"],
            "progress_detail": info["progress_detail"],
            "structure_name": info["structure_name"] or structure_label(job.structure),
            "error": None,
            "result": None,
            "parameters": job.parameters,
            "options": job.options,
            "structure": structure_ref_for_record(job.structure),
            "owner": job.owner,
            "estimate": job.estimate,
            "request_id": job.request_id,
        }
        if state == "COMPLETED":
            record["result"] = _read_json(self.paths.result_file(task_id))
        elif state in TERMINAL_DIRS:
            record["error"] = _read_json(self.paths.error_file(task_id))
        return record

    def records(self, status: str | None = None) -> Iterator[dict[str, Any]]:
        for tid in self.iter_task_ids():
            try:
                rec = self.record(tid)
            except (TaskNotFound, InvalidJobFile, ValidationError):
                continue  # moved or removed while we were looking
            if status is None or rec["status"] == status.upper():
                yield rec


def read_job_data(path: Path) -> Any:
    """The parsed content of a job file, read as untrusted input: a link, a FIFO, a
    device or an oversized file is refused without blocking or following it.  Raises
    ``FileNotFoundError`` when the file is gone, ``InvalidJobFile`` otherwise."""
    try:
        return jsonsafe.load_file(path, MAX_JOB_BYTES)
    except FileNotFoundError:
        raise
    except jsonsafe.UntrustedInput as exc:
        raise InvalidJobFile(str(exc)) from None
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError
        raise InvalidJobFile(f"not valid JSON: {exc}") from None
    except OSError as exc:
        raise InvalidJobFile(f"unreadable: {exc.strerror or exc}") from None


def read_job(path: Path) -> Job:
    try:
        data = read_job_data(path)
    except FileNotFoundError as exc:
        raise TaskNotFound(f"job file {path.name} vanished") from exc
    return Job.from_dict(data)


def summarize_events(path: Path) -> dict[str, Any]:
    info: dict[str, Any] = {
        "running": False,
        "started_at": None,
        "completed_at": None,
        "slot": None,
        "gpu_id": None,
        "progress": None,
        "progress_detail": None,
        "structure_name": None,
    }
    for ev in read_events(path):
        d = ev.data
        extra = d.get("extra") or {}
        if ev.kind == "status":
            status = extra.get("status")
            if status == "RUNNING":
                info["running"] = True
                info["started_at"] = d.get("timestamp")
                info["slot"] = extra.get("slot", info["slot"])
                info["gpu_id"] = d.get("gpu_id")
                info["completed_at"] = None
            elif status == "QUEUED":
                info["running"] = False
                info["progress"] = None
            elif status in TERMINAL_DIRS:
                info["completed_at"] = d.get("timestamp")
            if extra.get("structure_name"):
                info["structure_name"] = extra["structure_name"]
        elif ev.kind == "progress":
            frac = extra.get("progress")
            if isinstance(frac, int | float):
                info["progress"] = float(frac)
            info["progress_detail"] = {k: v for k, v in extra.items() if k != "progress"}
            info["progress_detail"]["message"] = d.get("message")
    return info


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, ValueError):
        return None


def _listdir(d: Path) -> list[str]:
    try:
        return sorted(os.listdir(d))
    except FileNotFoundError:
        return []


def structure_label(ref: dict[str, Any]) -> str:
    src = ref.get("source")
    if src == "builtin":
        return str(ref.get("name"))
    if src == "path":
        return Path(str(ref.get("path"))).stem
    if src == "upload":
        return str(ref.get("name") or ref.get("file_id"))
    return str(ref.get("name") or "inline")


def structure_ref_for_record(ref: dict[str, Any]) -> dict[str, Any]:
    """Inline content can be large: records carry the reference without it."""
    return {k: v for k, v in ref.items() if k != "content"}
