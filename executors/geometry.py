"""Structure geometry as pure functions: cell parameters, displacements, RMSD,
trajectory unwrapping, metal coordination numbers and inter-group distances.

Conventions: displacements between two configurations of the same atoms are taken in
fractional coordinates along periodic directions and wrapped to the nearest image, then
expressed in the *reference* cell, so a uniform expansion of the cell (atoms keeping
their fractional positions) is not counted as motion.  Non-periodic directions use plain
Cartesian differences.  All functions return plain Python floats or numpy arrays; wrap
results with ``executors.api.json_safe`` before putting them in a result.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from ase import Atoms

# Elements that are not metals: noble gases, the usual non-metals and the metalloids
# (B, Si, Ge, As, Sb, Te).  Everything else up to Lr counts as a metal.
NONMETALS = frozenset(
    {
        "H",
        "He",
        "B",
        "C",
        "N",
        "O",
        "F",
        "Ne",
        "Si",
        "P",
        "S",
        "Cl",
        "Ar",
        "Ge",
        "As",
        "Se",
        "Br",
        "Kr",
        "Sb",
        "Te",
        "I",
        "Xe",
        "At",
        "Rn",
    }
)


@lru_cache(maxsize=1)
def _metals() -> frozenset[str]:
    from ase.data import chemical_symbols

    return frozenset(s for s in chemical_symbols[1:104] if s not in NONMETALS)


def cell_parameters(atoms: Atoms) -> dict[str, float]:
    """Lattice lengths (A) and angles (degrees) as ``{a, b, c, alpha, beta, gamma}``."""
    a, b, c, alpha, beta, gamma = (float(x) for x in atoms.cell.cellpar())
    return {"a": a, "b": b, "c": c, "alpha": alpha, "beta": beta, "gamma": gamma}


def volume_change_percent(v0: float, v1: float) -> float:
    """Relative change from ``v0`` to ``v1`` in percent."""
    return 100.0 * (float(v1) - float(v0)) / float(v0)


def _periodic_axes(atoms: Atoms) -> np.ndarray:
    """Boolean mask of the directions treated as periodic: pbc set and the cell has full
    rank (a structure with a degenerate cell is handled in Cartesian coordinates)."""
    if atoms.cell.rank < 3:
        return np.zeros(3, dtype=bool)
    return np.asarray(atoms.pbc, dtype=bool)


def _fractional(atoms: Atoms) -> np.ndarray:
    return np.asarray(atoms.cell.scaled_positions(atoms.positions))


def displacements(atoms_ref: Atoms, atoms: Atoms) -> np.ndarray:
    """Per-atom displacement vectors (N, 3) from ``atoms_ref`` to ``atoms``, minimum image
    along the reference's periodic directions, expressed in the reference cell."""
    if len(atoms_ref) != len(atoms):
        raise ValueError(f"atom counts differ: {len(atoms_ref)} vs {len(atoms)}")
    pbc = _periodic_axes(atoms_ref)
    if not pbc.any() or atoms.cell.rank < 3:
        return np.asarray(atoms.positions - atoms_ref.positions)
    d = _fractional(atoms) - _fractional(atoms_ref)
    d[:, pbc] -= np.round(d[:, pbc])
    return np.asarray(d @ atoms_ref.cell.array)


def rmsd_positions(ref: np.ndarray, pos: np.ndarray, *, remove_translation: bool = True) -> float:
    """RMSD between two (N, 3) position arrays (already unwrapped), optionally after
    removing the mean displacement (rigid translation)."""
    d = np.asarray(pos, dtype=float) - np.asarray(ref, dtype=float)
    if remove_translation:
        d = d - d.mean(axis=0)
    return float(np.sqrt((d**2).sum(axis=1).mean())) if len(d) else 0.0


def rmsd_min_image(atoms_ref: Atoms, atoms: Atoms) -> float:
    """RMSD of ``atoms`` from ``atoms_ref`` after removing the rigid translation, with each
    displacement taken to its minimum image in the reference cell.

    Works when the cell changed (e.g. after a cell relaxation): displacements are
    fractional, so only motion relative to the lattice counts.  The translation is removed
    before wrapping too, so a whole-structure shift by about half a cell is still rigid.
    """
    d = displacements(atoms_ref, atoms)
    if len(d) == 0:
        return 0.0
    pbc = _periodic_axes(atoms_ref)
    if pbc.any() and atoms.cell.rank == 3:
        # Rewrap around the mean shift: per-atom wrapping alone would split a rigid shift
        # near half a lattice vector into +-1/2 pieces.
        frac = d @ np.linalg.inv(atoms_ref.cell.array)
        frac[:, pbc] -= np.round(frac[:, pbc] - frac[:, pbc].mean(axis=0))
        d = frac @ atoms_ref.cell.array
    return rmsd_positions(np.zeros_like(d), d, remove_translation=True)


def unwrap_trajectory(frames: Sequence[Atoms]) -> np.ndarray:
    """Continuous Cartesian positions (n_frames, N, 3) for a trajectory whose atoms were
    wrapped into the cell: successive frames are joined through the minimum image in
    fractional coordinates, and each frame is expressed in its own cell (so NPT frames
    with a changing cell unwrap correctly).  Assumes no atom moves more than half a cell
    between frames."""
    if not frames:
        return np.zeros((0, 0, 3))
    out = np.empty((len(frames), len(frames[0]), 3))
    first = frames[0]
    pbc = _periodic_axes(first)
    if not pbc.any():
        for k, frame in enumerate(frames):
            out[k] = frame.positions
        return out
    prev = _fractional(first)
    acc = prev.copy()
    out[0] = first.positions
    for k in range(1, len(frames)):
        frac = _fractional(frames[k])
        d = frac - prev
        d[:, pbc] -= np.round(d[:, pbc])
        acc = acc + d
        prev = frac
        out[k] = acc @ frames[k].cell.array
    return out


def metal_indices(atoms: Atoms) -> list[int]:
    """Indices of metal atoms (every element except non-metals and metalloids)."""
    metals = _metals()
    return [i for i, s in enumerate(atoms.get_chemical_symbols()) if s in metals]


def coordination_numbers(
    atoms: Atoms, indices: Sequence[int] | None = None, cutoff_scale: float = 1.2
) -> np.ndarray:
    """Number of neighbours of each atom in ``indices`` (all atoms when None): pairs closer
    than ``cutoff_scale`` times the sum of ASE's natural (covalent) radii, with periodic
    images."""
    from ase.neighborlist import natural_cutoffs, neighbor_list

    cutoffs = natural_cutoffs(atoms, mult=cutoff_scale)
    i = neighbor_list("i", atoms, cutoffs, self_interaction=False)
    counts = np.bincount(i, minlength=len(atoms))
    if indices is None:
        return np.asarray(counts)
    return np.asarray(counts[list(indices)])


def average_metal_coordination(atoms: Atoms, cutoff_scale: float = 1.2) -> float | None:
    """Mean coordination number of the metal atoms (None when there are none)."""
    idx = metal_indices(atoms)
    if not idx:
        return None
    return float(coordination_numbers(atoms, idx, cutoff_scale).mean())


def min_distance_between(atoms: Atoms, group_a: Sequence[int], group_b: Sequence[int]) -> float:
    """Shortest distance (A) between any atom of ``group_a`` and any of ``group_b``,
    minimum image along periodic directions."""
    if not group_a or not group_b:
        raise ValueError("both groups must be non-empty")
    from ase.geometry import get_distances

    pbc = atoms.pbc if atoms.cell.rank == 3 else None
    cell = atoms.cell if atoms.cell.rank == 3 else None
    _, dist = get_distances(
        atoms.positions[list(group_a)], atoms.positions[list(group_b)], cell=cell, pbc=pbc
    )
    return float(np.min(dist))


def largest_void_point(atoms: Atoms, spacing: float = 0.4) -> tuple[np.ndarray, float]:
    """The grid point of the cell farthest from every atom (periodic images included) and
    that distance (A): where a guest molecule fits best.  The grid has about ``spacing``
    A between points along each lattice vector.  Needs a 3D cell."""
    from scipy.spatial import cKDTree

    if atoms.cell.rank < 3:
        raise ValueError("largest_void_point needs a structure with a 3D cell")
    cell = atoms.cell.array
    lengths = np.linalg.norm(cell, axis=1)
    n = np.maximum(np.ceil(lengths / spacing).astype(int), 1)
    axes = [np.arange(k) / k for k in n]
    grid = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, 3) @ cell
    # Atoms wrapped into the cell plus their 26 neighbouring images: the nearest atom of
    # any grid point inside the cell is among them.
    frac = _fractional(atoms)
    frac = frac - np.floor(frac)
    shifts = np.array([[i, j, k] for i in (-1, 0, 1) for j in (-1, 0, 1) for k in (-1, 0, 1)])
    images = (frac[None, :, :] + shifts[:, None, :]).reshape(-1, 3) @ cell
    dist, _ = cKDTree(images).query(grid)
    best = int(np.argmax(dist))
    return grid[best], float(dist[best])
