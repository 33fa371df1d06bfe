"""The supervisor: watch the spool, claim jobs, drive one executor per slot.

One asyncio loop.  Wake-ups come from inotify (watchdog), from executor messages and
from a periodic rescan; each wake-up admits new files, plans assignments, enforces
timeouts and cancels.  The spool stays the source of truth: everything here can be
rebuilt from it after a crash.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from loguru import logger

from mofsim_core.config import Config
from mofsim_core.control import ModelControl
from mofsim_core.devices import DeviceBackend, parse_slots
from mofsim_core.slot_state import SlotStateWriter
from mofsimd import lifecycle, sdnotify
from mofsimd.cost_tracker import CostTracker, is_out_of_memory, largest_other
from mofsimd.executor_pool import Executor, Message, RunningTask
from mofsimd.operations import Operations
from mofsimd.orphans import OrphanClaims
from mofsimd.pending import is_storage_error
from mofsimd.scheduler import FreeSlot, QueuedJob, expected_duration, plan
from mofsimd.watcher import SpoolWatcher
from spool import transitions
from spool.errors import InvalidJobFile, MofsimError, TaskCancelled, TaskError, TaskTimeout, code_of
from spool.intake import admit
from spool.job import Job
from spool.recovery import sweep
from spool.store import Spool, read_job

if TYPE_CHECKING:
    from mofsimd.slurm_pool import SlurmPilots


class Supervisor:
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
                threads=threads if slot.kind != "nvml" else None,
                on_message=self._on_message,
                on_exit=self._on_exit,
            )
            self.executors[slot.slot_id] = ex
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
                )
            )
        result = plan(
            queue, free, now=time.time(), min_free_memory_mb=self.config.min_free_memory_mb
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
        task = RunningTask(job.task_id, claimed, time.time(), 0.0, job.attempts)
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
        task = RunningTask(job.task_id, claimed, time.time(), timeout, job.attempts)
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

    # -- limits: timeouts and forced cancels -------------------------------------------
    def _enforce_limits(self) -> None:
        now = time.time()
        for ex in self.executors.values():
            task = ex.current
            if task is None:
                continue
            if task.cancel_seen_at is None and self.spool.cancel_requested(task.task_id):
                task.cancel_seen_at = now
                logger.info("cancel requested for running task {}", task.task_id)
            if now - task.started > task.timeout:
                self._kill_current(
                    ex, "TIMEOUT", f"task exceeded its timeout of {task.timeout:g} s"
                )
            elif task.cancel_seen_at and now - task.cancel_seen_at > self.config.cancel_grace_s:
                self._kill_current(
                    ex, "CANCELLED", "cancelled by request (forced after the grace period)"
                )

    def _kill_current(self, ex: Executor, state: str, message: str) -> None:
        task = ex.current
        if task is None:
            return
        ex.current = None
        ex.kill()
        self.life.finish(
            task,
            state,
            code=code_of(TaskTimeout if state == "TIMEOUT" else TaskCancelled),
            message=message,
            slot=ex.slot_id,
        )
        self.wake.set()

    # -- executor callbacks ------------------------------------------------------------
    def _on_message(self, ex: Executor, msg: Message) -> None:
        task = ex.current
        if msg.get("type") == "started" and task is not None:
            if task.task_id == msg.get("task_id"):
                task.started_seen = True
            self.ops.on_state(task.task_id, "RUNNING")
        if msg.get("type") == "finished":
            if task is None or task.task_id != msg.get("task_id"):
                return  # already ended by a timeout or a forced cancel
            ex.current = None
            if msg.get("status") == "BUSY":
                # An orphaned executor holds this claim: it is running the task already.
                self.orphans.add(task.claimed_path)
            else:
                self._finished(ex, task, msg)
        self.wake.set()

    def _finished(self, ex: Executor, task: RunningTask, msg: Message) -> None:
        status = str(msg.get("status"))
        error: dict[str, Any] = msg.get("error") or {}
        if status == "COMPLETED":
            self.costs.completed(task.task_id, task.claimed_path)
            self.life.finish(task, "COMPLETED", slot=ex.slot_id)
        elif status == "CANCELLED":
            self.life.finish(
                task,
                "CANCELLED",
                code=code_of(TaskCancelled),
                message="cancelled by request",
                slot=ex.slot_id,
            )
        elif msg.get("transient"):
            if is_out_of_memory(error):
                self._out_of_memory(ex, task)
            self._retry_or_fail(
                task,
                str(error.get("message", "transient failure")),
                code=int(error.get("code", code_of(TaskError))),
            )
        else:
            self.life.finish(
                task,
                "FAILED",
                code=int(error.get("code", code_of(TaskError))),
                message=str(error.get("message", "task failed")),
                slot=ex.slot_id,
                error=error,
            )

    # -- cost estimates ----------------------------------------------------------------
    def _devices(self) -> list[tuple[str, float]]:
        """Every device's name and total memory, as the backend reports them now."""
        names = {s.slot_id: s.name for s in self.backend.slots()}
        return [
            (names.get(d.slot_id, d.name), float(d.memory_total_mb))
            for d in self.backend.status()
            if d.memory_total_mb
        ]

    def _out_of_memory(self, ex: Executor, task: RunningTask) -> None:
        """The card was too small: the cost model learns it, and the retry waits for a
        larger card when there is one."""
        status = {d.slot_id: d for d in self.backend.status()}.get(ex.slot_id)
        total = float(status.memory_total_mb) if status and status.memory_total_mb else None
        larger = largest_other(self._devices(), total)
        self.costs.out_of_memory(task.task_id, task.claimed_path, ex.slot.name, total, larger)

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

    def _retry_or_fail(self, task: RunningTask, reason: str, code: int | None = None) -> None:
        attempts = task.attempts + 1
        if attempts >= self.config.max_attempts:
            self.life.finish(
                task,
                "FAILED",
                code=code or code_of(TaskError),
                message=f"{reason} (gave up after {attempts} attempts)",
            )
            return
        delay = min(
            self.config.retry_backoff_max_s, self.config.retry_backoff_s * 2 ** (attempts - 1)
        )
        self.not_before[task.task_id] = time.time() + delay
        self.life.requeue(task, attempts, f"{reason}; retrying in {delay:g} s")

    def _on_exit(self, ex: Executor, code: int | None) -> None:
        task = ex.current
        ex.current = None
        if task is not None:
            if self.spool.cancel_requested(task.task_id):
                self.life.finish(
                    task, "CANCELLED", code=code_of(TaskCancelled), message="cancelled by request"
                )
            elif not task.started_seen:
                # It died before it began this task: whatever killed it, not the task.
                self.life.requeue(
                    task, None, f"executor {ex.slot_id} died before starting it (exit {code})"
                )
            else:
                self._retry_or_fail(task, f"executor {ex.slot_id} died (exit code {code})")
        if self.stopping or getattr(ex, "gone", False):
            return  # a Slurm pilot whose job ended is not restarted: others are submitted
        ex.restarts += 1
        # A slot that dies straight after starting is not restarted in a hot loop.
        delay = 0.0 if time.time() - ex.started_at > 30 else min(30.0, 2.0 ** min(ex.restarts, 5))
        logger.warning("executor {} exited ({}); restarting in {:g} s", ex.slot_id, code, delay)
        assert self._loop is not None
        self._loop.call_later(delay, lambda: asyncio.ensure_future(self._restart(ex)))

    async def _restart(self, ex: Executor) -> None:
        if not self.stopping:
            await ex.start()
            self.life.executor_restarted(ex)
            self.wake.set()
