"""Faults that must leave nothing stuck: a daemon killed alone, an orphaned executor,
a slot killed while the next task waits, a full disk."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from mofsim_core.config import load_config
from mofsimd.supervisor import Supervisor
from spool import Spool, transitions
from spool.errors import StorageError
from spool.events import ms_from_iso, read_events
from tests.daemon_helpers import Daemon, quick_job, slow_job, status, status_events, wait_for

TERMINAL = ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT")


def _alive(pid: int) -> bool:
    """Running, not a zombie waiting for a reaper (a container's init may never reap)."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, IndexError):
        return False


def _running_events(sp: Spool, task_id: str) -> list[dict[str, Any]]:
    return [
        e.data
        for e in read_events(sp.paths.events_file(task_id))
        if e.kind == "status" and e.data["extra"]["status"] == "RUNNING"
    ]


def _first(sp: Spool, task_id: str, state: str) -> str:
    return next(
        e.data["timestamp"]
        for e in read_events(sp.paths.events_file(task_id))
        if e.kind == "status" and e.data["extra"]["status"] == state
    )


def _bounded(steps: int) -> Any:
    return slow_job(
        parameters={"fmax": 1e-30, "max_steps": steps, "optimizer": "FIRE"},
    )


# -- a daemon killed alone, an orphan that outlives it ---------------------------------
def test_kill9_of_the_daemon_alone_takes_its_executor_along(tmp_path: Path) -> None:
    sp = Spool(tmp_path / "spool")
    job = _bounded(500)
    sp.submit(job)
    d = Daemon(sp.root).start()
    first = wait_for(lambda: _running_events(sp, job.task_id), 60, "running")[0]
    executor = int(first["extra"]["pid"])
    assert d.proc is not None
    os.kill(d.proc.pid, signal.SIGKILL)  # the daemon only, not its process group
    d.proc.wait()
    wait_for(lambda: not _alive(executor), 10, "the executor to die with its daemon")
    with Daemon(sp.root):
        wait_for(lambda: status(sp, job.task_id) in TERMINAL, 120, "completion after restart")
    rec = sp.record(job.task_id)
    assert rec["status"] == "COMPLETED" and rec["attempts"] == 1
    assert status_events(sp, job.task_id).count("COMPLETED") == 1
    runs = _running_events(sp, job.task_id)
    assert len(runs) == 2 and runs[1]["extra"]["pid"] != executor


def test_an_orphaned_executor_keeps_its_task_and_its_slot(tmp_path: Path) -> None:
    """An executor that outlived its daemon (no PDEATHSIG elsewhere, stuck in the
    kernel) still holds its claim: the next daemon neither requeues the task nor gives
    the slot another task until the orphan is gone; then the task runs once more."""
    sp = Spool(tmp_path / "spool")
    job = slow_job()
    claimed = transitions.claim(sp.paths, sp.submit(job), "cpu0", job.task_id)
    assert claimed is not None
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    orphan = subprocess.Popen(
        [sys.executable, "-m", "executors.worker", "--spool", str(sp.root), "--slot", "cpu0"],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        env=env,
    )
    assert orphan.stdin is not None
    orphan.stdin.write(
        json.dumps({"type": "run", "task_id": job.task_id, "path": str(claimed)}).encode() + b"\n"
    )
    orphan.stdin.flush()
    try:
        wait_for(lambda: _running_events(sp, job.task_id), 60, "the orphan running")
        waiting = quick_job()
        sp.submit(waiting)
        with Daemon(sp.root, cancel_grace_s=1.0):
            # The sweep ran before the daemon said it was ready; give its loop a few
            # turns in which a free slot would have taken the waiting task.
            time.sleep(1.5)
            assert claimed.exists() and status(sp, waiting.task_id) == "QUEUED"
            assert status_events(sp, job.task_id) == ["QUEUED", "RUNNING"]
            orphan.kill()
            orphan.wait(10)
            gone = time.time()
            wait_for(lambda: len(_running_events(sp, job.task_id)) == 2, 60, "the second run")
            sp.request_cancel(job.task_id)
            wait_for(lambda: status(sp, waiting.task_id) in TERMINAL, 60, "the waiting task")
    finally:
        orphan.kill()
        orphan.wait(10)
        orphan.stdin.close()
    rec = sp.record(job.task_id)
    assert rec["status"] == "CANCELLED" and rec["attempts"] == 1
    assert status(sp, waiting.task_id) == "COMPLETED"
    runs = _running_events(sp, job.task_id)
    assert runs[0]["extra"]["pid"] == orphan.pid != runs[1]["extra"]["pid"]
    assert ms_from_iso(runs[1]["timestamp"]) >= int(gone * 1000) - 1  # never overlapping
    assert _first(sp, waiting.task_id, "ASSIGNED") > runs[1]["timestamp"]


# -- a slot killed while the next task waits ------------------------------------------
async def _until(predicate: Callable[[], Any], timeout: float = 60.0, what: str = "") -> Any:
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)
    return value


@contextlib.asynccontextmanager
async def _supervisor(tmp_path: Path, **config: Any) -> AsyncIterator[Supervisor]:
    overrides = {
        "spool": str(tmp_path / "spool"),
        "slots": "cpu:1",
        "rescan_interval_s": 0.5,
        "retry_backoff_s": 30.0,  # a counted attempt would show as a long wait
        **config,
    }
    sup = Supervisor(load_config(overrides=overrides, env={}))
    runner = asyncio.create_task(sup.run())
    try:
        await _until(sup.ready.is_set, 60, "the supervisor")
        yield sup
    finally:
        sup.request_stop()
        await runner


@pytest.mark.asyncio
async def test_a_forced_cancel_never_hands_the_next_task_to_the_dying_executor(
    tmp_path: Path,
) -> None:
    async with _supervisor(tmp_path, cancel_grace_s=0.0) as sup:
        sp = sup.spool
        (ex,) = sup.executors.values()
        blocker = slow_job()
        sp.submit(blocker)
        await _until(lambda: _running_events(sp, blocker.task_id), 60, "blocker running")
        crit = quick_job(options={"priority": "CRITICAL"})
        sp.submit(crit)
        # What the loop does when the grace period is over, and in the same instant
        # its next turn: the executor is being killed, the CRITICAL task is waiting.
        sup._kill_current(ex, "CANCELLED", "cancelled by request (forced)")
        sup.tick()
        assert ex.current is None and status(sp, crit.task_id) == "QUEUED"
        await _until(lambda: status(sp, crit.task_id) in TERMINAL, 60, "the CRITICAL task")
    rec = sp.record(crit.task_id)
    assert rec["status"] == "COMPLETED" and rec["attempts"] == 0
    assert status_events(sp, crit.task_id) == ["QUEUED", "ASSIGNED", "RUNNING", "COMPLETED"]
    assert status(sp, blocker.task_id) == "CANCELLED"


@pytest.mark.asyncio
async def test_a_task_whose_executor_dies_before_starting_it_keeps_place_and_attempts(
    tmp_path: Path,
) -> None:
    async with _supervisor(tmp_path) as sup:
        sp = sup.spool
        (ex,) = sup.executors.values()
        await _until(lambda: ex.idle, 60, "an idle executor")
        assert ex.proc is not None
        pid = ex.proc.pid
        os.kill(pid, signal.SIGSTOP)  # it cannot answer "started" any more
        crit = quick_job(options={"priority": "CRITICAL"})
        sp.submit(crit)
        sup.tick()
        assert ex.current is not None and ex.current.task_id == crit.task_id
        os.kill(pid, signal.SIGKILL)  # dies for a reason of its own (the OOM killer)
        await _until(lambda: status(sp, crit.task_id) in TERMINAL, 60, "the CRITICAL task")
        assert crit.task_id not in sup.not_before
    rec = sp.record(crit.task_id)
    assert rec["status"] == "COMPLETED" and rec["attempts"] == 0
    assert status_events(sp, crit.task_id) == [
        "QUEUED",
        "ASSIGNED",
        "QUEUED",
        "ASSIGNED",
        "RUNNING",
        "COMPLETED",
    ]


# -- a full disk -----------------------------------------------------------------------
@pytest.fixture
def tiny_disk(tmp_path: Path) -> Any:
    mnt = tmp_path / "disk"
    mnt.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(mnt)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a 3 MB tmpfs here (needs root): {done.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def _fill(path: Path) -> None:
    with open(path, "wb") as fh:
        with contextlib.suppress(OSError):
            while True:
                fh.write(b"\0" * 65536)
                fh.flush()
            return


def test_a_full_disk_frees_the_slot_and_everything_resumes_with_space(
    tmp_path: Path, tiny_disk: Path
) -> None:
    sp = Spool(tiny_disk / "spool")
    log = tmp_path / "daemon.log"
    job = _bounded(400)
    sp.submit(job)
    with Daemon(sp.root, log_file=log, retry_backoff_s=0.2) as d:
        wait_for(lambda: _running_events(sp, job.task_id), 60, "running")
        filler = tiny_disk / "filler"
        with contextlib.suppress(OSError):
            _fill(filler)
        with pytest.raises(StorageError) as refused:
            sp.submit(quick_job())
        assert refused.value.code == 10002
        wait_for(lambda: "cannot write to the spool" in log.read_text(), 60, "the full disk")
        filler.unlink()
        wait_for(lambda: status(sp, job.task_id) in TERMINAL, 120, "the task after space")
        after = quick_job()
        sp.submit(after)
        wait_for(lambda: status(sp, after.task_id) in TERMINAL, 60, "a task after space")
        assert d.proc is not None and d.proc.poll() is None
    rec = sp.record(job.task_id)
    assert rec["status"] == "COMPLETED" and rec["attempts"] == 1, rec
    assert status_events(sp, job.task_id).count("COMPLETED") == 1
    assert status(sp, after.task_id) == "COMPLETED"
    assert list(sp.paths.claimed.rglob("*.json")) == []


@pytest.mark.asyncio
async def test_a_failure_while_handling_an_executor_message_leaves_nothing_stuck(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with _supervisor(tmp_path) as sup:
        sp = sup.spool
        (ex,) = sup.executors.values()
        real_finished = sup._finished

        def broken(*args: Any) -> None:
            monkeypatch.setattr(sup, "_finished", real_finished)
            raise RuntimeError("a bug while recording the outcome")

        monkeypatch.setattr(sup, "_finished", broken)
        job = quick_job()
        sp.submit(job)
        # The claim nobody owns any more is recovered: its result exists, so it completed.
        await _until(lambda: status(sp, job.task_id) in TERMINAL, 60, "the first task")
        after = quick_job()
        sp.submit(after)
        await _until(lambda: status(sp, after.task_id) in TERMINAL, 60, "the next task")
        assert ex.restarts == 1  # the reader treated its executor as broken
    assert status(sp, job.task_id) == "COMPLETED"
    assert status_events(sp, job.task_id).count("RUNNING") == 1
    assert status(sp, after.task_id) == "COMPLETED"
    assert list(sp.paths.claimed.rglob("*.json")) == []
