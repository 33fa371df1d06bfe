# %% [markdown]
# # One task of each type, then plots
#
# Submits one task of each of the six task types to a running MOFSim server, waits for
# all of them, prints a summary table and draws four plots into PNG files: the E-V
# points of the bulk modulus with their Birch-Murnaghan fit, Cv(T) from the heat
# capacity, the volume trace of the stability MD, and the energy per optimizer step.
#
# The defaults are small and fast: EMT copper (a crystal, a slab for the adsorbed gas),
# a handful of MD steps, loose force limits; a CPU finishes them in well under a minute.
# With a foundation model and a real framework (a few minutes on a CPU):
#
#     python examples/all_task_types.py --model sevennet-0 --structure builtin:CALF-20
#
# The cells (``# %%``) run one by one in VS Code, Spyder or Jupyter (through
# jupytext) as well as top to bottom with ``python``.  Needs the SDK and matplotlib;
# ASE, when installed, reads the optimization's trajectory for every step's energy.

# %%
from __future__ import annotations

import argparse
import math
import random
import sys
import tempfile
import time
from itertools import product
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from mofsim_client import (
    BulkModulusResult,
    HeatCapacityResult,
    InteractionEnergyResult,
    MOFSimClient,
    MOFSimError,
    OptimizationResult,
    SinglePointResult,
    StabilityResult,
    Task,
    TaskEvent,
    TaskResult,
)

# %% [markdown]
# ## Settings
# Command-line flags when run as a script; in a notebook, edit the defaults here.

# %%
parser = argparse.ArgumentParser(
    description="One MOFSim task of each type, then plots.", allow_abbrev=False
)
parser.add_argument("--server", help="server URL (default: $MOFSIM_SERVER)")
parser.add_argument("--api-key", help="API key (default: $MOFSIM_API_KEY)")
parser.add_argument(
    "--model", default="emt", help="model key: emt (default, seconds on a CPU) or e.g. sevennet-0"
)
parser.add_argument(
    "--structure",
    help="one structure for every task (a file, builtin:NAME "
    "or struct_... id); default: generated copper cells",
)
parser.add_argument("--gas", default="CO2", help="guest of the interaction energy (CO2)")
parser.add_argument(
    "--out",
    type=Path,
    default=Path("all_task_types_plots"),
    help="folder for the PNG files (default ./all_task_types_plots)",
)
parser.add_argument(
    "--timeout", type=float, default=1800.0, help="seconds to wait for each task (default 1800)"
)
# parse_known_args: a notebook kernel passes its own arguments.
args, _ = parser.parse_known_args(sys.argv[1:])
args.out.mkdir(parents=True, exist_ok=True)

# Small parameters: the point is the path through the server, not converged physics.
# Raise them (or pass "protocol": "mofsimbench") for production numbers.
PARAMETERS: dict[str, dict[str, Any]] = {
    "single-point-energy": {},
    "optimization": {"fmax": 0.02, "max_steps": 200, "relax_cell": True},
    "stability": {
        "relax_steps": 30,
        "relax_fmax": 0.05,
        "nvt_steps": 100,
        "npt_steps": 200,
        "timestep": 1.0,
        "frame_interval": 5,
        "pdamp": 200.0,
    },
    "bulk-modulus": {"num_points": 7, "strain_range": 0.06, "fmax": 0.05, "max_steps": 50},
    "heat-capacity": {
        "supercell": [1, 1, 1],
        "temperature_range": [0, 1000, 20],
        "fmax": 0.05,
        "max_steps": 50,
    },
    "interaction-energy": {"gas": args.gas},
}

# %% [markdown]
# ## Structures
# Without ``--structure``: fcc copper (EMT's lattice constant is 3.59 A).  The CIF text
# is made here, so nothing but the SDK is needed, and sent inline with each task.


# %%
def copper_cif(
    a: float,
    repeat: tuple[int, int, int] = (1, 1, 1),
    vacuum: float = 0.0,
    rattle: float = 0.0,
    seed: int = 0,
) -> str:
    """fcc copper: the 4-atom cubic cell repeated, ``vacuum`` A added along z (a slab
    with (001) surfaces), positions displaced by up to ``rattle`` A."""
    rng = random.Random(seed)
    nx, ny, nz = repeat
    lengths = (a * nx, a * ny, a * nz + vacuum)
    basis = [(0.0, 0.0, 0.0), (0.0, 0.5, 0.5), (0.5, 0.0, 0.5), (0.5, 0.5, 0.0)]
    rows = []
    for (i, j, k), (u, v, w) in product(product(range(nx), range(ny), range(nz)), basis):
        xyz = [a * (i + u), a * (j + v), a * (k + w)]
        xyz = [x + rng.uniform(-rattle, rattle) for x in xyz]
        frac = [x / n for x, n in zip(xyz, lengths, strict=True)]
        rows.append(f"Cu{len(rows)} Cu {frac[0]:.6f} {frac[1]:.6f} {frac[2]:.6f}")
    return "\n".join(
        [
            "data_Cu",
            *(f"_cell_length_{n} {x:.6f}" for n, x in zip("abc", lengths, strict=True)),
            "_cell_angle_alpha 90",
            "_cell_angle_beta 90",
            "_cell_angle_gamma 90",
            "_symmetry_space_group_name_H-M 'P 1'",
            "loop_",
            "_atom_site_label",
            "_atom_site_type_symbol",
            "_atom_site_fract_x",
            "_atom_site_fract_y",
            "_atom_site_fract_z",
            *rows,
            "",
        ]
    )


A_EQ = 3.59
if args.structure:
    structures = {kind: args.structure for kind in PARAMETERS}
else:
    structures = {
        "single-point-energy": copper_cif(3.7),
        # Stretched and rattled: the optimizer has steps to take.
        "optimization": copper_cif(3.7, (2, 2, 2), rattle=0.1),
        "stability": copper_cif(A_EQ, (2, 2, 2)),
        "bulk-modulus": copper_cif(3.62),
        "heat-capacity": copper_cif(3.62),
        # A 2x2 (001) slab, 4 layers, 12 A of vacuum; the gas sits 3 A above its middle.
        "interaction-energy": copper_cif(A_EQ, (2, 2, 2), vacuum=12.0),
    }
    top = A_EQ * 1.5  # the highest layer of the slab
    PARAMETERS["interaction-energy"]["position"] = [A_EQ, A_EQ, top + 3.0]

# %% [markdown]
# ## Submit one task of each type

# %%
client = MOFSimClient(args.server, api_key=args.api_key)
print(f"server {client.base_url}: {client.health()['status']}")
started = time.monotonic()
tasks: dict[str, Task] = {}
for kind, params in PARAMETERS.items():
    tasks[kind] = client.submit(
        kind, structures[kind], model=args.model, structure_name=f"{kind} example", **params
    )
    print(f"{kind:<20} {tasks[kind].id}")

# %% [markdown]
# ## Wait for all of them
# ``wait`` follows each task's event stream.  The optimization's progress events carry
# its energy per step, kept here for the plot in case the trajectory cannot be read.

# %%
progress_energies: list[tuple[int, float]] = []


def keep_energy(event: TaskEvent) -> None:
    step, energy = event.extra.get("step"), event.extra.get("energy")
    if event.event == "progress" and isinstance(step, int) and isinstance(energy, float):
        progress_energies.append((step, energy))


results: dict[str, TaskResult] = {}
errors: dict[str, MOFSimError] = {}
for kind, task in tasks.items():
    try:
        results[kind] = task.wait(
            timeout=args.timeout, on_progress=keep_energy if kind == "optimization" else None
        )
    except MOFSimError as exc:
        errors[kind] = exc
print(f"{len(results)} completed, {len(errors)} failed in {time.monotonic() - started:.1f} s")

# %% [markdown]
# ## Summary table
# Each result is typed by its task type (``OptimizationResult``, ``StabilityResult``...);
# any other key of the result document is there as ``result["key"]``.


# %%
def headline(result: TaskResult) -> str:
    """The one number (or verdict) that matters most for each task type."""
    if isinstance(result, SinglePointResult):
        return f"E = {result.energy_eV:.4f} eV, max force {result.max_force_eV_A:.3g} eV/A"
    if isinstance(result, OptimizationResult):
        return (
            f"converged {result.converged} in {result.steps} steps, "
            f"dV {result.volume_change_percent:+.2f} %"
        )
    if isinstance(result, StabilityResult):
        return (
            f"{result.stability_assessment}, dV {result.volume_change_percent:+.2f} %, "
            f"<T> {result.avg_temperature:.0f} K"
        )
    if isinstance(result, BulkModulusResult):
        return f"B0 = {result.bulk_modulus_GPa:.1f} GPa (reliable: {result.reliable})"
    if isinstance(result, HeatCapacityResult):
        return (
            f"Cv(300 K) = {result.cv_300K_J_per_K_g:.4f} J/(K g), "
            f"{result.imaginary_modes_gamma} imaginary modes at Gamma"
        )
    if isinstance(result, InteractionEnergyResult):
        return (
            f"E_int = {result.interaction_energy_eV:.4f} eV "
            f"({result.interaction_energy_kJ_mol:.2f} kJ/mol)"
        )
    return "-"


print(f"{'task type':<20} {'status':<10} {'seconds':>8}  result")
for kind, task in tasks.items():
    if kind in errors:
        print(f"{kind:<20} {task.info.status or 'ERROR':<10} {'-':>8}  {errors[kind]}")
        continue
    result = results[kind]
    seconds = f"{result.duration_seconds:.1f}" if result.duration_seconds is not None else "-"
    print(f"{kind:<20} {result.status or '':<10} {seconds:>8}  {headline(result)}")

# %% [markdown]
# ## Plots
# One PNG per plot in ``--out``; matplotlib's object API needs no display.


# %%
def save(fig: Figure, name: str) -> Path:
    path = args.out / name
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    print(f"wrote {path}")
    return path


bm = results.get("bulk-modulus")
if isinstance(bm, BulkModulusResult) and bm.volumes_A3 and bm.energies_eV:
    fig = Figure(figsize=(5, 4))
    ax = fig.add_subplot()
    ax.plot(bm.volumes_A3, bm.energies_eV, "o", label="relaxed points")
    curve = bm.result.get("fit_curve") or {}
    if curve.get("volumes_A3"):
        ax.plot(curve["volumes_A3"], curve["energies_eV"], "-", label=f"{bm.eos} fit")
    if bm.v0_A3 is not None:
        ax.axvline(bm.v0_A3, color="0.6", linestyle="--", label="V0")
    ax.set(
        xlabel="volume (A^3)",
        ylabel="energy (eV)",
        title=f"E(V): B0 = {bm.bulk_modulus_GPa:.1f} GPa",
    )
    ax.legend()
    save(fig, "eos.png")

hc = results.get("heat-capacity")
if isinstance(hc, HeatCapacityResult) and hc.temperatures_K and hc.cv_J_per_K_g:
    fig = Figure(figsize=(5, 4))
    ax = fig.add_subplot()
    ax.plot(hc.temperatures_K, hc.cv_J_per_K_g, "-")
    cv300 = hc.cv_at(300.0)
    if cv300 is not None:
        ax.plot([300.0], [cv300], "o", label=f"300 K: {cv300:.4f} J/(K g)")
        ax.legend()
    ax.set(xlabel="temperature (K)", ylabel="Cv (J/(K g))", title="heat capacity")
    save(fig, "heat_capacity.png")

md = results.get("stability")
if isinstance(md, StabilityResult) and md.time_series:
    series = md.time_series
    fig = Figure(figsize=(6, 4))
    ax = fig.add_subplot()
    # One colour per MD stage (the relaxation takes no time and has no trace).
    for stage_type in dict.fromkeys(series["stage_type"]):
        points = [
            (t, v)
            for t, v, s in zip(
                series["time_ps"], series["volume_ratio"], series["stage_type"], strict=True
            )
            if s == stage_type and stage_type != "relax"
        ]
        if points:
            ax.plot(*zip(*points, strict=True), "-", label=stage_type)
    ax.axhline(1.0, color="0.6", linestyle="--")
    ax.set(xlabel="time (ps)", ylabel="V / V0", title=f"MD volume trace: {md.stability_assessment}")
    ax.legend()
    save(fig, "stability_volume.png")

# %% [markdown]
# ## Energy per optimizer step
# The trajectory (``output_files["trajectory"]``) has every step; reading it needs ASE.
# Without ASE the throttled progress events seen while waiting are plotted instead.


# %%
def trajectory_energies(result: OptimizationResult) -> list[float] | None:
    url = result.output_files.get("trajectory")
    try:
        from ase.io import read
    except ImportError:
        return None
    if not url:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        path = client.download(url, Path(tmp) / "trajectory.traj")
        frames = read(path, index=":")
        return [float(atoms.get_potential_energy()) for atoms in frames]


opt = results.get("optimization")
if isinstance(opt, OptimizationResult):
    energies = trajectory_energies(opt)
    if energies:
        steps, source = list(range(len(energies))), "trajectory"
    else:
        steps = [s for s, _ in progress_energies]
        energies = [e for _, e in progress_energies]
        source = "progress events"
    print(f"optimization energies: {len(energies)} points from the {source}")
    if energies and all(math.isfinite(e) for e in energies):
        fig = Figure(figsize=(5, 4))
        ax = fig.add_subplot()
        ax.plot(steps, energies, "o-", markersize=3)
        ax.set(
            xlabel="optimizer step",
            ylabel="energy (eV)",
            title=f"optimization ({source}): converged {opt.converged}",
        )
        save(fig, "optimization_energy.png")

client.close()
if errors:
    sys.exit(1)
