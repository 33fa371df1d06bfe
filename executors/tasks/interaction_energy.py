"""interaction-energy: E_int = E(complex) - E(framework) - E(guest), single points only.

The framework keeps exactly its geometry in the complex; the guest is the isolated
molecule (non-periodic, no cell) in its geometry from the complex.  Two ways in:

- a complex (the job's structure) plus the guest atoms, as ``guest_indices`` or as a
  ``guest_tag`` (atoms whose ASE tag equals it);
- a framework (the job's structure) plus a ``gas`` name, placed with its centre of mass
  at ``position`` (Cartesian, A) or ``position_fractional``; with neither, at the point
  of the cell farthest from every framework atom (the largest void).

Nothing is relaxed.  The complex is written as ``complex.cif`` (``complex.xyz`` when not
periodic).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from executors.api import json_safe
from executors.params import Param, ParamSchema, require_one_of
from executors.task_types import TaskType
from spool.errors import TaskDiverged, ValidationError

if TYPE_CHECKING:
    from ase import Atoms

    from executors.api import TaskContext

# Gas name -> name in ase.build.molecule (None: a single atom of that element).
GASES: dict[str, str | None] = {
    "CO2": "CO2",
    "H2O": "H2O",
    "N2": "N2",
    "CH4": "CH4",
    "H2": "H2",
    "O2": "O2",
    "CO": "CO",
    "NH3": "NH3",
    "H2S": "SH2",
    "SO2": "SO2",
    "NO": "NO",
    "NO2": "NO2",
    "N2O": "N2O",
    "HCN": "HCN",
    "Cl2": "Cl2",
    "C2H2": "C2H2",
    "C2H4": "C2H4",
    "C2H6": "C2H6",
    "C3H8": "C3H8",
    "CH3OH": "CH3OH",
    "C6H6": "C6H6",
    "He": None,
    "Ne": None,
    "Ar": None,
    "Kr": None,
    "Xe": None,
}

TASK = TaskType(
    name="interaction-energy",
    summary="Host-guest interaction energy from three single points",
    mira_result_aliases={"interaction_energy": "interaction_energy_eV"},
    key_metrics=("interaction_energy_eV", "interaction_energy_kJ_mol"),
)

SCHEMA = ParamSchema(
    [
        Param(
            "guest_indices",
            list,
            None,
            item_type=int,
            min=0,
            min_length=1,
            doc="indices of the guest atoms in the complex (0-based)",
        ),
        Param("guest_tag", int, None, doc="the guest is every atom with this ASE tag"),
        Param(
            "gas",
            str,
            None,
            choices=tuple(GASES),
            doc="guest molecule to insert into the framework (with position)",
        ),
        Param(
            "position",
            list,
            None,
            item_type=float,
            length=3,
            doc="Cartesian position (A) of the guest's centre of mass",
        ),
        Param(
            "position_fractional",
            list,
            None,
            item_type=float,
            length=3,
            doc="fractional position of the guest's centre of mass (default with gas and no "
            "position: the centre of the largest void)",
        ),
    ]
)

PRESETS: dict[str, dict[str, Any]] = {"mofsimbench": {}}

COMPLEX_FILE = "complex.cif"
COMPLEX_FILE_NONPERIODIC = "complex.xyz"
CLOSE_CONTACT_A = 1.0  # a guest this close to the framework is almost surely misplaced


def validate(parameters: dict[str, Any]) -> dict[str, Any]:
    """Normalize; exactly one guest source (``guest_indices``, ``guest_tag`` or ``gas``),
    and with ``gas`` at most one of ``position`` / ``position_fractional``."""
    params = SCHEMA.validate(parameters, PRESETS)
    source = require_one_of(params, ("guest_indices", "guest_tag", "gas"))
    if source == "gas":
        if "position" in params and "position_fractional" in params:
            raise ValidationError(
                "give position or position_fractional, not both",
                field="parameters.position_fractional",
            )
    else:
        for key in ("position", "position_fractional"):
            if key in params:
                raise ValidationError(
                    f"{key} only applies together with gas", field=f"parameters.{key}"
                )
    if source == "guest_indices" and len(set(params["guest_indices"])) != len(
        params["guest_indices"]
    ):
        raise ValidationError("guest_indices contains duplicates", field="parameters.guest_indices")
    return params


def build_gas(name: str) -> Atoms:
    """The isolated gas molecule (non-periodic, no cell) for a name in ``GASES``."""
    from ase import Atoms
    from ase.build import molecule

    key = next((g for g in GASES if g.lower() == name.lower()), None)
    if key is None:
        raise ValidationError(
            f"unknown gas {name!r}; known: {', '.join(GASES)}", field="parameters.gas"
        )
    ase_name = GASES[key]
    mol = Atoms(key) if ase_name is None else molecule(ase_name)
    mol.pbc = False
    mol.cell = None
    return mol


def insert_guest(framework: Atoms, guest: Atoms, com: Any) -> tuple[Atoms, list[int]]:
    """Framework plus ``guest`` translated so its centre of mass is at ``com`` (Cartesian);
    returns the complex and the guest's indices in it."""
    import numpy as np

    placed = guest.copy()
    placed.translate(np.asarray(com, dtype=float) - placed.get_center_of_mass())
    placed.cell = framework.cell
    placed.pbc = framework.pbc
    complex_ = framework.copy()
    complex_.calc = None
    complex_.extend(placed)
    return complex_, list(range(len(framework), len(complex_)))


def isolate(atoms: Atoms, indices: list[int]) -> Atoms:
    """The atoms at ``indices`` as a non-periodic molecule, made whole first (a guest may
    straddle a periodic boundary in the complex)."""
    from ase.geometry import find_mic

    mol = atoms[indices]
    if atoms.cell.rank == 3 and atoms.pbc.any():
        vectors, _ = find_mic(mol.positions - mol.positions[0], atoms.cell, atoms.pbc)
        mol.positions = mol.positions[0] + vectors
    mol.pbc = False
    mol.cell = None
    mol.calc = None
    return mol


def resolve_guest(ctx_atoms: Atoms, params: dict[str, Any]) -> tuple[Atoms, list[int]]:
    """The complex and the guest indices from validated parameters (run-time checks)."""
    import numpy as np

    from executors.geometry import largest_void_point

    n = len(ctx_atoms)
    if "gas" in params:
        if "position" in params:
            com = np.asarray(params["position"])
        else:
            if ctx_atoms.cell.rank < 3:
                raise ValidationError(
                    "a framework without a 3D cell needs the guest's Cartesian position",
                    field="parameters.position_fractional"
                    if "position_fractional" in params
                    else "parameters.position",
                )
            if "position_fractional" in params:
                com = np.asarray(params["position_fractional"]) @ ctx_atoms.cell.array
            else:
                com, _ = largest_void_point(ctx_atoms)
        return insert_guest(ctx_atoms, build_gas(params["gas"]), com)
    if "guest_tag" in params:
        indices = [int(i) for i in np.flatnonzero(ctx_atoms.get_tags() == params["guest_tag"])]
        field = "parameters.guest_tag"
        if not indices:
            raise ValidationError(f"no atom has tag {params['guest_tag']}", field=field)
    else:
        indices = list(params["guest_indices"])
        field = "parameters.guest_indices"
        bad = [i for i in indices if not 0 <= i < n]
        if bad:
            raise ValidationError(
                f"guest_indices out of range for {n} atoms: {bad[:10]}", field=field
            )
    if not indices:
        raise ValidationError("the guest has no atoms", field=field)
    if len(indices) >= n:
        raise ValidationError("the guest cannot be the whole structure", field=field)
    complex_ = ctx_atoms.copy()
    complex_.calc = None
    return complex_, sorted(indices)


def check_structure(params: dict[str, Any], atoms: Atoms) -> None:
    """Submission-time check that the guest selection fits this structure."""
    if "gas" not in params:
        resolve_guest(atoms, params)


def _energy(atoms: Atoms, calc: Any, what: str) -> tuple[float, Any]:
    import math

    atoms.calc = calc
    energy = float(atoms.get_potential_energy())
    if not math.isfinite(energy):
        raise TaskDiverged(f"non-finite energy for the {what}")
    forces = atoms.get_forces().copy()
    atoms.calc = None
    return energy, forces


def run(ctx: TaskContext) -> dict[str, Any]:
    """Three single points (complex, framework alone, isolated guest) and E_int."""
    import numpy as np
    from ase import units
    from ase.io import write

    from executors.geometry import min_distance_between

    params = validate(ctx.parameters)
    complex_, guest_idx = resolve_guest(ctx.atoms, params)
    guest_set = set(guest_idx)
    host_idx = [i for i in range(len(complex_)) if i not in guest_set]
    framework = complex_[host_idx]
    guest = isolate(complex_, guest_idx)
    min_dist = min_distance_between(complex_, host_idx, guest_idx)
    if min_dist < CLOSE_CONTACT_A:
        ctx.observer.log(
            f"guest is {min_dist:.2f} A from the framework: a close contact", "WARNING"
        )

    energies: dict[str, float] = {}
    forces_complex = None
    for k, (name, system) in enumerate(
        (("complex", complex_), ("framework", framework), ("guest", guest))
    ):
        ctx.observer.check_cancel()
        ctx.observer.progress(k / 3, f"single point: {name} ({len(system)} atoms)")
        energies[name], forces = _energy(system, ctx.calculator, name)
        if name == "complex":
            forces_complex = forces
    assert forces_complex is not None
    e_int = energies["complex"] - energies["framework"] - energies["guest"]
    ctx.observer.progress(1.0, "done", energy=e_int)

    workspace = Path(ctx.workspace)
    workspace.mkdir(parents=True, exist_ok=True)
    periodic = bool(complex_.pbc.all()) and complex_.cell.rank == 3
    complex_file = COMPLEX_FILE if periodic else COMPLEX_FILE_NONPERIODIC
    write(workspace / complex_file, complex_)
    guest_forces = np.asarray(forces_complex)[guest_idx]
    result: dict[str, Any] = {
        "interaction_energy_eV": e_int,
        "interaction_energy_kJ_mol": e_int * units.mol / units.kJ,
        "complex_energy_eV": energies["complex"],
        "framework_energy_eV": energies["framework"],
        "guest_energy_eV": energies["guest"],
        "guest_indices": guest_idx,
        "guest_formula": guest.get_chemical_formula(),
        "guest_forces_eV_A": guest_forces.tolist(),
        "guest_net_force_eV_A": guest_forces.sum(axis=0).tolist(),
        "min_guest_framework_distance_A": min_dist,
        "guest_center_of_mass_A": guest.get_center_of_mass().tolist(),
        "natoms_complex": len(complex_),
        "output_files": {"complex_structure": complex_file},
        "parameters_used": params,
    }
    return json_safe(result)  # type: ignore[no-any-return]
