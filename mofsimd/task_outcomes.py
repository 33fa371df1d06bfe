"""How a running task ends, as the supervisor sees it: the part of its loop that reacts.

A task ends by an executor's message (completed, cancelled, failed, transient), by a
limit the loop enforces (its timeout, or a cancel past the grace period), or by its
executor dying under it.  Here each of these becomes a transition through the
lifecycle: a final state, or a requeue, with a backoff when an attempt was spent.  A
dead executor is restarted, later each time when it keeps dying at once.

``TaskOutcomes`` is a mixin of ``Supervisor``: it holds no state of its own, and the
attributes it names below are the supervisor's, set in ``Supervisor.__init__``.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from loguru import logger

from mofsim_core.config import Config
from mofsim_core.devices import DeviceBackend
from mofsimd import lifecycle
from mofsimd.cost_tracker import CostTracker, is_out_of_memory, largest_other
from mofsimd.executor_pool import Executor, Message, RunningTask
from mofsimd.operations import Operations
from mofsimd.orphans import OrphanClaims
from spool.errors import TaskCancelled, TaskError, TaskTimeout, code_of
from spool.store import Spool


class TaskOutcomes:
    config: Config
    spool: Spool
    backend: DeviceBackend
    life: lifecycle.Lifecycle
    executors: dict[str, Executor]
    wake: asyncio.Event
    stopping: bool
    not_before: dict[str, float]
    orphans: OrphanClaims
    ops: Operations
    costs: CostTracker
    _loop: asyncio.AbstractEventLoop | None

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
        if msg.get("type") == "heartbeat":
            if ex.offline:
                self.wake.set()  # back in service at once
            return
        task = ex.current
        if msg.get("type") == "started" and task is not None:
            if task.task_id == msg.get("task_id"):
                task.started_seen = True
            self.ops.on_state(task.task_id, "RUNNING")
        if msg.get("type") == "finished":
            # GONE: a hand-over that was taken back while the executor was stopped.
            if task is None or task.task_id != msg.get("task_id") or msg.get("status") == "GONE":
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

    # -- out of memory and retries -----------------------------------------------------
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

    # -- executor exits and restarts ---------------------------------------------------
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
