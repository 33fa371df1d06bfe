"""The shipped DFT-optimized structures and the comparison of a relaxed structure with
them: atoms paired by position when the rows are in another order, the benchmark's RMSD,
cell errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from ase import Atoms
from ase.io import read

from executors.bench_geometry import position_rmsd
from mofsim_core.bench_dft import compare, dft_structure, dft_structure_names, pair_atoms
from mofsim_core.bench_suites import bulk_modulus_references, structure_sets


def test_every_reference_structure_is_shipped_with_its_dft_volume() -> None:
    refs = bulk_modulus_references()
    assert sorted(str(r["dft_structure"]) for r in refs.values()) == dft_structure_names()
    for ref in refs.values():
        atoms = dft_structure(str(ref["dft_structure"]))
        assert atoms is not None
        # The bulk-modulus table's volume at strain 1.000 is the DFT-optimized cell's.
        assert atoms.get_volume() == pytest.approx(float(ref["V0_A3"]), rel=5e-3)
    assert dft_structure("opt_no_such_structure") is None


def test_the_shipped_coordinates_hold_chemistry_a_slipped_digit_would_break() -> None:
    # DFT-optimized C-H bonds are 1.08-1.13 A; a wrong digit in the third decimal of an H
    # coordinate moves it by about 0.02 A in a 20 A cell and leaves this range.
    from ase.neighborlist import neighbor_list

    bonds = []
    for name in dft_structure_names():
        atoms = dft_structure(name)
        assert atoms is not None
        i, j, d = neighbor_list("ijd", atoms, 1.25)
        symbols = np.array(atoms.get_chemical_symbols())
        ch = (symbols[i] == "H") & (symbols[j] == "C")
        bonds.extend(d[ch].tolist())
    assert len(bonds) > 5000
    assert 1.075 < min(bonds) and max(bonds) < 1.135


@pytest.mark.filterwarnings("ignore:crystal system")
def test_the_dft_structures_hold_the_atoms_of_the_inputs(mofsimbench_dir: Path) -> None:
    refs = bulk_modulus_references()
    rmsd = {}
    for path in structure_sets()["main_set"]:
        name = Path(path).stem.replace("_primitive", "")
        dft = dft_structure(str(refs[name]["dft_structure"]))
        assert dft is not None
        inp = read(mofsimbench_dir / path)
        assert isinstance(inp, Atoms)
        assert sorted(inp.numbers) == sorted(dft.numbers), name
        rmsd[name] = compare(inp, dft)["rmsd_A"]
    # The inputs were the starting points of the DFT relaxations: where the cells are in
    # one setting, the two lie close once their atoms are paired.
    found = [v for v in rmsd.values() if v is not None]
    assert len(found) >= 90 and max(found) < 1.2
    assert float(np.median(found)) < 0.3
    # Rows in another order (the benchmark's row pairing gives 7.4 A here).
    assert rmsd["boydwoo_str_m3_o6_o6_nbo_sym_12"] == pytest.approx(0.36, abs=0.01)


def test_pairing_undoes_a_shuffle_and_the_rmsd_is_the_benchmarks() -> None:
    dft = dft_structure("opt_MOF-5_primitive")
    assert dft is not None
    rng = np.random.default_rng(3)
    moved = dft.copy()
    moved.positions += rng.normal(0.0, 0.05, moved.positions.shape)
    expected = position_rmsd(dft, moved)

    listed = compare(moved, dft)
    assert listed["pairing"] == "as listed"
    assert listed["rmsd_A"] == pytest.approx(expected)
    assert listed["volume_error_percent"] == pytest.approx(0.0, abs=1e-9)
    assert listed["angle_errors_deg"] == pytest.approx([0.0] * 3, abs=1e-9)

    shuffle = rng.permutation(len(moved))
    shuffled = moved[shuffle]
    order, _ = pair_atoms(dft, shuffled)
    assert (shuffle[order] == np.arange(len(dft))).all()
    paired = compare(shuffled, dft)
    assert paired["pairing"] == "by position"
    assert paired["rmsd_A"] == pytest.approx(expected)

    # Moved by a third of the cell and wrapped: the rows no longer say where atoms went.
    far = shuffled.copy()
    far.translate(far.cell.sum(axis=0) / 3)
    far.wrap()
    assert compare(far, dft)["rmsd_A"] == pytest.approx(expected)


def test_rows_in_order_keep_the_benchmarks_pairing_even_when_atoms_moved_far() -> None:
    dft = dft_structure("opt_MOF-5_primitive")
    assert dft is not None
    rng = np.random.default_rng(5)
    moved = dft.copy()
    moved.positions += rng.normal(0.0, 1.0, moved.positions.shape)
    # A badly relaxed structure: pairing by position would swap atoms and flatter it.
    got = compare(moved, dft)
    assert got["pairing"] == "as listed"
    assert got["rmsd_A"] == pytest.approx(position_rmsd(dft, moved))

    # The same rows, the origin moved by a third of the cell: the shift is taken out.
    near = dft.copy()
    near.positions += rng.normal(0.0, 0.05, near.positions.shape)
    far = near.copy()
    far.translate(far.cell.sum(axis=0) / 3)
    far.wrap()
    got = compare(far, dft)
    assert got["pairing"] == "as listed"
    assert got["rmsd_A"] == pytest.approx(position_rmsd(dft, near), rel=1e-3)


def test_cell_errors_and_other_atoms() -> None:
    dft = dft_structure("opt_MOF-5_primitive")
    assert dft is not None
    bigger = dft.copy()
    bigger.set_cell(dft.cell * 1.01, scale_atoms=True)
    got = compare(bigger, dft)
    assert got["length_errors_percent"] == pytest.approx([1.0] * 3)
    assert got["volume_error_percent"] == pytest.approx(100 * (1.01**3 - 1))
    assert got["rmsd_A"] > 0.0

    fewer = dft[1:]
    assert compare(fewer, dft)["rmsd_A"] is None
    with pytest.raises(ValueError):
        pair_atoms(dft, fewer)
