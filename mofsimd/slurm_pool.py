"""The ``slurm`` slot backend: pilot jobs kept, watched and ended for the supervisor.

Each turn of the supervisor's loop (``tick``) this module

- asks ``squeue`` (at most every ``poll_s``) what became of this spool's pilots;
- retires the pilots that are gone: Slurm reports their job ended *and* their heartbeat
  is older than ``heartbeat_stale_s`` *and* nobody holds the lock of the claim they
  were running; only then does that claim go back to the queue, through the
  supervisor's own exit handling (an attempt counted once the task had started);
- keeps between ``min_pilots`` and ``max_pilots`` pilots, scaled on the tasks ready to
  run: pending pilots count, so a slow queue is not flooded with submissions; surplus
  pilots leave once idle for ``idle_s`` (pending ones are cancelled first), and a pilot
  whose time limit is near leaves when idle.

At start it adopts the pilots Slurm still runs for this spool (by job name) instead of
submitting new ones; at stop it cancels them, lets them leave, or keeps them for the
next daemon (``on_stop``).
"""

from __future__ import annotations

import asyncio
import contextlib
import shlex
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from loguru import logger

from mofsim_core.devices import Slot, SlotKind
from mofsim_core.slurm_config import SlurmSettings
from mofsimd import pilot_channel, slurm_cli
from mofsimd.pilot_executor import PilotExecutor
from mofsimd.scheduler import QueuedJob
from spool import claim_lock
from spool.errors import DeviceUnavailable, MofsimError

# Submissions per turn at most: a burst of tasks should not become a burst of sbatch.
MAX_SUBMIT_PER_TICK = 4


@dataclass
class RejectedSubmission:
    """Not a pilot: what the slot snapshot shows while sbatch refuses to submit one
    (an invalid partition, account or option), with Slurm's words."""

    reason: str
    slot: Slot = field(default_factory=lambda: Slot("slurm:rejected", "cpu", 0, "", None))
    proc: None = None
    alive: bool = False
    ready: bool = False
    current: None = None
    restarts: int = 0
    started_at: float = 0.0
    loaded_models: list[str] = field(default_factory=list)

    @property
    def slot_id(self) -> str:
        return self.slot.slot_id

    @property
    def pilot(self) -> dict[str, Any]:
        return {"job_id": None, "state": "REJECTED", "reason": self.reason, "node": None}


class SlurmPilots:
    def __init__(self, sup: Any, settings: SlurmSettings) -> None:
        self.sup = sup
        self.settings = settings
        self.root: Path = sup.spool.root
        self.name = pilot_channel.job_name(self.root)
        self.pilots: dict[str, PilotExecutor] = {}  # job id -> pilot
        self.error: str | None = None  # the last Slurm command that failed, and why
        self.rejected: str | None = None  # why sbatch refused the last submission
        self._polled = 0.0
        self._submit_failed_at = 0.0
        self._too_long: set[str] = set()  # task ids already told no pilot fits them

    def visible(self, executors: dict[str, Any]) -> list[Any]:
        """The executors, and a line for a submission sbatch refused (the snapshot)."""
        shown: list[Any] = list(executors.values())
        if self.rejected is not None:
            shown.append(RejectedSubmission(self.rejected))
        return shown

    # -- start and stop ----------------------------------------------------------------
    async def start(self) -> None:
        pilot_channel.pilots_root(self.root).mkdir(parents=True, exist_ok=True)
        try:
            jobs = slurm_cli.query(self.name)
        except DeviceUnavailable as exc:
            self.error = exc.message
            logger.warning("slurm: cannot list pilots to adopt: {}", exc.message)
            return
        self._polled = time.monotonic()
        for info in jobs.values():
            if info.live:
                pilot = self._add(info.job_id, adopted=True)
                pilot.info = info
                logger.info("slurm: adopted pilot {} ({})", info.job_id, info.state)
        await asyncio.gather(*(p.start() for p in self.pilots.values()))

    def before_shutdown(self) -> None:
        """``keep``: running tasks stay with their pilots, whose claims the next daemon
        finds locked and resolves once they end; the supervisor waits for none of them."""
        if self.settings.on_stop == "keep":
            for pilot in self.pilots.values():
                pilot.current = None

    async def stop(self) -> None:
        live = [p for p in self.pilots.values() if not p.gone]
        if self.settings.on_stop == "cancel":
            try:
                slurm_cli.cancel([p.job_id for p in live])
            except DeviceUnavailable as exc:
                logger.warning("slurm: cannot cancel pilots: {}", exc.message)
        elif self.settings.on_stop == "drain":
            # Running pilots end their jobs themselves; ones still pending serve nobody.
            waiting = [p.job_id for p in live if not p.alive]
            for pilot in live:
                pilot.leave()
            try:
                slurm_cli.cancel(waiting)
            except DeviceUnavailable as exc:
                logger.warning("slurm: cannot cancel pending pilots: {}", exc.message)
        for pilot in self.pilots.values():
            await pilot.stop()

    # -- each turn -----------------------------------------------------------------------
    def tick(self, queue: list[QueuedJob]) -> None:
        if time.monotonic() - self._polled >= self.settings.poll_s:
            self._poll()
        self._retire()
        if not self.sup.stopping:
            self._scale(queue)
            self._ping()

    def _ping(self) -> None:
        """Tell the running pilots the daemon is here (see ``abandon_after_s``)."""
        if not self.settings.abandon_after_s:
            return
        now = time.monotonic()
        for pilot in self.pilots.values():
            alive = pilot.alive and not pilot.leaving
            if alive and now - pilot.pinged_at >= self.settings.ping_every_s:
                pilot.pinged_at = now
                with contextlib.suppress(OSError, RuntimeError):
                    pilot.send({"type": "ping"})

    def _poll(self) -> None:
        self._polled = time.monotonic()
        try:
            jobs = slurm_cli.query(self.name)
        except DeviceUnavailable as exc:
            self.error = exc.message
            return  # nothing is concluded from a controller that does not answer
        self.error = None
        now = time.time()
        for job_id, pilot in self.pilots.items():
            info = jobs.get(job_id)
            if info is None and now - pilot.submitted_at > 30:
                # Slurm forgot it (it ended more than MinJobAge ago).
                info = slurm_cli.JobInfo(job_id, "GONE", None, None, None, None)
            if info is not None:
                if pilot.info is None or pilot.info.state != info.state:
                    logger.info("slurm: pilot {} {}", job_id, info.state)
                pilot.info = info
            pilot.heartbeat = pilot_channel.read_heartbeat(pilot.dir)

    def _retire(self) -> None:
        now = time.time()
        for job_id, pilot in list(self.pilots.items()):
            info = pilot.info
            if info is None or info.state == "RUNNING":
                continue
            hb = pilot.heartbeat
            if hb is not None and now - float(hb.get("t", 0)) < self.settings.heartbeat_stale_s:
                continue  # Slurm says it stopped, yet it spoke lately: it may still run
            task = pilot.current
            if task is not None and claim_lock.held(task.claimed_path):
                continue  # a process still holds the claim (a suspended job, say)
            if info.live:
                # Requeued (preemption) or back to pending: this run of it is lost, the
                # job itself comes back later with a fresh pilot.
                if task is not None:
                    logger.warning("slurm: pilot {} {}; its task goes back", job_id, info.state)
                    pilot.ready = False
                    self.sup._on_exit(pilot, None)
                continue
            pilot.gone = True
            pilot.ready = False
            del self.pilots[job_id]
            self.sup.executors.pop(pilot.slot_id, None)
            why = info.state + (f" ({info.reason})" if info.reason else "")
            logger.warning("slurm: pilot {} gone: {}", job_id, why)
            if task is not None:
                self.sup.spool.events(task.task_id).emit(
                    f"Slurm job {job_id} of {pilot.slot_id} ended: {why}",
                    level="WARNING",
                    logger="daemon.slurm",
                )
                self.sup._on_exit(pilot, None)
            asyncio.ensure_future(pilot.stop())

    def _scale(self, queue: list[QueuedJob]) -> None:
        s = self.settings
        now = time.time()
        active = [p for p in self.pilots.values() if not p.gone and not p.leaving]
        waiting = [j for j in queue if j.not_before <= now and self._runnable(j)]
        # Tasks no pilot now here could finish in the time it has left: new pilots can.
        unfit = [j for j in waiting if not any(self._fits(j, p) for p in active)]
        ready = len(waiting)
        busy = sum(1 for p in active if p.current is not None)
        want = max(s.min_pilots, min(s.max_pilots, busy + ready))
        missing = max(want - len(active), min(len(unfit), s.max_pilots - len(active)))
        if unfit and len(active) >= s.max_pilots:
            # Full: an idle pilot that can take none of the waiting tasks makes room.
            for pilot in active:
                if pilot.idle and not any(self._fits(j, pilot) for j in waiting):
                    logger.info("slurm: pilot {} too close to its end; leaving", pilot.job_id)
                    pilot.leave()
        if missing > 0 and now - self._submit_failed_at >= max(s.poll_s, 5.0):
            for _ in range(min(missing, MAX_SUBMIT_PER_TICK)):
                if not self._submit():
                    break
        for pilot in active:
            left = pilot.time_left
            if left is not None and left < s.leave_before_end_s and pilot.idle:
                logger.info("slurm: pilot {} leaves before its time limit", pilot.job_id)
                pilot.leave()
        surplus = len(active) - max(want, s.min_pilots)
        if surplus <= 0 or ready:
            return
        pending = [p for p in active if p.info is None or p.info.state == "PENDING"]
        cancel = sorted(pending, key=lambda p: -p.submitted_at)[:surplus]
        if cancel:
            try:
                slurm_cli.cancel([p.job_id for p in cancel])
                for pilot in cancel:
                    pilot.leaving = True
                surplus -= len(cancel)
            except DeviceUnavailable as exc:
                self.error = exc.message
        for pilot in active:
            if surplus <= 0:
                break
            if pilot.idle and now - pilot.idle_since >= s.idle_s:
                logger.info("slurm: pilot {} idle for {:g} s; leaving", pilot.job_id, s.idle_s)
                pilot.leave()
                surplus -= 1

    def _fits(self, job: QueuedJob, pilot: PilotExecutor) -> bool:
        if job.duration_s is None:
            return True
        if pilot.info is None or pilot.info.state == "PENDING":
            room = self.settings.time_limit_s
        else:
            room = pilot.time_left
        return room is None or job.duration_s <= room

    def _runnable(self, job: QueuedJob) -> bool:
        """False for a task longer than any pilot's whole time limit: it is said once in
        its log and left queued (a longer time_limit, or a local daemon, can run it)."""
        limit = self.settings.time_limit_s
        if job.duration_s is None or limit is None or job.duration_s <= limit:
            return True
        if job.task_id not in self._too_long:
            self._too_long.add(job.task_id)
            message = (
                f"No Slurm pilot can run this task: it needs {job.duration_s:g} s"
                f" (options.expected_duration or timeout), pilots get {limit:g} s"
                " (slurm.time_limit)"
            )
            logger.warning("task {}: {}", job.task_id, message)
            with contextlib.suppress(OSError, MofsimError):
                self.sup.spool.events(job.task_id).emit(
                    message, level="WARNING", logger="daemon.slurm"
                )
        return False

    # -- submitting ----------------------------------------------------------------------
    def _submit(self) -> bool:
        s = self.settings
        logs = pilot_channel.pilots_root(self.root)
        options = [
            f"--job-name={self.name}",
            f"--output={logs}/slurm-%j.log",
            f"--chdir={logs}",
            "--nodes=1",
            "--ntasks=1",
            *s.sbatch_args(),
        ]
        t0 = time.time()
        try:
            job_id = slurm_cli.submit(self.script(), options)
        except DeviceUnavailable as exc:
            self.error = self.rejected = exc.message
            self._submit_failed_at = t0
            logger.warning("slurm: cannot submit a pilot: {}", exc.message)
            return False
        self.error = self.rejected = None
        pilot = self._add(job_id, adopted=False, submitted_at=t0)
        logger.info("slurm: pilot {} submitted in {:.2f} s", job_id, time.time() - t0)
        asyncio.ensure_future(pilot.start())
        return True

    def script(self) -> str:
        cfg = self.sup.config
        s = self.settings
        project = str(Path(__file__).resolve().parents[1])
        lines = ["#!/bin/bash", "# mofsim pilot: a warm executor serving the spool below", "set -e"]
        python = shlex.quote(sys.executable)
        if s.python_env:
            env = Path(s.python_env).expanduser()
            if (env / "bin" / "activate").exists():
                lines.append(f"source {shlex.quote(str(env / 'bin' / 'activate'))}")
            else:
                lines.append(s.python_env)
            python = "python"
        lines.append(f'export PYTHONPATH={shlex.quote(project)}"${{PYTHONPATH:+:$PYTHONPATH}}"')
        args = [
            "--spool",
            str(self.root),
            "--cache-size",
            str(cfg.calculator_cache_size),
            "--dtype",
            cfg.dtype,
            "--max-atoms",
            str(cfg.max_atoms),
            "--large-structure-atoms",
            str(cfg.large_structure_atoms),
            "--abandon-after-s",
            str(s.abandon_after_s),
        ]
        lines.append(f"exec {python} -m mofsimd.pilot_agent {shlex.join(args)}")
        return "\n".join(lines) + "\n"

    def _add(
        self, job_id: str, *, adopted: bool, submitted_at: float | None = None
    ) -> PilotExecutor:
        kind: SlotKind = "nvml" if self.settings.gpu else "cpu"
        hb = pilot_channel.read_heartbeat(pilot_channel.pilot_dir(self.root, job_id))
        if hb is not None:
            kind = "nvml" if hb.get("gpus") else "cpu"
        slot = Slot(pilot_channel.slot_id(job_id, kind), kind, 0, f"Slurm job {job_id}", None)
        pilot = PilotExecutor(
            slot,
            self.root,
            job_id,
            on_message=self.sup._on_message,
            on_exit=self.sup._on_exit,
            adopted=adopted,
            heartbeat=hb,
        )
        if submitted_at is not None:
            pilot.submitted_at = submitted_at
        self.pilots[job_id] = pilot
        self.sup.executors[pilot.slot_id] = pilot
        return pilot
