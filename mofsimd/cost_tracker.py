"""The daemon's side of cost estimates: learn from finished tasks, guard the cards,
publish the queue's ETA.

- A completed task's measurement (``metrics.measurement``) joins the cost model's
  points for its model, device and dtype, and its force calls the ratio of its task
  type and protocol (``executors.cost_model``).
- A job's estimated memory (its ``estimate``, or one made here for a hand-dropped file
  when a fit exists) goes with it to the scheduler; a job that no device can hold fails
  at admission with 30004 and the numbers.
- A task that ran out of memory on a card leaves a floor in the cost model (it needs
  more than that card had) and waits for a larger card when the machine has one.
- After each scheduling pass the ETA board (``mofsim_core.eta``) is rewritten, at most
  once per ``interval`` seconds.

Nothing here may stop the daemon: a failure costs an estimate, never a task.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

from loguru import logger

from mofsim_core.estimates import Device, cost_model, estimate_reference, has_fit
from mofsim_core.eta import Running, Waiting, plan_eta, write_board
from spool.errors import DeviceUnavailable, MofsimError
from spool.job import Job
from spool.store import Spool, read_job


def is_out_of_memory(error: dict[str, Any]) -> bool:
    name = str(error.get("type") or "")
    text = str(error.get("message") or "").lower()
    return name in ("OutOfMemoryError", "MemoryError") or "out of memory" in text


class CostTracker:
    def __init__(self, spool: Spool, dtype: str, *, interval: float = 2.0) -> None:
        self.spool = spool
        self.dtype = dtype
        self.interval = interval
        self.costs = cost_model(spool.paths.state_dir)
        self.memory: dict[str, float | None] = {}  # task_id -> estimated peak MiB
        self.duration: dict[str, float | None] = {}  # task_id -> estimated seconds
        self._floors: dict[str, float] = {}  # task_id -> MiB proven too little (OOM)
        self._sizes: dict[str, tuple[float, float]] = {}  # task_id -> (atoms, pairs)
        self._last_eta = 0.0
        self._last_doc = ""
        self._members = 0

    # -- admission --------------------------------------------------------------------
    def admit(self, job: Job, devices: list[Device]) -> float | None:
        """The job's estimated memory (None: unknown); raises 30004 when it fits no
        device.  A job submitted without an estimate is estimated here when a fit
        exists for its model."""
        est = job.estimate
        if est is None and has_fit(self.costs, job.model, self._dtype(job)):
            from executors.models import resolve_model
            from executors.registry import validate_parameters

            spec = resolve_model(job.model, self.spool.paths.models)
            params = validate_parameters(job.task_type, dict(job.parameters))
            est = estimate_reference(
                self.spool.root, job.structure, job.task_type, spec, params, self.dtype, devices
            )
        elif est is not None and devices:
            need = est.get("memory_mb")
            largest = max(total for _, total in devices)
            if isinstance(need, int | float) and need > largest:
                # The machine changed since submission (a card is gone).
                raise DeviceUnavailable(
                    f"estimated peak memory {need:.0f} MiB exceeds the largest device "
                    f"({largest:.0f} MiB)",
                    field="structure",
                    detail=json.dumps(
                        {"estimated_memory_mb": round(need), "available_memory_mb": largest}
                    ),
                )
        memory = est.get("memory_mb") if isinstance(est, dict) else None
        duration = est.get("duration_s") if isinstance(est, dict) else None
        natoms = est.get("natoms") if isinstance(est, dict) else None
        pairs = est.get("neighbour_pairs") if isinstance(est, dict) else None
        if isinstance(natoms, int | float) and isinstance(pairs, int | float):
            self._sizes[job.task_id] = (float(natoms), float(pairs))
        self.memory[job.task_id] = float(memory) if isinstance(memory, int | float) else None
        self.duration[job.task_id] = float(duration) if isinstance(duration, int | float) else None
        return self.needed(job.task_id)

    def needed(self, task_id: str) -> float | None:
        """Memory a placement must cover: the estimate, raised past any card the task
        already ran out of memory on."""
        memory = self.memory.get(task_id)
        floor = self._floors.get(task_id)
        if floor is None:
            return memory
        return max(memory or 0.0, floor + 1.0)

    def _dtype(self, job: Job) -> str:
        return str(job.parameters.get("dtype") or self.dtype)

    # -- outcomes ---------------------------------------------------------------------
    def completed(self, task_id: str, claimed: Path) -> None:
        try:
            job = read_job(claimed)
            result = json.loads(self.spool.paths.result_file(task_id).read_text())
            from executors.registry import validate_parameters

            params = validate_parameters(job.task_type, dict(job.parameters))
            self.costs.learn(result, job.task_type, params)
        except (OSError, ValueError, MofsimError) as exc:
            logger.debug("task {}: no measurement learned ({})", task_id, exc)
        self.forget(task_id)

    def out_of_memory(
        self, task_id: str, claimed: Path, device: str, total_mb: float | None, larger: bool
    ) -> None:
        """Remember that ``total_mb`` was too little; True placement on a larger card
        follows from ``needed``.  Without a larger card the floor is kept only in the
        cost model, so the task may still retry where it was (memory may free up)."""
        if total_mb is None:
            return
        try:
            job = read_job(claimed)
            size = self._sizes.get(task_id)
            if size is not None:
                from executors.cost_model import fit_key

                key = fit_key(job.model, device, self._dtype(job))
                self.costs.add_oom(key, size[0], size[1], float(total_mb))
        except (OSError, ValueError, MofsimError) as exc:
            logger.debug("task {}: out-of-memory floor not recorded ({})", task_id, exc)
        if larger:
            self._floors[task_id] = max(self._floors.get(task_id, 0.0), float(total_mb))

    def forget(self, task_id: str) -> None:
        self.memory.pop(task_id, None)
        self.duration.pop(task_id, None)
        self._floors.pop(task_id, None)
        self._sizes.pop(task_id, None)

    # -- the ETA board ----------------------------------------------------------------
    def publish_eta(
        self,
        slots: int,
        running: list[tuple[str, float]],
        queue: list[tuple[str, float]],
        *,
        force: bool = False,
    ) -> None:
        """``running``: (task_id, started); ``queue``: (task_id, not_before) in the
        order the queue is served."""
        now = time.time()
        # A task joining, starting or leaving is published at once; the passing of time
        # (a running task past its estimate) at most once per interval.
        members = hash((tuple(t for t, _ in running), tuple(t for t, _ in queue)))
        if not force and members == self._members and now - self._last_eta < self.interval:
            return
        self._members = members
        self._last_eta = now
        live = {t for t, _ in running} | {t for t, _ in queue}
        for gone in [t for t in self.duration if t not in live]:
            self.memory.pop(gone, None)  # ended, or between a requeue and its admission
            self.duration.pop(gone, None)
            self._sizes.pop(gone, None)
        if not any(v is not None for v in self.duration.values()) and not self._last_doc:
            return  # no estimate anywhere: no board, as before estimates existed
        board = plan_eta(
            now,
            slots,
            [Running(t, started, self.duration.get(t)) for t, started in running],
            [Waiting(t, self.duration.get(t), nb) for t, nb in queue],
        )
        doc = json.dumps(board, sort_keys=True)
        if doc == self._last_doc:
            return
        try:
            write_board(self.spool.paths.state_dir, board, now)
            self._last_doc = doc
        except OSError as exc:
            logger.debug("ETA board not written: {}", exc)


def largest_other(devices: list[Device], total: float | None) -> bool:
    """Whether a card bigger than ``total`` exists."""
    return total is not None and any(t > total and math.isfinite(t) for _, t in devices)
