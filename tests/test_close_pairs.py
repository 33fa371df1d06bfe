"""The overlap search agrees with ASE's neighbour list, pair for pair."""

from __future__ import annotations

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk
from ase.neighborlist import neighbor_list

from executors import close_pairs as close_pairs_module
from executors.close_pairs import close_pairs
from executors.structure_io import validate_atoms
from spool.errors import InvalidStructure


def same_pairs(atoms: Atoms, cutoff: float) -> None:
    i, j, d = neighbor_list("ijd", atoms, cutoff)
    fi, fj, fd = close_pairs(atoms, cutoff)
    expected = sorted(zip(i.tolist(), j.tolist(), np.round(d, 8).tolist(), strict=True))
    found = sorted(zip(fi.tolist(), fj.tolist(), np.round(fd, 8).tolist(), strict=True))
    assert found == expected


@pytest.mark.parametrize(
    "dense_limit",
    [close_pairs_module.DENSE_LIMIT, 0],
    ids=["dense-for-small-cells", "k-d-trees-always"],
)
def test_random_cells_positions_and_periodicity_agree_with_ase(
    dense_limit: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(close_pairs_module, "DENSE_LIMIT", dense_limit)
    rng = np.random.default_rng(7)
    tried = 0
    while tried < 150:
        n = int(rng.integers(1, 25))
        cell = np.eye(3) * rng.uniform(1, 6, 3) + rng.normal(0, 1, (3, 3)) * rng.uniform(0, 1)
        if abs(np.linalg.det(cell)) < 0.5:
            continue
        # Atoms outside the cell too: files often hold unwrapped coordinates.
        positions = rng.uniform(-0.5, 1.5, (n, 3)) @ cell
        atoms = Atoms(f"H{n}", positions=positions, cell=cell, pbc=rng.random(3) < 0.8)
        same_pairs(atoms, float(rng.uniform(0.3, 2.5)))
        tried += 1


def test_an_atom_near_its_own_image_is_reported_as_i_i() -> None:
    atoms = Atoms("H", positions=[[0, 0, 0]], cell=[0.4, 5, 5], pbc=True)
    i, j, d = close_pairs(atoms, 0.5)
    assert i.tolist() == [0, 0] and j.tolist() == [0, 0]
    assert np.allclose(d, 0.4)
    same_pairs(atoms, 0.5)


def test_molecule_without_cell_and_empty_structure() -> None:
    water = Atoms("OH2", positions=[[0, 0, 0], [0.96, 0, 0], [-0.24, 0.93, 0]])
    same_pairs(water, 1.0)
    assert len(close_pairs(water, 0.5)[2]) == 0
    assert all(len(a) == 0 for a in close_pairs(Atoms(), 0.5))


def test_cell_far_smaller_than_the_cutoff_falls_back_to_the_generic_search() -> None:
    # 7 x 7 x 11 image shifts: more than the vectorized search takes on.
    atoms = Atoms("H", positions=[[0, 0, 0]], cell=[0.2, 0.2, 0.12], pbc=True)
    same_pairs(atoms, 0.5)
    assert len(close_pairs(atoms, 0.5)[0]) > 100


def test_overlap_check_names_the_closest_pair() -> None:
    copper = bulk("Cu", "fcc", a=3.61, cubic=True)
    validate_atoms(copper)  # nearest neighbours are 2.55 A apart
    copper.positions[1] = copper.positions[0] + [0.1, 0.0, 0.0]
    with pytest.raises(InvalidStructure, match=r"atom 0 \(Cu\) and atom 1 \(Cu\) are 0.100 A"):
        validate_atoms(copper)
