"""Stability metrics: running statistics, unwrapped displacements, RMSD, COM drift, verdict."""

from __future__ import annotations

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk

from executors import md_metrics as mm


def test_running_stats_match_numpy() -> None:
    values = np.random.default_rng(3).normal(300.0, 12.0, size=500)
    stats = mm.RunningStats()
    assert stats.mean is None and stats.std is None
    for v in values:
        stats.add(float(v))
    assert stats.n == 500
    assert stats.mean == pytest.approx(values.mean(), rel=1e-12)
    assert stats.std == pytest.approx(values.std(), rel=1e-10)


def test_running_slope_matches_polyfit() -> None:
    rng = np.random.default_rng(5)
    x = np.linspace(10.0, 60.0, 400)  # offset far from zero: the sums must stay accurate
    y = -1234.5 + 0.25 * x + rng.normal(0.0, 0.01, size=x.size)
    slope = mm.RunningSlope()
    for xi, yi in zip(x, y, strict=True):
        slope.add(float(xi), float(yi))
    assert slope.slope == pytest.approx(np.polyfit(x, y, 1)[0], rel=1e-9)
    single = mm.RunningSlope()
    single.add(1.0, 2.0)
    assert single.slope is None


def _cu() -> Atoms:
    return bulk("Cu", "fcc", a=3.6, cubic=True).repeat(2)


def test_uniform_expansion_is_not_motion() -> None:
    ref = _cu()
    expanded = ref.copy()
    expanded.set_cell(ref.cell * 1.05, scale_atoms=True)
    disp = mm.lattice_displacements([ref, expanded])
    assert mm.rmsd_series(disp) == pytest.approx([0.0, 0.0], abs=1e-12)


def test_boundary_crossing_is_followed_and_translation_removed() -> None:
    ref = _cu()
    frames = [ref]
    # Move atom 0 steadily by +0.9 A along x in five steps, wrapping it into the cell;
    # the whole structure also shifts rigidly by 2 A along y (removed by the RMSD).
    for k in range(1, 6):
        f = ref.copy()
        f.positions[:, 1] += 0.4 * k
        f.positions[0, 0] -= 0.9 * k
        f.wrap()
        frames.append(f)
    disp = mm.lattice_displacements(frames)
    assert disp[-1][0] == pytest.approx([-4.5, 2.0, 0.0], abs=1e-9)
    n = len(ref)
    # RMSD of one atom displaced by 4.5 A among n, after removing the mean displacement.
    d = np.zeros((n, 3))
    d[0, 0] = -4.5
    d -= d.mean(axis=0)
    expected = float(np.sqrt((d**2).sum(axis=1).mean()))
    assert mm.rmsd_series(disp)[-1] == pytest.approx(expected, rel=1e-9)
    com = mm.com_drift_series(disp, ref.get_masses())
    assert com[0] == 0.0
    assert com[-1] == pytest.approx(np.hypot(4.5 / n, 2.0), rel=1e-9)


def test_volume_ratios_keep_missing_values() -> None:
    assert mm.volume_ratios([100.0, None, 110.0], 100.0) == [1.0, None, 1.1]


def test_verdict_thresholds() -> None:
    ok = mm.verdict(3.0, 6.0, 6.2)
    assert ok["assessment"] == "stable" and ok["reasons"] == []
    assert ok["thresholds"] == {"max_volume_change_percent": 10.0, "coordination_tolerance": 0.5}
    assert ok["coordination_change"] == pytest.approx(0.2)
    swollen = mm.verdict(-12.0, 6.0, 6.0)
    assert swollen["assessment"] == "unstable"
    assert "12.00 %" in swollen["reasons"][0]
    broken = mm.verdict(1.0, 6.0, 4.0, coordination_tolerance=0.25)
    assert broken["assessment"] == "unstable"
    assert "coordination" in broken["reasons"][0]
    assert mm.verdict(None, None, None)["assessment"] == "unstable"
    # No metals: judged on the volume alone.
    assert mm.verdict(2.0, None, None)["assessment"] == "stable"
