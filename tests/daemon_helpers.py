"""Start a real daemon process on a temporary spool; build quick EMT jobs."""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mofsim_cli.background import BackgroundDaemon
from mofsim_cli.background import wait_for as _wait_for
from spool import Job, Spool


def cu_xyz(repeat: int = 1, rattle: float = 0.0, seed: int = 0) -> str:
    from ase.build import bulk
    from ase.io import write

    atoms = bulk("Cu", "fcc", a=3.61, cubic=True).repeat(repeat)
    if rattle:
        atoms.rattle(rattle, seed=seed)
    buf = io.StringIO()
    write(buf, atoms, format="extxyz")
    return buf.getvalue()


def quick_job(**kw: Any) -> Job:
    data: dict[str, Any] = {
        "task_type": "single-point-energy",
        "model": "emt",
        "structure": {"source": "inline", "format": "extxyz", "content": cu_xyz(), "name": "Cu"},
    }
    data.update(kw)
    return Job.from_dict(data)


def slow_job(**kw: Any) -> Job:
    """An optimization that cannot converge: runs until cancelled or timed out."""
    data: dict[str, Any] = {
        "task_type": "optimization",
        "model": "emt",
        "structure": {
            "source": "inline",
            "format": "extxyz",
            "content": cu_xyz(3, rattle=0.05),
            "name": "Cu108",
        },
        "parameters": {
            "fmax": 1e-30,
            "max_steps": 10_000_000,
            "optimizer": "FIRE",
            "trajectory_interval": 1_000_000,
        },
    }
    data.update(kw)
    return Job.from_dict(data)


def wait_for(predicate: Callable[[], Any], timeout: float = 60.0, what: str = "") -> Any:
    try:
        return _wait_for(predicate, timeout, what)
    except TimeoutError as exc:
        raise AssertionError(str(exc)) from None


class Daemon(BackgroundDaemon):
    """A daemon with short test timings."""

    def __init__(self, spool_root: Path, slots: str = "cpu:1", **config: Any) -> None:
        timings = {
            "rescan_interval_s": 0.5,
            "cancel_grace_s": 3.0,
            "shutdown_grace_s": 5.0,
            "retry_backoff_s": 0.2,
        }
        super().__init__(spool_root, slots, **{**timings, **config})

    def start(self, timeout: float = 60.0) -> Daemon:
        try:
            super().start(timeout)
        except (RuntimeError, TimeoutError) as exc:
            raise AssertionError(str(exc)) from None
        return self


def status(spool: Spool, task_id: str) -> str:
    return str(spool.record(task_id)["status"])


def status_events(spool: Spool, task_id: str) -> list[str]:
    from spool.events import read_events

    return [
        e.data["extra"]["status"]
        for e in read_events(spool.paths.events_file(task_id))
        if e.kind == "status"
    ]
