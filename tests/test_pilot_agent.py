"""A pilot and the daemon's view of it, without Slurm: the pilot process (what a batch
job runs) started here with a made-up job id, driven through ``PilotExecutor`` over the
files of a real spool, running real EMT tasks in a real executor."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from mofsim_core.devices import Slot
from mofsimd import pilot_channel
from mofsimd.executor_pool import RunningTask
from mofsimd.pilot_executor import PilotExecutor
from mofsimd.slurm_cli import JobInfo
from spool import Spool, claim_lock, transitions
from tests.daemon_helpers import quick_job, slow_job

ROOT = Path(__file__).resolve().parents[1]
JOB = "4242"


class Link:
    def __init__(self, spool: Spool) -> None:
        self.spool = spool
        self.messages: list[dict[str, Any]] = []
        self.exits: list[int | None] = []
        self.ex = PilotExecutor(
            Slot(pilot_channel.slot_id(JOB, "cpu"), "cpu", 0, "test pilot", None),
            spool.root,
            JOB,
            on_message=lambda ex, msg: self.messages.append(msg),
            on_exit=lambda ex, code: self.exits.append(code),
        )
        self.ex.info = JobInfo(JOB, "RUNNING", None, "here", time.time(), None)

    async def until(self, predicate: Callable[[], Any], timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            assert time.monotonic() < deadline, "timed out"
            await asyncio.sleep(0.02)

    def claim(self, job: Any) -> RunningTask:
        self.spool.submit(job)
        (queued,) = [q for q in self.spool.queued() if job.task_id in q.name]
        claimed = transitions.claim(self.spool.paths, queued.path, self.ex.slot_id, job.task_id)
        assert claimed is not None
        return RunningTask(job.task_id, claimed, time.time(), 60.0, 0)

    def finished(self, task_id: str) -> list[dict[str, Any]]:
        return [
            m for m in self.messages if m.get("type") == "finished" and m.get("task_id") == task_id
        ]


@pytest_asyncio.fixture
async def link(tmp_path: Path) -> AsyncIterator[Link]:
    spool = Spool(tmp_path / "spool")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("CUDA_VISIBLE_DEVICES", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "mofsimd.pilot_agent", "--spool", str(spool.root)],
        env={**env, "SLURM_JOB_ID": JOB},
        start_new_session=True,
    )
    link = Link(spool)
    await link.ex.start()
    try:
        yield link
    finally:
        link.ex.leave()
        try:
            await asyncio.to_thread(proc.wait, 20)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, 9)
                proc.wait()
        await link.ex.stop()


@pytest.mark.asyncio
async def test_a_pilot_runs_claims_warm_and_reports_like_a_local_executor(link: Link) -> None:
    ex = link.ex
    await link.until(lambda: ex.idle)
    hb = pilot_channel.read_heartbeat(ex.dir)
    assert hb is not None and hb["slot_id"] == "slurm:4242:cpu0" and hb["ready"]
    for _ in range(2):
        task = link.claim(quick_job())
        ex.run(task)
        assert not ex.idle
        await link.until(lambda t=task: link.finished(t.task_id))
        assert link.finished(task.task_id)[0]["status"] == "COMPLETED"
        assert link.spool.paths.result_file(task.task_id).exists()
        ex.current = None  # what the supervisor does on "finished"
    assert ex.loaded_models == ["emt"]
    starts = [m for m in link.messages if m.get("type") == "started"]
    assert len(starts) == 2 and not link.exits


@pytest.mark.asyncio
async def test_kill_returns_once_the_claim_is_let_go_and_the_pilot_starts_afresh(
    link: Link,
) -> None:
    ex = link.ex
    await link.until(lambda: ex.idle)
    first_pid = ex.proc.pid if ex.proc else None
    task = link.claim(slow_job())
    ex.run(task)
    await link.until(lambda: any(m.get("type") == "started" for m in link.messages))
    assert claim_lock.held(task.claimed_path)
    ex.current = None
    ex.kill()
    assert not claim_lock.held(task.claimed_path)  # nobody on the node runs it any more
    await link.until(lambda: link.exits)
    assert not link.finished(task.task_id)
    await link.until(lambda: ex.ready)  # a fresh executor, in the same pilot
    assert ex.proc is not None and ex.proc.pid != first_pid
    again = link.claim(quick_job())
    ex.run(again)
    await link.until(lambda: link.finished(again.task_id))
    assert link.finished(again.task_id)[0]["status"] == "COMPLETED"


@pytest.mark.asyncio
async def test_a_pilot_told_to_leave_ends(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool")
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "mofsimd.pilot_agent",
        "--spool",
        str(spool.root),
        "--job-id",
        JOB,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    link = Link(spool)
    await link.ex.start()
    try:
        await link.until(lambda: link.ex.ready)
        link.ex.leave()
        assert not link.ex.idle
        assert await asyncio.wait_for(proc.wait(), 30) == 0
        hb = pilot_channel.read_heartbeat(link.ex.dir)
        assert hb is not None and hb["leaving"]
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        await link.ex.stop()
