"""The staged MD runner, on EMT copper: frames, seeding, thermalization, cancellation."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk
from ase.calculators.emt import EMT

from executors.api import NullObserver
from executors.md_runner import relax_structure, run_stages
from executors.md_stages import normalize_stages
from spool.errors import TaskCancelled, TaskDiverged


def _cu(a: float = 3.6) -> Atoms:
    atoms = bulk("Cu", "fcc", a=a, cubic=True)  # 4 atoms: fast enough for every step
    atoms.calc = EMT()
    return atoms


def _short_run(seed: int, **kw: Any) -> Any:
    atoms = _cu()
    stages = normalize_stages(
        [
            {"type": "relax", "steps": 20},
            {"type": "nvt", "steps": 30, "timestep_fs": 2.0},
            {"type": "npt", "steps": 40, "timestep_fs": 2.0},
        ]
    )
    frames: list[Atoms] = []
    run = run_stages(
        atoms,
        stages,
        kw.pop("observer", NullObserver()),
        seed=seed,
        frame_interval=10,
        on_frame=frames.append,
        **kw,
    )
    return atoms, run, frames


def test_run_records_tagged_frames_and_summaries() -> None:
    observer = NullObserver()
    atoms, run, frames = _short_run(1, observer=observer)
    assert frames == run.frames
    tags = [(f.info["stage"], f.info["stage_type"], f.info["step"]) for f in frames]
    assert tags[:2] == [(0, "relax", 0), (0, "relax", 0)]
    assert tags[2:5] == [(1, "nvt", 10), (1, "nvt", 20), (1, "nvt", 30)]
    assert tags[-1] == (2, "npt", 40)
    times = [s["time_ps"] for s in run.samples]
    assert times == sorted(times) and times[-1] == pytest.approx(0.14)
    nvt, npt = run.stages[1], run.stages[2]
    assert nvt["steps_done"] == 30 and nvt["duration_ps"] == pytest.approx(0.06)
    assert nvt["volume_std"] == pytest.approx(0.0)  # fixed cell
    assert npt["volume_std"] > 0.0  # the barostat moves the cell
    assert npt["energy_drift_quantity"] == "conserved_energy"
    assert nvt["energy_drift_quantity"] == "total_energy"
    assert 50.0 < npt["temperature_mean"] < 800.0
    assert run.after_relax is not None
    # Progress went through the observer with stage, step, temperature and volume.
    md_events = [m for _, _, m in observer.progress_events if "temperature" in m]
    assert md_events and {"stage", "step", "volume"} <= set(md_events[-1])
    assert md_events[-1]["step"] == 20 + 30 + 40
    # Every frame carries the energy it was recorded with.
    assert frames[-1].get_potential_energy() == pytest.approx(run.samples[-1]["energy"])
    assert atoms.constraints == []  # FixCom of the NVT stage was removed again


def test_seeded_runs_repeat_and_differ_across_seeds() -> None:
    a1, _, _ = _short_run(7)
    a2, _, _ = _short_run(7)
    a3, _, _ = _short_run(8)
    np.testing.assert_allclose(a1.positions, a2.positions, atol=1e-12)
    assert np.abs(a1.positions - a3.positions).max() > 1e-6


def test_velocities_start_without_drift() -> None:
    atoms = _cu().repeat(2)
    atoms.calc = EMT()
    stages = normalize_stages([{"type": "nvt", "steps": 1}])
    run_stages(atoms, stages, NullObserver(), seed=0, frame_interval=1)
    momentum = atoms.get_momenta().sum(axis=0)
    np.testing.assert_allclose(momentum, 0.0, atol=1e-10)


def test_relax_between_md_stages_cools_then_rethermalizes() -> None:
    atoms = _cu()
    stages = normalize_stages(
        [{"type": "nvt", "steps": 10}, {"type": "relax", "steps": 5}, {"type": "npt", "steps": 10}]
    )
    run = run_stages(atoms, stages, NullObserver(), frame_interval=5)
    relaxed = [s for s in run.samples if s["stage_type"] == "relax"]
    assert relaxed and relaxed[-1]["temperature"] == 0.0
    assert run.after_relax is None  # the first stage was not a relaxation
    assert run.stages[2]["temperature_mean"] > 10.0
    assert run.stages[1]["start_time_ps"] == run.stages[1]["end_time_ps"] == 0.01


class _CancelAfter(NullObserver):
    def __init__(self, calls: int) -> None:
        super().__init__()
        self.calls = calls

    def check_cancel(self) -> None:
        self.calls -= 1
        if self.calls < 0:
            raise TaskCancelled("cancelled by request")


def test_cancel_stops_the_run_at_a_step() -> None:
    atoms = _cu()
    stages = normalize_stages([{"type": "nvt", "steps": 1000}])
    with pytest.raises(TaskCancelled):
        run_stages(atoms, stages, _CancelAfter(5), frame_interval=1)
    assert atoms.constraints == []


def test_relax_structure_with_cell() -> None:
    atoms = _cu(a=3.7)
    out = relax_structure(atoms, NullObserver(), fmax=1e-3, steps=200, relax_cell=True)
    assert out["converged"] and out["final_fmax"] <= 1e-3
    assert out["final_volume"] < out["initial_volume"]
    assert out["final_energy"] < out["initial_energy"]
    assert atoms.get_volume() / 4 == pytest.approx(11.565, rel=2e-3)  # EMT Cu, A^3/atom


@pytest.mark.parametrize("redraw", [False, True])
def test_a_stage_can_ask_for_fresh_velocities(redraw: bool) -> None:
    atoms = _cu(3.6).repeat(2)
    atoms.calc = EMT()
    stages = normalize_stages(
        [
            {"type": "nvt", "steps": 2, "temperature": 20.0, "friction": 0.0},
            {"type": "npt", "steps": 1, "temperature": 3000.0, "redraw_velocities": redraw},
        ]
    )
    run = run_stages(atoms, stages, NullObserver(), seed=3, frame_interval=1)
    first_npt = next(s for s in run.samples if s["stage"] == 1)
    # Carried over, the cold NVT velocities stay cold; redrawn, they start near 3000 K.
    assert (first_npt["temperature"] > 1000.0) is redraw


class _StressBlowsUp(EMT):  # type: ignore[misc]
    """EMT whose stress turns to NaN after ``after`` force calls: the NPT barostat then
    puts NaN into the cell, and EMT's own neighbour list fails on it, as a model's would."""

    def __init__(self, after: int) -> None:
        super().__init__()
        self.after = after
        self.calls = 0

    def calculate(self, *args: Any, **kwargs: Any) -> None:
        super().calculate(*args, **kwargs)
        self.calls += 1
        if self.calls > self.after and "stress" in self.results:
            self.results["stress"] = np.full(6, np.nan)


def test_a_nan_cell_in_npt_fails_as_diverged_naming_stage_and_step() -> None:
    atoms = bulk("Cu", "fcc", a=3.6, cubic=True)
    atoms.calc = _StressBlowsUp(after=15)
    stages = normalize_stages(
        [{"type": "nvt", "steps": 10, "timestep_fs": 2.0}, {"type": "npt", "steps": 30}]
    )
    with pytest.raises(TaskDiverged) as info:
        run_stages(atoms, stages, NullObserver(), seed=0, frame_interval=5)
    assert info.value.code == 50006
    assert "stage 1:npt" in info.value.message
    assert "cell" in info.value.message
    step = int(info.value.message.split(" at step ")[1].split()[0])
    assert 1 <= step <= 30


def test_non_finite_positions_stop_the_run_at_once() -> None:
    atoms = _cu()
    stages = normalize_stages([{"type": "nvt", "steps": 20, "timestep_fs": 2.0}])
    seen: list[int] = []

    def poison(frame: Atoms) -> None:
        seen.append(int(frame.info["step"]))
        if frame.info["step"] == 5:
            atoms.positions[0, 0] = np.inf

    with pytest.raises(TaskDiverged, match=r"stage 0:nvt at step \d+ of 20: the .*positions"):
        run_stages(atoms, stages, NullObserver(), seed=0, frame_interval=5, on_frame=poison)
    assert max(seen) == 5
