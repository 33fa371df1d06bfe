"""The executor's handling of one job when the spool cannot be written, and its
preloads."""

from __future__ import annotations

import errno
import io
import json
import os
from pathlib import Path

import pytest

from executors.worker import Worker
from spool import Spool, transitions
from spool import events as events_module
from spool.claim_lock import lock_path
from tests.daemon_helpers import quick_job


def _claim(sp: Spool) -> tuple[str, Path]:
    job = quick_job()
    claimed = transitions.claim(sp.paths, sp.submit(job), "cpu0", job.task_id)
    assert claimed is not None
    return job.task_id, claimed


@pytest.mark.parametrize("where", ["events", "result"])
def test_a_full_disk_fails_the_attempt_with_the_storage_code_and_never_raises(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    sp = Spool(tmp_path / "spool")
    task_id, claimed = _claim(sp)
    if where == "events":

        def full(fd: int, data: bytes) -> int:
            raise OSError(errno.ENOSPC, "No space left on device")

        monkeypatch.setattr(events_module.os, "write", full)
    else:
        real_replace = os.replace

        def full_replace(src: str | Path, dst: str | Path) -> None:
            if Path(dst).name == "result.json":
                raise OSError(errno.ENOSPC, "No space left on device")
            real_replace(src, dst)

        monkeypatch.setattr(transitions.os, "replace", full_replace)
    out = io.StringIO()
    worker = Worker(sp.root, "cpu0", out=out)
    worker.run_claimed(task_id, claimed)
    replies = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [r["type"] for r in replies] == ["started", "finished"]
    finished = replies[-1]
    assert finished["status"] == "FAILED" and finished["transient"] is True
    assert finished["error"]["code"] == 10002
    assert not sp.paths.result_file(task_id).exists()
    assert not lock_path(claimed).exists()  # the lock went with the run


def test_a_claim_locked_by_another_process_is_not_run(tmp_path: Path) -> None:
    from spool.claim_lock import ClaimLock

    sp = Spool(tmp_path / "spool")
    task_id, claimed = _claim(sp)
    orphan = ClaimLock(claimed)
    assert orphan.acquire()
    out = io.StringIO()
    Worker(sp.root, "cpu0", out=out).run_claimed(task_id, claimed)
    orphan.release()
    replies = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [(r["type"], r.get("status")) for r in replies] == [("finished", "BUSY")]
    assert not sp.paths.result_file(task_id).exists()


def test_a_claim_that_cannot_be_locked_is_not_run_unguarded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from spool import claim_lock

    sp = Spool(tmp_path / "spool")
    task_id, claimed = _claim(sp)

    def no_room(self: claim_lock.ClaimLock) -> bool:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(claim_lock.ClaimLock, "acquire", no_room)
    before = sp.paths.events_file(task_id).read_bytes()
    out = io.StringIO()
    Worker(sp.root, "cpu0", out=out).run_claimed(task_id, claimed)
    replies = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [r["type"] for r in replies] == ["started", "finished"]
    assert replies[-1]["status"] == "FAILED" and replies[-1]["transient"] is True
    assert replies[-1]["error"]["code"] == 10002
    # Nothing of the task ran: not one event was written.
    assert sp.paths.events_file(task_id).read_bytes() == before


def test_a_preload_that_says_nothing_of_d3_warms_what_a_task_would_use(tmp_path: Path) -> None:
    """An upload whose tasks add D3 by default is preloaded with D3, so the first task
    on it finds its calculator warm instead of loading the model a second time."""
    from tests.model_factories import (
        LJ_CONFIG,
        torchscript_lj,
        trust_custom_model,
        write_custom_model,
    )

    sp = Spool(tmp_path / "spool")
    write_custom_model(
        sp.paths.models,
        "ljd3",
        "pytorch",
        "lj.pt",
        raw=torchscript_lj(),
        config=LJ_CONFIG,
        with_d3=True,
        d3_included=False,
    )
    assert trust_custom_model(sp.paths.models, "ljd3")["valid"] is True
    worker = Worker(sp.root, "cpu0", out=io.StringIO())
    assert worker.preload("custom:ljd3", None)["ok"] is True
    assert [k[3] for k in worker.cache._entries] == [True]
    assert worker.preload("custom:ljd3", False)["ok"] is True  # said plainly: without
    assert sorted(k[3] for k in worker.cache._entries) == [False, True]
