"""The result document (spec 5.3): one builder, the same document from the HTTP service
and from the CLI's local view, and the errors of a task without a result."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from mofsim_cli.views import failure_of as cli_failure_of
from mofsim_cli.views import result_view
from mofsim_core.output_files import output_file_urls
from mofsim_core.result_document import result_document
from mofsim_core.task_records import failure_of
from mofsim_core.task_service import get_result
from spool import Spool, transitions
from spool.errors import ModelUnavailable, MofsimError, ResultNotReady, TaskError
from tests.daemon_helpers import quick_job

# The document's keys, in the order the HTTP API has always sent them.
KEYS = [
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
]


def finished_task(sp: Spool, state: str, workspace_files: dict[str, Any]) -> str:
    """A task taken through the spool's own transitions to ``state``, with the files an
    executor would have left in its workspace."""
    job = quick_job()
    sp.submit(job)
    loc = sp.locate(job.task_id)
    assert loc is not None
    claimed = transitions.claim(sp.paths, loc.path, "cpu0", job.task_id)
    assert claimed is not None
    sp.events(job.task_id).status("RUNNING", "Task running", slot="cpu0")
    workspace = sp.paths.workspace(job.task_id)
    workspace.mkdir(parents=True, exist_ok=True)
    for name, content in workspace_files.items():
        (workspace / name).write_text(json.dumps(content))
    transitions.finish(sp.paths, claimed, state)
    sp.events(job.task_id).status(state, f"Task {state.lower()}")
    return job.task_id


def test_the_http_service_and_the_cli_build_the_same_document(tmp_path: Path) -> None:
    sp = Spool(tmp_path / "spool")
    result = {"energy_eV": -1.25, "output_files": {"structure": "final.cif"}}
    task_id = finished_task(
        sp, "COMPLETED", {"result.json": {"result": result, "duration_seconds": 2.5}}
    )

    served = get_result(sp, task_id)
    shown = result_view(sp, task_id)

    assert list(served) == KEYS
    # No metrics or provenance recorded: objects all the same, never null.
    assert served["metrics"] == {} and served["provenance"] == {}
    assert served["duration_seconds"] == 2.5 and served["status"] == "COMPLETED"
    url = served["result"]["output_files"]["structure"]
    assert url.startswith("/api/v1/files/") and url.endswith("final.cif")
    workspace = sp.paths.workspace(task_id)
    assert shown["output_files"] == {"structure": str(workspace / "final.cif")}
    assert shown["result"]["output_files"] == shown["output_files"]
    assert shown["workspace"] == str(workspace)
    # Apart from where the files are, the CLI shows what the API serves.
    for key in KEYS:
        if key != "result":
            assert shown[key] == served[key], key
    assert {k: v for k, v in shown["result"].items() if k != "output_files"} == {"energy_eV": -1.25}


def test_metrics_and_provenance_when_recorded(tmp_path: Path) -> None:
    record = {
        "task_id": "task_1",
        "task_type": "optimization",
        "status": "COMPLETED",
        "model": "emt",
        "created_at": "a",
        "started_at": "b",
        "completed_at": "c",
        "result": {
            "result": {"converged": True},
            "metrics": {"peak_rss_mb": 12},
            "provenance": {"ase": "3"},
            "structure_name": "Cu",
        },
    }
    doc = result_document(record, failure=failure_of, locate=output_file_urls)
    assert doc["metrics"] == {"peak_rss_mb": 12} and doc["provenance"] == {"ase": "3"}
    assert doc["structure_name"] == "Cu" and doc["gpu_id"] is None
    assert doc["result"] == {"converged": True}  # no output_files: none added


def test_a_task_without_a_result(tmp_path: Path) -> None:
    sp = Spool(tmp_path / "spool")
    queued = quick_job()
    sp.submit(queued)
    failed = finished_task(
        sp, "FAILED", {"error.json": {"code": 30005, "message": "no weights for the model"}}
    )
    unreadable = finished_task(sp, "COMPLETED", {})

    for build in (get_result, result_view):
        with pytest.raises(ResultNotReady, match="QUEUED"):
            build(sp, queued.task_id)
        with pytest.raises(ResultNotReady, match="unreadable"):
            build(sp, unreadable)

    # Each face says why a failed task has no result in its own terms: the HTTP API as a
    # task error (50xxx), the CLI with the code the task recorded.
    with pytest.raises(MofsimError) as served:
        get_result(sp, failed)
    assert type(served.value) is TaskError and "no weights" in served.value.message
    with pytest.raises(ModelUnavailable) as shown:
        result_view(sp, failed)
    assert "no weights" in shown.value.message
    assert type(cli_failure_of(sp.record(failed))) is ModelUnavailable
