"""Staged molecular dynamics: the stage specifications.

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

The runner that drives a stage list is ``executors.md_runner``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from executors.params import Param, ParamSchema
from spool.errors import ValidationError

if TYPE_CHECKING:
    pass

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
# Velocities are drawn whenever an MD stage follows no MD stage; this asks for a fresh
# draw at the stage's temperature even after one (the benchmark's temperature ramp).
_REDRAW = Param(
    "redraw_velocities",
    bool,
    False,
    doc="draw fresh Maxwell-Boltzmann velocities at this stage's temperature",
)
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
            _REDRAW,
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
            _REDRAW,
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
