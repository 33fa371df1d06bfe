"""The model catalogue: which interatomic potentials the service knows, by key.

Torch-free on purpose: the HTTP server and the CLI list and validate models without
importing any ML package.  Loading lives in ``executors.loaders``.

Custom models sit in a models directory, one folder per model id::

    models_root/<model_id>/meta.json    {"name", "framework": "mace"|"orb"|"sevennet",
                                          "with_d3", "config": {"precision": ...},
                                          "file": "model.<ext>", ...}
    models_root/<model_id>/model.<ext>  the weights

``with_d3`` in ``meta.json`` states that the weights already include D3 dispersion
(trained on D3-corrected data), so a second D3 term is refused unless forced; an
explicit ``"d3_trained"`` key wins over it.  Optional keys: ``description``,
``elements`` (list of symbols), ``references``, and for ORB files ``config.architecture``,
``config.architecture_kwargs`` and ``config.system_config`` (see ``loaders``).
"""

from __future__ import annotations

import difflib
import importlib.util
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from executors.registry import task_type_names
from spool.errors import ModelNotFound, ModelUnavailable, ValidationError

# Elements of the Materials Project trajectory set (Z 1-83 and 89-94): the coverage of
# SevenNet-0, MACE-MP-0 and (as training coverage) ORB; checked against the type map in
# SevenNet-0's checkpoint.
MPTRJ_ELEMENTS = (
    "H He Li Be B C N O F Ne Na Mg Al Si P S Cl Ar K Ca Sc Ti V Cr Mn Fe Co Ni Cu Zn Ga Ge "
    "As Se Br Kr Rb Sr Y Zr Nb Mo Tc Ru Rh Pd Ag Cd In Sn Sb Te I Xe Cs Ba La Ce Pr Nd Pm "
    "Sm Eu Gd Tb Dy Ho Er Tm Yb Lu Hf Ta W Re Os Ir Pt Au Hg Tl Pb Bi Ac Th Pa U Np Pu"
).split()
MACE_OFF_ELEMENTS = "H C N O F P S Cl Br I".split()
EMT_ELEMENTS = "Al Cu Ag Au Ni Pd Pt H C N O".split()

FAMILIES: dict[str, dict[str, str]] = {
    "sevennet": {"description": "SevenNet equivariant GNN potentials", "package": "sevenn"},
    "mace": {"description": "MACE higher-order equivariant message passing", "package": "mace"},
    "orb": {
        "description": "Orbital Materials ORB graph network simulators",
        "package": "orb_models",
    },
    "ase": {
        "description": "Classical ASE calculators (EMT, Lennard-Jones) for fast tests",
        "package": "ase",
    },
    "custom": {"description": "User-uploaded MACE, ORB or SevenNet weights", "package": ""},
}
CUSTOM_FRAMEWORKS = {
    "mace": (".model", ".pt", ".pth"),
    "orb": (".pt", ".pth", ".ckpt"),
    "sevennet": (".pt", ".pth"),
}
CUSTOM_PREFIX = "custom:"
_MODEL_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
_PRECISIONS = {
    "float32": "float32",
    "float32-high": "float32",
    "float32-highest": "float32",
    "float64": "float64",
    "fp32": "float32",
    "fp64": "float64",
    "single": "float32",
    "double": "float64",
}


@dataclass(frozen=True)
class ModelSpec:
    key: str
    name: str
    family: str
    description: str
    elements: list[str]
    # None: every task type of the registry, read when asked (``task_types``), so a new
    # task module needs no change here.  A list restricts the model to those.
    supported_tasks: list[str] | None
    references: str
    aliases: tuple[str, ...] = ()
    d3_trained: bool = False
    source: str = ""
    default_dtype: str = "float32"
    # The package that runs the weights (a custom model's family is "custom").
    framework: str = ""
    # Foundation models: the name the framework knows them by; custom: the weights file.
    weights: str = ""
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def is_custom(self) -> bool:
        return self.family == "custom"

    def task_types(self) -> list[str]:
        """The task types this model runs."""
        if self.supported_tasks is None:
            return task_type_names()
        return list(self.supported_tasks)

    def supports(self, task_type: str) -> bool:
        return self.supported_tasks is None or task_type in self.supported_tasks

    def to_dict(self) -> dict[str, Any]:
        """The MIRA shape of a model."""
        return {
            "key": self.key,
            "name": self.name,
            "family": self.family,
            "description": self.description,
            "elements": list(self.elements),
            "supported_tasks": self.task_types(),
            "references": self.references,
        }

    def to_full_dict(self) -> dict[str, Any]:
        """Everything, for the spec dialect's model detail."""
        out = self.to_dict()
        out.update(
            aliases=list(self.aliases),
            d3_trained=self.d3_trained,
            source=self.source,
            default_dtype=self.default_dtype,
            framework=self.framework,
        )
        return out


def _builtin(
    key: str,
    name: str,
    family: str,
    description: str,
    elements: list[str],
    references: str,
    aliases: tuple[str, ...],
    source: str,
    weights: str,
    d3_trained: bool = False,
) -> ModelSpec:
    return ModelSpec(
        key=key,
        name=name,
        family=family,
        description=description,
        elements=list(elements),
        supported_tasks=None,
        references=references,
        aliases=aliases,
        d3_trained=d3_trained,
        source=source,
        framework=family,
        weights=weights,
    )


_MACE_RELEASES = "https://github.com/ACEsuit/mace-mp/releases/download"
_ORB_BUCKET = "https://orbitalmaterials-public-models.s3.us-west-1.amazonaws.com/forcefields"
_SEVENNET_REF = "https://doi.org/10.1021/acs.jctc.4c00190"

BUILTIN_MODELS: list[ModelSpec] = [
    _builtin(
        "sevennet-0",
        "SevenNet-0",
        "sevennet",
        "SevenNet-0 (11Jul2024), NequIP-style GNN trained on MPtrj; 5 A cutoff",
        MPTRJ_ELEMENTS,
        _SEVENNET_REF,
        ("7net-0", "sevennet", "SevenNet-0"),
        "bundled with the sevenn package",
        "7net-0",
    ),
    _builtin(
        "sevennet-l3i5",
        "SevenNet-l3i5",
        "sevennet",
        "SevenNet with l_max=3 and 5 interaction layers, trained on MPtrj",
        MPTRJ_ELEMENTS,
        _SEVENNET_REF,
        ("7net-l3i5",),
        "bundled with the sevenn package",
        "7net-l3i5",
    ),
    _builtin(
        "mace-mp",
        "MACE-MP-0",
        "mace",
        "MACE-MP-0 medium, Materials Project 2023 (MPtrj) foundation model",
        MPTRJ_ELEMENTS,
        "https://doi.org/10.48550/arXiv.2401.00096",
        ("mace-mp-0", "mace_mp", "mace-mp-0-medium"),
        f"downloaded on first use into the MACE cache from {_MACE_RELEASES}/mace_mp_0/"
        "2023-12-03-mace-128-L1_epoch-199.model",
        "medium",
    ),
    _builtin(
        "mace-mpa-0-medium",
        "MACE-MPA-0 medium",
        "mace",
        "MACE-MPA-0 medium, trained on MPtrj plus sAlex",
        MPTRJ_ELEMENTS,
        "https://github.com/ACEsuit/mace-foundations",
        ("mace_prod", "mace-mpa-0"),
        f"downloaded on first use into the MACE cache from {_MACE_RELEASES}/mace_mpa_0/"
        "mace-mpa-0-medium.model",
        "medium-mpa-0",
    ),
    _builtin(
        "mace-off23",
        "MACE-OFF23 medium",
        "mace",
        "MACE-OFF23 medium, organic molecules and molecular crystals (ASL license)",
        MACE_OFF_ELEMENTS,
        "https://doi.org/10.48550/arXiv.2312.15211",
        ("mace-off",),
        "downloaded on first use into the MACE cache from "
        "https://github.com/ACEsuit/mace-off (mace_off23/MACE-OFF23_medium.model)",
        "medium",
    ),
    _builtin(
        "orb-v2",
        "ORB v2",
        "orb",
        "Orbital Materials ORB v2, direct forces, MPtrj + Alexandria",
        MPTRJ_ELEMENTS,
        "https://doi.org/10.48550/arXiv.2410.22570",
        (),
        f"downloaded on first use into the cached_path cache from "
        f"{_ORB_BUCKET}/orb-v2-20241011.ckpt",
        "orb-v2",
    ),
    _builtin(
        "orb-d3-v2",
        "ORB D3 v2",
        "orb",
        "ORB v2 trained on D3(BJ)-corrected PBE data: dispersion is built in",
        MPTRJ_ELEMENTS,
        "https://doi.org/10.48550/arXiv.2410.22570",
        (),
        f"downloaded on first use into the cached_path cache from "
        f"{_ORB_BUCKET}/orb-d3-v2-20241011.ckpt",
        "orb-d3-v2",
        d3_trained=True,
    ),
    _builtin(
        "orb-v3-conservative-inf-omat",
        "ORB v3 conservative inf OMat",
        "orb",
        "ORB v3, conservative forces, unlimited neighbours within 6 A, trained on OMat24",
        MPTRJ_ELEMENTS,
        "https://doi.org/10.48550/arXiv.2504.06231",
        ("orb-v3",),
        f"downloaded on first use into the cached_path cache from "
        f"{_ORB_BUCKET}/orb-v3/orb-v3-conservative-inf-omat-20250404.ckpt",
        "orb-v3-conservative-inf-omat",
    ),
    _builtin(
        "emt",
        "EMT",
        "ase",
        "ASE effective medium theory: a fast classical potential for tests",
        EMT_ELEMENTS,
        "https://doi.org/10.1016/0039-6028(96)00816-3",
        (),
        "part of ASE",
        "emt",
    ),
    _builtin(
        "lj",
        "Lennard-Jones",
        "ase",
        "ASE Lennard-Jones (sigma 1 A, epsilon 1 eV, one species-blind pair term): "
        "a fast classical potential for tests",
        ["all"],
        "https://wiki.fysik.dtu.dk/ase/ase/calculators/others.html",
        ("lennard-jones",),
        "part of ASE",
        "lj",
    ),
]


def normalize_key(key: str) -> str:
    """Case-insensitive, ``_`` and ``-`` equivalent."""
    return key.strip().lower().replace("_", "-")


def _index() -> dict[str, ModelSpec]:
    out: dict[str, ModelSpec] = {}
    for spec in BUILTIN_MODELS:
        for name in (spec.key, *spec.aliases):
            out[normalize_key(name)] = spec
    return out


_INDEX = _index()


def normalize_precision(value: Any, field_name: str = "dtype") -> str:
    """``float32``/``float64`` from the spellings users write."""
    text = str(value).strip().lower() if value is not None else ""
    if text not in _PRECISIONS:
        raise ValidationError(
            f"unknown precision {value!r}; expected float32 or float64", field=field_name
        )
    return _PRECISIONS[text]


def custom_spec(model_id: str, models_root: Path) -> ModelSpec:
    """Read ``models_root/model_id/meta.json`` into a spec; ModelNotFound if absent,
    ModelUnavailable if present but unusable."""
    if not _MODEL_ID_RE.match(model_id):
        raise ModelNotFound(f"invalid custom model id {model_id!r}", field="model")
    folder = Path(models_root) / model_id
    meta_path = folder / "meta.json"
    if not meta_path.is_file():
        raise ModelNotFound(f"custom model {model_id!r} not found", field="model")
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelUnavailable(
            f"custom model {model_id!r}: unreadable meta.json: {exc}", field="model"
        ) from exc
    if not isinstance(meta, dict):
        raise ModelUnavailable(
            f"custom model {model_id!r}: meta.json is not an object", field="model"
        )
    framework = str(meta.get("framework", "")).lower()
    if framework not in CUSTOM_FRAMEWORKS:
        raise ModelUnavailable(
            f"custom model {model_id!r}: framework {meta.get('framework')!r} is not one of "
            f"{', '.join(CUSTOM_FRAMEWORKS)}",
            field="model",
        )
    file_name = str(meta.get("file", ""))
    # A bare file name only: the folder is the model's whole world.
    if not file_name or Path(file_name).name != file_name or file_name.startswith("."):
        raise ModelUnavailable(
            f"custom model {model_id!r}: meta.json names no valid 'file'", field="model"
        )
    if not file_name.lower().endswith(CUSTOM_FRAMEWORKS[framework]):
        raise ModelUnavailable(
            f"custom model {model_id!r}: a {framework} file must end with "
            f"{' or '.join(CUSTOM_FRAMEWORKS[framework])}",
            field="model",
        )
    config = meta.get("config") or {}
    if not isinstance(config, dict):
        raise ModelUnavailable(
            f"custom model {model_id!r}: 'config' must be an object", field="model"
        )
    try:
        dtype = normalize_precision(config.get("precision", "float32"), "config.precision")
    except ValidationError as exc:
        raise ModelUnavailable(f"custom model {model_id!r}: {exc}", field="model") from exc
    elements = meta.get("elements") or ["all"]
    d3_trained = bool(meta.get("d3_trained", meta.get("with_d3", False)))
    return ModelSpec(
        key=CUSTOM_PREFIX + model_id,
        name=str(meta.get("name") or model_id),
        family="custom",
        description=str(meta.get("description") or f"custom {framework} model"),
        elements=[str(e) for e in elements],
        supported_tasks=None,
        references=str(meta.get("references", "")),
        aliases=(model_id,),
        d3_trained=d3_trained,
        source=f"uploaded file {file_name}",
        default_dtype=dtype,
        framework=framework,
        weights=str((folder / file_name).resolve()),
        extra={"config": config, "model_id": model_id, "validated": meta.get("validated")},
    )


def check_usable(spec: ModelSpec) -> None:
    """Uploaded custom models run tasks only once validated (spec 3.4).  A model folder
    an administrator placed by hand carries no ``validated`` key and is trusted."""
    if spec.family == "custom" and spec.extra.get("validated") is False:
        model_id = spec.extra.get("model_id")
        raise ModelUnavailable(
            f"custom model {model_id!r} has not passed validation; validate it first "
            f"(POST /api/v1/models/custom/{model_id}/validate)",
            field="model",
        )


def _custom_ids(models_root: Path | None) -> list[str]:
    if models_root is None or not Path(models_root).is_dir():
        return []
    return sorted(
        p.name
        for p in Path(models_root).iterdir()
        if p.is_dir() and _MODEL_ID_RE.match(p.name) and (p / "meta.json").is_file()
    )


def list_models(models_root: Path | None = None) -> list[ModelSpec]:
    """Built-in models, then the usable custom models (broken ones are left out)."""
    out = list(BUILTIN_MODELS)
    for model_id in _custom_ids(models_root):
        try:
            out.append(custom_spec(model_id, Path(models_root)))  # type: ignore[arg-type]
        except (ModelNotFound, ModelUnavailable):
            continue
    return out


def resolve_model(key: str, models_root: Path | None = None) -> ModelSpec:
    """A key or alias (any case, ``_`` or ``-``), ``custom:<id>``, or a bare custom id."""
    if not isinstance(key, str) or not key.strip():
        raise ModelNotFound("no model given", field="model")
    raw = key.strip()
    if raw.lower().startswith(CUSTOM_PREFIX):
        model_id = raw[len(CUSTOM_PREFIX) :]
        if models_root is None:
            raise ModelNotFound(
                f"custom model {model_id!r} not found (no models directory)", field="model"
            )
        return custom_spec(model_id, Path(models_root))
    spec = _INDEX.get(normalize_key(raw))
    if spec is not None:
        return spec
    if (
        models_root is not None
        and _MODEL_ID_RE.match(raw)
        and (Path(models_root) / raw / "meta.json").is_file()
    ):
        return custom_spec(raw, Path(models_root))
    known = sorted({s.key for s in BUILTIN_MODELS}) + [
        CUSTOM_PREFIX + i for i in _custom_ids(models_root)
    ]
    candidates = list(_INDEX) + known
    close = difflib.get_close_matches(normalize_key(raw), candidates, n=3, cutoff=0.5)
    suggestions = list(dict.fromkeys(_INDEX[c].key if c in _INDEX else c for c in close))
    hint = (
        f"; did you mean {', '.join(suggestions)}?"
        if suggestions
        else f"; known models: {', '.join(known)}"
    )
    raise ModelNotFound(f"unknown model {key!r}{hint}", field="model")


def families() -> list[dict[str, Any]]:
    """Each family with its models and whether its package is installed (not imported)."""
    out = []
    for family, info in FAMILIES.items():
        package = info["package"]
        installed = True if not package else importlib.util.find_spec(package) is not None
        out.append(
            {
                "family": family,
                "description": info["description"],
                "package": package or None,
                "installed": installed,
                "models": [s.key for s in BUILTIN_MODELS if s.family == family],
            }
        )
    return out
