"""heat-capacity: harmonic phonons with phonopy and the thermal properties (MOFSimBench).

1. Relax cell and positions (BFGS + FrechetCellFilter, fmax 1e-3 eV/A, at most 1000
   steps; skipped with ``pre_optimize`` false).
2. phonopy on the relaxed cell (the relaxed cell itself is phonopy's unit and primitive
   cell, so "per mol" below means per mole of that cell): ``supercell``, displacements
   of ``displacement`` A, forces for each displaced supercell ("k/n displacements"),
   ``produce_force_constants``.
3. ``run_mesh(100)`` (length-based density) and ``run_thermal_properties`` over
   ``temperature_range`` ([t_min, t_max, t_step] in K).

Defaults are the seed API's: ``supercell`` [2, 2, 2], ``displacement`` 0.01 A,
``temperature_range`` [0, 1000, 50], ``pre_optimize`` true.  ``"protocol":
"mofsimbench"`` gives the benchmark's: [1, 1, 1], 0.01 A, [0, 1000, 10].  Both relax and
sample the mesh with the benchmark's settings, which the seed does not name.

Cv is reported per mole of cells (phonopy's unit), per gram (divided by the cell's mass in
amu = g/mol) and per mole of atoms (which tends to 3R, Dulong-Petit, at high T), with
the value at ``highlight_temperature`` (300 K) picked out.  Outputs: ``heat_capacity.png``
(Cv(T) per gram, the classical limit and 300 K marked) and ``relaxed_structure.cif``.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from executors.api import json_safe
from executors.params import Param, ParamSchema
from executors.task_types import TaskType
from spool.errors import TaskDiverged, ValidationError

if TYPE_CHECKING:
    from ase import Atoms

    from executors.api import Observer, TaskContext

MAX_TEMPERATURE_POINTS = 100_001
R_J_PER_K_MOL = 8.314462618  # gas constant: 3R per mole of atoms is the classical Cv
PLOT_FILE = "heat_capacity.png"
STRUCTURE_FILE = "relaxed_structure.cif"

PRESETS: dict[str, dict[str, Any]] = {
    "mofsimbench": {
        "supercell": [1, 1, 1],
        "displacement": 0.01,
        "temperature_range": [0.0, 1000.0, 10.0],
        "mesh": 100.0,
        "pre_optimize": True,
        "optimizer": "BFGS",
        "fmax": 1e-3,
        "max_steps": 1000,
        "highlight_temperature": 300.0,
    },
}
TASK = TaskType(
    name="heat-capacity",
    summary="Heat capacity from harmonic phonons",
    periodic=True,
    mira_result_aliases={
        "heat_capacity_300K": "cv_300K_J_per_K_mol",
        "temperatures": "temperatures_K",
    },
    key_metrics=("cv_300K_J_per_K_mol", "cv_300K_J_per_K_g", "imaginary_modes_gamma"),
)

SCHEMA = ParamSchema(
    [
        Param(
            "supercell",
            list,
            [2, 2, 2],
            item_type=int,
            length=3,
            min=1,
            max=20,
            aliases=("supercell_matrix",),
            doc="supercell multiples along a, b, c (mofsimbench: [1, 1, 1])",
        ),
        Param(
            "displacement",
            float,
            0.01,
            min=0.0,
            exclusive_min=True,
            max=0.5,
            aliases=("distance",),
            doc="atomic displacement, A",
        ),
        Param(
            "temperature_range",
            list,
            [0.0, 1000.0, 50.0],
            item_type=float,
            length=3,
            min=0.0,
            doc="[t_min, t_max, t_step] in K (mofsimbench: [0, 1000, 10])",
        ),
        Param(
            "mesh",
            float,
            100.0,
            min=0.0,
            exclusive_min=True,
            doc="length-based q-point mesh density of phonopy",
        ),
        Param(
            "pre_optimize",
            bool,
            True,
            aliases=("relax_first",),
            doc="relax cell and positions first (FrechetCellFilter)",
        ),
        Param("optimizer", str, "BFGS", choices=("BFGS", "LBFGS", "FIRE")),
        Param("fmax", float, 1e-3, min=0.0, exclusive_min=True, doc="eV/A"),
        Param("max_steps", int, 1000, min=1, max=100_000),
        Param(
            "symprec", float, 1e-5, min=0.0, exclusive_min=True, doc="phonopy symmetry tolerance, A"
        ),
        Param(
            "imaginary_tolerance_thz",
            float,
            0.01,
            min=0.0,
            doc="a Gamma mode counts as imaginary below minus this frequency",
        ),
        Param("highlight_temperature", float, 300.0, min=0.0, doc="K"),
    ],
    presets=PRESETS,
)


def cell_multiplier(params: dict[str, Any]) -> tuple[int, str]:
    """Phonopy's supercell holds this many copies of the structure."""
    a, b, c = (int(n) for n in params["supercell"])
    return a * b * c, "supercell"


def validate(parameters: dict[str, Any]) -> dict[str, Any]:
    p = SCHEMA.validate(parameters, PRESETS)
    check_temperature_range(p["temperature_range"])
    return p


def check_temperature_range(trange: Sequence[float]) -> None:
    t_min, t_max, t_step = trange
    where = "parameters.temperature_range"
    if t_step <= 0:
        raise ValidationError(f"temperature_range step must be > 0, got {t_step}", field=where)
    if t_max < t_min:
        raise ValidationError(
            f"temperature_range: t_max ({t_max}) is below t_min ({t_min})", field=where
        )
    if (t_max - t_min) / t_step + 1 > MAX_TEMPERATURE_POINTS:
        raise ValidationError(
            f"temperature_range gives more than {MAX_TEMPERATURE_POINTS} temperatures", field=where
        )


def value_at(x: Sequence[float], y: Sequence[float], x0: float) -> float | None:
    """y at x0, linearly interpolated on the grid; None outside it."""
    import numpy as np

    xa = np.asarray(x, dtype=float)
    if len(xa) == 0 or not xa.min() <= x0 <= xa.max():
        return None
    return float(np.interp(x0, xa, np.asarray(y, dtype=float)))


def cv_conversions(
    cv_per_mol_cell: Sequence[float], cell_mass_amu: float, n_atoms: int
) -> dict[str, list[float]]:
    """Cv per mole of cells (J/K/mol) to per gram (J/K/g) and per mole of atoms."""
    return {
        "J_per_K_mol": [float(c) for c in cv_per_mol_cell],
        "J_per_K_g": [float(c) / cell_mass_amu for c in cv_per_mol_cell],
        "J_per_K_mol_atoms": [float(c) / n_atoms for c in cv_per_mol_cell],
    }


def gamma_mode_summary(frequencies: Sequence[float], tolerance_thz: float) -> dict[str, Any]:
    """Imaginary modes (phonopy shows them as negative frequencies) among the optical modes
    at Gamma.  The three modes closest to zero are the acoustic ones, zero by translation
    symmetry; their deviation only measures numerical noise, so they are reported apart."""
    freqs = sorted(float(f) for f in frequencies)
    by_magnitude = sorted(range(len(freqs)), key=lambda i: abs(freqs[i]))
    acoustic = set(by_magnitude[:3])
    optical = [f for i, f in enumerate(freqs) if i not in acoustic]
    return {
        "imaginary_modes_gamma": sum(1 for f in optical if f < -tolerance_thz),
        "lowest_frequency_thz": freqs[0] if freqs else None,
        "lowest_optical_frequency_thz": min(optical) if optical else None,
        "acoustic_frequencies_gamma_thz": [freqs[i] for i in sorted(acoustic)],
    }


def displacement_forces(
    phonon: Any, calculator: Any, observer: Observer, fraction_range: tuple[float, float]
) -> Any:
    """Forces on every displaced supercell, in phonopy's order, with progress."""
    import numpy as np
    from ase import Atoms

    cells = phonon.supercells_with_displacements
    lo, hi = fraction_range
    forces = []
    for k, cell in enumerate(cells):
        observer.check_cancel()
        atoms = Atoms(
            symbols=cell.symbols, cell=cell.cell, scaled_positions=cell.scaled_positions, pbc=True
        )
        atoms.calc = calculator
        f = np.asarray(atoms.get_forces(), dtype=float)
        if not np.isfinite(f).all():
            raise TaskDiverged(f"non-finite forces for displacement {k + 1}")
        forces.append(f)
        label = f"{k + 1}/{len(cells)} displacements"
        observer.progress(lo + (hi - lo) * (k + 1) / len(cells), label, stage="phonons", step=k + 1)
    return np.asarray(forces)


def phonopy_cell(atoms: Atoms) -> Any:
    from phonopy.structure.atoms import PhonopyAtoms

    return PhonopyAtoms(
        symbols=atoms.get_chemical_symbols(),
        cell=atoms.cell.array,
        scaled_positions=atoms.get_scaled_positions(),
        masses=atoms.get_masses(),
    )


def run(ctx: TaskContext) -> dict[str, Any]:
    import numpy as np
    from ase.io import write
    from phonopy import Phonopy

    from executors.md_runner import relax_structure

    p = validate(ctx.parameters)
    atoms = ctx.atoms.copy()
    atoms.calc = ctx.calculator
    if atoms.cell.rank < 3 or not atoms.pbc.all():
        from spool.errors import InvalidStructure

        raise InvalidStructure(
            "heat-capacity needs a periodic structure with a full cell", field="structure"
        )
    relaxation = None
    relax_share = 0.2 if p["pre_optimize"] else 0.0
    if p["pre_optimize"]:
        ctx.observer.log("relaxing cell and positions")
        relaxation = relax_structure(
            atoms,
            ctx.observer,
            fmax=p["fmax"],
            steps=p["max_steps"],
            optimizer=p["optimizer"],
            relax_cell=True,
            fraction_range=(0.0, relax_share),
        )
        relaxation.pop("avg_step_time_ms")
        if not relaxation["converged"]:
            ctx.observer.log(
                f"relaxation did not converge within {p['max_steps']} steps", level="WARNING"
            )
    ctx.workspace.mkdir(parents=True, exist_ok=True)
    write(str(ctx.workspace / STRUCTURE_FILE), atoms, format="cif")

    # primitive_matrix "P": the relaxed cell itself is the primitive cell ("auto" would
    # search for a smaller one and change what "per mol" means).
    phonon: Any = Phonopy(
        phonopy_cell(atoms),
        supercell_matrix=np.diag(p["supercell"]),
        primitive_matrix="P",
        symprec=p["symprec"],
    )
    phonon.generate_displacements(distance=p["displacement"])
    n_disp = len(phonon.supercells_with_displacements)
    ctx.observer.log(f"{n_disp} displaced supercells of {len(phonon.supercell)} atoms")
    t0 = time.perf_counter()
    phonon.forces = displacement_forces(phonon, ctx.calculator, ctx.observer, (relax_share, 0.95))
    ms_per_force = 1000.0 * (time.perf_counter() - t0) / max(n_disp, 1)
    phonon.produce_force_constants()
    phonon.run_mesh(p["mesh"])
    t_min, t_max, t_step = p["temperature_range"]
    with warnings.catch_warnings():
        # phonopy warns that the (zero) Gamma acoustic modes enter the sums; the benchmark
        # keeps phonopy's default, so do we.
        warnings.filterwarnings("ignore", message=".*acoustic mode", category=UserWarning)
        phonon.run_thermal_properties(t_min=t_min, t_max=t_max, t_step=t_step)
    tp = phonon.thermal_properties
    temperatures = [float(t) for t in tp.temperatures]
    mass = float(np.sum(phonon.primitive.masses))
    n_atoms = len(phonon.primitive)
    cv = cv_conversions(tp.heat_capacity, mass, n_atoms)
    phonon.run_qpoints([[0.0, 0.0, 0.0]])
    gamma = gamma_mode_summary(phonon.qpoints.frequencies[0], p["imaginary_tolerance_thz"])
    t_hi = p["highlight_temperature"]
    highlight = {key: value_at(temperatures, values, t_hi) for key, values in cv.items()}
    _plot(
        ctx.workspace / PLOT_FILE,
        temperatures,
        cv["J_per_K_g"],
        t_hi,
        highlight["J_per_K_g"],
        classical_limit=3.0 * R_J_PER_K_MOL * n_atoms / mass,
        who=f"{ctx.structure_name} · {ctx.model_key}",
    )
    result = {
        "temperatures_K": temperatures,
        "heat_capacity": cv,
        "cv_J_per_K_mol": cv["J_per_K_mol"],
        "cv_J_per_K_g": cv["J_per_K_g"],
        "highlight_temperature_K": t_hi,
        "cv_at_highlight": highlight,
        "cv_300K_J_per_K_mol": value_at(temperatures, cv["J_per_K_mol"], 300.0),
        "cv_300K_J_per_K_g": value_at(temperatures, cv["J_per_K_g"], 300.0),
        "entropy_J_per_K_mol": [float(s) for s in tp.entropy],
        "free_energy_kJ_per_mol": [float(f) for f in tp.free_energy],
        **gamma,
        "imaginary_tolerance_thz": p["imaginary_tolerance_thz"],
        "cell_mass_amu": mass,
        "n_atoms": n_atoms,
        "n_displacements": n_disp,
        "supercell_atoms": len(phonon.supercell),
        "avg_step_time_ms": ms_per_force,
        "cv_per_mol_basis": "per mole of the relaxed input cell",
        "relaxation": relaxation,
        "output_files": {"plot": PLOT_FILE, "relaxed_structure": STRUCTURE_FILE},
        "parameters_used": p,
    }
    cv300 = result["cv_300K_J_per_K_g"]
    ctx.observer.progress(
        1.0,
        "done" if cv300 is None or not math.isfinite(cv300) else f"Cv(300 K) = {cv300:.4f} J/(K g)",
    )
    return json_safe(result)  # type: ignore[no-any-return]


def _plot(
    path: Any,
    temperatures: Sequence[float],
    cv_per_g: Sequence[float],
    t_hi: float,
    cv_hi: float | None,
    classical_limit: float,
    who: str = "",
) -> None:
    """Cv(T) per gram, the Dulong-Petit limit of the cell and the highlighted temperature."""
    from executors.plots import plot_xy

    marks = [] if cv_hi is None else [{"x": t_hi, "y": cv_hi, "label": f"{t_hi:g} K"}]
    title = "harmonic heat capacity"
    if cv_hi is not None:
        title += f": Cv({t_hi:g} K) = {cv_hi:.4g} J/(K g)"
    if who:
        title = f"{who}\n{title}"
    span = [temperatures[0], temperatures[-1]] if temperatures else []
    plot_xy(
        path,
        temperatures,
        cv_per_g,
        style="line",
        label="Cv (phonopy)",
        xlabel="T (K)",
        ylabel="Cv (J/(K g))",
        title=title,
        series=[
            {
                "x": span,
                "y": [classical_limit] * len(span),
                "style": "dashed",
                "color": "0.5",
                "label": "Dulong-Petit limit 3R per atom",
            }
        ],
        vlines=[] if cv_hi is None else [{"x": t_hi}],
        marks=marks,
    )
