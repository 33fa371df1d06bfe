"""CHGNet: a charge-informed graph network with bond and angle messages (chgnet).

All three published weights ship inside the chgnet package, so they work offline.
CHGNet runs in float32 only (its graph converter builds float32 tensors).

chgnet imports ``nvidia_smi`` at start-up, a module of the old nvidia-ml-py3
distribution, and calls it only to pick the CUDA card with the most free memory, which
this service never asks for (executors name their device).  nvidia-ml-py3 also installs
an old ``pynvml`` that would replace nvidia-ml-py's, which the NVML device backend and
torch read, so it is not installed and an empty stand-in takes the module's name.
"""

from __future__ import annotations

import importlib.util
import sys
import types
from typing import TYPE_CHECKING, Any

from executors.families import MPTRJ_ELEMENTS, CatalogueEntry, Family, Package

if TYPE_CHECKING:
    from ase.calculators.calculator import Calculator

    from executors.models import ModelSpec

_REFERENCE = "https://doi.org/10.1038/s42256-023-00716-3"
_SOURCE = "bundled with the chgnet package"


def _stand_in_for_nvidia_smi() -> None:
    if "nvidia_smi" not in sys.modules and importlib.util.find_spec("nvidia_smi") is None:
        sys.modules["nvidia_smi"] = types.ModuleType("nvidia_smi")


def load_foundation(spec: ModelSpec, device: str, dtype: str) -> Calculator:
    _stand_in_for_nvidia_smi()
    from chgnet.model.model import CHGNet

    model = CHGNet.load(model_name=spec.weights, use_device=device, verbose=False)
    return _calculator(model, device)


def _calculator(model: Any, device: str) -> Calculator:
    """chgnet's ASE calculator, quiet: its batching reads a scalar out of a tensor that
    carries gradients, and torch warns about that at every force call."""
    import warnings

    from chgnet.model.dynamics import CHGNetCalculator

    class QuietCHGNetCalculator(CHGNetCalculator):
        def calculate(
            self,
            atoms: Any = None,
            properties: Any = None,
            system_changes: Any = None,
            task: Any = "efsm",
        ) -> None:
            with warnings.catch_warnings():
                warnings.filterwarnings(
                    "ignore", "Converting a tensor with requires_grad=True to a scalar"
                )
                super().calculate(atoms, properties, system_changes, task)

    # A lone atom (a gas atom in a pore) is a valid input: its energy is its reference.
    calc: Calculator = QuietCHGNetCalculator(
        model=model, use_device=device, on_isolated_atoms="ignore"
    )
    return calc


def _entry(
    key: str, name: str, description: str, weights: str, aliases: tuple[str, ...]
) -> CatalogueEntry:
    return CatalogueEntry(
        key=key,
        name=name,
        description=description,
        elements=tuple(MPTRJ_ELEMENTS),
        references=_REFERENCE,
        aliases=aliases,
        source=_SOURCE,
        weights=weights,
    )


FAMILY = Family(
    name="chgnet",
    label="CHGNet",
    description="CHGNet charge-informed graph network potentials",
    packages=(Package("chgnet", "chgnet"),),
    load_foundation=load_foundation,
    dtypes=("float32",),
    rank=40,
    catalogue=(
        _entry(
            "chgnet",
            "CHGNet 0.3.0",
            "CHGNet 0.3.0, trained on MPtrj (PBE/PBE+U) energies, forces, stresses and "
            "magnetic moments; 5 A atom graph, 3 A bond graph",
            "0.3.0",
            ("chgnet-0.3.0",),
        ),
        _entry(
            "chgnet-0.2.0",
            "CHGNet 0.2.0",
            "CHGNet 0.2.0, the first MPtrj release, kept for comparison with older results",
            "0.2.0",
            (),
        ),
        _entry(
            "chgnet-r2scan",
            "CHGNet r2SCAN",
            "CHGNet transfer-learned from 0.3.0 onto Materials Project r2SCAN calculations",
            "r2scan",
            (),
        ),
    ),
)
