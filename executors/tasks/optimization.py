"""optimization: relax atomic positions (and optionally the cell) with an ASE optimizer.

Defaults follow the MIRA API (BFGS, fmax 0.05 eV/A, 500 steps, fixed cell);
``"protocol": "mofsimbench"`` gives the benchmark's values (LBFGS, fmax 1e-3 eV/A,
5000 steps, full cell relaxation through ``FrechetCellFilter``).  Reaching
``max_steps`` without converging is a result (``converged: false``), not an error;
an energy beyond 1e5 eV aborts the run as diverged.

Outputs in the workspace: ``optimized.cif`` (``optimized.xyz`` for a non-periodic
structure) and ``trajectory.traj`` (every ``trajectory_interval`` steps plus the last).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from executors.api import json_safe
from executors.params import Param, ParamSchema
from executors.task_types import TaskType
from spool.errors import ValidationError

if TYPE_CHECKING:
    from ase import Atoms

    from executors.api import Observer, TaskContext

OPTIMIZERS = ("BFGS", "LBFGS", "FIRE")

TASK = TaskType(
    name="optimization",
    summary="Relax atomic positions, and optionally the cell",
    mira_result_aliases={
        "initial_energy": "initial_energy_eV",
        "final_energy": "final_energy_eV",
        "energy_change": "energy_change_eV",
        "num_steps": "steps",
        "initial_volume": "initial_volume_A3",
        "final_volume": "final_volume_A3",
        "rmsd": "rmsd_from_initial",
    },
    key_metrics=(
        "final_energy",
        "converged",
        "num_steps",
        "final_fmax",
        "volume_change_percent",
    ),
    mira_capabilities=("optimization",),
)

SCHEMA = ParamSchema(
    [
        Param(
            "fmax",
            float,
            0.05,
            min=0.0,
            exclusive_min=True,
            doc="convergence criterion: maximum force (eV/A), cell forces included",
        ),
        Param(
            "max_steps",
            int,
            500,
            min=0,
            aliases=("steps",),
            doc="maximum number of optimizer steps",
        ),
        Param("optimizer", str, "BFGS", choices=OPTIMIZERS, doc="ASE optimizer"),
        Param(
            "relax_cell",
            bool,
            False,
            aliases=("use_filter",),
            doc="relax the cell too (FrechetCellFilter, all six strain components)",
        ),
        Param(
            "trajectory_interval",
            int,
            1,
            min=1,
            doc="write a trajectory frame every this many steps (the last is always written)",
        ),
    ]
)

PRESETS: dict[str, dict[str, Any]] = {
    "mofsimbench": {"optimizer": "LBFGS", "fmax": 1e-3, "max_steps": 5000, "relax_cell": True},
}

STRUCTURE_FILE = "optimized.cif"
STRUCTURE_FILE_NONPERIODIC = "optimized.xyz"
TRAJECTORY_FILE = "trajectory.traj"


def validate(parameters: dict[str, Any]) -> dict[str, Any]:
    """Normalize optimization parameters (MIRA names ``use_filter``/``enable_d3`` accepted)."""
    return SCHEMA.validate(parameters, PRESETS)


def optimizer_class(name: str) -> Any:
    """The ASE optimizer class for a (case-insensitive) name in ``OPTIMIZERS``."""
    from ase.optimize import BFGS, FIRE, LBFGS

    classes = {"BFGS": BFGS, "LBFGS": LBFGS, "FIRE": FIRE}
    try:
        return classes[name.upper()]
    except KeyError:
        raise ValidationError(
            f"optimizer must be one of {', '.join(OPTIMIZERS)}; got {name!r}",
            field="parameters.optimizer",
        ) from None


def relax(
    atoms: Atoms,
    observer: Observer,
    *,
    fmax: float,
    max_steps: int,
    optimizer: str = "BFGS",
    relax_cell: bool = False,
    trajectory: str | Path | None = None,
    trajectory_interval: int = 1,
    stage: str | None = None,
    fraction_range: tuple[float, float] = (0.0, 1.0),
) -> dict[str, Any]:
    """Relax ``atoms`` in place (its calculator attached) and report through ``observer``.

    Reusable by other tasks (a stage of stability, bulk-modulus, heat-capacity).  Returns
    ``{converged, steps, final_fmax, avg_step_time_ms}``; cancellation and divergence
    propagate as ``TaskCancelled`` / ``TaskDiverged``.
    """
    from ase.filters import FrechetCellFilter
    from ase.io import Trajectory

    from executors.observers import attach_optimizer_observer, optimizer_fmax

    if relax_cell and not (atoms.pbc.all() and atoms.cell.rank == 3):
        raise ValidationError(
            "relax_cell needs a structure periodic in all three directions",
            field="parameters.relax_cell",
        )
    target: Any = FrechetCellFilter(atoms) if relax_cell else atoms
    opt = optimizer_class(optimizer)(target, logfile=None)
    traj = Trajectory(str(trajectory), "w", atoms) if trajectory is not None else None
    if traj is not None:
        opt.attach(traj.write, interval=trajectory_interval)
    monitor = attach_optimizer_observer(
        opt, atoms, observer, max_steps=max_steps, stage=stage, fraction_range=fraction_range
    )
    try:
        converged = bool(opt.run(fmax=fmax, steps=max_steps))
        if traj is not None and opt.nsteps % trajectory_interval != 0:
            traj.write()
    finally:
        if traj is not None:
            traj.close()
    monitor.finish(fraction_range[1] if converged else None)
    return {
        "converged": converged,
        "steps": int(opt.nsteps),
        "final_fmax": optimizer_fmax(opt),
        "avg_step_time_ms": monitor.timer.avg_ms,
    }


def run(ctx: TaskContext) -> dict[str, Any]:
    """Optimize ``ctx.atoms``; write the optimized structure and trajectory."""
    from ase.io import write

    from executors.bench_geometry import position_rmsd
    from executors.geometry import cell_parameters, rmsd_min_image, volume_change_percent

    params = validate(ctx.parameters)
    atoms = ctx.atoms.copy()
    atoms.calc = ctx.calculator
    initial = ctx.atoms.copy()
    periodic = bool(atoms.pbc.all()) and atoms.cell.rank == 3
    ctx.observer.check_cancel()
    initial_energy = float(atoms.get_potential_energy())
    initial_volume = float(atoms.get_volume()) if periodic else None
    cell_mode = "on" if params["relax_cell"] else "off"
    ctx.observer.log(
        f"{params['optimizer']} optimization of {len(atoms)} atoms, fmax {params['fmax']}, "
        f"max {params['max_steps']} steps, cell relaxation {cell_mode}"
    )
    workspace = Path(ctx.workspace)
    workspace.mkdir(parents=True, exist_ok=True)
    summary = relax(
        atoms,
        ctx.observer,
        fmax=params["fmax"],
        max_steps=params["max_steps"],
        optimizer=params["optimizer"],
        relax_cell=params["relax_cell"],
        trajectory=workspace / TRAJECTORY_FILE,
        trajectory_interval=params["trajectory_interval"],
    )
    final_energy = float(atoms.get_potential_energy())
    structure_file = STRUCTURE_FILE if periodic else STRUCTURE_FILE_NONPERIODIC
    out = atoms.copy()  # without the calculator, so no results are written as tags
    write(workspace / structure_file, out)
    final_volume = float(atoms.get_volume()) if periodic else None
    if not summary["converged"]:
        ctx.observer.log(
            f"not converged after {summary['steps']} steps "
            f"(fmax {summary['final_fmax']:.4g} > {params['fmax']})",
            "WARNING",
        )
    result: dict[str, Any] = {
        **summary,
        "initial_energy_eV": initial_energy,
        "final_energy_eV": final_energy,
        "energy_change_eV": final_energy - initial_energy,
        "final_energy_per_atom_eV": final_energy / len(atoms),
        "initial_volume_A3": initial_volume,
        "final_volume_A3": final_volume,
        "volume_change_percent": (
            volume_change_percent(initial_volume, final_volume)
            if initial_volume and final_volume
            else None
        ),
        "cell_parameters": cell_parameters(atoms) if periodic else None,
        "rmsd_from_initial": rmsd_min_image(initial, atoms),
        # MOFSimBench's measure: Cartesian, minimum image, translation removed, over 3N.
        "rmsd_cartesian_A": position_rmsd(initial, atoms),
        "natoms": len(atoms),
        "formula": atoms.get_chemical_formula(),
        "output_files": {"optimized_structure": structure_file, "trajectory": TRAJECTORY_FILE},
        "parameters_used": params,
    }
    return json_safe(result)  # type: ignore[no-any-return]
