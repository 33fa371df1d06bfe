"""Turn a catalogue entry into a ready ASE calculator (plus D3 when asked).

The family that runs the weights (``executors.families``) does the loading; here are
the checks every family shares (dtype, D3, installed packages, a custom model's file),
the D3 wrapper, and the package versions recorded with each result.

ML packages are imported inside the functions: importing this module stays cheap.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.metadata
import platform
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from executors.families import Family, get_family
from executors.models import ModelSpec, custom_spec, normalize_precision
from executors.torch_env import prepare_torch, torch_state_restored
from executors.verdicts import trusted_form, weights_trusted
from spool.errors import ModelUnavailable, ValidationError

if TYPE_CHECKING:
    from ase.calculators.calculator import Calculator

__all__ = [
    "D3_CUTOFF_BOHR",
    "add_d3",
    "check_d3",
    "describe_versions",
    "family_of",
    "load_calculator",
    "prepare_torch",
]

D3_CUTOFF_BOHR = 40.0


def check_d3(spec: ModelSpec, with_d3: bool, force_d3: bool = False) -> None:
    if with_d3 and spec.d3_trained and not force_d3:
        raise ValidationError(
            f"model {spec.key} was trained with D3 dispersion already; adding a second D3 "
            "term would double count it (set force_d3 to do it anyway)",
            field="with_d3",
        )


def family_of(spec: ModelSpec) -> Family:
    """The family that runs ``spec``'s weights; ModelUnavailable when none is present."""
    family = get_family(spec.framework)
    if family is None:
        raise ModelUnavailable(f"no loader for framework {spec.framework!r}", field="model")
    return family


def load_calculator(
    spec: ModelSpec,
    device: str = "cpu",
    dtype: str = "float32",
    with_d3: bool = False,
    force_d3: bool = False,
    models_root: Path | None = None,
    allow_pickle: bool = False,
) -> Calculator:
    """A calculator for ``spec`` on ``device``; ``SumCalculator([model, D3])`` when
    ``with_d3``.  Raises ValidationError for refused combinations and ModelUnavailable
    when the weights cannot be obtained or loaded.

    An uploaded MACE or SevenNet model loads from its safe form; only the sandboxed
    validator passes ``allow_pickle`` to load the uploaded pickle itself."""
    dtype = normalize_precision(dtype)
    check_d3(spec, with_d3, force_d3)
    if spec.is_custom and models_root is not None:
        # Re-read meta.json: the files on disk are the truth (a model may be re-uploaded).
        spec = custom_spec(str(spec.extra.get("model_id", spec.aliases[0])), models_root)
    family = family_of(spec)
    if dtype not in family.dtypes:
        raise ValidationError(
            f"{family.label} models run in {' or '.join(family.dtypes)} only", field="dtype"
        )
    missing = family.missing_packages()
    if missing:
        raise ModelUnavailable(
            f"cannot load {spec.key}: {family.label} models need the Python package(s) "
            f"{', '.join(missing)}, which this machine does not have installed",
            field="model",
        )
    with torch_state_restored() if family.uses_torch else contextlib.nullcontext():
        if family.uses_torch:
            prepare_torch()
        if spec.is_custom:
            calc = _load_custom(spec, family, device, dtype, allow_pickle)
        else:
            calc = family.load_foundation(spec, device, dtype)
    if with_d3:
        calc = add_d3(calc, device)
    return calc


def _load_custom(
    spec: ModelSpec, family: Family, device: str, dtype: str, allow_pickle: bool
) -> Calculator:
    if family.load_custom is None:
        raise ModelUnavailable(f"{family.label} models cannot be loaded from a file", field="model")
    config = dict(spec.extra.get("config") or {})
    path = Path(spec.weights)
    load: Callable[[], Calculator]
    if family.load_safe_form is not None and not allow_pickle:
        model_id = str(spec.extra.get("model_id"))
        root = Path(str(spec.extra.get("models_root")))
        folder = trusted_form(root, model_id)
        if folder is not None:
            load = functools.partial(family.load_safe_form, folder, config, device, dtype)
        elif weights_trusted(root, model_id, path):
            # Validated, but with no weights-only form: it runs only in the sandbox.
            from executors.sandboxed_calc import SandboxedCalculator

            load = functools.partial(SandboxedCalculator, root, model_id, path, device, dtype)
        else:
            raise ModelUnavailable(
                f"custom model {model_id!r} has not passed validation (or its weights changed "
                "since); executors do not load uploaded files before that",
                field="model",
            )
    elif not path.is_file():
        raise ModelUnavailable(
            f"weights file of {spec.key} is missing ({path.name})", field="model"
        )
    else:
        load = functools.partial(family.load_custom, path, config, device, dtype)
    try:
        return load()
    except (ModelUnavailable, ValidationError):
        raise
    except Exception as exc:
        raise ModelUnavailable(
            f"cannot load {spec.key} ({spec.framework} file "
            f"{path.name}): {type(exc).__name__}: {exc}",
            field="model",
        ) from exc


def add_d3(calc: Calculator, device: str = "cpu") -> Calculator:
    """torch-dftd D3(BJ), PBE parameters, 40 Bohr cutoff, no three-body term, float32."""
    import torch
    from ase.units import Bohr
    from torch_dftd.torch_dftd3_calculator import TorchDFTD3Calculator

    d3 = TorchDFTD3Calculator(
        device=device,
        damping="bj",
        xc="pbe",
        cutoff=D3_CUTOFF_BOHR * Bohr,
        abc=False,
        dtype=torch.float32,
    )
    from executors.d3 import model_with_d3

    # A SumCalculator that also resets and answers free_energy (MTK NPT asks for it).
    return model_with_d3(calc, d3)


def describe_versions(spec: ModelSpec) -> dict[str, Any]:
    """Package versions behind a result, for reproducibility records (nothing imported)."""
    family = get_family(spec.framework)
    own = [p.distribution for p in family.packages] if family else []
    versions: dict[str, str | None] = {}
    for name in dict.fromkeys(["ase", "torch", "numpy", *own, "torch-dftd"]):
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return {
        "model": spec.key,
        "framework": spec.framework,
        "source": spec.source,
        "python": platform.python_version(),
        "packages": versions,
    }
