"""Geometry helpers: cell parameters, minimum-image RMSD, unwrapping, coordination."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk, molecule

from executors.geometry import (
    average_metal_coordination,
    cell_parameters,
    coordination_numbers,
    displacements,
    largest_void_point,
    metal_indices,
    min_distance_between,
    rmsd_min_image,
    rmsd_positions,
    unwrap_trajectory,
    volume_change_percent,
)


def copper():
    return bulk("Cu", "fcc", a=3.6, cubic=True) * 2


def test_cell_parameters():
    assert cell_parameters(copper()) == pytest.approx(
        {"a": 7.2, "b": 7.2, "c": 7.2, "alpha": 90.0, "beta": 90.0, "gamma": 90.0}
    )
    prim = cell_parameters(bulk("Cu", "fcc", a=3.6))
    assert prim["a"] == pytest.approx(3.6 / 2**0.5)
    assert prim["alpha"] == pytest.approx(60.0) and prim["gamma"] == pytest.approx(60.0)
    assert all(isinstance(v, float) for v in prim.values())


def test_volume_change_percent():
    assert volume_change_percent(100.0, 95.0) == pytest.approx(-5.0)
    assert volume_change_percent(200, 220) == pytest.approx(10.0)


def test_rmsd_zero_for_rigid_translation_even_across_boundaries():
    ref = copper()
    moved = ref.copy()
    moved.translate([3.55, -1.2, 0.4])  # about half a cell along x
    moved.wrap()
    assert rmsd_min_image(ref, moved) == pytest.approx(0.0, abs=1e-10)


def test_rmsd_of_one_displaced_atom():
    ref = copper()
    n = len(ref)
    moved = ref.copy()
    moved.positions[5] += [0.3, 0.0, 0.0]
    # Translation removal spreads the displacement: d * sqrt(N - 1) / N.
    assert rmsd_min_image(ref, moved) == pytest.approx(0.3 * (n - 1) ** 0.5 / n)


def test_rmsd_uses_minimum_image_for_atoms_crossing_the_cell():
    ref = copper()
    ref.positions[0] = [0.05, 0.05, 0.05]
    moved = ref.copy()
    moved.positions[0] = [-0.05, 0.05, 0.05]
    moved.wrap()  # atom 0 now sits near x = 7.15
    d = displacements(ref, moved)
    assert d[0] == pytest.approx([-0.1, 0.0, 0.0])
    assert rmsd_min_image(ref, moved) < 0.1


def test_rmsd_ignores_uniform_cell_scaling_but_counts_distortion():
    ref = copper()
    scaled = ref.copy()
    scaled.set_cell(ref.cell * 0.95, scale_atoms=True)
    assert rmsd_min_image(ref, scaled) == pytest.approx(0.0, abs=1e-10)
    scaled.positions[3] += [0.0, 0.2, 0.0]
    assert rmsd_min_image(ref, scaled) > 0.01


def test_rmsd_non_periodic_molecule():
    ref = molecule("CO2")
    moved = ref.copy()
    moved.translate([10, 0, 0])
    assert rmsd_min_image(ref, moved) == pytest.approx(0.0, abs=1e-12)
    moved.positions[0] += [0, 0, 0.3]
    assert rmsd_min_image(ref, moved) == pytest.approx(0.3 * 2**0.5 / 3)
    with pytest.raises(ValueError):
        rmsd_min_image(ref, molecule("H2O")[:2])


def test_rmsd_positions():
    a = np.zeros((4, 3))
    b = a + [1.0, 2.0, 3.0]
    assert rmsd_positions(a, b) == 0.0
    assert rmsd_positions(a, b, remove_translation=False) == pytest.approx(14**0.5)


def test_unwrap_trajectory_follows_atoms_across_the_boundary():
    atoms = Atoms("Ar2", positions=[[9.0, 5.0, 5.0], [1.0, 1.0, 1.0]], cell=[10, 10, 10], pbc=True)
    frames = []
    for k in range(8):
        f = atoms.copy()
        f.positions[0, 0] += 0.6 * k  # walks through x = 10
        f.wrap()
        frames.append(f)
    assert frames[-1].positions[0, 0] < 5  # wrapped
    out = unwrap_trajectory(frames)
    assert out.shape == (8, 2, 3)
    assert out[:, 0, 0] == pytest.approx(9.0 + 0.6 * np.arange(8))
    assert out[:, 1] == pytest.approx(np.tile([1.0, 1.0, 1.0], (8, 1)))


def test_unwrap_trajectory_with_changing_cell():
    atoms = Atoms("Ar", scaled_positions=[[0.95, 0.5, 0.5]], cell=[10, 10, 10], pbc=True)
    frames = []
    for k in range(4):
        f = atoms.copy()
        f.set_cell(np.eye(3) * (10 + 0.5 * k), scale_atoms=True)
        f.set_scaled_positions([[0.95 + 0.04 * k, 0.5, 0.5]])
        f.wrap()
        frames.append(f)
    out = unwrap_trajectory(frames)
    expected = [(0.95 + 0.04 * k) * (10 + 0.5 * k) for k in range(4)]
    assert out[:, 0, 0] == pytest.approx(expected)
    assert unwrap_trajectory([]).shape == (0, 0, 3)


def test_metal_indices_and_coordination():
    assert metal_indices(molecule("CH3OH")) == []
    assert average_metal_coordination(molecule("CH3OH")) is None
    zno = bulk("ZnO", "wurtzite", a=3.25, c=5.2)
    assert metal_indices(zno) == [0, 2]
    assert average_metal_coordination(zno) == pytest.approx(4.0)
    assert average_metal_coordination(copper()) == pytest.approx(12.0)
    # A tighter cutoff drops the neighbours.
    assert average_metal_coordination(copper(), cutoff_scale=0.8) == 0.0
    mixed = Atoms("CuAlSiB", positions=np.eye(4, 3) * 5)
    assert metal_indices(mixed) == [0, 1]


def test_coordination_numbers_of_a_molecule():
    cn = coordination_numbers(molecule("CH4"))
    assert list(cn) == [4, 1, 1, 1, 1]
    assert list(coordination_numbers(molecule("CH4"), [0])) == [4]


def test_min_distance_between_uses_periodic_images():
    atoms = Atoms("Ar2", positions=[[0.5, 5, 5], [9.5, 5, 5]], cell=[10, 10, 10], pbc=True)
    assert min_distance_between(atoms, [0], [1]) == pytest.approx(1.0)
    atoms.pbc = False
    assert min_distance_between(atoms, [0], [1]) == pytest.approx(9.0)
    with pytest.raises(ValueError):
        min_distance_between(atoms, [], [1])


def test_largest_void_point():
    atoms = Atoms("Ar", positions=[[1.0, 1.0, 1.0]], cell=[8, 8, 8], pbc=True)
    point, dist = largest_void_point(atoms, spacing=0.5)
    assert point == pytest.approx([5.0, 5.0, 5.0])  # the antipode of the lone atom
    assert dist == pytest.approx(48**0.5)
    # A skewed cell: the distance found is the true periodic distance to the nearest atom.
    fcc = bulk("Cu", "fcc", a=3.6)
    point, dist = largest_void_point(fcc, spacing=0.32)  # 8 points per axis: 1/2 included
    probe = fcc.copy()
    probe.append("Ar")
    probe.positions[-1] = point
    assert dist == pytest.approx(min_distance_between(probe, [0], [1]))
    assert dist == pytest.approx(1.8, abs=0.05)  # the octahedral hole: a / 2
    with pytest.raises(ValueError):
        largest_void_point(molecule("CO"))


def test_import_does_not_pull_ase_or_torch():
    code = "import sys, executors.geometry; assert not {'torch', 'ase'} & set(sys.modules)"
    subprocess.run([sys.executable, "-c", code], check=True)
