"""Relaxed structures against the benchmark's DFT-optimized ones.

The DFT-optimized structures (``benchdata/dft_optimized.json.gz``, see ``PROVENANCE.md``)
are keyed by their upstream name (``dft_structure`` in the bulk-modulus table).  For a
structure relaxed by a model, ``compare`` gives what the benchmark's optimization
analysis shows against DFT:

- the Cartesian RMSD of the positions (``executors.bench_geometry.position_rmsd``:
  differences taken to their minimum image in the DFT cell, net translation removed;
  ASE fits no rotation between periodic cells), computed only when both have the same
  atoms, as the original;
- the cell volume, lengths and angles against the DFT cell.

The original pairs atoms by their row in the two files.  That pairing measures nothing
where the rows come in another order (a file written by another program), and the
minimum image misleads it where the origin moved by a large shift.  So the atoms of
each element are also paired by position: the rigid shift that best lays the structure
onto the reference is found first, then an optimal assignment per element (fractional
coordinates, minimum image, distances in the reference cell).  The rows are the
pairing, as in the original, unless pairing by position gives less than half their
RMSD (rows in another order pair unrelated atoms, many Å apart); with the rows, the
original's number is reported, or the same pairing with the shift taken out where the
origin moved.  ``pairing`` says which.  A DFT cell given in another setting (axes permuted,
another choice of angles) is compared by volume, and by the rows where the elements
come in the same order; ``note`` says so.
"""

from __future__ import annotations

import functools
import gzip
import json
from typing import TYPE_CHECKING, Any

import numpy as np

from mofsim_core.bench_suites import DATA

if TYPE_CHECKING:
    from ase import Atoms

DFT_STRUCTURES = DATA / "dft_optimized.json.gz"


@functools.cache
def _table() -> dict[str, dict[str, Any]]:
    with gzip.open(DFT_STRUCTURES, "rt") as fh:
        data: dict[str, dict[str, Any]] = json.load(fh)
    return data


def dft_structure_names() -> list[str]:
    return sorted(_table())


def dft_structure(name: str) -> Atoms | None:
    """The DFT-optimized structure of that upstream name, or None if none is shipped."""
    from ase import Atoms
    from ase.geometry import cellpar_to_cell

    row = _table().get(name)
    if row is None:
        return None
    return Atoms(
        row["symbols"],
        scaled_positions=row["fractional"],
        cell=cellpar_to_cell(row["cell"]),
        pbc=True,
    )


MAX_SHIFTS = 64
AGREE = 0.02  # relative RMSD difference still taken as the same number
ROWS_ARE_OTHER = 0.5  # pairing by position below this share of the rows': another order
SAME_SETTING_LENGTH = 0.3  # relative
SAME_SETTING_ANGLE = 20.0  # degrees


def _wrapped(delta: np.ndarray) -> np.ndarray:
    return delta - np.round(delta)


def pair_atoms(reference: Atoms, atoms: Atoms) -> tuple[list[int], np.ndarray]:
    """For each atom of ``reference``, its partner in ``atoms`` (same element), and the
    fractional shift that lays ``atoms`` onto ``reference``.  ValueError when the two do
    not hold the same atoms."""
    from scipy.optimize import linear_sum_assignment

    if sorted(reference.numbers.tolist()) != sorted(atoms.numbers.tolist()):
        raise ValueError("the structures do not hold the same atoms")
    frac_ref, frac = reference.get_scaled_positions(), atoms.get_scaled_positions()
    cell = np.asarray(reference.cell)
    groups = [
        (np.nonzero(reference.numbers == z)[0], np.nonzero(atoms.numbers == z)[0])
        for z in sorted(set(reference.numbers.tolist()))
    ]

    def distances(mine: np.ndarray, theirs: np.ndarray, shift: np.ndarray) -> np.ndarray:
        delta = _wrapped(frac_ref[mine][:, None, :] - frac[theirs][None, :, :] - shift)
        return np.asarray(np.linalg.norm(delta @ cell, axis=-1))

    # Candidate shifts: one atom of the rarest element onto each of its kind.
    mine, theirs = min(groups, key=lambda g: len(g[0]))
    shifts = [np.zeros(3)] + [frac_ref[mine[0]] - frac[j] for j in theirs[:MAX_SHIFTS]]
    shift = min(
        shifts, key=lambda sh: sum(float(distances(m, t, sh).min(axis=1).sum()) for m, t in groups)
    )
    order = np.empty(len(reference), dtype=int)
    for mine, theirs in groups:
        rows, cols = linear_sum_assignment(distances(mine, theirs, shift))
        order[mine[rows]] = theirs[cols]
    return order.tolist(), shift


def _same_setting(a: Atoms, b: Atoms) -> bool:
    pa, pb = a.cell.cellpar(), b.cell.cellpar()
    lengths = np.abs(pa[:3] / pb[:3] - 1.0) <= SAME_SETTING_LENGTH
    angles = np.abs(pa[3:] - pb[3:]) <= SAME_SETTING_ANGLE
    return bool(lengths.all() and angles.all())


def _laid_onto(reference: Atoms, atoms: Atoms, order: list[int], shift: np.ndarray) -> Atoms:
    """``atoms`` in the reference's order, each at the periodic image nearest its
    partner (so no atom counts a whole cell vector as displacement)."""
    paired = atoms[order]
    frac = paired.get_scaled_positions(wrap=False) + shift
    frac_ref = reference.get_scaled_positions()
    frac = frac_ref + _wrapped(frac - frac_ref)
    paired.set_scaled_positions(frac)
    return paired


def compare(relaxed: Atoms, reference: Atoms) -> dict[str, Any]:
    """``relaxed`` against the DFT-optimized ``reference`` (see the module's text)."""
    from executors.bench_geometry import position_rmsd

    v, v_ref = float(relaxed.get_volume()), float(reference.get_volume())
    out: dict[str, Any] = {
        "volume_error_percent": 100.0 * (v - v_ref) / v_ref,
        "length_errors_percent": None,
        "angle_errors_deg": None,
        "rmsd_A": None,
        "pairing": None,
        "note": None,
    }
    same_rows = len(relaxed) == len(reference) and bool(
        (reference.numbers == relaxed.numbers).all()
    )
    listed = position_rmsd(reference, relaxed) if same_rows else None
    if not _same_setting(relaxed, reference):
        out["note"] = "the DFT cell is given in another setting"
        out["rmsd_A"], out["pairing"] = listed, "as listed" if same_rows else None
        return out
    par, par_ref = relaxed.cell.cellpar(), reference.cell.cellpar()
    out["length_errors_percent"] = (100.0 * (par[:3] - par_ref[:3]) / par_ref[:3]).tolist()
    out["angle_errors_deg"] = (par[3:] - par_ref[3:]).tolist()
    try:
        order, shift = pair_atoms(reference, relaxed)
    except ValueError:
        out["note"] = "the DFT structure holds other atoms"
        return out
    by_position = position_rmsd(reference, _laid_onto(reference, relaxed, order, shift))
    out["rmsd_A"], out["pairing"] = by_position, "by position"
    if listed is not None:
        rows = list(range(len(reference)))
        shifted = position_rmsd(reference, _laid_onto(reference, relaxed, rows, shift))
        # The benchmark's own number, unless a moved origin misled its minimum image.
        by_rows = listed if listed <= shifted * (1 + AGREE) else shifted
        # Rows in another order pair unrelated atoms: many times the RMSD.  Atoms that
        # moved far may trade places in an assignment and flatter it a little: rows.
        if by_position >= ROWS_ARE_OTHER * by_rows:
            out["rmsd_A"], out["pairing"] = by_rows, "as listed"
    return out
