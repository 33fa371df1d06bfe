"""The supervisor: watch the spool, claim jobs, drive one executor per slot.

One asyncio loop.  Wake-ups come from inotify (watchdog), from executor messages and
from a periodic rescan; each wake-up admits new files, plans assignments, enforces
timeouts and cancels.  The spool stays the source of truth: everything here can be
rebuilt from it after a crash.  How a running task ends (executor messages and exits,
limits, retries) is ``mofsimd.task_outcomes``, a mixin of the supervisor.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from loguru import logger

from mofsim_core.config import Config
from mofsim_core.control import ModelControl
from mofsim_core.devices import DeviceBackend
from mofsim_core.devices_factory import parse_slots, spare_slot_ids
from mofsim_core.slot_state import SlotStateWriter
from mofsimd import lifecycle, sdnotify
from mofsimd.cost_tracker import CostTracker
from mofsimd.executor_pool import Executor, RunningTask
from mofsimd.operations import Operations
from mofsimd.orphans import OrphanClaims
from mofsimd.pending import is_storage_error
from mofsimd.scheduler import FreeSlot, QueuedJob, expected_duration, plan
from mofsimd.slot_health import SlotHealth
from mofsimd.task_outcomes import TaskOutcomes
from mofsimd.watcher import SpoolWatcher
from spool import transitions
from spool.errors import InvalidJobFile, MofsimError
from spool.intake import admit
from spool.job import Job
from spool.recovery import sweep
from spool.store import Spool, read_job

if TYPE_CHECKING:
    from mofsimd.slurm_pool import SlurmPilots


class Supervisor(TaskOutcomes, SlotHealth):
    def __init__(
        self,
        config: Config,
        *,
        backend: DeviceBackend | None = None,
        api_p99: Callable[[], float | None] | None = None,
    ) -> None:
        self.config = config
        self.spool = Spool(config.spool_path, limits=config.limits)
        # Simulated cards read their injected faults from this file (tests, drills).
        self.backend = backend or parse_slots(
            config.slots, state_file=self.spool.paths.state_dir / "simulated-devices.json"
        )
        self.life = lifecycle.Lifecycle(self.spool, config)
        self.executors: dict[str, Executor] = {}
        self.wake = asyncio.Event()
        self.stopping = False
        self.stopped = asyncio.Event()
        self.ready = asyncio.Event()
        self.not_before: dict[str, float] = {}  # task_id -> retry backoff deadline
        self.spare: frozenset[str] = frozenset()  # slots kept for warm-up and standby
        self._headers: dict[str, QueuedJob] = {}  # queued file name -> parsed header
        self.orphans = OrphanClaims(self.spool, config.max_attempts)
        self._watcher: SpoolWatcher | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        # Model load/unload requests from the spool, and the slot snapshot readers see.
        self.ops = Operations(self.spool, config, api_p99=api_p99)
        self.model_control = ModelControl(self.spool.paths)
        self.slot_state = SlotStateWriter(self.spool.root, interval=config.rescan_interval_s)
        # slots = "slurm": pilot jobs on a cluster come and go as executors.
        self.pilots: SlurmPilots | None = None
        if config.slots.strip().lower() == "slurm":
            from mofsimd.slurm_pool import SlurmPilots

            self.pilots = SlurmPilots(self, config.slurm_settings)
        # Cost estimates: memory per job for placement, learning, the ETA board.
        self.costs = CostTracker(self.spool, config.dtype, interval=config.rescan_interval_s)

    # -- start and stop ----------------------------------------------------------------
    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self.life.open()
        self.ops.start()
        self.life.on_transition = self.ops.on_state
        self.life.steps.on_storage_error = self.ops.check_alerts_soon
        if self.life.writer is not None:
            self.life.writer.on_mirror_down = self.ops.mirror_down
            self.life.writer.on_mirror_up = self.ops.mirror_up
        report = sweep(self.spool, max_attempts=self.config.max_attempts)
        if report.total():
            logger.warning("recovery sweep: {}", vars(report))
            for tid in (
                report.requeued + report.completed + report.failed + report.dropped_duplicates
            ):
                self.life.mirror_task(tid)
        for tid in report.running + report.deferred:
            loc = self.spool.locate(tid)
            if loc is not None and loc.state == "CLAIMED":
                if tid in report.deferred:
                    logger.warning("task {}: recovery refused by a full disk; retrying", tid)
                else:
                    logger.warning("task {} is still run by an orphaned executor; waiting", tid)
                self.orphans.add(loc.path)
        slots = self.backend.slots()
        self.spare = spare_slot_ids(self.config.spare_slots, [s.slot_id for s in slots])
        cpu_slots = sum(1 for s in slots if s.kind != "nvml") or 1
        threads = max(1, (os.cpu_count() or 1) // cpu_slots)
        for slot in slots:
            ex = Executor(
                slot,
                self.spool.root,
                cache_size=self.config.calculator_cache_size,
                dtype=self.config.dtype,
                max_atoms=self.config.max_atoms,
                large_structure_atoms=self.config.large_structure_atoms,
                # Several beats per timeout: one late beat must not take a slot offline.
                heartbeat_s=min(5.0, self.config.heartbeat_timeout_s / 4),
                threads=threads if slot.kind != "nvml" else None,
                on_message=self._on_message,
                on_exit=self._on_exit,
            )
            self.executors[slot.slot_id] = ex
            ex.spare = slot.slot_id in self.spare
        await asyncio.gather(*(ex.start() for ex in self.executors.values()))
        if self.pilots is not None:
            await self.pilots.start()
        self._watcher = SpoolWatcher(self.spool.paths, self._wake_threadsafe)
        self._watcher.start()
        logger.info("mofsimd up: spool {} slots {}", self.spool.root, list(self.executors))
        self.ready.set()

    def _wake_threadsafe(self) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self.wake.set)

    def request_stop(self) -> None:
        if not self.stopping:
            logger.info("shutdown requested: no new claims; waiting for running tasks")
            sdnotify.stopping()
        self.stopping = True
        self.wake.set()

    async def shutdown(self) -> None:
        """Wait up to ``shutdown_grace_s`` for running tasks, then requeue the rest."""
        deadline = time.monotonic() + self.config.shutdown_grace_s
        if self.pilots is not None:
            self.pilots.before_shutdown()
        while any(ex.current for ex in self.executors.values()) and time.monotonic() < deadline:
            self.wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wake.wait(), 0.5)
            self._enforce_limits()
        for ex in self.executors.values():
            task = ex.current
            if task is not None:
                ex.kill()
                ex.current = None
                self.life.requeue_after_shutdown(task)
            await ex.stop()
        if self.pilots is not None:
            await self.pilots.stop()
        if self._watcher:
            self._watcher.stop()
        self.ops.stop()
        self.backend.close()
        self.life.close()
        self.stopped.set()

    # -- the loop ----------------------------------------------------------------------
    async def run(self) -> None:
        await self.start()
        try:
            while not self.stopping:
                self.wake.clear()
                try:
                    self.tick()
                    shown = self.pilots.visible(self.executors) if self.pilots else self.executors
                    self.slot_state.update(shown, self.backend, self.model_control.busy)
                    self._publish_eta()
                    self.ops.tick(self)
                except Exception as exc:
                    # A full disk or a bug costs this turn of the loop, never the daemon.
                    if is_storage_error(exc):
                        self.life.steps.storage_failed("supervisor loop", exc)
                    else:
                        logger.exception("supervisor loop: unexpected error; going on")
                timeout = self._next_wait()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.wake.wait(), timeout)
        finally:
            await self.shutdown()

    def _next_wait(self) -> float:
        wait = self.config.rescan_interval_s
        now = time.time()
        for ex in self.executors.values():
            t = ex.current
            if t is not None:
                wait = min(wait, max(0.05, t.started + t.timeout - now))
                if t.cancel_seen_at is not None:
                    wait = min(wait, max(0.05, t.cancel_seen_at + self.config.cancel_grace_s - now))
        for nb in self.not_before.values():
            wait = min(wait, max(0.05, nb - now))
        if len(self.life.steps) or self.orphans:
            wait = min(wait, 1.0)  # waiting for space, or for an orphan to let go
        return wait

    def tick(self) -> None:
        self._enforce_limits()
        self._watch_heartbeats()
        self.life.steps.retry()
        self._watch_claims()
        if self.stopping:
            return
        self.model_control.process(self.executors)
        queue = self._admit_queue()
        if self.pilots is not None:
            self.pilots.tick(queue)
        held = self.orphans.slots()
        idle = [ex for ex in self.executors.values() if ex.idle and ex.slot_id not in held]
        if not idle or not queue:
            return
        status = {d.slot_id: d for d in self.backend.status()}
        free = []
        for order, ex in enumerate(idle):
            st = status.get(ex.slot_id)
            free.append(
                FreeSlot(
                    ex.slot_id,
                    tuple(ex.loaded_models),
                    available=st.available if st else True,
                    free_memory_mb=st.memory_free_mb if st and ex.slot.kind != "cpu" else None,
                    utilization_percent=st.utilization_percent if st else None,
                    order=order,
                    memory_total_mb=st.memory_total_mb if st else None,
                    time_left_s=getattr(ex, "time_left", None),
                    spare=ex.slot_id in self.spare,
                )
            )
        standby, largest = self._standby(status)
        result = plan(
            queue,
            free,
            now=time.time(),
            min_free_memory_mb=self.config.min_free_memory_mb,
            standby=standby,
            largest_compute_mb=largest,
        )
        for job, slot in result.assignments:
            self._dispatch(job, self.executors[slot.slot_id])

    def _admit_queue(self) -> list[QueuedJob]:
        out: list[QueuedJob] = []
        seen: set[str] = set()
        devices: list[tuple[str, float]] | None = None  # read once a turn, when needed
        for q in self.spool.queued():
            seen.add(q.name)
            header = self._headers.get(q.name)
            if header is None:
                job = admit(self.spool, q, self.life.validate)
                if job is None:
                    continue
                try:
                    job = self.life.validate(job)
                    devices = self._devices() if devices is None else devices
                    self.costs.admit(job, devices)
                except MofsimError as exc:
                    self._fail_at_admission(q.path, job, exc)
                    continue
                except Exception as exc:  # a parameter no check foresaw: fail it, go on
                    logger.opt(exception=exc).warning("cannot validate task {}", job.task_id)
                    bad = InvalidJobFile(f"cannot validate: {type(exc).__name__}: {exc}")
                    self._fail_at_admission(q.path, job, bad)
                    continue
                header = QueuedJob(
                    job.task_id,
                    self.life.model_key(job.model),
                    job.priority,
                    q.name,
                    duration_s=expected_duration(job),
                )
                self._headers[q.name] = header
                # Queued tasks belong in the mirror's lists too, however they arrived.
                self.life.mirror_task(job.task_id)
            nb = self.not_before.get(header.task_id, 0.0)
            memory = self.costs.needed(header.task_id)
            out.append(replace(header, not_before=nb, memory_mb=memory))
        for name in list(self._headers):
            if name not in seen:
                del self._headers[name]
        return out

    def _fail_at_admission(self, path: Path, job: Job, exc: MofsimError) -> None:
        """Unknown model, bad parameters: the task fails at once, it never runs."""
        claimed = transitions.claim(self.spool.paths, path, "_admission", job.task_id)
        if claimed is None:
            return
        task = RunningTask(
            job.task_id, claimed, time.time(), 0.0, job.attempts, request_id=job.request_id
        )
        self.life.finish(
            task,
            "FAILED",
            code=exc.code,
            message=exc.message,
            error={"field": exc.field, "type": type(exc).__name__},
        )

    def _dispatch(self, qjob: QueuedJob, ex: Executor) -> None:
        src = self.spool.paths.priority_dir(qjob.priority) / qjob.name
        claimed = transitions.claim(self.spool.paths, src, ex.slot_id, qjob.task_id)
        self._headers.pop(qjob.name, None)
        if claimed is None:
            return  # cancelled or taken by another daemon meanwhile
        self.not_before.pop(qjob.task_id, None)
        try:
            job = read_job(claimed)
        except MofsimError as exc:
            transitions.reject(self.spool.paths, claimed, f"{exc.code} {exc.message}")
            return
        timeout = job.timeout or self.config.default_timeout
        task = RunningTask(
            job.task_id, claimed, time.time(), timeout, job.attempts, request_id=job.request_id
        )
        self.life.assigned(job, ex)
        try:
            ex.run(task)
        except (RuntimeError, OSError) as exc:
            # The executor went away between the plan and the hand-over: not the task's
            # doing, so it goes back to its place with no attempt counted.
            ex.current = None
            self.life.requeue(task, None, f"executor {ex.slot_id} unavailable ({exc})")

    def _watch_claims(self) -> None:
        busy = [ex.current.claimed_path for ex in self.executors.values() if ex.current]
        self.orphans.adopt_strays(busy, self.life.steps.task_ids())
        for task_id in self.orphans.resolve():
            self.life.mirror_task(task_id, with_logs=True)

    # -- cost estimates ----------------------------------------------------------------
    def _publish_eta(self) -> None:
        running = [
            (ex.current.task_id, ex.current.started)
            for ex in self.executors.values()
            if ex.current is not None
        ]
        queue = sorted(self._headers.values(), key=lambda j: (j.priority, j.name))
        self.costs.publish_eta(
            len(self.executors),
            running,
            [(j.task_id, self.not_before.get(j.task_id, 0.0)) for j in queue],
        )
