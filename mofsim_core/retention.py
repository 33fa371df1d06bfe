"""Retention of task data (spec 8): nothing is lost by accident.

- Task metadata and logs are kept forever.
- Results and output files are kept at least ``keep_days`` (180) after completion.
- Trajectories are gzip-compressed ``compress_after_days`` (30) after completion.
- Within ``remind_days`` (14) of the end of the retention period a reminder is
  recorded in the task's log, once; with ``auto_extend`` the period is extended
  instead.  A task with a ``keep`` flag is never reminded about and never expires.
- Deletion happens only through an explicit call (``delete_task_data``), which is
  audited; expiry itself deletes nothing.

``plan()`` says what would happen (``mofsim gc --dry-run``); ``apply()`` does it.
"""

from __future__ import annotations

import gzip
import json
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from spool.errors import ResultNotReady, TaskNotFound, ValidationError
from spool.events import ms_from_iso
from spool.states import TERMINAL_DIRS
from spool.store import Spool
from spool.transitions import atomic_write_json

DAY = 86400.0
TRAJECTORY_SUFFIXES = (".traj",)


MIN_KEEP_DAYS = 180.0  # spec 8: results are kept at least this long


@dataclass(frozen=True)
class Policy:
    keep_days: float = MIN_KEEP_DAYS
    compress_after_days: float = 30.0
    remind_days: float = 14.0
    auto_extend: bool = False

    @classmethod
    def from_config(cls, config: Any) -> Policy:
        """The ``retention_*`` settings; a period shorter than the spec's minimum, or a
        negative one, is refused."""
        policy = cls(
            float(config.retention_keep_days),
            float(config.retention_compress_after_days),
            float(config.retention_remind_days),
            bool(config.retention_auto_extend),
        )
        if policy.keep_days < MIN_KEEP_DAYS:
            raise ValidationError(
                f"retention_keep_days must be at least {MIN_KEEP_DAYS:g}",
                field="retention_keep_days",
            )
        if policy.compress_after_days < 0 or policy.remind_days < 0:
            raise ValidationError(
                "retention periods cannot be negative", field="retention_compress_after_days"
            )
        return policy

    def to_dict(self) -> dict[str, Any]:
        return {
            "keep_days": self.keep_days,
            "compress_after_days": self.compress_after_days,
            "remind_days": self.remind_days,
            "auto_extend": self.auto_extend,
        }


@dataclass
class Action:
    task_id: str
    kind: str  # compress | remind | extend
    detail: str

    def to_dict(self) -> dict[str, Any]:
        return {"task_id": self.task_id, "action": self.kind, "detail": self.detail}


@dataclass
class Plan:
    actions: list[Action] = field(default_factory=list)

    def by_kind(self, kind: str) -> list[Action]:
        return [a for a in self.actions if a.kind == kind]


def _retention_file(spool: Spool, task_id: str) -> Path:
    return spool.paths.workspace(task_id) / "retention.json"


def retention_info(spool: Spool, task_id: str) -> dict[str, Any]:
    try:
        return dict(json.loads(_retention_file(spool, task_id).read_text()))
    except (FileNotFoundError, ValueError):
        return {}


def set_keep(spool: Spool, task_id: str, keep: bool = True) -> dict[str, Any]:
    """The per-task keep flag: kept beyond any retention period."""
    if spool.locate(task_id) is None:
        raise TaskNotFound(f"task {task_id} not found")
    info = retention_info(spool, task_id) | {"keep": keep}
    atomic_write_json(spool.paths, _retention_file(spool, task_id), info)
    return info


def _completed_at(spool: Spool, record: dict[str, Any]) -> float | None:
    stamp = record.get("completed_at")
    return ms_from_iso(stamp) / 1000 if stamp else None


def plan(spool: Spool, policy: Policy, now: float | None = None) -> Plan:
    now = time.time() if now is None else now
    result = Plan()
    for state in TERMINAL_DIRS:
        for record in spool.records(status=state):
            task_id = record["task_id"]
            done_at = _completed_at(spool, record)
            if done_at is None:
                continue
            age_days = (now - done_at) / DAY
            workspace = spool.paths.workspace(task_id)
            if age_days >= policy.compress_after_days:
                for p in sorted(workspace.iterdir()) if workspace.is_dir() else []:
                    if p.suffix in TRAJECTORY_SUFFIXES and p.is_file():
                        result.actions.append(Action(task_id, "compress", p.name))
            info = retention_info(spool, task_id)
            if info.get("keep"):
                continue
            until = done_at + (policy.keep_days + float(info.get("extended_days", 0))) * DAY
            if (until - now) / DAY <= policy.remind_days and not info.get("reminded"):
                kind = "extend" if policy.auto_extend else "remind"
                result.actions.append(
                    Action(
                        task_id,
                        kind,
                        f"retention ends {time.strftime('%Y-%m-%d', time.gmtime(until))}",
                    )
                )
    return result


def apply(spool: Spool, policy: Policy, now: float | None = None, *, actor: str = "local") -> Plan:
    """Do what ``plan`` says; a run that changed anything is audited as ``actor``'s."""
    from mofsim_core.logs import audit

    todo = plan(spool, policy, now)
    for action in todo.actions:
        workspace = spool.paths.workspace(action.task_id)
        if action.kind == "compress":
            src = workspace / action.detail
            gz = src.with_name(src.name + ".gz")
            with open(src, "rb") as fin, gzip.open(gz, "wb") as fout:
                shutil.copyfileobj(fin, fout)
            src.unlink()
            spool.events(action.task_id).emit(
                f"Trajectory {src.name} compressed to {gz.name}", logger="retention"
            )
        elif action.kind == "remind":
            info = retention_info(spool, action.task_id) | {"reminded": True}
            atomic_write_json(spool.paths, _retention_file(spool, action.task_id), info)
            spool.events(action.task_id).emit(
                f"Retention reminder: {action.detail}; set the keep flag to keep this task's "
                "results",
                level="WARNING",
                logger="retention",
            )
        elif action.kind == "extend":
            info = retention_info(spool, action.task_id)
            info["extended_days"] = float(info.get("extended_days", 0)) + policy.keep_days
            atomic_write_json(spool.paths, _retention_file(spool, action.task_id), info)
            spool.events(action.task_id).emit(
                f"Retention extended by {policy.keep_days:g} days ({action.detail} before)",
                logger="retention",
            )
    if todo.actions:
        audit(
            "retention.applied",
            by=actor,
            compressed=[a.task_id for a in todo.by_kind("compress")],
            reminded=[a.task_id for a in todo.by_kind("remind")],
            extended=[a.task_id for a in todo.by_kind("extend")],
        )
    return todo


def delete_task_data(spool: Spool, task_id: str, *, actor: str) -> dict[str, Any]:
    """Remove a finished task's results and files; its job file and log stay (metadata
    and logs are permanent).  Audited."""
    from mofsim_core.logs import audit

    loc = spool.locate(task_id)
    if loc is None:
        raise TaskNotFound(f"task {task_id} not found")
    if loc.state not in TERMINAL_DIRS:
        raise ResultNotReady(f"task {task_id} has not finished; cancel it before deleting its data")
    workspace = spool.paths.workspace(task_id)
    removed = []
    for p in sorted(workspace.iterdir()) if workspace.is_dir() else []:
        if p.name in ("events.jsonl", "submitted.json", "retention.json", "error.json"):
            continue
        if p.is_dir():
            shutil.rmtree(p)
        else:
            p.unlink()
        removed.append(p.name)
    spool.events(task_id).emit(
        f"Task data deleted by {actor}: {', '.join(removed) or 'none'}",
        level="WARNING",
        logger="audit",
    )
    audit("task.data_deleted", task_id=task_id, by=actor, files=removed)
    return {"task_id": task_id, "removed": removed}
