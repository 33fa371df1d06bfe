"""Optimizer and MD observers: progress, throttling, cancel, divergence, step timing."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from ase import units
from ase.build import bulk
from ase.calculators.calculator import Calculator, all_changes
from ase.calculators.emt import EMT
from ase.md.verlet import VelocityVerlet
from ase.optimize import BFGS

from executors.api import NullObserver
from executors.observers import (
    StepTimer,
    attach_md_observer,
    attach_optimizer_observer,
    optimizer_fmax,
)
from spool.errors import TaskCancelled, TaskDiverged


def rattled_copper(seed: int = 0):
    atoms = bulk("Cu", cubic=True) * (2, 1, 1)
    atoms.rattle(0.05, seed=seed)
    atoms.calc = EMT()
    return atoms


class Ticker:
    """A fake clock advancing by ``dt`` per call."""

    def __init__(self, dt: float) -> None:
        self.t = 0.0
        self.dt = dt

    def __call__(self) -> float:
        self.t += self.dt
        return self.t


class CancelAfter(NullObserver):
    def __init__(self, n: int) -> None:
        super().__init__()
        self.calls = 0
        self.n = n

    def check_cancel(self) -> None:
        self.calls += 1
        if self.calls > self.n:
            raise TaskCancelled("cancelled by test")


class HugeEnergyAfter(Calculator):
    """EMT forces, but the energy jumps to 1e6 eV from the ``after``-th evaluation on."""

    implemented_properties = ["energy", "forces"]

    def __init__(self, after: int, energy: float = 1e6) -> None:
        super().__init__()
        self.after = after
        self.count = 0
        self.huge = energy
        self.emt = EMT()

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        self.count += 1
        forces = self.emt.get_forces(self.atoms)
        energy = self.emt.get_potential_energy(self.atoms)
        if self.count > self.after:
            energy = self.huge
        self.results = {"energy": energy, "forces": forces}


def test_optimizer_progress_carries_step_energy_fmax():
    atoms = rattled_copper()
    obs = NullObserver()
    opt = BFGS(atoms, logfile=None)
    monitor = attach_optimizer_observer(
        opt, atoms, obs, max_steps=50, stage="relax", clock=Ticker(1.0)
    )
    converged = opt.run(fmax=0.05, steps=50)
    monitor.finish(1.0 if converged else None)
    assert converged
    steps = [m["step"] for _, _, m in obs.progress_events]
    assert steps[0] == 0 and steps[-1] == opt.nsteps
    assert steps[:-1] == list(range(opt.nsteps + 1))  # every step reported, clock is slow
    frac, _, last = obs.progress_events[-1]
    assert frac == 1.0 and last["stage"] == "relax"
    assert last["energy"] == pytest.approx(atoms.get_potential_energy())
    assert last["fmax"] == pytest.approx(optimizer_fmax(opt)) and last["fmax"] < 0.05
    fractions = [f for f, _, _ in obs.progress_events]
    assert fractions == sorted(fractions) and all(0 <= f <= 1 for f in fractions)
    assert monitor.timer.steps == opt.nsteps and monitor.timer.avg_ms is not None


def test_progress_is_throttled_but_last_step_reported():
    atoms = rattled_copper()
    obs = NullObserver()
    opt = BFGS(atoms, logfile=None)
    monitor = attach_optimizer_observer(opt, atoms, obs, max_steps=50, clock=Ticker(0.0))
    opt.run(fmax=0.05, steps=50)
    assert len(obs.progress_events) == 1  # the clock never advances: only the first
    monitor.finish()
    assert len(obs.progress_events) == 2
    assert obs.progress_events[-1][2]["step"] == opt.nsteps
    monitor.finish()  # nothing new to report
    assert len(obs.progress_events) == 2


def test_fraction_range_maps_into_a_sub_range():
    atoms = rattled_copper()
    obs = NullObserver()
    opt = BFGS(atoms, logfile=None)
    attach_optimizer_observer(
        opt, atoms, obs, max_steps=4, fraction_range=(0.5, 0.7), step_offset=100, clock=Ticker(1.0)
    )
    opt.run(fmax=1e-6, steps=4)
    fractions = [f for f, _, _ in obs.progress_events]
    assert fractions[0] == 0.5 and fractions[-1] == pytest.approx(0.7)
    assert [m["step"] for _, _, m in obs.progress_events] == [100, 101, 102, 103, 104]


def test_cancel_raises_from_the_optimizer_at_a_step_boundary():
    atoms = rattled_copper()
    obs = CancelAfter(3)
    opt = BFGS(atoms, logfile=None)
    attach_optimizer_observer(opt, atoms, obs, max_steps=100)
    with pytest.raises(TaskCancelled):
        opt.run(fmax=1e-6, steps=100)
    assert opt.nsteps == 3  # observer calls at steps 0, 1, 2 passed; step 3 cancelled


def test_divergence_checked_every_tenth_step():
    atoms = rattled_copper()
    atoms.calc = HugeEnergyAfter(after=3)
    opt = BFGS(atoms, logfile=None)
    attach_optimizer_observer(opt, atoms, NullObserver(), max_steps=100)
    with pytest.raises(TaskDiverged, match="exceeds the divergence limit"):
        opt.run(fmax=1e-9, steps=100)
    assert opt.nsteps == 10


def test_divergence_at_first_step_and_custom_limit():
    atoms = rattled_copper()
    atoms.calc = HugeEnergyAfter(after=0, energy=-2e5)
    opt = BFGS(atoms, logfile=None)
    attach_optimizer_observer(opt, atoms, NullObserver(), max_steps=100)
    with pytest.raises(TaskDiverged):
        opt.run(fmax=1e-9, steps=100)
    assert opt.nsteps == 0
    atoms = rattled_copper()
    atoms.calc = HugeEnergyAfter(after=0, energy=-2e5)
    opt = BFGS(atoms, logfile=None)
    attach_optimizer_observer(opt, atoms, NullObserver(), max_steps=3, diverge_energy=1e6)
    opt.run(fmax=1e-9, steps=3)  # within the raised limit: no abort
    assert opt.nsteps == 3


def test_non_finite_energy_aborts_at_any_step():
    atoms = rattled_copper()
    atoms.calc = HugeEnergyAfter(after=2, energy=float("nan"))
    opt = BFGS(atoms, logfile=None)
    attach_optimizer_observer(opt, atoms, NullObserver(), max_steps=100)
    with pytest.raises(TaskDiverged):
        opt.run(fmax=1e-9, steps=100)
    assert opt.nsteps == 2


def test_md_observer_reports_global_steps_and_md_metrics():
    atoms = rattled_copper(seed=3)
    atoms.set_momenta(np.zeros((len(atoms), 3)))
    obs = NullObserver()
    dyn = VelocityVerlet(atoms, timestep=1.0 * units.fs)
    monitor = attach_md_observer(
        dyn, atoms, obs, total_steps=200, stage="nvt", step_offset=100, clock=Ticker(1.0)
    )
    dyn.run(20)
    monitor.finish()
    steps = [m["step"] for _, _, m in obs.progress_events]
    assert steps == list(range(100, 121))
    fractions = [f for f, _, _ in obs.progress_events]
    assert fractions[0] == pytest.approx(0.5) and fractions[-1] == pytest.approx(0.6)
    last = obs.progress_events[-1][2]
    assert last["stage"] == "nvt" and last["temperature"] > 0
    assert last["volume"] == pytest.approx(atoms.get_volume())


def test_md_observer_cancel():
    atoms = rattled_copper()
    dyn = VelocityVerlet(atoms, timestep=0.1)
    attach_md_observer(dyn, atoms, CancelAfter(5), total_steps=50)
    with pytest.raises(TaskCancelled):
        dyn.run(50)
    assert dyn.nsteps == 5


def test_step_timer_with_fake_clock():
    ticks = itertools.count(start=0.0, step=0.25)
    timer = StepTimer(clock=lambda: next(ticks))
    assert timer.avg_ms is None
    timer.start()
    for _ in range(4):
        timer.tick()
    assert timer.steps == 4
    assert timer.elapsed_s == pytest.approx(1.0)
    assert timer.avg_ms == pytest.approx(250.0)
    lazy = StepTimer(clock=lambda: next(ticks))
    lazy.tick()  # the first tick only sets the origin
    assert lazy.steps == 0 and lazy.avg_ms is None
