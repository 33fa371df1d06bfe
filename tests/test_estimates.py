"""Estimates at submission and in the daemon, on simulated 24 GB cards: a framework no
card can hold is refused with 30004 and the numbers (CLI, API, hand-dropped file); one
that fits records its estimate, shows an ETA, runs, and teaches the cost model."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from executors.cost_model import CostModel, fit_key
from mofsim_cli.main import app
from mofsim_core.estimates import snapshot_devices
from mofsim_core.task_service import get_task
from mofsim_core.task_submit import submit_task
from mofsim_core.task_validation import build_job
from spool import Job, Spool
from spool.errors import DeviceUnavailable
from tests.daemon_helpers import Daemon, wait_for


def _xyz(name: str, repeat: tuple[int, int, int]) -> str:
    from ase.io import write

    from executors.builtin_structures import build_builtin

    buf = io.StringIO()
    write(buf, build_builtin(name).repeat(repeat), format="extxyz")
    return buf.getvalue()


def _seed_fit(spool: Spool) -> None:
    """A calibration as a large model on a 24 GB card would leave: 3 MiB per atom."""
    points = [
        {"natoms": n, "pairs": 8 * n, "memory_mb": 200.0 + 3.0 * n, "seconds_per_call": 1e-4 * n}
        for n in (106, 212, 424, 848, 1696)
    ]
    CostModel(spool.paths.state_dir).add_points(fit_key("lj", "Simulated GPU 0", "float32"), points)


def _t(stamp: str | None) -> float:
    from datetime import datetime

    assert stamp is not None
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def _body(content: str) -> dict[str, Any]:
    return {
        "task_type": "single-point-energy",
        "model": "lj",
        "structure": {"source": "inline", "format": "extxyz", "content": content},
    }


def test_without_a_fit_nothing_is_estimated_or_refused(tmp_path: Path) -> None:
    sp = Spool(tmp_path / "spool")
    big = _xyz("MOF-5_conventional", (3, 3, 3))  # 11 448 atoms
    job = build_job(sp, _body(big))
    assert job.estimate is None


def test_a_framework_no_card_holds_is_refused_and_one_that_fits_runs_with_an_eta(
    tmp_path: Path,
) -> None:
    sp = Spool(tmp_path / "spool")
    big = _xyz("MOF-5_conventional", (3, 3, 3))
    with Daemon(sp.root, slots="simulate:2"):
        wait_for(lambda: snapshot_devices(sp.root), 30, "slot snapshot")
        assert snapshot_devices(sp.root)[0] == ("Simulated GPU 0", 24576.0)
        _seed_fit(sp)
        # The API's validation: 30004 with the estimate and what the largest card has.
        with pytest.raises(DeviceUnavailable) as refused:
            build_job(sp, _body(big))
        assert refused.value.code == 30004
        numbers = json.loads(refused.value.detail or "{}")
        assert numbers["natoms"] == 11448 and numbers["available_memory_mb"] == 24576
        assert numbers["estimated_memory_mb"] > 3 * 11448
        assert "exceeds the largest device" in refused.value.message
        # The CLI says the same.
        path = tmp_path / "big.xyz"
        path.write_text(big)
        r = CliRunner().invoke(
            app,
            ["submit", "single-point-energy", str(path), "-m", "lj", "--spool", str(sp.root)],
            catch_exceptions=False,
        )
        assert r.exit_code == 1 and "30004" in r.output, r.output
        # A hand-dropped file fails at admission with the same code.
        dropped = Job.from_dict(_body(big))
        sp.submit(dropped)
        wait_for(lambda: sp.record(dropped.task_id)["status"] == "FAILED", 60, "refused")
        assert sp.record(dropped.task_id)["error"]["code"] == 30004
        # One that fits: its estimate is recorded and its status shows an ETA.
        small = build_job(sp, _body(_xyz("MOF-5", (1, 1, 1))))
        assert small.estimate is not None
        assert small.estimate["natoms"] == 106 and small.estimate["device"] == "Simulated GPU"
        assert 318 < small.estimate["memory_mb"] < 1000
        record = submit_task(sp, None, _body(_xyz("MOF-5", (1, 1, 1))))
        assert record["estimated_duration_s"] is not None
        task_id = record["task_id"]
        wait_for(lambda: sp.record(task_id)["status"] == "COMPLETED", 120, "small task")
    # The finished task taught the cost model: its force calls always, and a point of
    # its own when it used any memory above the executor's idle level.
    doc = json.loads((sp.paths.state_dir / "estimates.json").read_text())
    assert doc["calls"]["single-point-energy|default"] == [1.0]
    measured = json.loads(sp.paths.result_file(task_id).read_text())["metrics"]["measurement"]
    points = doc["models"]["lj|Simulated GPU|float32"]["points"]
    assert len(points) == (6 if measured["peak_memory_mb"] else 5)
    assert measured["natoms"] == 106 and measured["force_calls"] == 1


def test_heat_capacity_counts_its_displaced_supercells_and_sizes_them(tmp_path: Path) -> None:
    from executors.builtin_structures import build_builtin
    from executors.models import resolve_model
    from executors.registry import validate_parameters
    from mofsim_core.estimates import estimate_job, phonon_plan

    sp = Spool(tmp_path / "spool")
    _seed_fit(sp)
    atoms = build_builtin("MOF-5")
    params = validate_parameters("heat-capacity", {"supercell": [2, 1, 1], "max_steps": 50})
    n_disp, super_atoms = phonon_plan(atoms, params)
    assert super_atoms == 212 and n_disp > 0
    est = estimate_job(
        CostModel(sp.paths.state_dir),
        atoms,
        "heat-capacity",
        resolve_model("lj"),
        params,
        "float32",
        [("Simulated GPU 0", 24576.0)],
    )
    assert est is not None
    assert est["natoms"] == 212 and est["n_displacements"] == n_disp
    assert est["force_calls"] == 51 + n_disp  # the relaxation's bound, then one per cell
    # Relaxation calls at 106 atoms, displacement calls at 212 (1e-4 s per atom).
    assert est["duration_s"] == pytest.approx(51 * 0.0106 + n_disp * 0.0212, abs=0.06)
    # A supercell no card holds is refused before anything runs.
    huge = validate_parameters("heat-capacity", {"supercell": [4, 4, 5]})
    with pytest.raises(DeviceUnavailable):
        estimate_job(
            CostModel(sp.paths.state_dir),
            atoms,
            "heat-capacity",
            resolve_model("lj"),
            huge,
            "float32",
            [("Simulated GPU 0", 24576.0)],
        )


def test_an_out_of_memory_failure_asks_for_a_larger_card(tmp_path: Path) -> None:
    from mofsimd.cost_tracker import CostTracker, is_out_of_memory, largest_other

    sp = Spool(tmp_path / "spool")
    _seed_fit(sp)
    job = build_job(sp, _body(_xyz("MOF-5", (1, 1, 1))))
    assert job.estimate is None  # no snapshot of devices here: nothing estimated
    devices = [("Simulated GPU 0", 24576.0), ("Simulated GPU 1", 81920.0)]
    tracker = CostTracker(sp, "float32")
    memory = tracker.admit(job, devices)  # estimated here, as for a hand-dropped file
    assert memory is not None and memory < 1000
    claimed = sp.submit(job)
    assert is_out_of_memory({"type": "OutOfMemoryError", "message": "CUDA out of memory."})
    assert not is_out_of_memory({"type": "ValueError", "message": "bad"})
    assert largest_other(devices, 24576.0) and not largest_other(devices, 81920.0)
    tracker.out_of_memory(job.task_id, claimed, "Simulated GPU 0", 24576.0, larger=True)
    assert tracker.needed(job.task_id) == 24577.0  # only the 80 GB card will do now
    # The cost model keeps the floor for every job at least as large.
    doc = json.loads((sp.paths.state_dir / "estimates.json").read_text())
    (oom,) = doc["models"]["lj|Simulated GPU|float32"]["oom"]
    assert oom["natoms"] == 106 and oom["memory_mb"] == 24576.0


def test_a_queue_behind_a_running_task_shows_its_etas_in_status_and_top(tmp_path: Path) -> None:
    from mofsim_cli.top_local import LocalSource
    from mofsim_core.devices_cpu import CpuBackend
    from mofsim_core.eta import EtaBoard

    sp = Spool(tmp_path / "spool")
    cpu = CpuBackend(1).slots()[0].name
    # 10 ms per force call at MOF-5's size: 200 steps are about 2 s.
    points = [
        {"natoms": n, "pairs": 8 * n, "memory_mb": 1.0 * n, "seconds_per_call": 1e-4 * n}
        for n in (50, 106, 212, 424)
    ]
    CostModel(sp.paths.state_dir).add_points(fit_key("lj", cpu, "float32"), points)
    body = {
        "task_type": "optimization",
        "model": "lj",
        "structure": {"source": "builtin", "name": "MOF-5"},
        "parameters": {"max_steps": 199, "fmax": 1e-9, "optimizer": "FIRE"},
    }
    with Daemon(sp.root, slots="cpu:1"):
        wait_for(lambda: snapshot_devices(sp.root), 30, "slot snapshot")
        first = submit_task(sp, None, body)
        assert first["estimated_duration_s"] == pytest.approx(200 * 0.0106, abs=0.1)
        wait_for(lambda: sp.record(first["task_id"])["status"] == "RUNNING", 60, "running")
        second = submit_task(sp, None, body)["task_id"]
        third = submit_task(sp, None, body)["task_id"]
        board = EtaBoard.of(sp.root)
        wait_for(lambda: third in board.tasks(), 30, "the board")
        b, c = get_task(sp, second), get_task(sp, third)
        assert b["estimated_start"] is not None and b["estimated_start"] < c["estimated_start"]
        assert c["estimated_duration_s"] == pytest.approx(200 * 0.0106, abs=0.1)
        # The CLI's status and mofsim top say the same.
        r = CliRunner().invoke(
            app, ["status", third, "--json", "--spool", str(sp.root)], catch_exceptions=False
        )
        shown = json.loads(r.output)
        # The board is rewritten as the running task goes on: the same within seconds.
        assert abs(_t(shown["estimated_start"]) - _t(c["estimated_start"])) < 5
        state = LocalSource(sp).fetch()
        rows = {row.task_id: row for row in (*state.running, *state.queued)}
        if third in rows and rows[third].status == "QUEUED":  # still waiting when top looked
            assert abs(_t(rows[third].estimated_start) - _t(c["estimated_start"])) < 5
        for tid in (first["task_id"], second, third):
            wait_for(lambda tid=tid: sp.record(tid)["status"] == "COMPLETED", 120, tid)


def test_calibrate_measures_a_ladder_on_the_named_slot_and_stores_its_fit(tmp_path: Path) -> None:
    root = tmp_path / "spool"
    env = {"MOFSIM_SLOTS": "simulate:2"}
    argv = ["models", "calibrate", "lj", "--slot", "sim1", "--max-atoms", "500", "--json"]
    r = CliRunner().invoke(app, [*argv, "--spool", str(root)], env=env, catch_exceptions=False)
    assert r.exit_code == 0, r.output
    doc = json.loads(r.output)
    assert doc["fit"] == "lj|Simulated GPU|float32" and doc["device"] == "Simulated GPU 1"
    assert [p["natoms"] for p in doc["points"]] == [106, 212, 424]
    assert all(p["seconds_per_call"] > 0 and p["pairs"] > 0 for p in doc["points"])
    stored = json.loads((root / "state" / "estimates.json").read_text())
    assert len(stored["models"]["lj|Simulated GPU|float32"]["points"]) == len(
        [p for p in doc["points"] if p["memory_mb"]]
    )
    bad = CliRunner().invoke(
        app, ["models", "calibrate", "lj", "--slot", "gpu7", "--spool", str(root)], env=env
    )
    assert bad.exit_code == 1 and "error 40001: no slot 'gpu7'" in bad.output


def test_calibrating_a_model_on_a_structure_it_cannot_compute_says_so(tmp_path: Path) -> None:
    root = tmp_path / "spool"
    argv = ["models", "calibrate", "emt", "--structure", "MOF-5", "--spool", str(root)]
    r = CliRunner().invoke(app, argv, env={"MOFSIM_SLOTS": "cpu:1"})
    assert r.exit_code == 1
    assert (
        "error 50001: emt could not compute MOF-5" in r.output
        and "No EMT-potential for Zn" in r.output
    )
    assert "Traceback" not in r.output


def test_calibrate_measures_the_slots_the_daemon_was_started_with(tmp_path: Path) -> None:
    """``mofsim daemon --slots simulate:2`` on a machine configured for one CPU slot:
    calibration finds the daemon's cards and files its fit under their name, the one
    submissions consult."""
    sp = Spool(tmp_path / "spool")
    with Daemon(sp.root, slots="simulate:2"):
        wait_for(lambda: snapshot_devices(sp.root), 30, "slot snapshot")
        argv = ["models", "calibrate", "lj", "--slot", "sim1", "--max-atoms", "500", "--json"]
        r = CliRunner().invoke(app, [*argv, "--spool", str(sp.root)], env={"MOFSIM_SLOTS": "cpu:1"})
        assert r.exit_code == 0, r.output
        doc = json.loads(r.output)
        assert doc["fit"] == "lj|Simulated GPU|float32" and doc["device"] == "Simulated GPU 1"
        bad = CliRunner().invoke(
            app, ["models", "calibrate", "lj", "--slot", "cpu0", "--spool", str(sp.root)]
        )
        assert bad.exit_code == 1 and "slots: sim0, sim1" in bad.output
