"""single-point-energy: energy, forces and (for periodic cells) stress of one structure.

The cheapest task and the unit of the throughput benchmark.  Stress is reported in Voigt
order (xx, yy, zz, yz, xz, xy) in eV/A^3 and GPa with ASE's sign convention (positive =
tensile); pressure is -trace/3.  Non-periodic structures get no stress.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from executors.api import json_safe
from executors.params import Param, ParamSchema
from executors.task_types import TaskType
from spool.errors import TaskDiverged

if TYPE_CHECKING:
    from ase import Atoms

    from executors.api import TaskContext

TASK = TaskType(
    name="single-point-energy",
    summary="Energy, forces and stress of one structure",
    aliases=("single-point", "singlepoint"),
    mira_result_aliases={
        "energy": "energy_eV",
        "forces": "forces_eV_A",
        "max_force": "max_force_eV_A",
    },
    key_metrics=("energy", "max_force", "energy_per_atom_eV"),
    mira_capabilities=("energy", "forces", "stress"),
)

SCHEMA = ParamSchema(
    [
        Param(
            "compute_stress",
            bool,
            True,
            doc="compute the stress tensor and pressure (periodic structures only)",
        ),
    ]
)

# The benchmark has no single-point protocol of its own: it is the defaults.
PRESETS: dict[str, dict[str, Any]] = {"mofsimbench": {}}


def validate(parameters: dict[str, Any]) -> dict[str, Any]:
    """Normalize single-point parameters (common parameters plus ``compute_stress``)."""
    return SCHEMA.validate(parameters, PRESETS)


def is_periodic(atoms: Atoms) -> bool:
    """True when all three directions are periodic with a full-rank cell."""
    return bool(atoms.pbc.all()) and atoms.cell.rank == 3


def evaluate(atoms: Atoms, *, compute_stress: bool = True) -> dict[str, Any]:
    """Energy, forces and stress of ``atoms`` with its attached calculator.

    Returns JSON-safe values; the stress keys are present only for periodic structures
    with ``compute_stress`` and a calculator that implements stress.
    """
    import numpy as np
    from ase import units
    from ase.calculators.calculator import PropertyNotImplementedError

    energy = float(atoms.get_potential_energy())
    if not math.isfinite(energy):
        raise TaskDiverged(f"the model returned a non-finite energy ({energy})")
    forces = np.asarray(atoms.get_forces())
    n = len(atoms)
    out: dict[str, Any] = {
        "energy_eV": energy,
        "energy_per_atom_eV": energy / n if n else None,
        "forces_eV_A": forces.tolist(),
        "max_force_eV_A": float(np.linalg.norm(forces, axis=1).max()) if n else 0.0,
        "natoms": n,
        "formula": atoms.get_chemical_formula(),
        "periodic": is_periodic(atoms),
    }
    if out["periodic"]:
        out["volume_A3"] = float(atoms.get_volume())
        if compute_stress:
            try:
                stress = np.asarray(atoms.get_stress(voigt=True))
            except PropertyNotImplementedError:
                out["stress_note"] = "the calculator does not implement stress"
            else:
                out["stress_voigt_eV_A3"] = stress.tolist()
                out["stress_voigt_GPa"] = (stress / units.GPa).tolist()
                out["pressure_GPa"] = float(-stress[:3].mean() / units.GPa)
    return json_safe(out)  # type: ignore[no-any-return]


def run(ctx: TaskContext) -> dict[str, Any]:
    """Compute one single point on ``ctx.atoms`` with ``ctx.calculator``."""
    params = validate(ctx.parameters)
    atoms = ctx.atoms.copy()
    atoms.calc = ctx.calculator
    ctx.observer.check_cancel()
    ctx.observer.progress(0.0, "computing energy, forces and stress")
    result = evaluate(atoms, compute_stress=params["compute_stress"])
    ctx.observer.progress(1.0, "done", energy=result["energy_eV"], fmax=result["max_force_eV_A"])
    result["parameters_used"] = params
    return json_safe(result)  # type: ignore[no-any-return]
