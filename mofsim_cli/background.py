"""Run a daemon as a child process: for ``mofsim demo``, benchmarks and tests.

The child is started in its own session, so ``kill9`` can take down the daemon and
every executor at once, the way a power cut or the OOM killer would.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def wait_for(
    predicate: Callable[[], Any], timeout: float = 60.0, what: str = "", interval: float = 0.05
) -> Any:
    """Poll a condition on the spool, whose files are the interface between processes."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:g} s waiting for {what or predicate}")
        time.sleep(interval)


class BackgroundDaemon:
    def __init__(
        self, spool_root: Path, slots: str = "cpu:1", *, log_file: Path | None = None, **config: Any
    ) -> None:
        self.root = Path(spool_root)
        self.slots = slots
        self.config = config
        self.proc: subprocess.Popen[bytes] | None = None
        self.ready = self.root / "state" / "ready"
        self.log = log_file or self.root.parent / f"daemon-{self.root.name}.log"

    def start(self, timeout: float = 120.0) -> BackgroundDaemon:
        self.ready.parent.mkdir(parents=True, exist_ok=True)
        self.ready.unlink(missing_ok=True)
        overrides = {"spool": str(self.root), "slots": self.slots, **self.config}
        code = (
            "from pathlib import Path\n"
            "from mofsim_core.config import load_config\n"
            "from mofsim_cli.launch import run_daemon\n"
            f"run_daemon(load_config(overrides={overrides!r}), "
            f"ready_file=Path({str(self.ready)!r}))\n"
        )
        env = dict(os.environ)
        env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-c", code],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        proc = self.proc
        wait_for(
            lambda: self.ready.exists() or proc.poll() is not None, timeout, "the daemon to start"
        )
        if proc.poll() is not None:
            raise RuntimeError(f"daemon exited at start:\n{self.log.read_text()[-3000:]}")
        return self

    def stop(self, timeout: float = 60.0) -> int | None:
        """SIGTERM: graceful shutdown, as systemd would do it."""
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill9()
            return None

    def kill9(self) -> None:
        """SIGKILL the daemon and every executor it started."""
        assert self.proc is not None
        for pid in [*_descendants(self.proc.pid), self.proc.pid]:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.proc.wait()

    def __enter__(self) -> BackgroundDaemon:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _descendants(pid: int) -> list[int]:
    out = subprocess.run(
        ["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True, check=False
    ).stdout.split()
    kids = [int(p) for p in out]
    for k in list(kids):
        kids += _descendants(k)
    return kids
