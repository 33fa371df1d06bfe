"""The MIRA guide's response shapes, built from the records both dialects share.

Pure functions: a task record or a spec-5.3 result document in, the MIRA body out
(the guide's four statuses with our state beside, ``model_key``/``structure_id``, the
guide's flat result keys next to ours, ``key_metrics`` for summaries).  Nothing here reads files.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from spool.errors import TaskCancelled, TaskTimeout, code_name, code_of
from spool.states import TaskState

if TYPE_CHECKING:
    from executors.task_types import TaskType

MIRA_API = "/mira/api/v1"


def _spec(task_type: Any) -> TaskType | None:
    """The task type's own statement of its MIRA names (None for an unknown one: an old
    record of a task type this build no longer has)."""
    from executors.registry import task_types

    return task_types().get(str(task_type))


def mira_state(state: Any) -> str | None:
    """The guide's status (pending, running, completed, failed) of one of our states."""
    parsed = TaskState.parse(str(state)) if state is not None else None
    return parsed.mira if parsed is not None else None


def mira_detail(state: Any) -> str | None:
    """The state itself, lowercase (queued, assigned, cancelled, timeout, ...)."""
    return str(state).lower() if state is not None else None


def _percent(state: Any, fraction: Any) -> int:
    """Whole percent, as the guide's ``"progress": 42``; rounded down, so a running task
    never shows 100."""
    if state == "COMPLETED":
        return 100
    if isinstance(fraction, int | float) and not isinstance(fraction, bool):
        return max(0, min(100, math.floor(100.0 * fraction + 1e-9)))
    return 0


# A client that polls until "failed" learns from the message why: the guide's four
# statuses fold cancelled and timed-out tasks into failed.
_ENDED = {"CANCELLED": ("task cancelled", "cancel"), "TIMEOUT": ("task timed out", "time")}


def _error_fields(state: Any, error: Any) -> dict[str, Any]:
    """``error_message``, ``error_code`` (the table's name, e.g. MODEL_UNAVAILABLE) and
    ``error_code_numeric`` of a task that did not complete; empty for one that did."""
    if not isinstance(error, dict) and state not in ("FAILED", *_ENDED):
        return {}
    recorded = error if isinstance(error, dict) else {}
    message = recorded.get("message") or recorded.get("detail")
    if state in _ENDED:
        prefix, word = _ENDED[str(state)]
        if not message:
            message = prefix
        elif word not in str(message).lower():
            message = f"{prefix}: {message}"
    elif not message:
        message = f"task {mira_detail(state)}"
    code = recorded.get("code")
    if not isinstance(code, int) and state == "TIMEOUT":
        code = code_of(TaskTimeout)
    elif not isinstance(code, int) and state == "CANCELLED":
        code = code_of(TaskCancelled)
    numeric = code if isinstance(code, int) and not isinstance(code, bool) else None
    return {
        "error_message": message,
        "error_code": code_name(numeric) if numeric is not None else None,
        "error_code_numeric": numeric,
    }


# The guide's words for what a model does, in its order.
MIRA_CAPABILITIES = ("energy", "forces", "stress", "optimization", "md")


def mira_supported_tasks(task_types: Any) -> list[str]:
    """A model's ``supported_tasks`` in the guide's words (a model that runs single
    points gives energy, forces and stress; stability runs md), then our task types,
    which are what ``/tasks/{task_type}`` takes."""
    ours = [str(t) for t in task_types or []]
    offered = {c for t in ours if (spec := _spec(t)) is not None for c in spec.mira_capabilities}
    return [c for c in MIRA_CAPABILITIES if c in offered] + [t for t in ours if t not in offered]


def structure_id_of(record: dict[str, Any]) -> str | None:
    ref = record.get("structure")
    if isinstance(ref, dict) and ref.get("source") == "upload":
        return str(ref.get("file_id"))
    return None


def _parse_time(text: Any) -> datetime | None:
    if not isinstance(text, str) or not text:
        return None
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def remaining_minutes(started_at: Any, fraction: Any, now: datetime | None = None) -> float | None:
    """Elapsed time scaled by the work left; None before any progress is known."""
    start = _parse_time(started_at)
    if start is None or not isinstance(fraction, int | float) or not 0 < fraction < 1:
        return None
    elapsed = ((now or datetime.now(UTC)) - start).total_seconds()
    if elapsed <= 0:
        return None
    return round(elapsed * (1 - fraction) / fraction / 60.0, 2)


def _total_steps(task_type: Any, params: dict[str, Any]) -> int | None:
    """An optimization's step budget (its progress is steps over it); other task types
    run several stages whose steps are not one count."""
    if task_type != "optimization":
        return None
    from executors.registry import validate_parameters
    from spool.errors import MofsimError

    try:
        return int(validate_parameters("optimization", params)["max_steps"])
    except (MofsimError, KeyError, TypeError, ValueError):
        return None


def _minutes(seconds: Any) -> float | None:
    if isinstance(seconds, int | float) and not isinstance(seconds, bool):
        return round(seconds / 60.0, 2)
    return None


def _remaining(record: dict[str, Any], fraction: Any, now: datetime | None) -> float | None:
    """Minutes until the task should end: from its estimated duration when one is
    known (waiting tasks: from their estimated start), else from the progress so far."""
    state = record.get("status")
    duration = record.get("estimated_duration_s")
    moment = now or datetime.now(UTC)
    if isinstance(duration, int | float) and state in ("PENDING", "QUEUED", "ASSIGNED", "RUNNING"):
        begin = _parse_time(record.get("started_at") if state == "RUNNING" else None)
        begin = begin or _parse_time(record.get("estimated_start")) or moment
        end = begin.timestamp() + float(duration)
        return round(max(0.0, end - moment.timestamp()) / 60.0, 2)
    if state == "RUNNING":
        return remaining_minutes(record.get("started_at"), fraction, now)
    return None


def mira_task(record: dict[str, Any], now: datetime | None = None) -> dict[str, Any]:
    """A task as the MIRA guide shows it (submit answer, status, list item)."""
    fraction = record.get("progress")
    detail = record.get("progress_detail") or {}
    params = record.get("parameters") or {}
    state = record.get("status")
    out: dict[str, Any] = {
        "task_id": record.get("task_id"),
        "task_type": record.get("task_type"),
        "status": mira_state(state),
        "state": mira_detail(state),
        "model_key": record.get("model"),
        "structure_id": structure_id_of(record),
        "structure_name": record.get("structure_name"),
        "priority": record.get("priority"),
        "created_at": record.get("created_at"),
        "started_at": record.get("started_at"),
        "completed_at": record.get("completed_at"),
        "progress": _percent(state, fraction),
        "current_step": detail.get("step") if isinstance(detail, dict) else None,
        "total_steps": _total_steps(record.get("task_type"), params),
        "estimated_remaining_minutes": _remaining(record, fraction, now),
        "estimated_time_minutes": _minutes(record.get("estimated_duration_s")),
        "estimated_start": record.get("estimated_start"),
        "parameters": params,
    }
    if "queue_position" in record:
        out["queue_position"] = record["queue_position"]
    out.update(_error_fields(state, record.get("error")))
    return out


def download_urls(task_id: str, result: dict[str, Any]) -> dict[str, str]:
    """MIRA download links for the kinds this result has files for (the log always)."""
    from mofsim_core.output_files import KIND_KEYS

    given = result.get("output_files")
    files: dict[str, Any] = given if isinstance(given, dict) else {}
    out = {}
    for kind in ("structure", "trajectory"):
        if any(files.get(k) for k in KIND_KEYS[kind]):
            out[kind] = f"{MIRA_API}/results/{task_id}/download/{kind}"
    out["log"] = f"{MIRA_API}/results/{task_id}/download/log"
    return out


def mira_result(
    doc: dict[str, Any],
    record: dict[str, Any] | None = None,
    optimized_structure: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A completed task's result, flat, with the guide's names beside ours."""
    task_type = str(doc.get("task_type"))
    result = dict(doc.get("result") or {})
    out: dict[str, Any] = {
        "task_id": doc.get("task_id"),
        "task_type": task_type,
        "status": mira_state(doc.get("status")),
        "state": mira_detail(doc.get("status")),
        "model_key": doc.get("model"),
        "structure_id": structure_id_of(record or {}),
        "structure_name": doc.get("structure_name"),
    }
    out.update(result)
    # Both names are kept, so a client written for either vocabulary finds its keys.
    spec = _spec(task_type)
    for mira_name, ours in (spec.mira_result_aliases if spec else {}).items():
        if ours in result and mira_name not in out:
            out[mira_name] = result[ours]
    if optimized_structure is not None:
        out["optimized_structure"] = optimized_structure
    out.update(
        {
            "computation_time_seconds": doc.get("duration_seconds"),
            "created_at": doc.get("created_at"),
            "started_at": doc.get("started_at"),
            "completed_at": doc.get("completed_at"),
            "metrics": doc.get("metrics") or {},
            "provenance": doc.get("provenance") or {},
            "downloads": download_urls(str(doc.get("task_id")), result),
        }
    )
    return out


def mira_summary(doc: dict[str, Any]) -> dict[str, Any]:
    """The guide's summary: identity, ``key_metrics``, timing; no bulky arrays."""
    flat = mira_result(doc)
    spec = _spec(doc.get("task_type"))
    names = spec.key_metrics if spec else ()
    return {
        "task_id": flat["task_id"],
        "task_type": flat["task_type"],
        "status": flat["status"],
        "model_key": flat["model_key"],
        "key_metrics": {n: flat[n] for n in names if n in flat},
        "computation_time_seconds": flat["computation_time_seconds"],
        "completed_at": flat["completed_at"],
    }
