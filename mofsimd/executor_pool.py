"""Executor processes as seen from the supervisor: start, talk, kill, restart.

Each executor is its own process group (``start_new_session``) so that a timeout or a
forced cancel kills it and anything it spawned, and a crash of one never touches the
others.  ``CUDA_VISIBLE_DEVICES`` is set in its environment before it imports torch.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from loguru import logger

from mofsim_core.devices import Slot
from spool.limits import DEFAULT_MAX_ATOMS

Message = dict[str, Any]


@dataclass
class RunningTask:
    task_id: str
    claimed_path: Path
    started: float
    timeout: float
    attempts: int
    cancel_seen_at: float | None = None
    # The executor confirmed it began this task; until then a death is not the task's.
    started_seen: bool = False
    # The submitting request's id (Job.request_id), for the lines logged about the task.
    request_id: str | None = None


@dataclass
class Executor:
    slot: Slot
    spool_root: Path
    cache_size: int = 2
    dtype: str = "float32"
    # The configured bound, checked again where hand-written jobs first meet a structure.
    max_atoms: int = DEFAULT_MAX_ATOMS
    threads: int | None = None
    # Above this many atoms a default BFGS becomes LBFGS (executors.worker).
    large_structure_atoms: int = 2000
    # Seconds between the executor's heartbeats (a thread of its own, so they go on
    # while a model computes; a stopped or wedged process sends none).
    heartbeat_s: float = 5.0
    on_message: Callable[[Executor, Message], None] | None = None
    on_exit: Callable[[Executor, int | None], None] | None = None
    proc: asyncio.subprocess.Process | None = None
    ready: bool = False
    current: RunningTask | None = None
    loaded_models: list[str] = field(default_factory=list)
    # Model key -> MB its load took on this executor's device (None: not measured).
    loaded_memory_mb: dict[str, float | None] = field(default_factory=dict)
    restarts: int = 0
    started_at: float = 0.0
    # When the executor last said anything (a heartbeat or any other message).
    last_beat: float = 0.0
    # Set by the supervisor when the heartbeat is older than heartbeat_timeout_s.
    offline: bool = False
    # A spare slot (config spare_slots): warm-up and standby only.
    spare: bool = False
    _reader: asyncio.Task[None] | None = None
    _stopping: bool = False

    @property
    def slot_id(self) -> str:
        return self.slot.slot_id

    @property
    def idle(self) -> bool:
        return self.ready and self.current is None and self.alive and not self.offline

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    def _command(self) -> list[str]:
        device = "cuda" if self.slot.kind == "nvml" else "cpu"
        cmd = [
            sys.executable,
            "-m",
            "executors.worker",
            "--spool",
            str(self.spool_root),
            "--slot",
            self.slot_id,
            "--device",
            device,
            "--cache-size",
            str(self.cache_size),
            "--dtype",
            self.dtype,
            "--max-atoms",
            str(self.max_atoms),
            "--large-structure-atoms",
            str(self.large_structure_atoms),
            "--heartbeat-s",
            str(self.heartbeat_s),
        ]
        if self.slot.kind == "nvml":
            cmd += ["--gpu-id", str(self.slot.index)]
        return cmd

    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["CUDA_VISIBLE_DEVICES"] = self.slot.cuda_visible or ""
        env["MOFSIM_SLOT"] = self.slot_id
        # Measurements are keyed by the device's name (the cost model's key).
        env["MOFSIM_DEVICE_NAME"] = self.slot.name
        env["MOFSIM_PARENT_PID"] = str(os.getpid())  # the executor dies with this process
        env["PYTHONUNBUFFERED"] = "1"
        # numpy's BLAS on tiny 3x3 cell-filter algebra only loses to thread hand-offs;
        # the model's own torch threads are set separately below.
        env.setdefault("OPENBLAS_NUM_THREADS", "1")
        if self.threads:
            # Several CPU slots share the machine's cores instead of oversubscribing them.
            env["OMP_NUM_THREADS"] = str(self.threads)
        root = str(Path(__file__).resolve().parents[1])
        env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
        return env

    async def start(self) -> None:
        self.ready = False
        self._stopping = False
        self.proc = await asyncio.create_subprocess_exec(
            *self._command(),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=None,
            env=self._env(),
            start_new_session=True,
            limit=2**24,
        )
        self.started_at = time.time()
        self.last_beat = self.started_at
        self.offline = False
        self._reader = asyncio.create_task(self._read_loop(), name=f"reader-{self.slot_id}")
        logger.info("executor {} started (pid {})", self.slot_id, self.proc.pid)

    async def _read_loop(self) -> None:
        """Until the executor exits.  Whatever goes wrong in here is logged and ends with
        the executor killed and reported as exited, so the supervisor recovers its slot:
        a reader that died silently would leave the slot looking busy for ever."""
        assert self.proc is not None and self.proc.stdout is not None
        proc = self.proc
        stdout = self.proc.stdout
        try:
            while True:
                line = await stdout.readline()
                if not line:
                    break
                self.last_beat = time.time()
                try:
                    msg = json.loads(line)
                except ValueError:
                    continue
                if not isinstance(msg, dict):
                    continue
                if msg.get("type") == "ready":
                    self.ready = True
                if "loaded" in msg:
                    self.loaded_models = list(msg["loaded"])
                    self.loaded_memory_mb = dict(msg.get("loaded_memory_mb") or {})
                if self.on_message:
                    self.on_message(self, msg)
        except Exception:
            logger.exception("executor {}: handling its output failed; restarting it", self.slot_id)
            self.kill()
        code = await proc.wait()
        self.ready = False
        if self.on_exit and not self._stopping:
            try:
                self.on_exit(self, code)
            except Exception:
                logger.exception("executor {}: recovery after its exit failed", self.slot_id)

    def send(self, msg: Message) -> None:
        if not self.alive or self.proc is None or self.proc.stdin is None:
            raise RuntimeError(f"executor {self.slot_id} is not running")
        self.proc.stdin.write((json.dumps(msg) + "\n").encode())

    def run(self, task: RunningTask) -> None:
        self.current = task
        self.send({"type": "run", "task_id": task.task_id, "path": str(task.claimed_path)})

    def kill(self) -> None:
        """SIGKILL the whole process group: timeouts and forced cancels.  The slot takes
        no task from here until its replacement says it is ready."""
        self.ready = False
        if self.proc is None or self.proc.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)

    async def stop(self, timeout: float = 5.0) -> None:
        """Polite shutdown; forced after ``timeout``."""
        self._stopping = True
        if self.proc is None or self.proc.returncode is not None:
            return
        with contextlib.suppress(RuntimeError, ConnectionError):
            self.send({"type": "shutdown"})
            if self.proc.stdin is not None:
                self.proc.stdin.close()
        try:
            await asyncio.wait_for(self.proc.wait(), timeout)
        except TimeoutError:
            self.kill()
            await self.proc.wait()
        if self._reader is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
