"""The two structural measures MOFSimBench's analysis uses, computed its way.

- ``position_rmsd``: Cartesian RMSD of a structure from a reference (the input
  structure): ASE's ``minimize_rotation_and_translation`` takes each difference to its
  minimum image in the reference cell and removes the net translation (between periodic
  cells it fits no rotation), then the RMSD is averaged over all 3N components (so it
  is the per-atom RMSD divided by sqrt(3)).  Unlike ``executors.geometry.rmsd_min_image``
  it counts a change of the cell (expansion under NPT, a relaxed cell) as displacement.
- ``metal_coordination``: pymatgen's ``CrystalNN`` (x_diff_weight 1.5, search cutoff
  4.5 A) coordination number of every metal atom, averaged per metal element.

The metal list is the benchmark's (alkali, alkaline-earth, transition, post-transition
metals, lanthanides and actinides; no metalloids).  ASE and pymatgen are imported
inside the functions.
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ase import Atoms

# Metals as the benchmark counts them: Z = 3-4, 11-13, 19-31, 37-50, 55-84, 87-116
# without the metalloids and non-metals in those ranges (B, Si, Ge, As, Sb, Te, At).
_RANGES = ((3, 4), (11, 13), (19, 31), (37, 50), (55, 84), (87, 116))
_EXCLUDED = frozenset({32, 33, 51, 52, 85})
METAL_NUMBERS = frozenset(z for lo, hi in _RANGES for z in range(lo, hi + 1) if z not in _EXCLUDED)
CRYSTALNN_X_DIFF_WEIGHT = 1.5
CRYSTALNN_SEARCH_CUTOFF = 4.5


def position_rmsd(reference: Atoms, atoms: Atoms) -> float:
    """RMSD (A) of ``atoms`` from ``reference`` as MOFSimBench defines it (see above)."""
    import numpy as np
    from ase.build import minimize_rotation_and_translation
    from ase.geometry import find_mic

    if len(reference) != len(atoms):
        raise ValueError(f"atom counts differ: {len(reference)} vs {len(atoms)}")
    if len(atoms) == 0:
        return 0.0
    target, moved = reference.copy(), atoms.copy()
    minimize_rotation_and_translation(target, moved)
    diff = target.positions - moved.positions
    if target.pbc.any() and target.cell.rank == 3:
        diff, _ = find_mic(diff, cell=target.cell, pbc=target.pbc)
    return float(np.sqrt(np.mean(diff**2)))


def metal_indices(atoms: Atoms) -> list[int]:
    return [i for i, z in enumerate(atoms.numbers) if int(z) in METAL_NUMBERS]


def metal_coordination(atoms: Atoms) -> dict[str, float]:
    """Mean CrystalNN coordination number per metal element (empty without metals)."""
    import numpy as np

    indices = metal_indices(atoms)
    if not indices:
        return {}
    from pymatgen.analysis.local_env import CrystalNN
    from pymatgen.io.ase import AseAtomsAdaptor

    nn = CrystalNN(  # type: ignore[no-untyped-call]
        x_diff_weight=CRYSTALNN_X_DIFF_WEIGHT, search_cutoff=CRYSTALNN_SEARCH_CUTOFF
    )
    structure = AseAtomsAdaptor.get_structure(atoms)
    symbols = atoms.get_chemical_symbols()
    per_element: dict[str, list[float]] = {}
    with warnings.catch_warnings():
        # CrystalNN advises oxidation states, which the benchmark never set either.
        warnings.simplefilter("ignore")
        for i in indices:
            per_element.setdefault(symbols[i], []).append(float(nn.get_cn(structure, i)))
    return {el: float(np.mean(cns)) for el, cns in sorted(per_element.items())}


def coordination_change(
    reference: dict[str, float], final: dict[str, float]
) -> tuple[str | None, float | None]:
    """The metal element whose mean coordination moved most, and by how much."""
    common = [el for el in reference if el in final]
    if not common:
        return None, None
    worst = max(common, key=lambda el: abs(final[el] - reference[el]))
    return worst, final[worst] - reference[worst]
