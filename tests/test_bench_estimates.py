"""bench/estimates.py end to end with a cheap model: it measures, fits, predicts the
held-out half and reports the error percentiles."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_benchmark_fits_one_half_and_predicts_the_other() -> None:
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "bench" / "estimates.py"),
            "--model",
            "lj",
            "--max-atoms",
            "500",
            "--structures",
            "8",
            "--calls",
            "2",
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    doc = json.loads(proc.stdout)
    assert doc["fit_structures"] == doc["held_out_structures"] == 4
    assert all(p["natoms"] <= 500 for p in doc["held_out"])
    # Time per call of a pair potential grows with its pairs: the fit sees it.
    assert 0 <= doc["time_error_median"] <= doc["time_error_p90"]
    assert doc["time_fit"]["points"] == 4
    for p in doc["held_out"]:
        assert p["seconds_per_call_predicted"] > 0 and p["pairs"] > 0
