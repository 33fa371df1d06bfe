"""MACE: higher-order equivariant message passing (mace-torch).

Foundation weights are downloaded by mace-torch into its cache on first use; the loader
looks there first and otherwise checks that the download can happen at all
(``weights.ensure_downloadable``).  An uploaded file is a whole pickled MACE model, as
``torch.save`` and MACE's training scripts write it; only the sandboxed validator unpickles
it, and executors load its safe form (``executors.safe_form``): the constructor arguments
of a ``ScaleShiftMACE`` as JSON, and its state dict.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from executors.families import MPTRJ_ELEMENTS, CatalogueEntry, Family, Package
from executors.safe_form import Codec, Unconvertible, read_form, write_form
from executors.torch_env import torch_state
from executors.weights import ensure_downloadable, unavailable
from spool.errors import ModelUnavailable

if TYPE_CHECKING:
    from ase.calculators.calculator import Calculator

    from executors.models import ModelSpec

MACE_OFF_ELEMENTS = "H C N O F P S Cl Br I".split()
_RELEASES = "https://github.com/ACEsuit/mace-mp/releases/download"


def _cache_candidates(spec: ModelSpec) -> tuple[str, list[Path]]:
    """The download URL and where mace-torch looks for (or puts) the file."""
    from mace.calculators import foundations_models as fm
    from mace.tools.utils import get_cache_dir

    cache = Path(get_cache_dir())
    if spec.key == "mace-off23":
        url = fm.mace_off_urls[spec.weights]
        return url, [cache / os.path.basename(url).split("?")[0]]
    url = fm.mace_mp_urls[spec.weights]
    name = "".join(c for c in os.path.basename(url) if c.isalnum() or c in "_")
    candidates = [cache / name]
    if spec.weights == "medium-mpa-0":
        candidates.insert(0, Path(fm.local_model_path))
    return url, candidates


def load_foundation(spec: ModelSpec, device: str, dtype: str) -> Calculator:
    from mace.calculators import foundations_models as fm

    url, candidates = _cache_candidates(spec)
    if not any(p.is_file() for p in candidates):
        ensure_downloadable(spec, url, candidates[-1])
    try:
        calc: Calculator
        if spec.key == "mace-off23":
            calc = fm.mace_off(model=spec.weights, device=device, default_dtype=dtype)
        else:
            calc = fm.mace_mp(model=spec.weights, device=device, default_dtype=dtype)
    except Exception as exc:
        raise unavailable(spec, exc, candidates[-1]) from exc
    return calc


def load_file(path: Path, config: dict[str, Any], device: str, dtype: str) -> Calculator:
    from mace.calculators import MACECalculator

    calc: Calculator = MACECalculator(model_paths=str(path), device=device, default_dtype=dtype)
    return calc


def _codec() -> Codec:
    """The names a MACE configuration may use: MACE's own blocks and the usual gates."""
    import inspect

    import torch
    from e3nn import o3
    from mace.modules import blocks

    refs: dict[str, Any] = {
        f"blocks.{name}": cls
        for name, cls in inspect.getmembers(blocks, inspect.isclass)
        if issubclass(cls, torch.nn.Module) and cls.__module__.startswith("mace.")
    }
    gates = {
        "silu": torch.nn.functional.silu,
        "tanh": torch.tanh,
        "abs": torch.abs,
        "sigmoid": torch.sigmoid,
    }
    refs.update({f"gate.{name}": fn for name, fn in gates.items()})
    return Codec(refs=refs, makers={"irreps": (o3.Irreps, o3.Irreps)})


def to_safe_form(calc: Any, folder: Path) -> None:
    from mace.tools.scripts_utils import extract_config_mace_model

    models = getattr(calc, "models", None) or []
    if len(models) != 1 or type(models[0]).__name__ != "ScaleShiftMACE":
        kinds = sorted({type(m).__name__ for m in models}) or ["none"]
        raise Unconvertible(f"only a single ScaleShiftMACE converts (this is {', '.join(kinds)})")
    model = models[0]
    config = extract_config_mace_model(model)
    # A buffer there; the constructor wants numbers (and warns when given a tensor).
    config["atomic_numbers"] = [int(z) for z in config["atomic_numbers"]]
    if config.get("cueq_config") is not None:
        raise Unconvertible("models saved with cuEquivariance settings do not convert")
    write_form(folder, "mace", "ScaleShiftMACE", config, model.state_dict(), _codec())


def load_safe_form(folder: Path, config: dict[str, Any], device: str, dtype: str) -> Calculator:
    import torch
    from mace.calculators import MACECalculator
    from mace.modules import ScaleShiftMACE

    kind, kwargs, state = read_form(folder, "mace", _codec())
    if kind != "ScaleShiftMACE":
        raise ModelUnavailable(f"unknown MACE model kind {kind!r}", field="model")
    saved = next((t.dtype for t in state.values() if t.is_floating_point()), torch.float64)
    # Built in the dtype it was saved in, so that loading the weights rounds nothing.
    with torch_state(saved, torch.get_float32_matmul_precision()):
        try:
            model = ScaleShiftMACE(**kwargs)
            model.load_state_dict(state, strict=True)
        except (TypeError, ValueError, RuntimeError, KeyError) as exc:
            raise ModelUnavailable(
                f"the converted MACE model does not build: {type(exc).__name__}: "
                f"{str(exc).splitlines()[0][:300]}",
                field="model",
            ) from exc
    calc: Calculator = MACECalculator(models=model, device=device, default_dtype=dtype)
    return calc


def species(calc: Any) -> list[int] | None:
    z_table = getattr(calc, "z_table", None)
    zs = getattr(z_table, "zs", None)
    return [int(z) for z in zs] if zs is not None else None


FAMILY = Family(
    name="mace",
    label="MACE",
    description="MACE higher-order equivariant message passing",
    packages=(Package("mace", "mace-torch"), Package("e3nn", "e3nn")),
    load_foundation=load_foundation,
    load_custom=load_file,
    custom_extensions=(".model", ".pt", ".pth"),
    to_safe_form=to_safe_form,
    load_safe_form=load_safe_form,
    species=species,
    rank=20,
    catalogue=(
        CatalogueEntry(
            key="mace-mp",
            name="MACE-MP-0",
            description="MACE-MP-0 medium, Materials Project 2023 (MPtrj) foundation model",
            elements=tuple(MPTRJ_ELEMENTS),
            references="https://doi.org/10.48550/arXiv.2401.00096",
            aliases=("mace-mp-0", "mace_mp", "mace-mp-0-medium"),
            source=f"downloaded on first use into the MACE cache from {_RELEASES}/mace_mp_0/"
            "2023-12-03-mace-128-L1_epoch-199.model",
            weights="medium",
        ),
        CatalogueEntry(
            key="mace-mpa-0-medium",
            name="MACE-MPA-0 medium",
            description="MACE-MPA-0 medium, trained on MPtrj plus sAlex",
            elements=tuple(MPTRJ_ELEMENTS),
            references="https://github.com/ACEsuit/mace-foundations",
            aliases=("mace_prod", "mace-mpa-0"),
            source=f"downloaded on first use into the MACE cache from {_RELEASES}/mace_mpa_0/"
            "mace-mpa-0-medium.model",
            weights="medium-mpa-0",
        ),
        CatalogueEntry(
            key="mace-off23",
            name="MACE-OFF23 medium",
            description="MACE-OFF23 medium, organic molecules and molecular crystals (ASL license)",
            elements=tuple(MACE_OFF_ELEMENTS),
            references="https://doi.org/10.48550/arXiv.2312.15211",
            aliases=("mace-off",),
            source="downloaded on first use into the MACE cache from "
            "https://github.com/ACEsuit/mace-off (mace_off23/MACE-OFF23_medium.model)",
            weights="medium",
        ),
    ),
)
