"""SevenNet: NequIP-style equivariant GNNs; SevenNet-0 ships inside the sevenn package.

SevenNet runs in float32 only.  Its checkpoints hold ``slice`` objects, which torch's
weights-only loading refuses unless allowed first (``torch_env.prepare_torch``, done by
the loaders for every torch family).  An uploaded file is a SevenNet checkpoint, or
what ``config.file_type`` names (``torchscript``, say).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from executors.families import MPTRJ_ELEMENTS, CatalogueEntry, Family, Package

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
