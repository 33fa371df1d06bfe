"""Retention: compress after 30 days, remind before 180, keep flag, audited deletion."""

from __future__ import annotations

import gzip
import time
from pathlib import Path

import pytest

from mofsim_core.retention import Policy, apply, delete_task_data, plan, set_keep
from spool import Job, Spool, transitions
from spool.errors import ResultNotReady
from spool.events import read_events

DAY = 86400.0


def finished_task(sp: Spool) -> str:
    job = Job.from_dict({"task_type": "optimization", "model": "emt", "structure": "builtin:MOF-5"})
    claimed = transitions.claim(sp.paths, sp.submit(job), "cpu0", job.task_id)
    assert claimed is not None
    ws = sp.paths.workspace(job.task_id)
    (ws / "trajectory.traj").write_bytes(b"frames" * 100)
    (ws / "optimized.cif").write_text("data_x\n")
    transitions.atomic_write_json(sp.paths, sp.paths.result_file(job.task_id), {"result": {}})
    transitions.finish(sp.paths, claimed, "COMPLETED")
    sp.events(job.task_id).status("COMPLETED")
    return job.task_id


def test_trajectories_are_compressed_after_30_days(tmp_path: Path) -> None:
    sp = Spool(tmp_path)
    tid = finished_task(sp)
    policy = Policy()
    assert plan(sp, policy, time.time() + 10 * DAY).actions == []
    todo = apply(sp, policy, time.time() + 31 * DAY)
    assert [a.kind for a in todo.actions] == ["compress"]
    ws = sp.paths.workspace(tid)
    assert not (ws / "trajectory.traj").exists()
    assert gzip.decompress((ws / "trajectory.traj.gz").read_bytes()) == b"frames" * 100
    assert plan(sp, policy, time.time() + 31 * DAY).actions == []


def test_reminder_once_before_expiry_unless_kept_or_extended(tmp_path: Path) -> None:
    sp = Spool(tmp_path)
    reminded, kept = finished_task(sp), finished_task(sp)
    set_keep(sp, kept)
    late = time.time() + 170 * DAY
    todo = apply(sp, Policy(), late)
    assert [(a.task_id, a.kind) for a in todo.by_kind("remind")] == [(reminded, "remind")]
    assert plan(sp, Policy(), late).by_kind("remind") == []
    messages = [e.data["message"] for e in read_events(sp.paths.events_file(reminded))]
    assert any("Retention reminder" in m for m in messages)
    other = finished_task(sp)
    todo = apply(sp, Policy(auto_extend=True), late)
    assert [(a.task_id, a.kind) for a in todo.by_kind("extend")] == [(other, "extend")]
    assert plan(sp, Policy(auto_extend=True), late).by_kind("extend") == []


def test_deletion_is_explicit_keeps_metadata_and_logs(tmp_path: Path) -> None:
    sp = Spool(tmp_path)
    tid = finished_task(sp)
    out = delete_task_data(sp, tid, actor="admin-key")
    assert sorted(out["removed"]) == ["optimized.cif", "result.json", "trajectory.traj"]
    rec = sp.record(tid)
    assert rec["status"] == "COMPLETED" and rec["result"] is None
    assert any(
        "deleted by admin-key" in e.data["message"] for e in read_events(sp.paths.events_file(tid))
    )
    queued = Job.from_dict(
        {"task_type": "optimization", "model": "emt", "structure": "builtin:MOF-5"}
    )
    sp.submit(queued)
    with pytest.raises(ResultNotReady):
        delete_task_data(sp, queued.task_id, actor="x")
