"""The recovery sweep: make the spool consistent after a crash, even ``kill -9``.

Run by the daemon at start (before it claims anything) for every slot whose executor is
gone.  For each claimed file:

- an executor still holds the claim's lock (an orphan of the previous daemon, still
  running the task): leave the claim alone, it is reported as ``running`` and looked at
  again later (``recover_claim``), so a task never runs twice at once;
- the task is also queued or terminal elsewhere (a crash mid-requeue): drop the claim;
- ``result.json`` exists: the executor finished, only the rename was lost -> COMPLETED
  (the task is not run a second time);
- ``error.json`` exists: a final failure was being recorded -> its terminal state;
- otherwise it was interrupted: requeue with one more attempt, or FAILED once the
  attempts are used up.

Hand-written files that were adopted (``submitted.json``) but never republished are
published again, and stray ``tmp/`` parts are removed.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from spool import claim_lock, transitions
from spool.errors import MofsimError, StorageError, TaskError, code_of
from spool.job import Job
from spool.states import TERMINAL_DIRS
from spool.store import Spool, read_job


@dataclass
class SweepReport:
    requeued: list[str] = field(default_factory=list)
    completed: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    dropped_duplicates: list[str] = field(default_factory=list)
    republished: list[str] = field(default_factory=list)
    rejected: list[str] = field(default_factory=list)
    running: list[str] = field(default_factory=list)  # claims an orphan still holds
    # Claims whose recovery the disk refused (full): the daemon retries them each turn.
    deferred: list[str] = field(default_factory=list)

    def total(self) -> int:
        return sum(len(v) for v in vars(self).values())


def sweep(
    spool: Spool,
    *,
    slots: set[str] | None = None,
    max_attempts: int = 3,
    tmp_max_age_s: float = 3600.0,
) -> SweepReport:
    """``slots``: only these claim directories (None = all, i.e. no executor is alive)."""
    report = SweepReport()
    paths = spool.paths
    for slot in _listdir(paths.claimed):
        if slots is not None and slot not in slots:
            continue
        for name in _listdir(paths.claimed / slot):
            if name.endswith(".json"):
                try:
                    recover_claim(spool, paths.claimed / slot / name, max_attempts, report)
                except StorageError:
                    report.deferred.append(name[: -len(".json")])
    # A full disk must not stop a daemon from starting: what cannot be republished now
    # stays adopted, and the next sweep publishes it.
    with contextlib.suppress(StorageError):
        _republish_adopted(spool, report)
    _clean_tmp(spool, tmp_max_age_s)
    return report


def recover_claim(spool: Spool, claimed: Path, max_attempts: int, report: SweepReport) -> None:
    """Resolve one claim whose executor is gone; a claim still locked is only reported."""
    paths = spool.paths
    task_id = claimed.name[:-5]
    if claim_lock.held(claimed):
        report.running.append(task_id)
        return
    claim_lock.discard(claimed)
    try:
        job = read_job(claimed)
    except MofsimError as exc:
        transitions.reject(paths, claimed, f"{exc.code} unreadable claimed job: {exc.message}")
        report.rejected.append(task_id)
        return
    elsewhere = _find_unclaimed(spool, task_id)
    if elsewhere:
        transitions.move_out_of_claimed(paths, claimed)
        report.dropped_duplicates.append(task_id)
        return
    events = spool.events(task_id, gpu_id=None)
    if paths.result_file(task_id).exists():
        transitions.finish(paths, claimed, "COMPLETED")
        events.status("COMPLETED", "Task completed (recorded during recovery)")
        report.completed.append(task_id)
        return
    error = _read_json(paths.error_file(task_id))
    if isinstance(error, dict) and error.get("status") in TERMINAL_DIRS:
        state = str(error["status"])
        transitions.finish(paths, claimed, state)
        events.status(state, f"Task {state.lower()} (recorded during recovery)")
        report.failed.append(task_id)
        return
    attempts = job.attempts + 1
    if attempts >= max_attempts:
        record_failure(
            spool,
            task_id,
            "FAILED",
            code_of(TaskError),
            f"executor died {attempts} times while running this task; giving up",
        )
        transitions.finish(paths, claimed, "FAILED")
        events.status(
            "FAILED", "Task failed: attempts exhausted after executor crashes", level="ERROR"
        )
        report.failed.append(task_id)
        return
    transitions.requeue(paths, claimed, job.with_attempts(attempts))
    events.status(
        "QUEUED",
        f"Task requeued after its executor was lost (attempt {attempts + 1})",
        level="WARNING",
        attempts=attempts,
    )
    report.requeued.append(task_id)


def record_failure(
    spool: Spool, task_id: str, state: str, code: int, message: str, **extra: object
) -> None:
    """Write ``error.json`` (the reason a task ended other than COMPLETED)."""
    body = {"status": state, "code": code, "message": message, **extra}
    transitions.atomic_write(
        spool.paths, spool.paths.error_file(task_id), json.dumps(body, indent=2, default=str)
    )


def _find_unclaimed(spool: Spool, task_id: str) -> bool:
    for dirname in TERMINAL_DIRS.values():
        if (spool.paths.root / dirname / f"{task_id}.json").exists():
            return True
    suffix = f"-{task_id}.json"
    for _, d in spool.paths.priority_dirs():
        if any(n.endswith(suffix) for n in _listdir(d)):
            return True
    return False


def _republish_adopted(spool: Spool, report: SweepReport) -> None:
    for task_id in _listdir(spool.paths.tasks):
        submitted = spool.paths.workspace(task_id) / "submitted.json"
        if not submitted.exists() or spool.locate(task_id) is not None:
            continue
        try:
            data = json.loads(submitted.read_bytes())
            data["task_id"] = task_id
            job = Job.from_dict(data)
        except (ValueError, MofsimError):
            continue
        transitions.publish(spool.paths, job)
        report.republished.append(task_id)


def _clean_tmp(spool: Spool, max_age_s: float) -> None:
    cutoff = time.time() - max_age_s
    for name in _listdir(spool.paths.tmp):
        p = spool.paths.tmp / name
        try:
            if name.startswith(".") and name.endswith(".part") and p.stat().st_mtime < cutoff:
                p.unlink()
        except FileNotFoundError:
            pass


def _read_json(path: Path) -> object:
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, ValueError):
        return None


def _listdir(d: Path) -> list[str]:
    try:
        return sorted(os.listdir(d))
    except FileNotFoundError:
        return []
