"""SevenNet: NequIP-style equivariant GNNs; SevenNet-0 ships inside the sevenn package.

SevenNet runs in float32 only.  Its checkpoints hold ``slice`` objects, which torch's
weights-only loading refuses unless allowed first (``torch_env.prepare_torch``, done by
the loaders for every torch family).  An uploaded file is a SevenNet checkpoint, or
what ``config.file_type`` names (``torchscript``, say).  Only the sandboxed validator
unpickles it; executors load a checkpoint's safe form (``executors.safe_form``): its
configuration as JSON and its state dict.  A TorchScript file has no such form.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from executors.families import MPTRJ_ELEMENTS, CatalogueEntry, Family, Package
from executors.safe_form import Codec, Unconvertible, read_form, write_form
from spool.errors import ModelUnavailable

if TYPE_CHECKING:
    from ase.calculators.calculator import Calculator

    from executors.models import ModelSpec

_REFERENCE = "https://doi.org/10.1021/acs.jctc.4c00190"


def load_foundation(spec: ModelSpec, device: str, dtype: str) -> Calculator:
    from sevenn.calculator import SevenNetCalculator

    calc: Calculator = SevenNetCalculator(spec.weights, device=device)
    return calc


def load_file(path: Path, config: dict[str, Any], device: str, dtype: str) -> Calculator:
    from sevenn.calculator import SevenNetCalculator

    file_type = str(config.get("file_type", "checkpoint"))
    calc: Calculator = SevenNetCalculator(model=str(path), device=device, file_type=file_type)
    return calc


def to_safe_form(calc: Any, folder: Path) -> None:
    config = getattr(calc, "sevennet_config", None)
    if not isinstance(config, dict):
        raise Unconvertible("only SevenNet checkpoints convert (this file has no configuration)")
    write_form(folder, "sevennet", "checkpoint", config, calc.model.state_dict(), Codec())


def load_safe_form(folder: Path, config: dict[str, Any], device: str, dtype: str) -> Calculator:
    from sevenn.calculator import SevenNetCalculator
    from sevenn.nn.sequential import AtomGraphSequential
    from sevenn.util import model_from_checkpoint

    kind, saved, state = read_form(folder, "sevennet", Codec())
    if kind != "checkpoint":
        raise ModelUnavailable(f"unknown SevenNet model kind {kind!r}", field="model")
    try:
        model, _ = model_from_checkpoint({"config": saved, "model_state_dict": state})
    except (AssertionError, TypeError, ValueError, RuntimeError, KeyError) as exc:
        raise ModelUnavailable(
            f"the converted SevenNet model does not build: {type(exc).__name__}: "
            f"{str(exc).splitlines()[0][:300] if str(exc) else ''}",
            field="model",
        ) from exc
    if not isinstance(model, AtomGraphSequential):
        raise ModelUnavailable(
            "the converted SevenNet model is not a SevenNet network", field="model"
        )
    calc: Calculator = SevenNetCalculator(
        model=model, file_type="model_instance", device=device, sevennet_config=saved
    )
    return calc


def species(calc: Any) -> list[int] | None:
    type_map = getattr(calc, "type_map", None)
    return sorted(int(z) for z in type_map) if isinstance(type_map, dict) else None


FAMILY = Family(
    name="sevennet",
    label="SevenNet",
    description="SevenNet equivariant GNN potentials",
    packages=(Package("sevenn", "sevenn"),),
    load_foundation=load_foundation,
    load_custom=load_file,
    custom_extensions=(".pt", ".pth"),
    to_safe_form=to_safe_form,
    load_safe_form=load_safe_form,
    dtypes=("float32",),
    species=species,
    rank=10,
    catalogue=(
        CatalogueEntry(
            key="sevennet-0",
            name="SevenNet-0",
            description="SevenNet-0 (11Jul2024), NequIP-style GNN trained on MPtrj; 5 A cutoff",
            elements=tuple(MPTRJ_ELEMENTS),
            references=_REFERENCE,
            aliases=("7net-0", "sevennet", "SevenNet-0"),
            source="bundled with the sevenn package",
            weights="7net-0",
        ),
        CatalogueEntry(
            key="sevennet-l3i5",
            name="SevenNet-l3i5",
            description="SevenNet with l_max=3 and 5 interaction layers, trained on MPtrj",
            elements=tuple(MPTRJ_ELEMENTS),
            references=_REFERENCE,
            aliases=("7net-l3i5",),
            source="bundled with the sevenn package",
            weights="7net-l3i5",
        ),
    ),
)
