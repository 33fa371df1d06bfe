"""Staged molecular dynamics: stage specifications and the runner that drives them.

A stage is a plain dict with a ``type`` (``relax``, ``nvt`` or ``npt``) and its knobs;
``normalize_stages`` fills in what a stage leaves out and checks every number, naming the
offending stage in the error field (``parameters.stages[2].steps``).  What is filled in
depends on the job's ``protocol``, as everywhere else in the service:

- ``default``: the seed API's values for the MD knobs it names (NVT 5000 steps, NPT
  10 000 steps at 1.01325 bar, 300 K, 1 fs), the benchmark's for the rest;
- ``mofsimbench``: the MOFSimBench protocol's: NVT 1000 steps, NPT 50 000 steps at
  1 bar.

Both share the relaxation (LBFGS, fmax 1e-3 eV/A, at most 1000 steps), the Langevin
friction (0.01 /fs) and the NPT dampings (tdamp 100 fs, pdamp 1000 fs).

``run_stages`` runs the stages one after another on the same ``Atoms``:

- ``relax``: fixed-cell optimization (LBFGS by default); momenta are zeroed first, since
  a relaxed structure is a 0 K structure.
- ``nvt``: ASE ``Langevin`` with the centre of mass held by ``FixCom`` (the integrator's
  own ``fixcm`` is deprecated in ASE).
- ``npt``: ASE ``IsotropicMTKNPT`` (Nose-Hoover chains for particles and cell).

Velocities are drawn from Maxwell-Boltzmann (seeded), then ``Stationary`` and
``ZeroRotation`` are applied, whenever an MD stage does not follow another MD stage.
A frame is recorded at the very start, every ``frame_interval`` steps of each MD stage,
and at the end of every stage; each frame carries its stage in ``atoms.info``.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from executors.md_metrics import RunningSlope, RunningStats
from executors.params import Param, ParamSchema
from spool.errors import ValidationError

if TYPE_CHECKING:
    from ase import Atoms

    from executors.api import Observer

STAGE_TYPES = ("relax", "nvt", "npt")
_TYPE_ALIASES = {
    "opt": "relax",
    "optimize": "relax",
    "optimization": "relax",
    "relaxation": "relax",
    "minimize": "relax",
}
MAX_STAGE_STEPS = 10_000_000

_STEPS = ("total_steps", "nsteps")
_T = ("temperature_K", "temp")
_DT = ("timestep", "dt")
STAGE_SCHEMAS: dict[str, ParamSchema] = {
    "relax": ParamSchema(
        [
            Param(
                "steps",
                int,
                1000,
                min=0,
                max=MAX_STAGE_STEPS,
                aliases=(*_STEPS, "max_steps"),
                doc="most optimizer steps",
            ),
            Param("fmax", float, 1e-3, min=0.0, exclusive_min=True, doc="force criterion, eV/A"),
            Param("optimizer", str, "LBFGS", choices=("LBFGS", "BFGS", "FIRE")),
        ],
        include_common=False,
    ),
    "nvt": ParamSchema(
        [
            Param("steps", int, 5000, min=1, max=MAX_STAGE_STEPS, aliases=_STEPS),
            Param(
                "temperature",
                float,
                300.0,
                min=0.0,
                exclusive_min=True,
                max=1e5,
                aliases=_T,
                doc="K",
            ),
            Param("timestep_fs", float, 1.0, min=0.0, exclusive_min=True, max=20.0, aliases=_DT),
            Param("friction", float, 0.01, min=0.0, max=10.0, doc="Langevin friction, 1/fs"),
        ],
        include_common=False,
    ),
    "npt": ParamSchema(
        [
            Param("steps", int, 10_000, min=1, max=MAX_STAGE_STEPS, aliases=_STEPS),
            Param(
                "temperature",
                float,
                300.0,
                min=0.0,
                exclusive_min=True,
                max=1e5,
                aliases=_T,
                doc="K",
            ),
            Param("pressure_bar", float, 1.01325, min=-1e6, max=1e7, aliases=("pressure",)),
            Param("timestep_fs", float, 1.0, min=0.0, exclusive_min=True, max=20.0, aliases=_DT),
            Param("tdamp_fs", float, 100.0, min=0.0, exclusive_min=True, aliases=("tdamp",)),
            Param("pdamp_fs", float, 1000.0, min=0.0, exclusive_min=True, aliases=("pdamp",)),
        ],
        include_common=False,
    ),
}


# Per protocol, the values that differ from the schemas' defaults above.
STAGE_PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    "default": {},
    "mofsimbench": {"nvt": {"steps": 1000}, "npt": {"steps": 50_000, "pressure_bar": 1.0}},
}


def stage_defaults(stage_type: str, protocol: str = "default") -> dict[str, Any]:
    return {**STAGE_SCHEMAS[stage_type].validate({}), **STAGE_PRESETS[protocol].get(stage_type, {})}


def normalize_stage(raw: Any, index: int = 0, protocol: str = "default") -> dict[str, Any]:
    """One stage with its type canonical and every knob filled in and range-checked;
    knobs the stage leaves out take ``protocol``'s values."""
    where = f"parameters.stages[{index}]"
    if not isinstance(raw, dict):
        raise ValidationError(f"stages[{index}] must be an object", field=where)
    body = dict(raw)
    kind = str(body.pop("type", "")).strip().lower()
    kind = _TYPE_ALIASES.get(kind, kind)
    if kind not in STAGE_TYPES:
        raise ValidationError(
            f"stages[{index}].type must be one of {', '.join(STAGE_TYPES)}; "
            f"got {raw.get('type')!r}",
            field=f"{where}.type",
        )
    schema = STAGE_SCHEMAS[kind]
    try:
        out = schema.validate(body)
    except ValidationError as exc:
        inner = (exc.field or "parameters").removeprefix("parameters")
        raise ValidationError(
            f"stages[{index}] ({kind}): {exc.message}", field=f"{where}{inner}"
        ) from None
    given = {schema.key_to_name.get(k) for k, v in body.items() if v is not None}
    preset = STAGE_PRESETS[protocol].get(kind, {})
    out.update({k: v for k, v in preset.items() if k not in given})
    return {"type": kind, **out}


def normalize_stages(raw: Any, protocol: str = "default") -> list[dict[str, Any]]:
    if not isinstance(raw, list | tuple) or not raw:
        raise ValidationError(
            "stages must be a non-empty list of stage objects", field="parameters.stages"
        )
    stages = [normalize_stage(s, i, protocol) for i, s in enumerate(raw)]
    if not any(s["type"] != "relax" for s in stages):
        raise ValidationError(
            "stages must contain at least one nvt or npt stage", field="parameters.stages"
        )
    return stages


def stages_json_schema() -> dict[str, Any]:
    """JSON Schema of a ``stages`` list: each item one of the three stage types."""
    variants = []
    for kind, schema in STAGE_SCHEMAS.items():
        item = schema.to_schema(f"{kind} stage")
        item["properties"]["type"] = {
            "type": "string",
            "enum": [kind, *(a for a, k in _TYPE_ALIASES.items() if k == kind)],
        }
        item["required"] = ["type"]
        if STAGE_PRESETS["mofsimbench"].get(kind):
            item["x-presets"] = {"mofsimbench": dict(STAGE_PRESETS["mofsimbench"][kind])}
        variants.append(item)
    return {
        "type": "array",
        "minItems": 1,
        "items": {"oneOf": variants},
        "description": "stages run in order; at least one nvt or npt stage; knobs left "
        "out take the job protocol's values (x-presets)",
    }


def stage_work(stage: dict[str, Any]) -> int:
    """Progress units of a stage: MD steps, or the optimizer's step budget."""
    return max(int(stage["steps"]), 1)


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
            if previous not in ("nvt", "npt"):
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
        dyn.run(stage["steps"])
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


def _mev_per_atom(slope_ev_per_ps: float | None, n_atoms: int) -> float | None:
    return None if slope_ev_per_ps is None else 1000.0 * slope_ev_per_ps / max(n_atoms, 1)
