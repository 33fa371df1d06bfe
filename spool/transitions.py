"""Every rename on the spool happens here.

A job file is never modified after publication; each state change is one
``os.rename`` (atomic within a filesystem), so a reader sees a job in exactly one
directory and concurrent claimers cannot both win.
"""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path
from typing import Any

from spool.errors import StorageError
from spool.job import Job
from spool.layout import SpoolPaths
from spool.states import TERMINAL_DIRS


def _write_fsynced(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        view = memoryview(data)
        while view:
            written = os.write(fd, view)
            view = view[written:]
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(paths: SpoolPaths, dest: Path, data: bytes | str) -> Path:
    """Write in ``tmp/``, fsync, rename into place: readers never see a partial file."""
    if isinstance(data, str):
        data = data.encode()
    tmp = paths.tmp / f".{uuid.uuid4().hex}.part"
    try:
        _write_fsynced(tmp, data)
        os.replace(tmp, dest)
    except OSError as exc:
        try:
            tmp.unlink()
        except OSError:
            pass
        raise StorageError(f"cannot write {dest.name}: {exc.strerror or exc}") from exc
    return dest


def atomic_write_json(paths: SpoolPaths, dest: Path, obj: Any) -> Path:
    return atomic_write(paths, dest, json.dumps(obj, indent=2, sort_keys=True))


def publish(paths: SpoolPaths, job: Job) -> Path:
    """QUEUED: the job appears in its priority directory under a FIFO-sortable name."""
    dest = paths.priority_dir(job.priority) / job.file_name
    return atomic_write(paths, dest, job.to_json())


def claim(paths: SpoolPaths, src: Path, slot: str, task_id: str) -> Path | None:
    """ASSIGNED: move a queued file to ``claimed/<slot>/``.  None when another claimer won."""
    dest = paths.claimed_dir(slot) / f"{task_id}.json"
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.rename(src, dest)
    except FileNotFoundError:
        return None
    return dest


def finish(paths: SpoolPaths, claimed: Path, state: str) -> Path:
    """Terminal transition of a claimed job (COMPLETED, FAILED, CANCELLED, TIMEOUT)."""
    if state not in TERMINAL_DIRS:
        raise ValueError(f"not a terminal state: {state}")
    dest = paths.terminal_dir(state) / claimed.name
    os.rename(claimed, dest)
    return dest


def cancel_queued(paths: SpoolPaths, src: Path, task_id: str) -> Path | None:
    """QUEUED -> CANCELLED.  None when the job was claimed first (then cancel is cooperative)."""
    dest = paths.terminal_dir("CANCELLED") / f"{task_id}.json"
    try:
        os.rename(src, dest)
    except FileNotFoundError:
        return None
    return dest


def requeue(paths: SpoolPaths, claimed: Path, job: Job) -> Path:
    """Back to QUEUED with one more attempt counted.

    The new version is published before the claim is dropped: a crash in between leaves
    the task both queued and claimed, which the recovery sweep resolves by dropping the
    claim, so nothing is ever lost.
    """
    dest = publish(paths, job)
    try:
        claimed.unlink()
    except FileNotFoundError:
        pass
    return dest


def _rejected_name(paths: SpoolPaths, name: str) -> Path:
    """A free name in ``rejected/`` that leaves room for ``.reason``: the original name
    when it fits, else a shortened one with a random tag."""
    base = name if name.endswith(".json") else name + ".json"
    stem = base[:-5]
    if len(os.fsencode(base + ".reason")) > 240:
        stem = os.fsdecode(os.fsencode(stem)[:150])
    dest = paths.rejected / f"{stem}.json"
    while os.path.lexists(dest):  # lexists: a dangling link there is taken too
        dest = paths.rejected / f"{stem}-{uuid.uuid4().hex[:8]}.json"
    return dest


def reject(paths: SpoolPaths, src: Path, reason: str) -> Path | None:
    """Move a malformed file out of the queue, with a ``.reason`` beside it.  The entry
    itself is renamed, whatever it is: a link is never followed, a FIFO never opened."""
    dest = _rejected_name(paths, src.name)
    try:
        os.rename(src, dest)
    except FileNotFoundError:
        return None
    atomic_write(paths, dest.with_name(dest.name + ".reason"), reason.rstrip() + "\n")
    return dest


def adopt_submission(paths: SpoolPaths, src: Path, job: Job) -> Path | None:
    """A hand-written file: keep the original in the task workspace, then publish the
    canonical job.  None when something else took the file first."""
    workspace = paths.workspace(job.task_id)
    workspace.mkdir(parents=True, exist_ok=True)
    kept = workspace / "submitted.json"
    try:
        os.rename(src, kept)
    except FileNotFoundError:
        return None
    return publish(paths, job)


def move_out_of_claimed(paths: SpoolPaths, claimed: Path) -> None:
    """Drop a duplicate claim (the task is queued or terminal elsewhere)."""
    try:
        claimed.unlink()
    except FileNotFoundError:
        pass
