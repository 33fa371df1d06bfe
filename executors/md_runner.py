"""Staged molecular dynamics: the runner that drives a normalized stage list
(``executors.md_stages``).

``run_stages`` runs the stages one after another on the same ``Atoms``:

- ``relax``: fixed-cell optimization (LBFGS by default); momenta are zeroed first, since
  a relaxed structure is a 0 K structure.
- ``nvt``: ASE ``Langevin`` with the centre of mass held by ``FixCom`` (the integrator's
  own ``fixcm`` is deprecated in ASE).
- ``npt``: ASE ``IsotropicMTKNPT`` (Nose-Hoover chains for particles and cell).

Velocities are drawn from Maxwell-Boltzmann (seeded), then ``Stationary`` and
``ZeroRotation`` are applied, whenever an MD stage does not follow another MD stage, and
at every stage that sets ``redraw_velocities``.
A frame is recorded at the very start, every ``frame_interval`` steps of each MD stage,
and at the end of every stage; each frame carries its stage in ``atoms.info``.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from executors.md_metrics import RunningSlope, RunningStats
from executors.md_stages import stage_work
from spool.errors import TaskDiverged

if TYPE_CHECKING:
    from ase import Atoms

    from executors.api import Observer


@dataclass
class StageRun:
    """What ``run_stages`` hands back: frames (Atoms copies), one sample per frame and
    one summary per stage; ``after_relax`` is the structure after the first stage when
    that stage is a relaxation."""

    frames: list[Atoms] = field(default_factory=list)
    samples: list[dict[str, Any]] = field(default_factory=list)
    stages: list[dict[str, Any]] = field(default_factory=list)
    after_relax: Atoms | None = None
    avg_step_time_ms: float | None = None


class _Recorder:
    """Snapshots of the running system, each tagged with its stage."""

    def __init__(self, run: StageRun, on_frame: Callable[[Atoms], None] | None) -> None:
        self.run = run
        self.on_frame = on_frame
        self.time_fs = 0.0

    def snapshot(
        self,
        atoms: Atoms,
        stage_index: int,
        stage_type: str,
        step: int,
        conserved: float | None = None,
    ) -> None:
        from ase.calculators.singlepoint import SinglePointCalculator

        epot = float(atoms.get_potential_energy())
        ekin = float(atoms.get_kinetic_energy())
        frame = atoms.copy()
        frame.info.update(stage=stage_index, stage_type=stage_type, step=step, time_fs=self.time_fs)
        frame.calc = SinglePointCalculator(frame, energy=epot, forces=atoms.get_forces())
        volume = float(atoms.get_volume()) if atoms.cell.rank == 3 else None
        self.run.frames.append(frame)
        self.run.samples.append(
            {
                "stage": stage_index,
                "stage_type": stage_type,
                "step": step,
                "time_ps": self.time_fs / 1000.0,
                "volume": volume,
                "temperature": float(atoms.get_temperature()),
                "energy": epot,
                "kinetic_energy": ekin,
                "total_energy": epot + ekin,
                "conserved_energy": conserved,
            }
        )
        if self.on_frame is not None:
            self.on_frame(frame)


def run_stages(
    atoms: Atoms,
    stages: Sequence[dict[str, Any]],
    observer: Observer,
    *,
    seed: int = 0,
    frame_interval: int = 100,
    on_frame: Callable[[Atoms], None] | None = None,
) -> StageRun:
    """Run normalized ``stages`` in order on ``atoms`` (which carries its calculator)."""
    run = StageRun()
    recorder = _Recorder(run, on_frame)
    total = sum(stage_work(s) for s in stages)
    offset = 0
    timed_ms: list[tuple[float, int]] = []
    previous: str | None = None
    for index, stage in enumerate(stages):
        label = f"{index}:{stage['type']}"
        observer.log(
            f"stage {index + 1}/{len(stages)}: {stage['type']} ({stage['steps']} steps)",
            stage=label,
        )
        start_fs = recorder.time_fs
        if index == 0:
            recorder.snapshot(atoms, 0, stage["type"], 0)
        if stage["type"] == "relax":
            summary = _run_relax(atoms, stage, observer, label, offset, total)
            recorder.snapshot(atoms, index, "relax", summary["steps_done"])
            if index == 0:
                run.after_relax = run.frames[-1].copy()
        else:
            if previous not in ("nvt", "npt") or stage.get("redraw_velocities"):
                _init_velocities(atoms, stage["temperature"], [seed, index, 0])
            summary = _run_md(
                atoms, stage, observer, label, index, offset, total, recorder, frame_interval, seed
            )
        summary["start_time_ps"] = start_fs / 1000.0
        summary["end_time_ps"] = recorder.time_fs / 1000.0
        if summary.get("avg_step_time_ms") is not None:
            timed_ms.append((summary["avg_step_time_ms"], summary["steps_done"]))
        run.stages.append({"index": index, **stage, **summary})
        offset += stage_work(stage)
        previous = stage["type"]
    steps = sum(n for _, n in timed_ms)
    if steps:
        run.avg_step_time_ms = sum(ms * n for ms, n in timed_ms) / steps
    return run


def _init_velocities(atoms: Atoms, temperature: float, seed: list[int]) -> None:
    import numpy as np
    from ase.md.velocitydistribution import Stationary, ZeroRotation, thermalize_momenta

    # thermalize_momenta is ASE 3.29's name for MaxwellBoltzmannDistribution.
    thermalize_momenta(atoms, temperature, rng=np.random.default_rng(seed))
    Stationary(atoms)
    with warnings.catch_warnings():
        # ASE warns that the inertia tensor ignores periodicity; the benchmark removes the
        # rotation of the cell contents all the same, so we do too.
        warnings.filterwarnings("ignore", message="Periodic boundary conditions are ignored")
        ZeroRotation(atoms)


def relax_structure(
    atoms: Atoms,
    observer: Observer,
    *,
    fmax: float,
    steps: int,
    optimizer: str = "LBFGS",
    relax_cell: bool = False,
    label: str = "relax",
    step_offset: int = 0,
    fraction_range: tuple[float, float] = (0.0, 1.0),
) -> dict[str, Any]:
    """Relax ``atoms`` in place (positions; with ``relax_cell`` also the cell through
    ``FrechetCellFilter``) and summarize.  ``final_fmax`` is what the optimizer converged
    on, cell degrees of freedom included.  Shared by the stability, bulk-modulus and
    heat-capacity tasks."""
    from ase.filters import FrechetCellFilter
    from ase.optimize import BFGS, FIRE, LBFGS

    from executors.observers import attach_optimizer_observer, optimizer_fmax

    optimizer_cls = {"LBFGS": LBFGS, "BFGS": BFGS, "FIRE": FIRE}[optimizer]
    target: Any = FrechetCellFilter(atoms) if relax_cell else atoms
    opt = optimizer_cls(target, logfile=None)
    monitor = attach_optimizer_observer(
        opt,
        atoms,
        observer,
        max_steps=max(steps, 1),
        stage=label,
        step_offset=step_offset,
        fraction_range=fraction_range,
    )
    e0 = float(atoms.get_potential_energy())
    v0 = float(atoms.get_volume()) if atoms.cell.rank == 3 else None
    converged = bool(opt.run(fmax=fmax, steps=steps))
    monitor.finish(fraction_range[1])
    v1 = float(atoms.get_volume()) if atoms.cell.rank == 3 else None
    return {
        "converged": converged,
        "steps_done": int(opt.nsteps),
        "initial_energy": e0,
        "final_energy": float(atoms.get_potential_energy()),
        "final_fmax": optimizer_fmax(opt),
        "initial_volume": v0,
        "final_volume": v1,
        "avg_step_time_ms": monitor.timer.avg_ms,
    }


def _run_relax(
    atoms: Atoms, stage: dict[str, Any], observer: Observer, label: str, offset: int, total: int
) -> dict[str, Any]:
    atoms.set_momenta(None)  # a relaxed structure is a 0 K structure
    work = stage_work(stage)
    out = relax_structure(
        atoms,
        observer,
        fmax=stage["fmax"],
        steps=stage["steps"],
        optimizer=stage["optimizer"],
        label=label,
        step_offset=offset,
        fraction_range=(offset / total, (offset + work) / total),
    )
    for key in ("initial_volume", "final_volume"):
        out.pop(key)
    return out


def _make_dynamics(atoms: Atoms, stage: dict[str, Any], seed: list[int]) -> Any:
    import numpy as np
    from ase import units

    dt = stage["timestep_fs"] * units.fs
    if stage["type"] == "nvt":
        from ase.md.langevin import Langevin

        return Langevin(
            atoms,
            timestep=dt,
            temperature_K=stage["temperature"],
            friction=stage["friction"] / units.fs,
            fixcm=False,
            rng=np.random.default_rng(seed),
            logfile=None,
        )
    from ase.md.nose_hoover_chain import IsotropicMTKNPT

    return IsotropicMTKNPT(
        atoms,
        timestep=dt,
        temperature_K=stage["temperature"],
        pressure_au=stage["pressure_bar"] * units.bar,
        tdamp=stage["tdamp_fs"] * units.fs,
        pdamp=stage["pdamp_fs"] * units.fs,
        logfile=None,
    )


def _run_md(
    atoms: Atoms,
    stage: dict[str, Any],
    observer: Observer,
    label: str,
    index: int,
    offset: int,
    total: int,
    recorder: _Recorder,
    frame_interval: int,
    seed: int,
) -> dict[str, Any]:
    from ase.constraints import FixCom

    from executors.observers import attach_md_observer

    kept = list(atoms.constraints)
    if stage["type"] == "nvt":
        atoms.set_constraint([*kept, FixCom()])
    try:
        # The Langevin noise gets its own stream, distinct from the velocity draw's.
        dyn = _make_dynamics(atoms, stage, seed=[seed, index, 1])
        monitor = attach_md_observer(
            dyn, atoms, observer, total_steps=total, stage=label, step_offset=offset
        )
        temperatures = RunningStats()
        volumes = RunningStats()
        drift, drift_pot = RunningSlope(), RunningSlope()
        t_start = recorder.time_fs
        # MTK NPT has a conserved extended energy; Langevin exchanges energy with its bath,
        # so there the total energy's drift only tells whether the run had settled.
        conserved = getattr(dyn, "get_conserved_energy", None)

        def record() -> None:
            step = int(dyn.nsteps)
            if step == 0:
                return  # the state the previous stage ended in, already recorded
            recorder.time_fs = t_start + step * stage["timestep_fs"]
            t_ps = recorder.time_fs / 1000.0
            epot = float(atoms.get_potential_energy())
            _check_finite(atoms, epot, label, step, stage["steps"])
            e_cons = (
                float(conserved())
                if conserved is not None
                else epot + float(atoms.get_kinetic_energy())
            )
            drift.add(t_ps, e_cons)
            drift_pot.add(t_ps, epot)
            temperatures.add(float(atoms.get_temperature()))
            if atoms.cell.rank == 3:
                volumes.add(float(atoms.get_volume()))
            if step % frame_interval == 0 or step == stage["steps"]:
                recorder.snapshot(
                    atoms, index, stage["type"], step, e_cons if conserved is not None else None
                )

        dyn.attach(record, interval=1)
        try:
            dyn.run(stage["steps"])
        except TaskDiverged:
            raise
        except Exception as exc:
            # A cell or positions gone to NaN or infinity crash the next force call
            # (ASE's neighbour list: "cannot convert float NaN to integer") before any
            # observer sees the step: that is a diverged run, not a bug.
            _check_finite(atoms, None, label, int(dyn.nsteps) + 1, stage["steps"], cause=exc)
            raise
        monitor.finish()
    finally:
        atoms.set_constraint(kept)
    return {
        "steps_done": int(dyn.nsteps),
        "duration_ps": dyn.nsteps * stage["timestep_fs"] / 1000.0,
        "temperature_mean": temperatures.mean,
        "temperature_std": temperatures.std,
        "volume_mean": volumes.mean,
        "volume_std": volumes.std,
        "energy_drift_quantity": "total_energy" if conserved is None else "conserved_energy",
        "energy_drift_meV_per_atom_per_ps": _mev_per_atom(drift.slope, len(atoms)),
        "potential_energy_drift_meV_per_atom_per_ps": _mev_per_atom(drift_pot.slope, len(atoms)),
        "avg_step_time_ms": monitor.timer.avg_ms,
    }


def _check_finite(
    atoms: Atoms,
    energy: float | None,
    label: str,
    step: int,
    steps: int,
    cause: BaseException | None = None,
) -> None:
    """Raise ``TaskDiverged`` naming the stage and step when the energy, positions,
    cell or momenta are no longer finite numbers."""
    import numpy as np

    bad = [
        name
        for name, values in (
            ("energy", [] if energy is None else [energy]),
            ("positions", atoms.positions),
            ("cell", atoms.cell.array),
            ("velocities", atoms.get_momenta()),
        )
        if not np.all(np.isfinite(values))
    ]
    if not bad:
        return
    what = ", ".join(bad)
    err = TaskDiverged(
        f"MD diverged in stage {label} at step {step} of {steps}: "
        f"the {what} became NaN or infinite",
        detail="the structure or the model produced an unphysical trajectory",
    )
    if cause is not None:
        raise err from cause
    raise err


def _mev_per_atom(slope_ev_per_ps: float | None, n_atoms: int) -> float | None:
    return None if slope_ev_per_ps is None else 1000.0 * slope_ev_per_ps / max(n_atoms, 1)
