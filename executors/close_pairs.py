"""Atom pairs closer than a short cutoff, periodic images included.

Every submission is checked for overlapping atoms before it is accepted, so this runs on
the API's request path.  ``ase.neighborlist.neighbor_list`` answers the same question
but is built for long cutoffs: for the 0.5 A overlap check its fixed cost dominates a
submission, small cells and MOFs alike.  Here the atoms are wrapped into the cell, only
the images lying within the cutoff of the cell's faces are added, and a k-d tree finds
the pairs.

Pairs are reported like ``neighbor_list("ijd", ...)``: ordered, so each pair appears
twice (``i, j`` and ``j, i``), and an atom close to its own periodic image appears as
``i, i``.  Distances are strictly below the cutoff.
"""

from __future__ import annotations

import itertools
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np
    from ase import Atoms

# More image shifts than this means a needle-thin cell; the generic algorithm copes.
MAX_SHIFTS = 343
# Up to this many centre-point distances are computed densely, without k-d trees.
DENSE_LIMIT = 20_000


def close_pairs(atoms: Atoms, cutoff: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(i, j, d)`` for every ordered pair of atoms (or atom and periodic image) whose
    distance is below ``cutoff``."""
    import numpy as np

    positions = np.asarray(atoms.positions, dtype=float)
    pbc = np.asarray(atoms.pbc, dtype=bool)
    if len(positions) == 0 or cutoff <= 0:
        empty = np.zeros(0, dtype=int)
        return empty, empty, np.zeros(0)
    if not pbc.any():
        return _pairs(
            positions,
            positions,
            np.arange(len(positions)),
            np.zeros(len(positions), dtype=bool),
            cutoff,
        )
    cell = np.asarray(atoms.cell.array, dtype=float)
    if abs(np.linalg.det(cell)) < 1e-9:
        return _generic(atoms, cutoff)
    inverse = np.linalg.inv(cell)
    # Columns of the inverse are the reciprocal vectors; the distance between opposite
    # faces of the cell is one over their length.
    heights = 1.0 / np.sqrt((inverse * inverse).sum(axis=0))
    reach = np.where(pbc, np.ceil(cutoff / heights), 0).astype(int)
    if int(np.prod(2 * reach + 1)) > MAX_SHIFTS:
        return _generic(atoms, cutoff)
    frac = positions @ inverse
    frac[:, pbc] %= 1.0
    wrapped = frac @ cell
    margin = cutoff / heights  # in fractions of each cell vector
    shifts = np.array(
        [s for s in itertools.product(*(range(-r, r + 1) for r in reach)) if any(s)], dtype=float
    ).reshape(-1, 3)
    shifted = frac[None, :, :] + shifts[:, None, :]
    # Only images within the cutoff of the cell can be within it of an atom inside.
    near = np.all(((shifted > -margin) & (shifted < 1.0 + margin)) | ~pbc, axis=2)
    owners = np.concatenate([np.arange(len(wrapped)), np.nonzero(near)[1]])
    points = np.concatenate([wrapped, shifted[near] @ cell])
    is_image = np.arange(len(points)) >= len(wrapped)
    return _pairs(wrapped, points, owners, is_image, cutoff)


def _pairs(
    centres: np.ndarray, points: np.ndarray, owners: np.ndarray, is_image: np.ndarray, cutoff: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    import numpy as np

    if len(centres) * len(points) <= DENSE_LIMIT:
        # Small cells: every distance at once costs less than building two trees.
        dist = np.sqrt(((centres[:, None, :] - points[None, :, :]) ** 2).sum(axis=2))
        i, k = np.nonzero(dist < cutoff)
        d = dist[i, k]
    else:
        from scipy.spatial import cKDTree

        found = cKDTree(centres).sparse_distance_matrix(
            cKDTree(points), cutoff, output_type="ndarray"
        )
        i, k, d = found["i"].astype(int), found["j"], found["v"].astype(float)
    j = owners[k]
    # An atom is not its own neighbour; a periodic image of it may be.
    keep = (d < cutoff) & ((i != j) | is_image[k])
    return i[keep], j[keep], d[keep]


def _generic(atoms: Atoms, cutoff: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    from ase.neighborlist import neighbor_list

    i, j, d = neighbor_list("ijd", atoms, cutoff)
    return i, j, d
