"""Step observers that connect ASE optimizers and MD integrators to a task's Observer.

At every step boundary they:

- call ``observer.check_cancel()`` (cooperative cancel: it raises ``TaskCancelled``,
  which propagates out of ``opt.run()``/``dyn.run()``);
- report ``observer.progress(fraction, step=..., energy=..., ...)``, throttled to a few
  events per second (``min_interval``), with the final step always reported by
  ``StepMonitor.finish()``;
- abort with ``spool.errors.TaskDiverged`` when the energy is not finite or its
  magnitude exceeds ``diverge_energy`` (checked every ``diverge_check_every`` steps;
  non-finite values are caught at every step);
- time the steps (``StepTimer``), for ``avg_step_time_ms`` in results.

Typical use::

    opt = LBFGS(FrechetCellFilter(atoms), logfile=None)
    monitor = attach_optimizer_observer(opt, atoms, ctx.observer, max_steps=500)
    converged = opt.run(fmax=0.05, steps=500)
    monitor.finish()
    monitor.timer.avg_ms

ASE calls observers once before the first step (step 0) and after every step.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from spool.errors import TaskDiverged

if TYPE_CHECKING:
    from ase import Atoms

    from executors.api import Observer

DIVERGE_ENERGY_EV = 1e5
DIVERGE_CHECK_EVERY = 10
MIN_PROGRESS_INTERVAL_S = 0.2  # at most ~5 progress events per second


class StepTimer:
    """Wall-clock time per step, measured between consecutive ``tick()`` calls.

    ``start()`` (or the first ``tick()``) sets the origin; each later ``tick()`` counts
    one step.  ``clock`` is injectable for tests.
    """

    def __init__(self, clock: Callable[[], float] = time.perf_counter) -> None:
        self._clock = clock
        self._t0: float | None = None
        self._last: float | None = None
        self.steps = 0

    def start(self) -> None:
        self._t0 = self._last = self._clock()
        self.steps = 0

    def tick(self) -> None:
        now = self._clock()
        if self._t0 is None:
            self._t0 = self._last = now
            return
        self._last = now
        self.steps += 1

    @property
    def elapsed_s(self) -> float:
        if self._t0 is None or self._last is None:
            return 0.0
        return self._last - self._t0

    @property
    def avg_ms(self) -> float | None:
        """Mean milliseconds per step, or None before any step was timed."""
        if self.steps == 0:
            return None
        return 1000.0 * self.elapsed_s / self.steps


class StepMonitor:
    """The callable attached to an ASE dynamics object; see the module docstring.

    ``fraction_range`` maps this run's own progress (0..1) into a sub-range of the whole
    task, so multi-stage tasks report one monotonic fraction; alternatively
    ``global_total`` makes the fraction (step_offset + step) / global_total.
    ``metrics`` returns extra per-step metrics (e.g. fmax, temperature, volume).
    """

    def __init__(
        self,
        atoms: Atoms,
        observer: Observer,
        *,
        total_steps: int,
        step_of: Callable[[], int],
        metrics: Callable[[], dict[str, Any]] | None = None,
        stage: str | None = None,
        step_offset: int = 0,
        fraction_range: tuple[float, float] = (0.0, 1.0),
        global_total: int | None = None,
        every: int = 1,
        diverge_energy: float = DIVERGE_ENERGY_EV,
        diverge_check_every: int = DIVERGE_CHECK_EVERY,
        min_interval: float = MIN_PROGRESS_INTERVAL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.atoms = atoms
        self.observer = observer
        self.total_steps = max(int(total_steps), 1)
        self.step_of = step_of
        self.metrics = metrics
        self.stage = stage
        self.step_offset = step_offset
        self.fraction_range = fraction_range
        self.global_total = max(int(global_total), 1) if global_total is not None else None
        self.every = max(int(every), 1)
        self.diverge_energy = diverge_energy
        self.diverge_check_every = max(int(diverge_check_every), 1)
        self.min_interval = min_interval
        self._clock = clock
        self._last_emit: float | None = None
        self._last_emitted_step: int | None = None
        self.timer = StepTimer()
        self.step = 0
        self.energy: float | None = None
        self.last_metrics: dict[str, Any] = {}
        self.calls = 0

    def __call__(self) -> None:
        self.observer.check_cancel()
        self.timer.tick()
        self.calls += 1
        self.step = int(self.step_of())
        energy = float(self.atoms.get_potential_energy())
        self.energy = energy
        if not math.isfinite(energy) or (
            self.step % self.diverge_check_every == 0 and abs(energy) > self.diverge_energy
        ):
            raise TaskDiverged(
                f"energy {energy:.6g} eV at step {self.step}"
                + (f" of stage {self.stage}" if self.stage else "")
                + f" exceeds the divergence limit of {self.diverge_energy:g} eV",
                detail="the structure or the model produced an unphysical energy",
            )
        now = self._clock()
        throttled = self._last_emit is not None and now - self._last_emit < self.min_interval
        if self.step % self.every == 0 and not throttled:
            self._emit(now)

    def fraction(self) -> float:
        """Task progress at the current step, in [0, 1]."""
        if self.global_total is not None:
            return min(max((self.step_offset + self.step) / self.global_total, 0.0), 1.0)
        lo, hi = self.fraction_range
        own = min(max(self.step / self.total_steps, 0.0), 1.0)
        return lo + (hi - lo) * own

    def _emit(self, now: float, fraction: float | None = None) -> None:
        metrics: dict[str, Any] = {"step": self.step_offset + self.step}
        if self.energy is not None:
            metrics["energy"] = self.energy
        # Extra metrics are computed only when reported: a cell filter's fmax costs a
        # matrix-exponential derivative, which should not run at every step.
        self.last_metrics = self.metrics() if self.metrics is not None else {}
        metrics.update(self.last_metrics)
        if self.stage is not None:
            metrics["stage"] = self.stage
        self.observer.progress(self.fraction() if fraction is None else fraction, **metrics)
        self._last_emit = now
        self._last_emitted_step = self.step

    def finish(self, fraction: float | None = None) -> None:
        """Report the last step if throttling swallowed it.  With ``fraction`` (e.g. the
        end of this run's range once converged early) it is always reported."""
        if self.calls == 0:
            return
        if self._last_emitted_step != self.step or fraction is not None:
            self._emit(self._clock(), fraction)


def optimizer_fmax(opt: Any) -> float:
    """The optimizer's own convergence measure: max force, including the cell degrees of
    freedom when the optimizer drives a cell filter."""
    optimizable = opt.optimizable
    return float(optimizable.gradient_norm(optimizable.get_gradient()))


def attach_optimizer_observer(
    opt: Any,
    atoms: Atoms,
    observer: Observer,
    *,
    max_steps: int,
    stage: str | None = None,
    every: int = 1,
    diverge_energy: float = DIVERGE_ENERGY_EV,
    diverge_check_every: int = DIVERGE_CHECK_EVERY,
    step_offset: int = 0,
    fraction_range: tuple[float, float] = (0.0, 1.0),
    min_interval: float = MIN_PROGRESS_INTERVAL_S,
    clock: Callable[[], float] = time.monotonic,
) -> StepMonitor:
    """Attach a monitor to an ASE optimizer; progress carries step, energy, fmax, stage.

    ``atoms`` is the real Atoms object (not the filter) so the energy is the potential
    energy; ``fmax`` is what the optimizer converges on.  The fraction is steps done over
    ``max_steps`` (an upper bound; ``finish(1.0)`` on convergence closes it).
    """

    def metrics() -> dict[str, Any]:
        return {"fmax": optimizer_fmax(opt)}

    monitor = StepMonitor(
        atoms,
        observer,
        total_steps=max_steps,
        step_of=lambda: opt.nsteps,
        metrics=metrics,
        stage=stage,
        step_offset=step_offset,
        fraction_range=fraction_range,
        every=every,
        diverge_energy=diverge_energy,
        diverge_check_every=diverge_check_every,
        min_interval=min_interval,
        clock=clock,
    )
    opt.attach(monitor, interval=1)
    return monitor


def attach_md_observer(
    dyn: Any,
    atoms: Atoms,
    observer: Observer,
    *,
    total_steps: int,
    stage: str | None = None,
    step_offset: int = 0,
    every: int = 1,
    diverge_energy: float = DIVERGE_ENERGY_EV,
    diverge_check_every: int = DIVERGE_CHECK_EVERY,
    min_interval: float = MIN_PROGRESS_INTERVAL_S,
    clock: Callable[[], float] = time.monotonic,
) -> StepMonitor:
    """Attach a monitor to an ASE MD integrator.

    ``total_steps`` is the number of MD steps of the whole task and ``step_offset`` the
    global step at which this stage starts, so the reported ``step`` and fraction run
    across stages: fraction = (step_offset + dyn.nsteps) / total_steps.  Progress carries
    step, energy (potential), temperature (K), volume (A^3, periodic cells) and stage.
    """

    def metrics() -> dict[str, Any]:
        out: dict[str, Any] = {"temperature": float(atoms.get_temperature())}
        if atoms.cell.rank == 3:
            out["volume"] = float(atoms.get_volume())
        return out

    monitor = StepMonitor(
        atoms,
        observer,
        total_steps=total_steps,
        step_of=lambda: dyn.nsteps,
        metrics=metrics,
        stage=stage,
        step_offset=step_offset,
        global_total=total_steps,
        every=every,
        diverge_energy=diverge_energy,
        diverge_check_every=diverge_check_every,
        min_interval=min_interval,
        clock=clock,
    )
    dyn.attach(monitor, interval=1)
    return monitor
