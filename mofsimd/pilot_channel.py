"""The files through which the daemon and a Slurm pilot talk, in the shared spool.

A pilot runs on a compute node: no pipe reaches it, only the spool's filesystem.  Each
pilot owns ``state/pilots/<jobid>/``:

- ``inbox.jsonl``: commands from the daemon (the executor protocol's ``run``, ``load``,
  ``unload``, plus ``kill`` and ``leave``), appended by the daemon only;
- ``outbox.jsonl``: the executor's replies (``ready``, ``started``, ``finished``,
  ``loaded``) plus ``exited``, appended by the pilot only;
- ``heartbeat.json``: node, pid, devices, loaded models and current task, rewritten
  every second by the pilot (renamed into place: never read half-written).

One writer per file and whole lines appended with ``O_APPEND`` keep both sides simple;
each reader remembers its offset and reads complete lines only.  Polling, not inotify:
inotify does not see writes made on another host of a network filesystem.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path
from typing import Any

INBOX = "inbox.jsonl"
OUTBOX = "outbox.jsonl"
HEARTBEAT = "heartbeat.json"


def pilots_root(spool_root: Path) -> Path:
    return spool_root / "state" / "pilots"


def pilot_dir(spool_root: Path, job_id: str) -> Path:
    return pilots_root(spool_root) / job_id


def slot_id(job_id: str, kind: str) -> str:
    """``slurm:<jobid>:gpu0`` (or ``cpu0``).  The slot id also names the claim folder
    ``claimed/<slot>/``, so it holds no ``/``."""
    return f"slurm:{job_id}:{'gpu0' if kind == 'nvml' else 'cpu0'}"


def job_name(spool_root: Path) -> str:
    """The Slurm job name of this spool's pilots: a daemon adopts its own pilots only."""
    digest = hashlib.sha1(str(spool_root).encode()).hexdigest()[:10]
    return f"mofsim-pilot-{digest}"


def append(path: Path, msg: dict[str, Any]) -> None:
    data = (json.dumps(msg, default=str) + "\n").encode()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


class Tail:
    """The complete lines appended to a file since the last read."""

    def __init__(self, path: Path, *, from_end: bool = False) -> None:
        self.path = path
        self.offset = 0
        if from_end:
            try:
                self.offset = path.stat().st_size
            except FileNotFoundError:
                pass

    def read(self) -> list[dict[str, Any]]:
        # open() rather than stat(): on NFS opening revalidates the cached attributes
        # (close-to-open consistency), a bare stat may answer from a cache seconds old.
        try:
            fh = open(self.path, "rb")
        except FileNotFoundError:
            return []
        with fh:
            size = os.fstat(fh.fileno()).st_size
            if size <= self.offset:
                return []
            fh.seek(self.offset)
            data = fh.read(size - self.offset)
        end = data.rfind(b"\n")
        if end < 0:
            return []  # a line still being written
        self.offset += end + 1
        out = []
        for line in data[: end + 1].splitlines():
            try:
                msg = json.loads(line)
            except ValueError:
                continue
            if isinstance(msg, dict):
                out.append(msg)
        return out


class Pace:
    """How long to wait before looking again: 1 ms just after a message (a task ended,
    the next is handed over within milliseconds), ``fast`` while messages flow, ``slow``
    after ``linger`` quiet seconds."""

    BURST_S = 0.05

    def __init__(self, slow: float, fast: float = 0.005, linger: float = 1.0) -> None:
        self.slow = slow
        self.fast = min(fast, slow)
        self.linger = linger
        self._active = 0.0

    def touch(self) -> None:
        self._active = time.monotonic()

    def wait(self) -> float:
        quiet = time.monotonic() - self._active
        if quiet < self.BURST_S:
            return min(0.001, self.fast)
        return self.fast if quiet < self.linger else self.slow


def write_heartbeat(directory: Path, doc: dict[str, Any]) -> None:
    tmp = directory / f".{HEARTBEAT}.{os.getpid()}.tmp"
    tmp.write_text(json.dumps({**doc, "t": time.time()}, default=str))
    os.replace(tmp, directory / HEARTBEAT)


def read_heartbeat(directory: Path) -> dict[str, Any] | None:
    try:
        doc = json.loads((directory / HEARTBEAT).read_text())
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) else None
