"""A model plus DFT-D3 dispersion as one ASE calculator that behaves like any other.

ASE's ``SumCalculator`` offers only the properties every part implements and derives
from ``BaseCalculator``, so it has no ``reset`` and, since torch-dftd knows no
``free_energy``, it cannot answer ``get_potential_energy(force_consistent=True)``, which
the MTK NPT integrator asks for its conserved energy.  ``ModelWithD3`` adds both:
``reset`` clears the sum and each part, and the free energy is the sum of the parts'
free energies, a part that has none counting its energy (dispersion has no electronic
entropy, so for D3 the two are the same).

ASE is imported inside ``model_with_d3``: importing this module stays cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

if TYPE_CHECKING:
    from ase.calculators.calculator import Calculator

__all__ = ["model_with_d3"]


def _make_class() -> type:
    from ase.calculators.mixing import SumCalculator

    class ModelWithD3(SumCalculator):
        """``SumCalculator([model, d3])`` with ``reset`` and ``free_energy``."""

        def __init__(self, calcs: list[Any]) -> None:
            super().__init__(calcs)  # type: ignore[no-untyped-call]
            props = list(self.implemented_properties)
            if "energy" in props and "free_energy" not in props:
                props.append("free_energy")
            self.implemented_properties = props

        def calculate(
            self, atoms: Any = None, properties: Any = ("energy",), system_changes: Any = ()
        ) -> None:
            wanted = [p for p in properties if p != "free_energy"]
            if "energy" not in wanted:
                wanted.append("energy")
            super().calculate(atoms, wanted, system_changes)  # type: ignore[no-untyped-call]
            total = 0.0
            for calc in self.mixer.calcs:
                own = getattr(calc, "results", {})
                total += float(own["free_energy"] if "free_energy" in own else own["energy"])
            self.results["free_energy"] = total

        def reset(self) -> None:
            self.atoms = None
            self.results = {}
            for calc in self.mixer.calcs:
                part_reset = getattr(calc, "reset", None)
                if callable(part_reset):
                    part_reset()

    return ModelWithD3


_CLASS: type | None = None


def model_with_d3(model: Calculator, d3: Any) -> Calculator:
    """``model`` and ``d3`` summed into one calculator (see the module's docstring)."""
    global _CLASS
    if _CLASS is None:
        _CLASS = _make_class()
    return cast("Calculator", _CLASS([model, d3]))
