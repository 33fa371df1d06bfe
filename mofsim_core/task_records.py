"""Task records as the API shows them, and the small helpers every task route shares.

A record is ``Spool.record``'s dict (the mirror stores the same) without the webhook
secret or the inline result, plus the queue position while queued.  Pages are asked for
as ``page``/``page_size`` or ``skip``/``limit`` and answered as ``pagination``.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from loguru import logger

from mofsim_core.mirror_rows import parse_order
from spool.errors import (
    MofsimError,
    TaskCancelled,
    TaskError,
    TaskTimeout,
    ValidationError,
    error_from_code,
)
from spool.events import iso_from_ms
from spool.job import Job, priority_name
from spool.layout import CANONICAL_NAME
from spool.store import Spool

if TYPE_CHECKING:
    from mofsim_core.mirror import Mirror

MAX_PAGE = 1000
API_ROOT = "/api/v1"


# --- records --------------------------------------------------------------------------------


def _queued_names(folder: Path) -> list[str]:
    try:
        return [n for n in os.listdir(folder) if n.endswith(".json") and not n.startswith(".")]
    except FileNotFoundError:
        return []


def queue_positions(spool: Spool) -> dict[str, int]:
    """1-based place of each queued task in scheduling order (priority, then FIFO):
    ``Spool.queued()``'s order, from bare names (a long queue is listed per request)."""
    out: dict[str, int] = {}
    place = 0
    for _, folder in spool.paths.priority_dirs():
        for name in sorted(_queued_names(folder)):
            place += 1
            m = CANONICAL_NAME.fullmatch(name)
            if m:
                out[m.group(2)] = place
    return out


def queue_position(spool: Spool, task_id: str) -> int | None:
    """1-based place of one queued task, as ``queue_positions`` would give it, without
    matching every queued name: what a submit or a status answer needs."""
    suffix = f"-{task_id}.json"
    place = 0
    for _, folder in spool.paths.priority_dirs():
        names = _queued_names(folder)
        mine = next((n for n in names if n.endswith(suffix) and CANONICAL_NAME.fullmatch(n)), None)
        if mine is not None:
            return place + sum(1 for n in names if n <= mine)
        place += len(names)
    return None


def queued_record(job: Job) -> dict[str, Any]:
    """What ``Spool.record`` says of a job this process has just published (state
    QUEUED, one event), built without searching the queue for it: a batch of 1000
    would otherwise search a growing queue 1000 times."""
    from spool.store import structure_label, structure_ref_for_record

    return {
        "task_id": job.task_id,
        "task_type": job.task_type,
        "model": job.model,
        "status": "QUEUED",
        "priority": priority_name(job.priority),
        "created_at": iso_from_ms(job.created_at),
        "started_at": None,
        "completed_at": None,
        "slot": None,
        "gpu_id": None,
        "attempts": job.attempts,
        "progress": None,
        "progress_detail": None,
        "structure_name": structure_label(job.structure),
        "error": None,
        "result": None,
        "parameters": job.parameters,
        "options": job.options,
        "structure": structure_ref_for_record(job.structure),
        "owner": job.owner,
        "estimate": job.estimate,
        "request_id": job.request_id,
    }


def public_record(
    record: dict[str, Any], queue: Mapping[str, int | None] | None = None
) -> dict[str, Any]:
    """A task record as clients see it: no webhook secret, no inline result (that is
    ``/result``), the queue position while queued."""
    out = {k: v for k, v in record.items() if k != "result"}
    options = out.get("options")
    if isinstance(options, dict) and options.get("notify_secret"):
        out["options"] = {**options, "notify_secret": "***"}
    if out.get("status") == "QUEUED" and queue is not None:
        out["queue_position"] = queue.get(str(out["task_id"]))
    if out.get("status") == "COMPLETED":
        out["result_url"] = f"{API_ROOT}/tasks/{out['task_id']}/result"
    return out


def failure_of(record: dict[str, Any]) -> MofsimError:
    """Why a task has no result: its recorded error, as a task error (50xxx)."""
    task_id, state = record["task_id"], record["status"]
    recorded = record.get("error")
    error: dict[str, Any] = recorded if isinstance(recorded, dict) else {}
    message = str(error.get("message") or state.lower())
    code = error.get("code")
    text = f"task {task_id} {state.lower()}: {message}"
    if state == "TIMEOUT":
        return TaskTimeout(text)
    if state == "CANCELLED":
        return TaskCancelled(text)
    if isinstance(code, int):
        named = error_from_code(code, text)
        if isinstance(named, TaskError):
            return named
    detail = f"{text} (error {code})" if isinstance(code, int) else text
    return TaskError(text, detail=detail)


# --- the mirror -------------------------------------------------------------------------


def mirror_task(spool: Spool, mirror: Mirror | None, task_id: str) -> None:
    """The daemon mirrors tasks as they move; the server adds what it changes itself
    (a new task, a cancel while queued), so lists show it at once."""
    if mirror is not None:
        try:
            mirror_record(mirror, spool.record(task_id))
        except MofsimError as exc:
            logger.warning("mirror write for {} failed: {}", task_id, exc.message)


def mirror_record(mirror: Mirror | None, record: dict[str, Any]) -> None:
    if mirror is None:
        return
    try:
        mirror.upsert_task(record)
    except MofsimError as exc:
        logger.warning("mirror write for {} failed: {}", record["task_id"], exc.message)


def list_from_spool(
    spool: Spool,
    states: list[str] | None,
    kind: str | None,
    model: str | None,
    limit: int,
    offset: int,
    order: str,
    owner: str | None = None,
) -> tuple[list[dict[str, Any]], int]:
    """A page of task records read from the spool itself (when the mirror does not
    answer), filtered and ordered as the mirror's ``list_tasks`` would."""
    key, descending = parse_order(order)
    records = [
        r
        for r in spool.records()
        if (states is None or r["status"] in states)
        and (kind is None or r["task_type"] == kind)
        and (model is None or r["model"] == model)
        and (owner is None or r.get("owner") == owner)
    ]
    present = sorted(
        (r for r in records if r.get(key) is not None),
        key=lambda r: (str(r[key]) if key != "progress" else r[key], r["task_id"]),
        reverse=descending,
    )
    ordered = present + [r for r in records if r.get(key) is None]
    return ordered[offset : offset + limit], len(records)


# --- pages ----------------------------------------------------------------------------------


def query_int(query: Mapping[str, Any], name: str, default: int, low: int, high: int) -> int:
    """An integer query parameter within ``[low, high]``, or ``default`` when absent
    (given but empty is not absent: ``?limit=`` is an error, as the schema says)."""
    raw = query.get(name)
    if raw is None:
        return default
    try:
        value = int(str(raw))
    except ValueError:
        raise ValidationError(f"{name} must be an integer, got {raw!r}", field=name) from None
    if not low <= value <= high:
        raise ValidationError(f"{name} must be between {low} and {high}", field=name)
    return value


def page_args(
    query: Mapping[str, Any], default_size: int = 20, max_size: int = MAX_PAGE
) -> tuple[int, int]:
    """``(limit, offset)`` from ``skip``/``limit`` (or ``offset``/``limit``) when either
    is given, else from ``page`` (1-based) and ``page_size``."""
    # Both pairs are checked, whichever is used: a bad value is never passed over.
    size = query_int(query, "page_size", default_size, 1, max_size)
    page = query_int(query, "page", 1, 1, 10**9)
    if any(k in query for k in ("skip", "limit", "offset")):
        limit = query_int(query, "limit", default_size, 1, max_size)
        skip = query_int(query, "skip", 0, 0, 10**9)
        offset = query_int(query, "offset", 0, 0, 10**9)
        return limit, skip if "skip" in query else offset
    return size, (page - 1) * size


def pagination(total: int, limit: int, offset: int) -> dict[str, int]:
    return {
        "page": offset // limit + 1,
        "page_size": limit,
        "total": total,
        "total_pages": math.ceil(total / limit),
        "skip": offset,
        "limit": limit,
    }
