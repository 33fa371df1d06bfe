"""ASE's classical calculators (EMT, Lennard-Jones): fast, torch-free models for tests.

Nothing to download and nothing to upload: the weights name picks the calculator.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from executors.families import CatalogueEntry, Family, Package

if TYPE_CHECKING:
    from ase.calculators.calculator import Calculator

    from executors.models import ModelSpec

EMT_ELEMENTS = "Al Cu Ag Au Ni Pd Pt H C N O".split()


def load_foundation(spec: ModelSpec, device: str, dtype: str) -> Calculator:
    if spec.weights == "emt":
        from ase.calculators.emt import EMT

        return EMT()
    from ase.calculators.lj import LennardJones

    return LennardJones()


FAMILY = Family(
    name="ase",
    label="ASE",
    description="Classical ASE calculators (EMT, Lennard-Jones) for fast tests",
    packages=(Package("ase", "ase"),),
    load_foundation=load_foundation,
    uses_torch=False,
    rank=90,
    catalogue=(
        CatalogueEntry(
            key="emt",
            name="EMT",
            description="ASE effective medium theory: a fast classical potential for tests",
            elements=tuple(EMT_ELEMENTS),
            references="https://doi.org/10.1016/0039-6028(96)00816-3",
            aliases=(),
            source="part of ASE",
            weights="emt",
        ),
        CatalogueEntry(
            key="lj",
            name="Lennard-Jones",
            description="ASE Lennard-Jones (sigma 1 A, epsilon 1 eV, one species-blind pair "
            "term): a fast classical potential for tests",
            elements=("all",),
            references="https://wiki.fysik.dtu.dk/ase/ase/calculators/others.html",
            aliases=("lennard-jones",),
            source="part of ASE",
            weights="lj",
        ),
    ),
)
