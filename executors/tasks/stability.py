"""stability: staged molecular dynamics and a stable/unstable verdict (MOFSimBench).

A job gives its stages in one of three ways, checked in this order:

1. ``stages``: an explicit list (see ``executors.md_stages``), e.g.
   ``[{"type": "relax"}, {"type": "nvt", "steps": 1000}, {"type": "npt", "steps": 50000}]``;
2. ``protocol_variant``: ``temperature_ramp`` (NPT stages of 20 ps at 300, 400, ...,
   1000 K, fresh velocities at each, after an NVT equilibration with friction
   0.002 /fs) or ``cu_paddlewheel`` (10 ps NPT at 300, 400 and 300 K, velocities
   carried over, then a fixed-cell relaxation), each after the relaxation and NVT
   equilibration of the flat shape;
3. the flat MIRA shape (``pre_optimize``, ``nvt_steps``, ``nvt_temperature``,
   ``npt_steps``, ``npt_temperature``, ``npt_pressure`` in bar, ``timestep`` in fs).

Defaults of the flat shape are the seed API's: relax, NVT 5000 steps at 300 K, NPT
10 000 steps at 300 K and 1.01325 bar, 1 fs.  ``"protocol": "mofsimbench"`` gives the
benchmark's: relax (LBFGS, fmax 1e-3 eV/A, at most 1000 steps), NVT 1000 steps, NPT
50 000 steps at 1 bar.  Both use the benchmark's values where the seed is silent
(relaxation, Langevin friction 0.01 /fs, tdamp 100 fs, pdamp 1000 fs).  A stage list
takes the same protocol's values for the knobs a stage leaves out.

A job that gives ``stages`` together with a flat key is refused instead of silently
ignoring one of them; so is ``npt_temperature`` with a variant (the variant fixes the
temperatures).  With a variant, ``npt_steps`` sets the length of each NPT stage (the
variant's own length when not given).  ``parameters_used`` echoes every value: the flat
keys (left out when ``stages`` is given) and the expanded stage list.

This module turns a job into its stage list and runs it (``executors.md_runner``); the
metrics, verdict and plot of the finished run are ``executors.stability_report``'s.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from executors.api import json_safe
from executors.md_metrics import DEFAULT_COORDINATION_TOLERANCE, DEFAULT_MAX_VOLUME_CHANGE_PERCENT
from executors.md_stages import (
    MAX_STAGE_STEPS,
    normalize_stage,
    normalize_stages,
    stages_json_schema,
)
from executors.params import Param, ParamSchema
from executors.stability_report import plot_run, summarize
from executors.task_types import TaskType
from spool.errors import InvalidStructure, ValidationError

if TYPE_CHECKING:
    from executors.api import TaskContext

VARIANTS = ("standard", "temperature_ramp", "cu_paddlewheel")
RAMP_TEMPERATURES = tuple(float(t) for t in range(300, 1001, 100))
RAMP_STAGE_STEPS = 20_000
RAMP_FRICTION = 0.002  # the ramp's NVT equilibration, 1/fs (the standard protocol: 0.01)
PADDLEWHEEL_TEMPERATURES = (300.0, 400.0, 300.0)
PADDLEWHEEL_STAGE_STEPS = 10_000
VARIANT_STAGE_STEPS = {
    "temperature_ramp": RAMP_STAGE_STEPS,
    "cu_paddlewheel": PADDLEWHEEL_STAGE_STEPS,
}

PRESETS: dict[str, dict[str, Any]] = {
    "mofsimbench": {
        "pre_optimize": True,
        "relax_fmax": 1e-3,
        "relax_steps": 1000,
        "nvt_steps": 1000,
        "nvt_temperature": 300.0,
        "friction": 0.01,
        "npt_steps": 50_000,
        "npt_temperature": 300.0,
        "npt_pressure": 1.0,
        "timestep": 1.0,
        "tdamp": 100.0,
        "pdamp": 1000.0,
    },
}
TASK = TaskType(
    name="stability",
    summary="Staged molecular dynamics and a stable/unstable verdict",
    periodic=True,
    key_metrics=("stability_assessment", "volume_drift_percent", "final_rmsd", "avg_temperature"),
    mira_capabilities=("md",),
)

SCHEMA = ParamSchema(
    [
        Param(
            "protocol_variant",
            str,
            "standard",
            choices=VARIANTS,
            aliases=("variant",),
            doc="named stage list (not combinable with explicit stages)",
        ),
        Param(
            "pre_optimize",
            bool,
            True,
            aliases=("relax_first",),
            doc="fixed-cell relaxation before the MD",
        ),
        Param("relax_fmax", float, 1e-3, min=0.0, exclusive_min=True, doc="eV/A"),
        Param("relax_steps", int, 1000, min=0, max=MAX_STAGE_STEPS),
        Param(
            "nvt_steps",
            int,
            5000,
            min=0,
            max=MAX_STAGE_STEPS,
            doc="0 skips NVT (mofsimbench: 1000)",
        ),
        Param("nvt_temperature", float, 300.0, min=0.0, exclusive_min=True, max=1e5, doc="K"),
        Param(
            "friction",
            float,
            0.01,
            min=0.0,
            max=10.0,
            aliases=("nvt_friction",),
            doc="Langevin friction, 1/fs",
        ),
        Param(
            "npt_steps",
            int,
            10_000,
            min=0,
            max=MAX_STAGE_STEPS,
            doc="0 skips NPT (mofsimbench: 50000); per NPT stage with a variant (default: "
            "the variant's 20000 or 10000)",
        ),
        Param(
            "npt_temperature",
            float,
            300.0,
            min=0.0,
            exclusive_min=True,
            max=1e5,
            doc="K (not with a variant)",
        ),
        Param(
            "npt_pressure",
            float,
            1.01325,
            min=-1e6,
            max=1e7,
            aliases=("npt_pressure_bar",),
            doc="bar (mofsimbench: 1)",
        ),
        Param(
            "timestep",
            float,
            1.0,
            min=0.0,
            exclusive_min=True,
            max=20.0,
            aliases=("timestep_fs",),
            doc="fs, every MD stage",
        ),
        Param(
            "tdamp",
            float,
            100.0,
            min=0.0,
            exclusive_min=True,
            aliases=("tdamp_fs",),
            doc="NPT thermostat damping, fs",
        ),
        Param(
            "pdamp",
            float,
            1000.0,
            min=0.0,
            exclusive_min=True,
            aliases=("pdamp_fs",),
            doc="NPT barostat damping, fs",
        ),
        Param("seed", int, 0, min=0, doc="seed of the initial velocities and Langevin noise"),
        Param(
            "frame_interval",
            int,
            100,
            min=1,
            max=MAX_STAGE_STEPS,
            doc="MD steps between trajectory frames",
        ),
        Param(
            "max_volume_change_percent",
            float,
            DEFAULT_MAX_VOLUME_CHANGE_PERCENT,
            min=0.0,
            exclusive_min=True,
            doc="verdict: largest |volume change| still stable",
        ),
        Param(
            "coordination_tolerance",
            float,
            DEFAULT_COORDINATION_TOLERANCE,
            min=0.0,
            doc="verdict: largest change of the average metal coordination still stable",
        ),
    ],
    presets=PRESETS,
)
_FLAT = (
    "pre_optimize",
    "relax_fmax",
    "relax_steps",
    "nvt_steps",
    "nvt_temperature",
    "friction",
    "npt_steps",
    "npt_temperature",
    "npt_pressure",
    "timestep",
    "tdamp",
    "pdamp",
)


def validate(parameters: dict[str, Any]) -> dict[str, Any]:
    """Normalize the request and check that it expands to a runnable stage list."""
    raw = dict(parameters)
    stages_raw = raw.pop("stages", None)
    # Which flat keys the client gave itself (defaults and presets fill in the rest).
    given = {
        SCHEMA.key_to_name[k] for k, v in raw.items() if k in SCHEMA.key_to_name and v is not None
    }
    params = SCHEMA.validate(raw, PRESETS)
    variant = params["protocol_variant"]
    if stages_raw is not None:
        if isinstance(stages_raw, str):
            try:
                stages_raw = json.loads(stages_raw)
            except json.JSONDecodeError as exc:
                raise ValidationError(
                    f"stages: not valid JSON: {exc}", field="parameters.stages"
                ) from None
        flat = [k for k in _FLAT if k in given]
        if flat:
            raise ValidationError(
                f"give either stages or the flat keys ({', '.join(flat)}), not both",
                field=f"parameters.{flat[0]}",
            )
        if variant != "standard":
            raise ValidationError(
                "give either stages or protocol_variant, not both",
                field="parameters.protocol_variant",
            )
        for key in _FLAT:
            params.pop(key)
        params["stages"] = normalize_stages(stages_raw, params["protocol"])
    elif variant != "standard":
        if "npt_temperature" in given:
            raise ValidationError(
                f"protocol_variant {variant} sets the NPT temperatures itself",
                field="parameters.npt_temperature",
            )
        params.pop("npt_temperature")
        if "npt_steps" not in given:
            params["npt_steps"] = VARIANT_STAGE_STEPS[variant]
        if variant == "temperature_ramp" and "friction" not in given:
            params["friction"] = RAMP_FRICTION
    plan_stages(params)
    return params


def parameters_schema() -> dict[str, Any]:
    """JSON Schema of the parameters, ``stages`` included (the Param toolkit types scalar
    lists only, so the stage list is described here)."""
    out = SCHEMA.to_schema("stability parameters")
    out["properties"]["stages"] = stages_json_schema()
    return out


def plan_stages(params: dict[str, Any]) -> list[dict[str, Any]]:
    """The normalized stage list a validated parameter set (``validate``'s output) stands
    for."""
    protocol = params.get("protocol", "default")
    if "stages" in params:
        return normalize_stages(params["stages"], protocol)
    p = params
    md = {"timestep_fs": p["timestep"]}
    npt_common = {
        **md,
        "pressure_bar": p["npt_pressure"],
        "tdamp_fs": p["tdamp"],
        "pdamp_fs": p["pdamp"],
    }
    relax = {"type": "relax", "fmax": p["relax_fmax"], "steps": p["relax_steps"]}
    plan: list[dict[str, Any]] = []
    if p["pre_optimize"]:
        plan.append(relax)
    if p["nvt_steps"] != 0:
        plan.append(
            {
                "type": "nvt",
                **md,
                "steps": p["nvt_steps"],
                "temperature": p["nvt_temperature"],
                "friction": p["friction"],
            }
        )
    variant = p.get("protocol_variant", "standard")
    if variant == "standard":
        if p["npt_steps"] != 0:
            plan.append(
                {
                    "type": "npt",
                    **npt_common,
                    "steps": p["npt_steps"],
                    "temperature": p["npt_temperature"],
                }
            )
    else:
        if p["npt_steps"] == 0:
            raise ValidationError(
                f"protocol_variant {variant} needs NPT steps", field="parameters.npt_steps"
            )
        temps = RAMP_TEMPERATURES if variant == "temperature_ramp" else PADDLEWHEEL_TEMPERATURES
        # The benchmark's ramp draws fresh velocities at each NPT stage's temperature;
        # the paddlewheel protocol carries them over.
        redraw = variant == "temperature_ramp"
        plan += [
            {
                "type": "npt",
                **npt_common,
                "steps": p["npt_steps"],
                "temperature": t,
                "redraw_velocities": redraw,
            }
            for t in temps
        ]
        if variant == "cu_paddlewheel":
            plan.append(dict(relax))
    if not any(s["type"] != "relax" for s in plan):
        raise ValidationError(
            "nothing to simulate: both nvt_steps and npt_steps are 0", field="parameters.npt_steps"
        )
    return [normalize_stage(s, i, protocol) for i, s in enumerate(plan)]


def run(ctx: TaskContext) -> dict[str, Any]:
    """Run the stages, write the trajectory and plot, and judge the stability."""
    from ase.io import Trajectory, write

    from executors.bench_geometry import metal_coordination
    from executors.md_runner import run_stages

    params = validate(ctx.parameters)
    stages = plan_stages(params)
    atoms = ctx.atoms.copy()
    if atoms.cell.rank < 3 or not atoms.pbc.all():
        raise InvalidStructure(
            "stability needs a periodic structure with a full cell "
            "(volume and pressure are part of the protocol)",
            field="structure",
        )
    atoms.calc = ctx.calculator
    coordination_input = metal_coordination(atoms)
    ctx.workspace.mkdir(parents=True, exist_ok=True)
    traj_name, plot_name, final_name = "stability.traj", "stability.png", "final_structure.cif"
    with Trajectory(str(ctx.workspace / traj_name), "w") as traj:
        stage_run = run_stages(
            atoms,
            stages,
            ctx.observer,
            seed=params["seed"],
            frame_interval=params["frame_interval"],
            on_frame=traj.write,
        )
    final = stage_run.frames[-1]
    write(str(ctx.workspace / final_name), final, format="cif")
    result = summarize(stage_run, atoms.get_masses(), coordination_input, params)
    plot_run(ctx.workspace / plot_name, stage_run, result, ctx.structure_name, ctx.model_key)
    ctx.observer.progress(1.0, f"done: {result['stability_assessment']}")
    result.update(
        {
            "trajectory_file": traj_name,
            "output_files": {
                "trajectory": traj_name,
                "plot": plot_name,
                "final_structure": final_name,
            },
            "parameters_used": {**params, "stages": stages},
            "avg_step_time_ms": stage_run.avg_step_time_ms,
        }
    )
    return json_safe(result)  # type: ignore[no-any-return]
