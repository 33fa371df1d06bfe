"""Submission checks: structure verdicts remembered across requests, never stale."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from mofsim_core import task_structure
from mofsim_core.structure_deletion import delete_structure
from mofsim_core.structure_service import store_structure
from mofsim_core.task_records import queue_position, queue_positions
from mofsim_core.task_structure import StructureChecks
from mofsim_core.task_validation import build_job
from spool import Job, Spool
from spool.errors import InvalidStructure, StructureNotFound
from tests.daemon_helpers import cu_xyz

CU = {"source": "inline", "format": "extxyz", "content": cu_xyz(), "name": "Cu"}


@pytest.fixture
def counted(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """The structures actually parsed and checked (the cache's misses)."""
    seen: list[dict[str, Any]] = []
    real = task_structure._check_structure

    def check(spool: Spool, ref: dict[str, Any], *args: Any) -> None:
        seen.append(ref)
        real(spool, ref, *args)

    monkeypatch.setattr(task_structure, "_check_structure", check)
    return seen


def submit(spool: Spool, checks: StructureChecks, structure: dict[str, Any], **params: Any) -> Job:
    body = {"model": "emt", "structure": structure, "parameters": params}
    return build_job(spool, body, "single-point-energy", checks=checks)


def test_one_structure_is_checked_once(tmp_path: Path, counted: list) -> None:
    spool, checks = Spool(tmp_path), StructureChecks()
    for _ in range(3):
        submit(spool, checks, CU)
    assert len(counted) == 1
    submit(spool, checks, {**CU, "content": cu_xyz(rattle=0.01)})
    assert len(counted) == 2


def test_a_bad_structure_is_refused_every_time_with_its_field(
    tmp_path: Path, counted: list
) -> None:
    spool, checks = Spool(tmp_path), StructureChecks()
    overlapping = {**CU, "content": cu_xyz().replace("1.805", "0.05", 2)}
    for _ in range(2):
        with pytest.raises(InvalidStructure, match="atoms too close") as err:
            submit(spool, checks, overlapping)
        assert err.value.field == "structure"
    assert len(counted) == 1


def test_a_deleted_upload_is_not_taken_for_valid(tmp_path: Path, counted: list) -> None:
    spool, checks = Spool(tmp_path), StructureChecks()
    meta = store_structure(spool, cu_xyz(), fmt="extxyz", name="Cu")
    ref = {"source": "upload", "file_id": meta["file_id"]}
    submit(spool, checks, ref)
    submit(spool, checks, ref)
    assert len(counted) == 1
    delete_structure(spool, None, meta["file_id"])
    with pytest.raises(StructureNotFound):
        submit(spool, checks, ref)


def test_the_cache_keeps_the_most_recent_verdicts(tmp_path: Path, counted: list) -> None:
    spool, checks = Spool(tmp_path), StructureChecks(max_entries=2)
    a, b, c = ({**CU, "content": cu_xyz(rattle=0.01, seed=s)} for s in range(3))
    for ref in (a, b, a, c):  # c evicts b, the least recently used
        submit(spool, checks, ref)
    submit(spool, checks, a)
    assert len(counted) == 3
    submit(spool, checks, b)
    assert len(counted) == 4


def test_queue_position_of_one_task_matches_the_whole_queue(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    ids = []
    for i, priority in enumerate(["LOW", "HIGH", "NORMAL", "CRITICAL", "NORMAL", "HIGH"]):
        job = Job.from_dict(
            {
                "task_type": "single-point-energy",
                "model": "emt",
                "structure": CU,
                "options": {"priority": priority},
                "created_at": 1000 + i,
            }
        )
        spool.submit(job, fresh_id=True)
        ids.append(job.task_id)
    (spool.paths.priority_dir(2) / "dropped-by-hand.json").write_text("{}")
    every = queue_positions(spool)
    # The hand-dropped file is queued 6th: after the canonical NORMAL names, before LOW.
    assert sorted(every.values()) == [1, 2, 3, 4, 5, 7]
    assert {tid: queue_position(spool, tid) for tid in ids} == every
    assert queue_position(spool, "task_unknown") is None
