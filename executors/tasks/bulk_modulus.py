"""bulk-modulus: energy-volume curve and a Birch-Murnaghan fit (MOFSimBench).

1. Relax cell and positions (LBFGS + FrechetCellFilter; skipped with ``pre_optimize``
   false), giving V0.
2. ``num_points`` volumes ``linspace(1 - strain_range, 1 + strain_range) * V0``: the
   strain is on the volume, so each cell vector is scaled by s^(1/3), atoms along.
3. Relax the atoms at fixed cell (FIRE) at every volume.
4. Fit the equation of state with ``ase.eos.EquationOfState``; B0 in GPa.

Defaults are the seed API's: ``strain_range`` 0.1 (volumes over +-10 %), ``num_points``
9, ``pre_optimize`` true.  ``"protocol": "mofsimbench"`` gives the benchmark's 0.04 and
11 points.  Both relax with the benchmark's settings (LBFGS first, FIRE per volume,
fmax 1e-3 eV/A, at most 1000 steps), which the seed does not name.

The fit is flagged unreliable when its minimum lies further than
``reliability_tolerance_percent`` (1 %) from the relaxed V0: the sampled points then do
not bracket the minimum well and B0 is an extrapolation.  Outputs: ``eos.png`` (the
points, the fitted curve and V0) and ``relaxed_structure.cif``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from executors.api import json_safe
from executors.params import Param, ParamSchema
from executors.task_types import TaskType
from spool.errors import TaskError

if TYPE_CHECKING:
    from ase import Atoms

    from executors.api import TaskContext

# EOS forms of ase.eos whose parameters are (E0, B0, B0', V0), and their names in print.
EOS_FORMS = ("birchmurnaghan", "murnaghan", "birch", "vinet", "pouriertarantola")
EOS_NAMES = {
    "birchmurnaghan": "Birch-Murnaghan",
    "murnaghan": "Murnaghan",
    "birch": "Birch",
    "vinet": "Vinet",
    "pouriertarantola": "Pourier-Tarantola",
}
PLOT_FILE = "eos.png"
STRUCTURE_FILE = "relaxed_structure.cif"

PRESETS: dict[str, dict[str, Any]] = {
    "mofsimbench": {
        "strain_range": 0.04,
        "num_points": 11,
        "pre_optimize": True,
        "optimizer": "LBFGS",
        "fmax": 1e-3,
        "max_steps": 1000,
        "eos": "birchmurnaghan",
        "reliability_tolerance_percent": 1.0,
    },
}
TASK = TaskType(
    name="bulk-modulus",
    summary="Bulk modulus from an energy-volume curve and an equation-of-state fit",
    periodic=True,
    mira_result_aliases={"bulk_modulus": "bulk_modulus_GPa", "v0": "v0_A3", "e0": "e0_eV"},
    key_metrics=("bulk_modulus_GPa", "b0_prime", "reliable"),
)

SCHEMA = ParamSchema(
    [
        Param(
            "strain_range",
            float,
            0.1,
            min=0.0,
            exclusive_min=True,
            max=0.5,
            doc="volumes span (1 - s .. 1 + s) * V0 (mofsimbench: 0.04)",
        ),
        Param("num_points", int, 9, min=5, max=101, doc="number of volumes (mofsimbench: 11)"),
        Param(
            "pre_optimize",
            bool,
            True,
            aliases=("relax_first",),
            doc="relax cell and positions first (LBFGS + FrechetCellFilter)",
        ),
        Param(
            "optimizer",
            str,
            "LBFGS",
            choices=("LBFGS", "BFGS", "FIRE"),
            doc="optimizer of the initial relaxation",
        ),
        Param(
            "fmax",
            float,
            1e-3,
            min=0.0,
            exclusive_min=True,
            doc="force criterion of every relaxation, eV/A",
        ),
        Param(
            "max_steps",
            int,
            1000,
            min=0,
            max=100_000,
            doc="step limit of every relaxation (0: rigid scaling, no relaxation)",
        ),
        Param("eos", str, "birchmurnaghan", choices=EOS_FORMS, doc="equation of state"),
        Param(
            "reliability_tolerance_percent",
            float,
            1.0,
            min=0.0,
            exclusive_min=True,
            doc="largest distance of the fitted minimum from the relaxed V0, in %",
        ),
    ],
    presets=PRESETS,
)


def validate(parameters: dict[str, Any]) -> dict[str, Any]:
    return SCHEMA.validate(parameters, PRESETS)


def volume_factors(strain_range: float, num_points: int) -> list[float]:
    """Volume scale factors, evenly spaced over 1 -+ strain_range."""
    import numpy as np

    return [float(x) for x in np.linspace(1.0 - strain_range, 1.0 + strain_range, num_points)]


def scaled_copy(atoms: Atoms, volume_factor: float) -> Atoms:
    """A copy whose volume is ``volume_factor`` times the original: every cell vector
    scaled by its cube root, atoms keeping their fractional positions."""
    out: Atoms = atoms.copy()
    out.set_cell(atoms.cell.array * volume_factor ** (1.0 / 3.0), scale_atoms=True)
    return out


def fit_eos(
    volumes: Iterable[float],
    energies: Iterable[float],
    eos: str = "birchmurnaghan",
    n_curve: int = 101,
) -> dict[str, Any]:
    """Fit ``eos`` to E(V); B0 in GPa, V0 in A^3, E0 in eV, RMS residual in eV, plus a
    smooth curve over the sampled range for plotting.  Raises TaskError if the fit fails."""
    import numpy as np
    from ase.eos import EquationOfState
    from ase.units import GPa

    v = np.asarray(list(volumes), dtype=float)
    e = np.asarray(list(energies), dtype=float)
    fit = EquationOfState(v, e, eos=eos)
    try:
        v0, e0, b0 = fit.fit(warn=False)
    except (RuntimeError, ValueError, TypeError) as exc:
        raise TaskError(f"the {eos} fit of the E-V points failed: {exc}") from None
    parameters = np.asarray(fit.eos_parameters, dtype=float)
    residual = e - fit.func(v, *parameters)
    curve_v = np.linspace(v.min(), v.max(), n_curve)
    return {
        "v0": float(v0),
        "e0": float(e0),
        "b0_GPa": float(b0 / GPa),
        "b0_prime": float(parameters[2]),
        "rms_residual_eV": float(np.sqrt(np.mean(residual**2))),
        "max_residual_eV": float(np.abs(residual).max()),
        "curve_volumes": curve_v.tolist(),
        "curve_energies": fit.func(curve_v, *parameters).tolist(),
    }


def run(ctx: TaskContext) -> dict[str, Any]:
    from ase.io import write

    from executors.md_runner import relax_structure

    p = validate(ctx.parameters)
    atoms = ctx.atoms.copy()
    atoms.calc = ctx.calculator
    if atoms.cell.rank < 3 or not atoms.pbc.all():
        from spool.errors import InvalidStructure

        raise InvalidStructure(
            "bulk-modulus needs a periodic structure with a full cell", field="structure"
        )
    factors = volume_factors(p["strain_range"], p["num_points"])
    # Progress: the relaxation counts as much as two volumes, each volume as one.
    units = len(factors) + (2 if p["pre_optimize"] else 0)
    relaxation = None
    if p["pre_optimize"]:
        ctx.observer.log("relaxing cell and positions")
        relaxation = relax_structure(
            atoms,
            ctx.observer,
            fmax=p["fmax"],
            steps=p["max_steps"],
            optimizer=p["optimizer"],
            relax_cell=True,
            fraction_range=(0.0, 2 / units),
        )
        relaxation.pop("avg_step_time_ms")
        if not relaxation["converged"]:
            ctx.observer.log(
                f"initial relaxation did not converge within {p['max_steps']} steps",
                level="WARNING",
            )
    v_ref = float(atoms.get_volume())
    ctx.workspace.mkdir(parents=True, exist_ok=True)
    write(str(ctx.workspace / STRUCTURE_FILE), atoms, format="cif")
    points = []
    timed: list[tuple[float, int]] = []  # (ms per step, steps) of the fixed-cell runs
    done = units - len(factors)
    for k, factor in enumerate(factors):
        strained = scaled_copy(atoms, factor)
        strained.calc = ctx.calculator
        label = f"{k + 1}/{len(factors)} volumes"
        summary = relax_structure(
            strained,
            ctx.observer,
            fmax=p["fmax"],
            steps=p["max_steps"],
            optimizer="FIRE",
            label=label,
            fraction_range=(done / units, (done + 1) / units),
        )
        done += 1
        if summary["avg_step_time_ms"] is not None:
            timed.append((summary["avg_step_time_ms"], summary["steps_done"]))
        points.append(
            {
                "volume_factor": factor,
                "volume_A3": float(strained.get_volume()),
                "energy_eV": summary["final_energy"],
                "converged": summary["converged"],
                "steps": summary["steps_done"],
                "final_fmax": summary["final_fmax"],
            }
        )
        ctx.observer.progress(done / units, label, stage=label, energy=summary["final_energy"])
    volumes = [pt["volume_A3"] for pt in points]
    energies = [pt["energy_eV"] for pt in points]
    fit = fit_eos(volumes, energies, p["eos"])
    offset = 100.0 * (fit["v0"] - v_ref) / v_ref
    reliable = math.isfinite(offset) and abs(offset) <= p["reliability_tolerance_percent"]
    unconverged = [k for k, pt in enumerate(points) if not pt["converged"]]
    who = f"{ctx.structure_name} · {ctx.model_key}"
    _plot(ctx.workspace / PLOT_FILE, points, fit, p["eos"], offset, reliable, who)
    result = {
        "bulk_modulus_GPa": fit["b0_GPa"],
        "b0_prime": fit["b0_prime"],
        "v0_A3": fit["v0"],
        "e0_eV": fit["e0"],
        "eos": p["eos"],
        "relaxed_volume_A3": v_ref,
        "v0_offset_percent": offset,
        "reliable": reliable,
        "fit_rms_residual_eV": fit["rms_residual_eV"],
        "fit_max_residual_eV": fit["max_residual_eV"],
        "all_points_converged": not unconverged,
        "unconverged_points": unconverged,
        "volumes_A3": volumes,
        "energies_eV": energies,
        "points": points,
        "fit_curve": {"volumes_A3": fit["curve_volumes"], "energies_eV": fit["curve_energies"]},
        "relaxation": relaxation,
        "avg_step_time_ms": (
            sum(ms * n for ms, n in timed) / sum(n for _, n in timed) if timed else None
        ),
        "output_files": {"plot": PLOT_FILE, "relaxed_structure": STRUCTURE_FILE},
        "parameters_used": p,
    }
    ctx.observer.progress(1.0, f"B0 = {fit['b0_GPa']:.2f} GPa")
    return json_safe(result)  # type: ignore[no-any-return]


def _plot(
    path: Any,
    points: list[dict[str, Any]],
    fit: dict[str, Any],
    eos: str,
    offset_percent: float,
    reliable: bool,
    who: str = "",
) -> None:
    """E(V): the relaxed points (unconverged ones apart), the fitted curve and its V0."""
    from executors.plots import plot_xy

    good = [pt for pt in points if pt["converged"]]
    bad = [pt for pt in points if not pt["converged"]]
    extra: list[dict[str, Any]] = [
        {
            "x": fit["curve_volumes"],
            "y": fit["curve_energies"],
            "label": f"{EOS_NAMES[eos]} fit",
            "color": "tab:orange",
        }
    ]
    if bad:
        extra.append(
            {
                "x": [pt["volume_A3"] for pt in bad],
                "y": [pt["energy_eV"] for pt in bad],
                "style": "points",
                "color": "tab:red",
                "label": "relaxation not converged",
            }
        )
    title = f"B0 = {fit['b0_GPa']:.1f} GPa, B0' = {fit['b0_prime']:.2f}, V0 = {fit['v0']:.2f} Å³"
    if who:
        title = f"{who}\n{title}"
    if not reliable:
        title += f"\nunreliable: fitted V0 {offset_percent:+.1f} % from the relaxed volume"
    plot_xy(
        path,
        [pt["volume_A3"] for pt in good],
        [pt["energy_eV"] for pt in good],
        style="points",
        label="relaxed points" if good else None,
        xlabel="volume (Å³)",
        ylabel="energy (eV)",
        title=title,
        series=extra,
        marks=[{"x": fit["v0"], "y": fit["e0"], "label": "V0"}],
    )
