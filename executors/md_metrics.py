"""Stability metrics of a staged MD run, as pure functions of recorded frames and samples.

Conventions follow ``executors.geometry``: displacements are measured in fractional
coordinates and expressed in the first frame's cell, so a uniform expansion of the cell
under NPT (atoms keeping their fractional positions) is a volume change, not atomic
motion.  The trajectory is unwrapped first, so atoms that cross the cell boundary (or
diffuse further than half a cell) are followed continuously.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np
    from ase import Atoms

DEFAULT_MAX_VOLUME_CHANGE_PERCENT = 10.0
DEFAULT_COORDINATION_TOLERANCE = 0.5


class RunningStats:
    """Mean and standard deviation of a stream (Welford), without keeping the values."""

    def __init__(self) -> None:
        self.n = 0
        self._mean = 0.0
        self._m2 = 0.0

    def add(self, x: float) -> None:
        self.n += 1
        delta = x - self._mean
        self._mean += delta / self.n
        self._m2 += delta * (x - self._mean)

    @property
    def mean(self) -> float | None:
        return self._mean if self.n else None

    @property
    def std(self) -> float | None:
        """Population standard deviation (None before the first value)."""
        return math.sqrt(self._m2 / self.n) if self.n else None


class RunningSlope:
    """Least-squares slope dy/dx of a stream of (x, y) points, from running sums of the
    centred values (shifted by the first point, which keeps the sums well conditioned)."""

    def __init__(self) -> None:
        self.n = 0
        self._x0 = self._y0 = 0.0
        self._sx = self._sy = self._sxx = self._sxy = 0.0

    def add(self, x: float, y: float) -> None:
        if self.n == 0:
            self._x0, self._y0 = x, y
        dx, dy = x - self._x0, y - self._y0
        self.n += 1
        self._sx += dx
        self._sy += dy
        self._sxx += dx * dx
        self._sxy += dx * dy

    @property
    def slope(self) -> float | None:
        """None with fewer than two distinct x values."""
        if self.n < 2:
            return None
        var = self._sxx - self._sx * self._sx / self.n
        if var <= 0:
            return None
        return (self._sxy - self._sx * self._sy / self.n) / var


def lattice_displacements(frames: Sequence[Atoms]) -> np.ndarray:
    """(n_frames, N, 3) displacement of every atom from the first frame, unwrapped, in
    fractional coordinates of each frame mapped into the first frame's cell."""
    import numpy as np  # here, not at the top: the task registry imports this module

    from executors.geometry import unwrap_trajectory

    if not frames:
        return np.zeros((0, 0, 3))
    unwrapped = unwrap_trajectory(frames)
    ref = frames[0]
    if ref.cell.rank < 3:
        return np.asarray(unwrapped - unwrapped[0])
    out = np.empty_like(unwrapped)
    frac0 = unwrapped[0] @ np.linalg.inv(ref.cell.array)
    for k, frame in enumerate(frames):
        frac = unwrapped[k] @ np.linalg.inv(frame.cell.array)
        out[k] = (frac - frac0) @ ref.cell.array
    return out


def rmsd_series(disp: np.ndarray) -> list[float]:
    """RMSD (A) of each frame from the first, after removing the rigid translation."""
    import numpy as np

    out = []
    for d in disp:
        d = d - d.mean(axis=0)
        out.append(float(np.sqrt((d**2).sum(axis=1).mean())) if len(d) else 0.0)
    return out


def com_drift_series(disp: np.ndarray, masses: np.ndarray) -> list[float]:
    """Distance (A) the centre of mass has moved from the first frame, per frame."""
    import numpy as np

    m = np.asarray(masses, dtype=float)
    if disp.size == 0 or m.sum() <= 0:
        return [0.0] * len(disp)
    com = np.einsum("i,kij->kj", m, disp) / m.sum()
    return [float(x) for x in np.linalg.norm(com, axis=1)]


def volume_ratios(volumes: Sequence[float | None], v0: float) -> list[float | None]:
    return [None if v is None else float(v) / v0 for v in volumes]


def verdict(
    volume_change_percent: float | None,
    coordination_reference: float | None,
    coordination_final: float | None,
    *,
    max_volume_change_percent: float = DEFAULT_MAX_VOLUME_CHANGE_PERCENT,
    coordination_tolerance: float = DEFAULT_COORDINATION_TOLERANCE,
    element: str | None = None,
) -> dict[str, Any]:
    """``stable`` when |volume change| <= the limit and the average metal coordination
    number (of ``element``, when given) moved by no more than the tolerance; the reasons
    say which test failed and ``decided_by`` names the failed criteria (``volume``,
    ``coordination``).  A structure without metals is judged on the volume alone."""
    reasons = []
    decided_by = []
    if volume_change_percent is None or not math.isfinite(volume_change_percent):
        reasons.append("volume change could not be measured")
        decided_by.append("volume")
    elif abs(volume_change_percent) > max_volume_change_percent:
        reasons.append(
            f"|volume change| {abs(volume_change_percent):.2f} % exceeds "
            f"{max_volume_change_percent:g} %"
        )
        decided_by.append("volume")
    coordination_change = None
    if coordination_reference is not None and coordination_final is not None:
        coordination_change = coordination_final - coordination_reference
        if abs(coordination_change) > coordination_tolerance:
            reasons.append(
                f"average {element or 'metal'} coordination changed by "
                f"{coordination_change:+.3f} (tolerance {coordination_tolerance:g})"
            )
            decided_by.append("coordination")
    return {
        "assessment": "unstable" if reasons else "stable",
        "reasons": reasons,
        "decided_by": decided_by,
        "coordination_change": coordination_change,
        "thresholds": {
            "max_volume_change_percent": max_volume_change_percent,
            "coordination_tolerance": coordination_tolerance,
        },
    }
