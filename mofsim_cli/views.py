"""What the commands show, as plain data: the same documents in local and remote mode.

Kept apart from the rendering so ``--json`` and the tables always agree, and so the
shapes can be tested without a terminal.  A task record comes from ``Spool.record``
(local) or from the API (remote, the same dict less a few keys); ``task_view`` gives
both one shape.  A result view is the spec's 5.3 document (built locally by
``mofsim_core.result_document``, as the HTTP API builds it) plus where its output files
are: absolute paths in the spool, or absolute URLs on the server.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mofsim_core.result_document import result_document
from spool.errors import (
    MofsimError,
    TaskCancelled,
    TaskError,
    TaskTimeout,
    error_from_code,
)
from spool.store import Spool

# Keys of a result that are not results: shown elsewhere or too bulky for a table.
_NOT_SCALAR_RESULTS = ("output_files", "parameters_used", "metrics")
_MAX_INLINE_LIST = 6
# A task as every command shows it.  Not the result (that is ``mofsim result``) and not
# a webhook secret.
TASK_KEYS = (
    "task_id",
    "task_type",
    "model",
    "status",
    "priority",
    "created_at",
    "started_at",
    "completed_at",
    "slot",
    "gpu_id",
    "attempts",
    "progress",
    "progress_detail",
    "structure_name",
    "error",
    "parameters",
    "options",
    "structure",
    "queue_position",
    "estimated_start",
    "estimated_duration_s",
)
# A task in a list: what the API's list answers hold whether they come from the mirror
# or the spool (the mirror keeps neither the last progress detail nor the structure).
LIST_KEYS = tuple(k for k in TASK_KEYS if k not in ("progress_detail", "structure"))
RESULT_KEYS = (
    "task_id",
    "task_type",
    "status",
    "model",
    "structure_name",
    "created_at",
    "started_at",
    "completed_at",
    "duration_seconds",
    "gpu_id",
    "result",
    "metrics",
    "provenance",
    "workspace",
    "output_files",
)


def task_view(
    record: Mapping[str, Any], queue_position: int | None = None, keys: tuple[str, ...] = TASK_KEYS
) -> dict[str, Any]:
    """The shown shape of a task record (``LIST_KEYS`` in lists); ``queue_position``
    only while QUEUED."""
    out = {key: record.get(key) for key in keys}
    options = out.get("options")
    if isinstance(options, dict) and options.get("notify_secret"):
        out["options"] = {**options, "notify_secret": "***"}
    if out["status"] != "QUEUED":
        out["queue_position"] = None
    elif queue_position is not None:
        out["queue_position"] = queue_position
    return out


def result_view_of(
    doc: Mapping[str, Any], files: Mapping[str, str], workspace: str | None
) -> dict[str, Any]:
    """A result document with its output files located (paths or URLs): the same in the
    inner ``result`` and at the top."""
    result = dict(doc.get("result") or {})
    if "output_files" in result:
        result["output_files"] = dict(files)
    out = {key: doc.get(key) for key in RESULT_KEYS}
    out.update(
        result=result,
        metrics=doc.get("metrics") or {},
        provenance=doc.get("provenance") or {},
        workspace=workspace,
        output_files=dict(files),
    )
    return out


def queue_position(spool: Spool, task_id: str) -> int | None:
    """1-based place in scheduling order (priority, then FIFO); None when not queued."""
    for i, q in enumerate(spool.queued(), start=1):
        if q.task_id == task_id:
            return i
    return None


def status_view(spool: Spool, task_id: str) -> dict[str, Any]:
    from mofsim_core.eta import EtaBoard

    record = EtaBoard.of(spool.root).annotate(spool.record(task_id))
    return task_view(
        record, queue_position(spool, task_id) if record["status"] == "QUEUED" else None
    )


def sorted_records(spool: Spool, state: str | None, limit: int) -> list[dict[str, Any]]:
    """Task views, newest first; ``limit`` 0 means all."""
    records = sorted(
        spool.records(state), key=lambda r: (r.get("created_at") or "", r["task_id"]), reverse=True
    )
    if limit:
        records = records[:limit]
    places = {q.task_id: i for i, q in enumerate(spool.queued(), start=1)}
    from mofsim_core.eta import EtaBoard

    board = EtaBoard.of(spool.root)
    return [task_view(board.annotate(r), places.get(r["task_id"]), LIST_KEYS) for r in records]


def failure_of(record: dict[str, Any]) -> MofsimError:
    """The error a task ended with, as the exception class of its recorded code."""
    task_id, state = record["task_id"], record["status"]
    error = record.get("error")
    if isinstance(error, dict) and isinstance(error.get("code"), int):
        message = str(error.get("message") or state.lower())
        field = error.get("field") if isinstance(error.get("field"), str) else None
        return error_from_code(
            int(error["code"]), f"task {task_id} {state.lower()}: {message}", field
        )
    if state == "CANCELLED":
        return TaskCancelled(f"task {task_id} was cancelled")
    if state == "TIMEOUT":
        return TaskTimeout(f"task {task_id} timed out")
    return TaskError(f"task {task_id} {state.lower()} without a recorded reason")


def result_view(spool: Spool, task_id: str) -> dict[str, Any]:
    """The spec's result document (section 5.3) with absolute file paths.

    Raises ResultNotReady for unfinished tasks and the task's own error for tasks that
    ended other than COMPLETED."""
    workspace = spool.paths.workspace(task_id)
    doc = result_document(
        spool.record(task_id),
        failure=failure_of,
        locate=lambda _task_id, files: output_paths(files, workspace),
    )
    files = doc["result"].get("output_files") or {}
    return result_view_of(doc, files, str(workspace))


def output_paths(files: Any, workspace: Path) -> dict[str, str]:
    """A result's output files (names relative to the workspace) as absolute paths."""
    if not isinstance(files, dict):
        return {}
    out: dict[str, str] = {}
    for name, rel in files.items():
        if isinstance(rel, str) and rel:
            path = Path(rel)
            out[str(name)] = str(path if path.is_absolute() else workspace / path)
    return out


def scalar_rows(result: dict[str, Any], prefix: str = "", depth: int = 0) -> list[tuple[str, Any]]:
    """(key, value) for every scalar of a result; nested objects give dotted keys and
    short lists of scalars are kept, bulky arrays (forces, trajectories) are not."""
    rows: list[tuple[str, Any]] = []
    for key, value in result.items():
        if depth == 0 and key in _NOT_SCALAR_RESULTS:
            continue
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            if depth < 2:
                rows.extend(scalar_rows(value, f"{name}.", depth + 1))
        elif isinstance(value, list):
            if len(value) <= _MAX_INLINE_LIST and all(_is_scalar(v) for v in value):
                rows.append((name, value))
        elif _is_scalar(value):
            rows.append((name, value))
    return rows


def _is_scalar(value: Any) -> bool:
    return value is None or isinstance(value, str | int | float | bool)
