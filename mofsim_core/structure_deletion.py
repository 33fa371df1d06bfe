"""Deleting an uploaded structure, and with it the tasks that use it.

Queued tasks are cancelled and deleted, finished ones deleted (spool files and mirror
rows), running ones get a cancel request and stay listed.  The upload goes first, so a
task submitted meanwhile fails instead of running.  Uploads themselves are kept and
read by ``mofsim_core.structure_service``.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mofsim_core.structure_service import StructureIndex, check_file_id
from spool.errors import MofsimError, StructureNotFound, TaskNotFound, TaskTerminal
from spool.states import TERMINAL_DIRS
from spool.store import Spool, read_job_data

if TYPE_CHECKING:
    from mofsim_core.mirror import Mirror


def tasks_using(spool: Spool, file_id: str) -> list[tuple[str, str, Path]]:
    """``(task_id, state, job file)`` of every task whose structure is this upload;
    state is QUEUED, CLAIMED or terminal.  Reads each job file once."""
    paths = spool.paths
    dirs: list[tuple[str, Path]] = [("QUEUED", d) for _, d in paths.priority_dirs()]
    dirs += [("CLAIMED", paths.claimed / s) for s in _listdir(paths.claimed)]
    dirs += [(state, paths.root / d) for state, d in TERMINAL_DIRS.items()]
    found: list[tuple[str, str, Path]] = []
    for state, d in dirs:
        for name in _listdir(d):
            if not name.endswith(".json") or name.startswith("."):
                continue
            try:
                job = read_job_data(d / name)  # never blocks on a FIFO dropped in the queue
            except (OSError, MofsimError):
                continue
            if not isinstance(job, dict):
                continue
            ref = job.get("structure")
            if (
                isinstance(ref, dict)
                and ref.get("file_id") == file_id
                and ref.get("source", "upload") == "upload"
                and isinstance(job.get("task_id"), str)
            ):
                found.append((job["task_id"], state, d / name))
    return found


def delete_task_files(
    spool: Spool, task_id: str, job_path: Path, mirror: Mirror | None = None
) -> None:
    """Remove a terminal task: its workspace first (a workspace holding the
    hand-submitted original without a job file would be republished by the recovery
    sweep), then the job file, then its mirror rows."""
    shutil.rmtree(spool.paths.workspace(task_id), ignore_errors=True)
    job_path.unlink(missing_ok=True)
    spool.paths.cancel_marker(task_id).unlink(missing_ok=True)
    if mirror is not None:
        try:
            mirror.delete_task(task_id)
        except MofsimError:
            pass  # the mirror is rebuildable; the spool no longer has the task


def delete_structure(
    spool: Spool,
    index: StructureIndex | None,
    file_id: str,
    mirror: Mirror | None = None,
    *,
    actor: str = "local",
) -> dict[str, Any]:
    """Delete an upload and the tasks that use it: queued ones are cancelled and
    deleted, finished ones deleted (spool files and mirror rows), running ones get a
    cancel request (they end CANCELLED and stay listed).  Results go with it: callers
    let only the machine's owner or an admin key do this, and it is audited as done
    by ``actor``."""
    from mofsim_core.logs import audit

    check_file_id(file_id)
    folder = spool.paths.structures / file_id
    if not folder.is_dir():
        raise StructureNotFound(f"structure {file_id!r} not found", field="structure_id")
    # The structure goes first, so a task submitted meanwhile fails instead of running.
    shutil.rmtree(folder)
    if index is not None:
        index.forget(file_id)
    deleted: list[str] = []
    cancelling: list[str] = []
    for task_id, state, path in tasks_using(spool, file_id):
        if state in ("QUEUED", "CLAIMED"):
            try:
                after = spool.request_cancel(task_id)
            except (TaskNotFound, TaskTerminal):
                after = None  # finished meanwhile: look it up again below
            if after == "CANCELLING":
                cancelling.append(task_id)
                continue
            loc = spool.locate(task_id)
            if loc is None or loc.state not in TERMINAL_DIRS:
                if loc is not None:
                    cancelling.append(task_id)
                continue
            path = loc.path
        delete_task_files(spool, task_id, path, mirror)
        deleted.append(task_id)
    audit(
        "structure.deleted",
        file_id=file_id,
        by=actor,
        deleted_task_ids=deleted,
        cancelled_task_ids=cancelling,
    )
    return {
        "file_id": file_id,
        "deleted": True,
        "deleted_tasks": len(deleted),
        "deleted_task_ids": deleted,
        "cancelled_running_task_ids": cancelling,
    }


def _listdir(d: Path) -> list[str]:
    try:
        return sorted(os.listdir(d))
    except FileNotFoundError:
        return []
