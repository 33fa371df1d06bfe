"""The result document of a task (spec 5.3), built in one place for every face.

The document is the task's metadata around the executor's ``result``, with ``metrics``
and ``provenance`` always objects (``{}`` when the task recorded none).  The executor
names its output files relative to the task's workspace; each face says where they are
for its users (``locate``): download URLs for the HTTP API, absolute paths for the CLI.

A task without a result raises ``ResultNotReady`` while it has not finished, and the
error it ended with (``failure``) when it did not complete: the HTTP API answers a task
error (50xxx), the CLI the recorded code itself.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from spool.errors import MofsimError, ResultNotReady
from spool.states import TERMINAL_STATES

# (task_id, the result's output_files) -> {key: where the file is}
Locate = Callable[[str, Any], dict[str, str]]
Failure = Callable[[dict[str, Any]], MofsimError]


def result_document(record: dict[str, Any], *, failure: Failure, locate: Locate) -> dict[str, Any]:
    """The result document of the task whose record (``Spool.record``) this is."""
    task_id, state = record["task_id"], record["status"]
    if state != "COMPLETED":
        if state in TERMINAL_STATES:
            raise failure(record)
        raise ResultNotReady(f"task {task_id} is {state}; its result is not ready yet")
    body = record.get("result")
    if not isinstance(body, Mapping):
        raise ResultNotReady(f"task {task_id} is COMPLETED but its result is unreadable")
    result = dict(body["result"]) if isinstance(body.get("result"), Mapping) else {}
    if "output_files" in result:
        result["output_files"] = locate(task_id, result["output_files"])
    return {
        "task_id": task_id,
        "task_type": record["task_type"],
        "status": state,
        "model": record["model"],
        "structure_name": body.get("structure_name") or record.get("structure_name"),
        "created_at": record["created_at"],
        "started_at": record["started_at"],
        "completed_at": record["completed_at"],
        "duration_seconds": body.get("duration_seconds"),
        "gpu_id": record.get("gpu_id"),
        "result": result,
        "metrics": dict(body.get("metrics") or {}),
        "provenance": dict(body.get("provenance") or {}),
    }
