"""MOFSimBench's structural measures: Cartesian RMSD without rigid motion, CrystalNN
coordination per metal element, and the element whose coordination moved most."""

from __future__ import annotations

import numpy as np
import pytest
from ase.build import bulk, molecule

from executors.bench_geometry import (
    coordination_change,
    metal_coordination,
    metal_indices,
    position_rmsd,
)
from executors.geometry import rmsd_min_image


def test_rigid_motion_is_not_displacement() -> None:
    mof_like = molecule("C6H6")
    moved = mof_like.copy()
    moved.rotate(37, "z", center="COP")
    moved.translate([1.5, -0.3, 2.0])
    assert position_rmsd(mof_like, moved) == pytest.approx(0.0, abs=1e-8)


def test_rmsd_averages_over_every_coordinate() -> None:
    # Two atoms pushed apart symmetrically along x: no translation or rotation removes it.
    pair = molecule("N2")
    pair.center(vacuum=5.0)
    pair.pbc = True
    moved = pair.copy()
    axis = pair.positions[1] - pair.positions[0]
    axis /= np.linalg.norm(axis)
    moved.positions[0] -= 0.1 * axis
    moved.positions[1] += 0.1 * axis
    # Per atom 0.1 A; over 3N components sqrt(2 * 0.01 / 6).
    assert position_rmsd(pair, moved) == pytest.approx(np.sqrt(0.02 / 6), rel=1e-6)


def test_a_cell_expansion_counts_unlike_the_lattice_rmsd() -> None:
    cu = bulk("Cu", "fcc", a=3.6, cubic=True).repeat(2)
    swollen = cu.copy()
    swollen.set_cell(cu.cell * 1.05, scale_atoms=True)
    assert rmsd_min_image(cu, swollen) == pytest.approx(0.0, abs=1e-9)
    assert position_rmsd(cu, swollen) > 0.1


def test_rmsd_refuses_different_atom_counts() -> None:
    with pytest.raises(ValueError):
        position_rmsd(molecule("H2O"), molecule("CH4"))


def test_coordination_per_metal_element() -> None:
    assert metal_indices(molecule("CH3OH")) == []
    assert metal_coordination(molecule("CH3OH")) == {}
    assert metal_coordination(bulk("Cu", "fcc", a=3.6)) == {"Cu": pytest.approx(12.0)}
    zno = bulk("ZnO", "wurtzite", a=3.25, c=5.2)
    assert metal_coordination(zno) == {"Zn": pytest.approx(4.0)}


def test_the_element_that_moved_most_is_judged() -> None:
    assert coordination_change({"Zn": 4.0, "Cu": 5.0}, {"Zn": 3.9, "Cu": 4.0}) == (
        "Cu",
        pytest.approx(-1.0),
    )
    assert coordination_change({}, {}) == (None, None)
