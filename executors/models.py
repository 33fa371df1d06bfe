"""The model catalogue: which interatomic potentials the service knows, by key.

Torch-free on purpose: the HTTP server and the CLI list and validate models without
importing any ML package.  Loading lives in ``executors.loaders``.

Custom models sit in a models directory, one folder per model id::

    models_root/<model_id>/meta.json    {"name", "framework": <a family's name>,
                                          "with_d3", "d3_included",
                                          "config": {"precision": ...},
                                          "file": "model.<ext>", ...}
    models_root/<model_id>/model.<ext>  the weights

``with_d3`` in ``meta.json`` (the upload's field of spec 3.4) asks tasks on the model to
add D3 dispersion unless a task says otherwise; ``d3_included`` states that the weights
already include it (trained on D3-corrected data), so a D3 term is refused unless forced.
Uploads older than ``d3_included`` used ``with_d3`` for the latter: without the key,
``with_d3`` keeps that meaning (``custom_d3``).  Optional keys: ``description``,
``elements`` (list of symbols), ``references``, and what the family's file loader reads
from ``config`` (``executors.families.<family>``).

The built-in entries and the families come from ``executors.families``: each family's
module carries its catalogue entries.
"""

from __future__ import annotations

import difflib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from executors.families import CUSTOM_FAMILY, CatalogueEntry, Family, discover, get_family
from executors.registry import task_type_names
from executors.verdicts import weights_trusted
from spool.errors import ModelNotFound, ModelUnavailable, ValidationError

CUSTOM_PREFIX = "custom:"
_MODEL_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}\Z")
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
    # Tasks that do not say add D3 (an upload's with_d3).
    d3_default: bool = False
    source: str = ""
    default_dtype: str = "float32"
    # The package that runs the weights (a custom model's family is "custom").
    framework: str = ""
    # Foundation models: the name the framework knows them by; custom: the weights file.
    weights: str = ""
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def is_custom(self) -> bool:
        return self.family == CUSTOM_FAMILY

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
            d3_default=self.d3_default,
            source=self.source,
            default_dtype=self.default_dtype,
            framework=self.framework,
        )
        return out


def _builtin(family: Family, entry: CatalogueEntry) -> ModelSpec:
    d3_trained = family.d3_trained if entry.d3_trained is None else entry.d3_trained
    return ModelSpec(
        key=entry.key,
        name=entry.name,
        family=family.name,
        description=entry.description,
        elements=list(entry.elements),
        supported_tasks=None,
        references=entry.references,
        aliases=entry.aliases,
        d3_trained=d3_trained,
        source=entry.source,
        framework=family.name,
        weights=entry.weights,
    )


def normalize_key(key: str) -> str:
    """Case-insensitive, ``_`` and ``-`` equivalent."""
    return key.strip().lower().replace("_", "-")


@dataclass(frozen=True)
class _Catalogue:
    families: tuple[Family, ...]
    models: tuple[ModelSpec, ...]
    # Every key and alias, normalized, to its model.
    index: dict[str, ModelSpec]


_catalogue_cache: list[_Catalogue] = []


def _catalogue() -> _Catalogue:
    """Built from the families once, and again whenever their discovery is redone."""
    fams = discover()
    if _catalogue_cache and _catalogue_cache[0].families is fams:
        return _catalogue_cache[0]
    models = tuple(_builtin(f, entry) for f in fams for entry in f.catalogue)
    index: dict[str, ModelSpec] = {}
    for spec in models:
        for name in (spec.key, *spec.aliases):
            index[normalize_key(name)] = spec
    _catalogue_cache[:] = [_Catalogue(fams, models, index)]
    return _catalogue_cache[0]


def builtin_models() -> list[ModelSpec]:
    """The families' catalogue entries, family by family."""
    return list(_catalogue().models)


def family_names() -> list[str]:
    """Every family a model can belong to: the installed plug-ins, then ``custom``."""
    return [f.name for f in discover()] + [CUSTOM_FAMILY]


def custom_frameworks() -> dict[str, tuple[str, ...]]:
    """The families an uploaded weights file may be for, with their file extensions."""
    return {f.name: f.custom_extensions for f in discover() if f.accepts_uploads}


def normalize_precision(value: Any, field_name: str = "dtype") -> str:
    """``float32``/``float64`` from the spellings users write."""
    text = str(value).strip().lower() if value is not None else ""
    if text not in _PRECISIONS:
        raise ValidationError(
            f"{field_name}: unknown precision {value!r}; expected float32 or float64",
            field=field_name,
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
    family = get_family(framework)
    if family is None or not family.accepts_uploads:
        raise ModelUnavailable(
            f"custom model {model_id!r}: framework {meta.get('framework')!r} is not one of "
            f"{', '.join(custom_frameworks())}",
            field="model",
        )
    file_name = str(meta.get("file", ""))
    # A bare file name only: the folder is the model's whole world.
    if not file_name or Path(file_name).name != file_name or file_name.startswith("."):
        raise ModelUnavailable(
            f"custom model {model_id!r}: meta.json names no valid 'file'", field="model"
        )
    if not file_name.lower().endswith(family.custom_extensions):
        raise ModelUnavailable(
            f"custom model {model_id!r}: a {framework} file must end with "
            f"{' or '.join(family.custom_extensions)}",
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
    d3_trained, d3_default = custom_d3(meta, family.d3_trained)
    return ModelSpec(
        key=CUSTOM_PREFIX + model_id,
        name=str(meta.get("name") or model_id),
        family=CUSTOM_FAMILY,
        description=str(meta.get("description") or f"custom {framework} model"),
        elements=[str(e) for e in elements],
        supported_tasks=None,
        references=str(meta.get("references", "")),
        aliases=(model_id,),
        d3_trained=d3_trained,
        d3_default=d3_default,
        source=f"uploaded file {file_name}",
        default_dtype=dtype,
        framework=framework,
        weights=str((folder / file_name).resolve()),
        extra={
            "config": config,
            "model_id": model_id,
            "models_root": str(models_root),
            # The API key that uploaded it (mofsim_core.owners); None for the machine's owner.
            "owner": meta.get("owner"),
            "shared": meta.get("shared") is True,
        },
    )


def custom_d3(meta: dict[str, Any], family_default: bool = False) -> tuple[bool, bool]:
    """``(d3_trained, d3_default)`` of an upload's meta.json: whether its weights include
    D3, and whether tasks add D3 unless they say.  A meta.json without ``d3_included``
    predates the two meanings: its ``with_d3`` said the weights include D3, and it is
    still read so (the safe reading: no task adds a D3 term that might count twice)."""
    raw = meta.get("config")
    config: dict[str, Any] = raw if isinstance(raw, dict) else {}
    if "d3_included" in meta:
        trained, default = bool(meta["d3_included"]), bool(meta.get("with_d3", False))
    else:
        trained, default = bool(meta.get("with_d3", family_default)), False
    if "d3_included" in config:
        trained = bool(config["d3_included"])
    if "d3_trained" in meta:  # hand-written folders: the explicit key wins
        trained = bool(meta["d3_trained"])
    return trained, default


def check_usable(spec: ModelSpec) -> None:
    """Uploaded custom models run tasks only with a passing verdict for their weights
    file as it is now (``executors.verdicts``); a folder without one is not trusted.
    (Executors then load its weights-only form, or run it in the sandbox.)"""
    if not spec.is_custom:
        return
    model_id = str(spec.extra.get("model_id"))
    root = Path(str(spec.extra.get("models_root")))
    if not weights_trusted(root, model_id, Path(str(spec.weights))):
        raise ModelUnavailable(
            f"custom model {model_id!r} has not passed validation (or its weights changed "
            f"since); validate it first (POST /api/v1/models/custom/{model_id}/validate)",
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
    out = builtin_models()
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
    catalogue = _catalogue()
    spec = catalogue.index.get(normalize_key(raw))
    if spec is not None:
        return spec
    if (
        models_root is not None
        and _MODEL_ID_RE.match(raw)
        and (Path(models_root) / raw / "meta.json").is_file()
    ):
        return custom_spec(raw, Path(models_root))
    known = sorted({s.key for s in catalogue.models}) + [
        CUSTOM_PREFIX + i for i in _custom_ids(models_root)
    ]
    candidates = list(catalogue.index) + known
    close = difflib.get_close_matches(normalize_key(raw), candidates, n=3, cutoff=0.5)
    index = catalogue.index
    suggestions = list(dict.fromkeys(index[c].key if c in index else c for c in close))
    hint = (
        f"; did you mean {', '.join(suggestions)}?"
        if suggestions
        else f"; known models: {', '.join(known)}"
    )
    raise ModelNotFound(f"unknown model {key!r}{hint}", field="model")


def families() -> list[dict[str, Any]]:
    """Each family with its models and whether its packages are installed (nothing
    imported), then the ``custom`` family of uploads."""
    models = builtin_models()
    out: list[dict[str, Any]] = []
    for fam in discover():
        out.append(
            {
                "family": fam.name,
                "description": fam.description,
                "package": fam.package,
                "installed": not fam.missing_packages(),
                "models": [s.key for s in models if s.family == fam.name],
            }
        )
    labels = [f.label for f in discover() if f.accepts_uploads]
    kinds = ", ".join(labels[:-1]) + " or " + labels[-1] if len(labels) > 1 else "".join(labels)
    out.append(
        {
            "family": CUSTOM_FAMILY,
            "description": f"User-uploaded {kinds} weights",
            "package": None,
            "installed": True,
            "models": [],
        }
    )
    return out
