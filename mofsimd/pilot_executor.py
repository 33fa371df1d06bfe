"""A Slurm pilot as the supervisor sees it: the same face as a local ``Executor``.

The supervisor claims, dispatches, enforces timeouts and cancels, and ends tasks through
this object exactly as for a local slot; only the transport differs: commands are
appended to the pilot's inbox, and its outbox is read every ``poll_s`` and handed to the
same ``on_message`` / ``on_exit`` callbacks a local executor's pipe feeds.  The pilot
restarts its executor itself after a kill or a crash, so ``start`` has nothing to do.

What Slurm says about the job (``info``) and the pilot's heartbeat come from
``slurm_pool``, which decides when the pilot is gone for good.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from loguru import logger

from mofsim_core.devices import Slot
from mofsimd import pilot_channel
from mofsimd.executor_pool import Message, RunningTask
from mofsimd.slurm_cli import JobInfo
from spool import claim_lock


@dataclass
class RemoteProcess:
    """The pilot's executor process, as far as the daemon can know it: its pid."""

    pid: int
    returncode: int | None = None


@dataclass
class PilotExecutor:
    slot: Slot
    spool_root: Path
    job_id: str
    on_message: Callable[[Any, Message], None] | None = None
    on_exit: Callable[[Any, int | None], None] | None = None
    poll_s: float = 0.02
    # Replies already in the outbox belong to an earlier daemon when the pilot is adopted.
    adopted: bool = False
    proc: RemoteProcess | None = None
    ready: bool = False
    current: RunningTask | None = None
    loaded_models: list[str] = field(default_factory=list)
    loaded_memory_mb: dict[str, float | None] = field(default_factory=dict)
    restarts: int = 0
    started_at: float = 0.0
    info: JobInfo | None = None
    heartbeat: dict[str, Any] | None = None
    leaving: bool = False
    gone: bool = False
    idle_since: float = field(default_factory=time.time)
    submitted_at: float = field(default_factory=time.time)
    first_ready_at: float | None = None
    pinged_at: float = 0.0  # time.monotonic() of the last ping sent
    _last_claim: Path | None = None
    _reader: asyncio.Task[None] | None = None
    _pace: pilot_channel.Pace | None = None

    @property
    def slot_id(self) -> str:
        return self.slot.slot_id

    @property
    def dir(self) -> Path:
        return pilot_channel.pilot_dir(self.spool_root, self.job_id)

    @property
    def alive(self) -> bool:
        return not self.gone and self.info is not None and self.info.state == "RUNNING"

    @property
    def idle(self) -> bool:
        return self.ready and self.current is None and self.alive and not self.leaving

    @property
    def time_left(self) -> float | None:
        """Seconds until Slurm ends the job, when it runs with a time limit."""
        if self.info is None or self.info.end is None or self.info.state != "RUNNING":
            return None
        return self.info.end - time.time()

    @property
    def pilot(self) -> dict[str, Any]:
        """What ``mofsim system gpus``, the API, ``/metrics`` and ``top`` show of it."""
        info = self.info
        hb = self.heartbeat or {}
        left = self.time_left
        beat = hb.get("t")
        return {
            "job_id": self.job_id,
            "state": info.state if info is not None else "SUBMITTED",
            "reason": info.reason if info is not None else None,
            "node": (info.node if info is not None else None) or hb.get("node"),
            "devices": hb.get("gpus") or ("cpu" if hb else None),
            "time_left_s": None if left is None else round(left, 1),
            "heartbeat_age_s": round(time.time() - beat, 1)
            if isinstance(beat, int | float)
            else None,
            "submitted_at": self.submitted_at,
            "ready_at": self.first_ready_at,
            "leaving": self.leaving,
        }

    # -- the executor face -------------------------------------------------------------
    async def start(self) -> None:
        if self._reader is None:
            self.dir.mkdir(parents=True, exist_ok=True)
            self._reader = asyncio.create_task(self._read_loop(), name=f"reader-{self.slot_id}")

    def send(self, msg: Message) -> None:
        if self.gone or self.leaving:
            raise RuntimeError(f"pilot {self.slot_id} is leaving")
        pilot_channel.append(self.dir / pilot_channel.INBOX, msg)
        if self._pace is not None:
            self._pace.touch()

    def run(self, task: RunningTask) -> None:
        self.current = task
        self._last_claim = task.claimed_path
        self.send({"type": "run", "task_id": task.task_id, "path": str(task.claimed_path)})

    def kill(self) -> None:
        """The pilot kills its executor's group and starts a fresh one.  Returns once the
        claim it was running is let go (or after a few seconds): a claim moved on by the
        caller must not still be in the hands of a process on the node."""
        self.ready = False
        if self.gone:
            return
        with contextlib.suppress(OSError):
            pilot_channel.append(self.dir / pilot_channel.INBOX, {"type": "kill"})
        claim = self._last_claim
        deadline = time.monotonic() + 5.0
        while claim is not None and claim_lock.held(claim) and time.monotonic() < deadline:
            time.sleep(0.01)

    def leave(self) -> None:
        """No task from here on; the pilot ends its job once it sees this."""
        if not self.leaving and not self.gone:
            self.leaving = True
            with contextlib.suppress(OSError):
                pilot_channel.append(self.dir / pilot_channel.INBOX, {"type": "leave"})

    async def stop(self, timeout: float = 5.0) -> None:
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
            self._reader = None

    # -- replies -------------------------------------------------------------------------
    async def _read_loop(self) -> None:
        outbox = pilot_channel.Tail(self.dir / pilot_channel.OUTBOX, from_end=self.adopted)
        if self.adopted:
            # Where the pilot stands now; its next reply brings the rest.
            hb = pilot_channel.read_heartbeat(self.dir) or {}
            self.loaded_models = list(hb.get("loaded") or [])
            self.loaded_memory_mb = dict(hb.get("loaded_memory_mb") or {})
            if hb.get("ready"):
                # A task it still runs for the earlier daemon is an orphan's claim here,
                # which keeps this slot from taking another until it ends.
                self._mark_ready(hb.get("executor_pid"))
        pace = self._pace = pilot_channel.Pace(self.poll_s)
        while not self.gone:
            try:
                for msg in outbox.read():
                    pace.touch()
                    self._handle(msg)
            except Exception:
                logger.exception("pilot {}: handling its replies failed", self.slot_id)
            await asyncio.sleep(pace.wait())

    def _mark_ready(self, pid: Any) -> None:
        self.ready = True
        self.started_at = time.time()
        if self.first_ready_at is None:
            self.first_ready_at = self.started_at
        self.proc = RemoteProcess(int(pid)) if isinstance(pid, int) else self.proc

    def _handle(self, msg: Message) -> None:
        kind = msg.get("type")
        if kind == "ready":
            self._mark_ready(msg.get("pid"))
        if "loaded" in msg:
            self.loaded_models = list(msg["loaded"])
            self.loaded_memory_mb = dict(msg.get("loaded_memory_mb") or {})
        if kind == "finished":
            self.idle_since = time.time()
        if kind == "exited":
            self.ready = False
            self.idle_since = time.time()
            if self.on_exit is not None:
                self.on_exit(self, msg.get("code"))
            return
        if self.on_message is not None:
            self.on_message(self, msg)
