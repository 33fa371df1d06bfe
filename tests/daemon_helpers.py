"""Start a real daemon process on a temporary spool, and the HTTP API on a loopback port;
build quick EMT jobs."""

from __future__ import annotations

import asyncio
import io
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aiohttp import web

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


class LiveServer:
    """The HTTP API of ``create_app(config)`` on 127.0.0.1, in a thread of this process
    with its own event loop, so that a test can stop it and start it again on the same
    port while a client waits."""

    def __init__(self, spool_root: Path, port: int = 0, **config: Any) -> None:
        from mofsim_core.config import Config

        self.spool_root = Path(spool_root)
        self.config = Config(spool=str(spool_root), **config)
        self.port = port
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _run(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(60)

    async def _start(self) -> None:
        from mofsim_http.app import create_app

        runner = web.AppRunner(create_app(self.config), access_log=None, shutdown_timeout=2.0)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", self.port, reuse_address=True)
        await site.start()
        self.port = int(runner.addresses[0][1])
        self.runner = runner

    def start(self) -> LiveServer:
        self._run(self._start())
        return self

    def stop(self) -> None:
        if self.runner is not None:
            runner, self.runner = self.runner, None
            self._run(runner.cleanup())

    def close(self) -> None:
        self.stop()
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()
