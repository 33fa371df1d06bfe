"""The cost model: fits, margins, out-of-memory floors, force calls, the store."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from executors.cost_model import (
    MIN_MARGIN,
    CostModel,
    call_bound,
    device_key,
    fit_key,
    fit_line,
    measurement_point,
)


def _points(a: float, b: float, c: float, noise: list[float]) -> list[tuple[float, float, float]]:
    out = []
    for i, e in enumerate(noise):
        natoms = 100.0 * (i + 1)
        pairs = natoms * (40 + 10 * (i % 3))  # pairs per atom varies between structures
        out.append((natoms, pairs, (a + b * natoms + c * pairs) * (1 + e)))
    return out


def test_an_exact_line_is_recovered_and_gets_the_minimum_margin() -> None:
    line = fit_line(_points(50.0, 0.2, 0.01, [0.0] * 6))
    assert line is not None
    assert line.a == pytest.approx(50.0, rel=1e-6)
    assert line.b == pytest.approx(0.2, rel=1e-6) and line.c == pytest.approx(0.01, rel=1e-6)
    assert line.margin == MIN_MARGIN and line.median_error < 1e-9
    assert line(1000, 50_000) == pytest.approx(50 + 200 + 500)


def test_one_wild_point_barely_moves_the_fit_and_widens_the_margin() -> None:
    noise = [0.02, -0.01, 0.03, -0.02, 0.01, 2.0, 0.0, -0.03, 0.02]  # one point off by 3x
    line = fit_line(_points(50.0, 0.2, 0.01, noise))
    assert line is not None
    assert line(900, 45_000) == pytest.approx(50 + 180 + 450, rel=0.08)
    assert line.median_error < 0.05
    assert line.margin > MIN_MARGIN  # the 90th percentile holds the wild point


def test_a_negative_slope_is_dropped_and_too_few_points_make_no_fit() -> None:
    # Memory that falls with pairs is nonsense: the fit keeps atoms only.
    pts = [(100.0, 9000.0, 110.0), (200.0, 8000.0, 210.0), (300.0, 7000.0, 310.0)]
    line = fit_line(pts)
    assert line is not None and line.c == 0.0 and line.b > 0
    assert fit_line(pts[:2]) is None
    assert fit_line([(1.0, 1.0, 0.0)] * 5) is None  # no positive values


def test_force_call_bounds_follow_the_parameters() -> None:
    assert call_bound("single-point-energy", {}) == 1
    assert call_bound("optimization", {"max_steps": 500}) == 501
    assert call_bound("stability", {"stages": [{"steps": 10}, {"steps": 20}]}) == 31
    assert call_bound("bulk-modulus", {"max_steps": 100, "num_points": 5}) == 1 + 600 + 5


def test_the_store_learns_estimates_and_remembers_out_of_memory(tmp_path: Path) -> None:
    costs = CostModel(tmp_path)
    assert costs.estimate("m", "Simulated GPU 0", "float32", 100, 4000) is None
    key = fit_key("m", "Simulated GPU 0", "float32")
    assert key == fit_key("m", "Simulated GPU 7", "float32") == "m|Simulated GPU|float32"
    for natoms, pairs, mem in _points(100.0, 1.0, 0.01, [0.0] * 4):
        costs.add_points(
            key,
            [
                {
                    "natoms": natoms,
                    "pairs": pairs,
                    "memory_mb": mem,
                    "seconds_per_call": 0.001 * natoms,
                }
            ],
        )
    est = costs.estimate(
        "m", "Simulated GPU 3", "float32", 1000, 40_000, "optimization", {"max_steps": 99}
    )
    assert est is not None
    assert est.memory_central_mb == pytest.approx(100 + 1000 + 400, rel=1e-6)
    assert est.memory_mb == pytest.approx(est.memory_central_mb * (1 + MIN_MARGIN), rel=1e-6)
    assert est.force_calls == 100 and est.duration_s == pytest.approx(100 * 1.0, rel=1e-6)
    # Past optimizations needed a fifth of their bound: the next one is expected to.
    costs.add_calls("optimization", {"max_steps": 99}, 20)
    again = costs.estimate(
        "m", "Simulated GPU 0", "float32", 1000, 40_000, "optimization", {"max_steps": 99}
    )
    assert again is not None and again.force_calls == pytest.approx(20)
    # An out-of-memory failure at 1000 atoms on a 24 GiB card: anything that big needs more.
    costs.add_oom(key, 1000, 40_000, 24576)
    big = costs.estimate("m", "Simulated GPU 0", "float32", 2000, 80_000)
    small = costs.estimate("m", "Simulated GPU 0", "float32", 500, 20_000)
    assert big is not None and big.memory_mb == 24576
    assert small is not None and small.memory_mb < 24576
    # Another process reading the same file sees the same thing.
    assert json.loads((tmp_path / "estimates.json").read_text())["models"][key]["oom"]
    other = CostModel(tmp_path).estimate("m", "Simulated GPU 1", "float32", 2000, 80_000)
    assert other is not None and other.memory_mb == 24576


def test_a_result_without_a_measurement_teaches_nothing(tmp_path: Path) -> None:
    costs = CostModel(tmp_path)
    assert costs.learn({"metrics": {}}, "single-point-energy", {}) is False
    assert measurement_point({"natoms": 10, "neighbour_pairs": 50, "peak_memory_mb": 0}) is None
    result = {
        "metrics": {
            "measurement": {
                "natoms": 10,
                "neighbour_pairs": 50,
                "peak_memory_mb": 3.5,
                "force_call_seconds": 0.1,
                "force_calls": 1,
            }
        },
        "provenance": {"model": "m", "device_name": "Xeon", "dtype": "float32"},
    }
    assert costs.learn(result, "single-point-energy", {}) is True
    assert costs.keys() == ["m|Xeon|float32"]
    assert device_key("NVIDIA H200") == "NVIDIA H200"


def test_a_negative_intercept_is_dropped_too() -> None:
    # Time that grows faster than linearly looks like a negative intercept to a line.
    pts = [(100.0, 4000.0, 1.0), (200.0, 8000.0, 3.0), (400.0, 16000.0, 8.0)]
    line = fit_line(pts)
    assert line is not None and line.a == 0.0 and line(100, 4000) > 0
