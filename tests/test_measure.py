"""Measuring a task: force calls, their time, peak memory, neighbour pairs."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np

from executors.measure import CallCounter, PeakMemory, model_cutoff, neighbour_pairs
from executors.worker import Worker
from spool import Job, Spool, transitions


def _mof5():  # type: ignore[no-untyped-def]
    from executors.builtin_structures import build_builtin

    return build_builtin("MOF-5")


def test_neighbour_pairs_scale_with_a_supercell_and_count_both_directions() -> None:
    atoms = _mof5()
    pairs = neighbour_pairs(atoms, 5.0)
    assert pairs > 0 and pairs % 2 == 0  # (i, j) and (j, i)
    assert neighbour_pairs(atoms.repeat((2, 1, 1)), 5.0) == 2 * pairs
    assert neighbour_pairs(atoms, 3.0) < pairs


def test_the_call_counter_counts_and_times_calls_by_size_and_leaves_the_calculator_as_it_was() -> (
    None
):
    from ase.build import bulk
    from ase.calculators.emt import EMT

    calc = EMT()
    small = bulk("Cu", "fcc", a=3.6, cubic=True).repeat((2, 2, 2))
    big = small.repeat((2, 1, 1))
    with CallCounter(calc) as counter:
        for atoms in (small, big, big):
            atoms.calc = calc
            atoms.get_potential_energy()
            atoms.positions[0, 0] += 0.01  # a new geometry: no cached answer
    assert counter.calls == 3
    assert counter.by_size[len(small)][0] == 1 and counter.by_size[len(big)][0] == 2
    assert counter.largest == len(big)
    assert counter.seconds_per_call is not None and counter.seconds_per_call > 0
    assert "calculate" not in vars(calc)


def test_peak_memory_on_the_cpu_sees_an_allocation_above_the_idle_level() -> None:
    meter = PeakMemory("cpu")
    meter.start()
    block = np.ones(200 * 2**20 // 8)  # 200 MiB, touched
    block[::512] += 1.0
    del block
    peak = meter.stop()
    assert peak is not None and 180 <= peak <= 400


def test_cutoffs_come_from_the_table_or_the_model_description() -> None:
    from executors.models import resolve_model

    assert model_cutoff("sevennet-0") == 5.0
    assert model_cutoff("mace-mp") == 6.0
    assert model_cutoff(resolve_model("emt")) == 5.0
    assert model_cutoff("no-such-model") == 5.0


def test_a_task_result_carries_its_measurement(tmp_path: Path) -> None:
    sp = Spool(tmp_path / "spool")
    job = Job(
        task_type="optimization",
        model="lj",
        structure={"source": "builtin", "name": "MOF-5"},
        parameters={"max_steps": 4, "fmax": 1e-6},
    )
    claimed = transitions.claim(sp.paths, sp.submit(job), "cpu0", job.task_id)
    assert claimed is not None
    out = io.StringIO()
    Worker(sp.root, "cpu0", out=out).run_claimed(job.task_id, claimed)
    assert json.loads(out.getvalue().splitlines()[-1])["status"] == "COMPLETED"
    result = json.loads(sp.paths.result_file(job.task_id).read_text())
    m = result["metrics"]["measurement"]
    assert m["natoms"] == 106 and m["structure_natoms"] == 106
    assert m["cutoff_A"] == 3.0
    assert m["neighbour_pairs"] == neighbour_pairs(_mof5(), 3.0)
    # One call per optimizer step plus the first evaluation; the trajectory and the
    # final report reuse the calculator's cached results.
    assert 4 <= m["force_calls"] <= 6
    assert m["force_call_seconds"] > 0
    assert m["peak_memory_mb"] is not None and m["peak_memory_mb"] >= 0
    assert m["memory_source"] in ("rss", "rss-sampled")
    assert result["provenance"]["device_name"]


def _optimize(tmp_path: Path, threshold: int, **params: object) -> dict[str, object]:
    sp = Spool(tmp_path / f"spool{len(list(tmp_path.iterdir()))}")
    job = Job(
        task_type="optimization",
        model="lj",
        structure={"source": "builtin", "name": "MOF-5"},
        parameters={"max_steps": 1, **params},
    )
    claimed = transitions.claim(sp.paths, sp.submit(job), "cpu0", job.task_id)
    assert claimed is not None
    out = io.StringIO()
    Worker(sp.root, "cpu0", large_structure_atoms=threshold, out=out).run_claimed(
        job.task_id, claimed
    )
    reply = json.loads(out.getvalue().splitlines()[-1])
    assert reply["status"] == "COMPLETED", reply["error"]
    used: dict[str, object] = json.loads(sp.paths.result_file(job.task_id).read_text())["result"][
        "parameters_used"
    ]
    return used


def test_a_large_structure_gets_lbfgs_unless_the_job_names_its_optimizer(tmp_path: Path) -> None:
    used = _optimize(tmp_path, threshold=100)  # MOF-5's 106 atoms are "large" here
    assert used["optimizer"] == "LBFGS"
    assert "106 atoms" in str(used["optimizer_note"])
    named = _optimize(tmp_path, threshold=100, optimizer="BFGS")
    assert named["optimizer"] == "BFGS" and "optimizer_note" not in named
    small = _optimize(tmp_path, threshold=2000)
    assert small["optimizer"] == "BFGS" and "optimizer_note" not in small
