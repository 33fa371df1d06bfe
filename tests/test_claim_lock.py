"""The per-claim lock: a claim whose executor lives is never recovered."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from spool import Spool, transitions
from spool.claim_lock import ClaimLock, held, lock_path
from spool.recovery import SweepReport, recover_claim, sweep
from tests.daemon_helpers import quick_job


def _claimed(sp: Spool) -> tuple[str, Path]:
    job = quick_job()
    src = sp.submit(job)
    claimed = transitions.claim(sp.paths, src, "cpu0", job.task_id)
    assert claimed is not None
    return job.task_id, claimed


def test_lock_is_exclusive_and_released_with_its_file(tmp_path: Path) -> None:
    sp = Spool(tmp_path / "spool")
    _, claimed = _claimed(sp)
    assert not held(claimed)  # no lock file at all
    first, second = ClaimLock(claimed), ClaimLock(claimed)
    assert first.acquire()
    assert held(claimed)
    assert not second.acquire()
    first.release()
    assert not held(claimed) and not lock_path(claimed).exists()
    assert second.acquire()
    second.release()


def test_sweep_leaves_a_claim_alone_while_another_process_holds_its_lock(
    tmp_path: Path,
) -> None:
    sp = Spool(tmp_path / "spool")
    task_id, claimed = _claimed(sp)
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, fcntl\n"
            f"fh = open({str(lock_path(claimed))!r}, 'a')\n"
            "fcntl.flock(fh, fcntl.LOCK_EX)\n"
            "print('locked', flush=True)\n"
            "sys.stdin.read()\n",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        report = sweep(sp)
        assert report.running == [task_id] and report.requeued == []
        assert claimed.exists() and sp.record(task_id)["attempts"] == 0
    finally:
        assert holder.stdin is not None and holder.stdout is not None
        holder.stdin.close()
        holder.wait(10)
        holder.stdout.close()
    # The holder is gone, and the kernel dropped its lock with it: now it is recovered.
    report = SweepReport()
    recover_claim(sp, claimed, 3, report)
    assert report.requeued == [task_id]
    assert not claimed.exists() and not lock_path(claimed).exists()
    rec = sp.record(task_id)
    assert rec["status"] == "QUEUED" and rec["attempts"] == 1
