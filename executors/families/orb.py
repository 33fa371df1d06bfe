"""ORB: Orbital Materials' graph network simulators (orb-models).

Foundation weights are fetched by orb-models through cached_path; the loader hands a
cached file over by path and otherwise checks that the download can happen at all.  An
uploaded file is a state dict saved from an orb-models regressor: ``config.architecture``
is a builder (``v2``, ``v3-conservative``, ``v3-direct``, with optional
``architecture_kwargs`` and ``system_config``) or a published model name whose
architecture the weights share (e.g. ``orb-v3-conservative-inf-omat``).  Without it,
the default-size builders are tried in turn.  orb-models reads weights files with
``torch.load(weights_only=True)``, so an upload loads as it is, without running code.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import TYPE_CHECKING, Any

from executors.families import MPTRJ_ELEMENTS, CatalogueEntry, Family, Package
from executors.torch_env import torch_state
from executors.weights import ensure_downloadable, unavailable
from spool.errors import ModelUnavailable

if TYPE_CHECKING:
    from ase.calculators.calculator import Calculator

    from executors.models import ModelSpec

# orb-models architecture builders for custom files, with their usual neighbour limits.
BUILDERS = {
    "v2": ("orb_v2_architecture", 20),
    "v3-conservative": ("orb_v3_conservative_architecture", 120),
    "v3-direct": ("orb_v3_direct_architecture", 120),
}
_BUCKET = "https://orbitalmaterials-public-models.s3.us-west-1.amazonaws.com/forcefields"


def load_foundation(spec: ModelSpec, device: str, dtype: str) -> Calculator:
    from cached_path import get_cache_dir
    from cached_path.util import find_latest_cached, resource_to_filename
    from orb_models.forcefield import pretrained

    builder = pretrained.ORB_PRETRAINED_MODELS[spec.weights]
    url = str(inspect.signature(builder).parameters["weights_path"].default)
    cached = find_latest_cached(url)
    if cached is None:
        ensure_downloadable(spec, url, Path(get_cache_dir()) / resource_to_filename(url))
    try:
        # A cached file is handed over by path so that cached_path skips its ETag request.
        model = builder(
            weights_path=str(cached) if cached else url,
            device=device,
            precision=_precision(dtype),
            compile=False,
        )
    except Exception as exc:
        raise unavailable(spec, exc, None) from exc
    return _calculator(model, device, dtype)


def load_file(path: Path, config: dict[str, Any], device: str, dtype: str) -> Calculator:
    from orb_models.forcefield import pretrained
    from orb_models.forcefield.atomic_system import SystemConfig

    precision = _precision(dtype)
    arch = config.get("architecture")
    if arch in pretrained.ORB_PRETRAINED_MODELS and arch not in BUILDERS:
        model = pretrained.ORB_PRETRAINED_MODELS[arch](
            weights_path=str(path), device=device, precision=precision, compile=False
        )
        return _calculator(model, device, dtype)
    if arch is not None and arch not in BUILDERS:
        raise ModelUnavailable(
            f"unknown ORB architecture {arch!r}; use one of {', '.join(BUILDERS)} or a "
            "published orb-models name",
            field="model",
        )
    errors = []
    for name in [arch] if arch else list(BUILDERS):
        func_name, neighbours = BUILDERS[name]
        system = {
            "radius": 6.0,
            "max_num_neighbors": neighbours,
            **(config.get("system_config") or {}),
        }
        build = getattr(pretrained, func_name)
        try:
            model = build(
                system_config=SystemConfig(**system), **(config.get("architecture_kwargs") or {})
            )
            model = pretrained.load_model(
                model, str(path), device, precision=precision, compile=False
            )
        except RuntimeError as exc:  # state-dict mismatch: try the next architecture
            errors.append(f"{name}: {str(exc).splitlines()[0]}")
            continue
        return _calculator(model, device, dtype)
    raise ModelUnavailable(
        "ORB weights match no known architecture: " + "; ".join(errors), field="model"
    )


def _precision(dtype: str) -> str:
    return "float64" if dtype == "float64" else "float32-high"


def _calculator(model: Any, device: str, dtype: str) -> Calculator:
    """orb-models reads torch's process-wide default dtype (and matmul precision) when
    it featurizes atoms; several calculators share one executor, so pin them per call."""
    import torch
    from ase.calculators.calculator import all_changes
    from orb_models.forcefield.calculator import ORBCalculator

    torch_dtype = torch.float64 if dtype == "float64" else torch.float32
    matmul = "highest" if dtype == "float64" else "high"

    class PinnedORBCalculator(ORBCalculator):  # type: ignore[misc]
        def calculate(
            self, atoms: Any = None, properties: Any = None, system_changes: Any = all_changes
        ) -> None:
            with torch_state(torch_dtype, matmul):
                super().calculate(atoms, properties, system_changes)

    calc: Calculator = PinnedORBCalculator(model, device=device)
    return calc


def _entry(
    key: str,
    name: str,
    description: str,
    reference: str,
    file: str,
    aliases: tuple[str, ...] = (),
    d3_trained: bool | None = None,
) -> CatalogueEntry:
    return CatalogueEntry(
        key=key,
        name=name,
        description=description,
        elements=tuple(MPTRJ_ELEMENTS),
        references=reference,
        aliases=aliases,
        source=f"downloaded on first use into the cached_path cache from {_BUCKET}/{file}",
        weights=key,
        d3_trained=d3_trained,
    )


_V2_PAPER = "https://doi.org/10.48550/arXiv.2410.22570"

FAMILY = Family(
    name="orb",
    label="ORB",
    description="Orbital Materials ORB graph network simulators",
    packages=(Package("orb_models", "orb-models"),),
    load_foundation=load_foundation,
    load_custom=load_file,
    custom_extensions=(".pt", ".pth", ".ckpt"),
    rank=30,
    catalogue=(
        _entry(
            "orb-v2",
            "ORB v2",
            "Orbital Materials ORB v2, direct forces, MPtrj + Alexandria",
            _V2_PAPER,
            "orb-v2-20241011.ckpt",
        ),
        _entry(
            "orb-d3-v2",
            "ORB D3 v2",
            "ORB v2 trained on D3(BJ)-corrected PBE data: dispersion is built in",
            _V2_PAPER,
            "orb-d3-v2-20241011.ckpt",
            d3_trained=True,
        ),
        _entry(
            "orb-v3-conservative-inf-omat",
            "ORB v3 conservative inf OMat",
            "ORB v3, conservative forces, unlimited neighbours within 6 A, trained on OMat24",
            "https://doi.org/10.48550/arXiv.2504.06231",
            "orb-v3/orb-v3-conservative-inf-omat-20250404.ckpt",
            aliases=("orb-v3",),
        ),
    ),
)
