"""Turning whatever sits in ``incoming/`` into canonical, validated jobs.

People and scripts drop files by hand: any name ending ``.json``, ``task_id`` optional.
A canonical file (``<13-digit ms>-<task_id>.json``) is parsed when claimed; any other
file is adopted here: validated, given an id and republished under the canonical name.
Whatever does not validate goes to ``rejected/`` with a reason; nothing raises.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path

from spool import transitions
from spool.errors import InvalidJobFile, MofsimError
from spool.job import Job, new_task_id, priority_name
from spool.store import MAX_JOB_BYTES, QueuedFile, Spool, read_job_data

__all__ = ["MAX_JOB_BYTES", "Validator", "admit", "parse_dropped"]

log = logging.getLogger(__name__)

# Extra checks the spool itself cannot make (which task types exist, model keys, task
# parameters): raise a MofsimError to reject, return a corrected job (the task type's
# canonical name for an alias) or None to keep it.  Supplied by the daemon, which knows
# the executors' catalogue.
Validator = Callable[[Job], Job | None]


def parse_dropped(path: Path, level: int) -> Job:
    """Build a job from a hand-written file, filling what a person would leave out."""
    data = read_job_data(path)
    if not isinstance(data, dict):
        raise InvalidJobFile("job must be a JSON object")
    data = dict(data)
    data.setdefault("task_id", new_task_id())
    options = dict(data.get("options") or {}) if isinstance(data.get("options"), dict) else {}
    # The directory a person dropped the file into is the priority, unless the file says.
    options.setdefault("priority", priority_name(level))
    data["options"] = options
    if "created_at" not in data:
        data["created_at"] = int(os.lstat(path).st_mtime * 1000)
    return Job.from_dict(data)


def _read_canonical(qfile: QueuedFile) -> Job:
    data = read_job_data(qfile.path)
    job = Job.from_dict(data)
    if job.task_id != qfile.task_id:
        raise InvalidJobFile(
            f"file name says task {qfile.task_id} but the file holds {job.task_id}"
        )
    return job


def _reason(exc: BaseException) -> str:
    if isinstance(exc, MofsimError):
        reason = f"{exc.code} {type(exc).__name__}: {exc.message}"
        return reason + (f" (field: {exc.field})" if exc.field else "")
    # Whatever no check foresaw is still this file's fault, not the daemon's.
    bad = InvalidJobFile(f"cannot take in this file: {type(exc).__name__}: {exc}")
    return f"{bad.code} {type(bad).__name__}: {bad.message}"


def _reject(spool: Spool, qfile: QueuedFile, exc: BaseException) -> None:
    try:
        transitions.reject(spool.paths, qfile.path, _reason(exc))
    except Exception as again:  # noqa: BLE001 - intake must go on with the next file
        log.warning("cannot move %r to rejected/: %s", qfile.name, again)


def admit(spool: Spool, qfile: QueuedFile, validator: Validator | None = None) -> Job | None:
    """Validate one queued file.  Returns the job when it may be claimed as it is,
    None when it was rejected, adopted under a new name, or vanished.  ``validator``
    applies to hand-written files only (see below).  Never raises: whatever goes wrong
    with one file rejects that file."""
    try:
        if qfile.task_id is not None:
            # A canonical job has an id its submitter knows: a bad model or parameter
            # fails that task (the caller's business) instead of vanishing into rejected/.
            return _read_canonical(qfile)
        job = parse_dropped(qfile.path, qfile.priority)
        if spool.locate(job.task_id) is not None:
            raise InvalidJobFile(f"task id {job.task_id} already exists")
        if validator:
            job = validator(job) or job
    except FileNotFoundError:
        return None
    except Exception as exc:  # noqa: BLE001 - one bad file must never stop the intake
        _reject(spool, qfile, exc)
        return None
    try:
        published = transitions.adopt_submission(spool.paths, qfile.path, job)
        if published is not None:
            spool.events(job.task_id).status(
                "QUEUED",
                f"Task queued from hand-written file {qfile.name}",
                priority=priority_name(job.priority),
                source_file=qfile.name,
            )
    except Exception as exc:  # noqa: BLE001 - e.g. a full disk: the file stays for later
        log.warning("cannot adopt %r yet: %s", qfile.name, exc)
    return None
