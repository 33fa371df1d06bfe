"""optimization with EMT: relaxation physics, outputs, limits, divergence, cancel."""

from __future__ import annotations

import json

import numpy as np
import pytest
from ase.build import bulk, molecule
from ase.calculators.calculator import Calculator, all_changes
from ase.calculators.emt import EMT
from ase.io import read

from executors.api import NullObserver, TaskContext
from executors.tasks import optimization
from spool.errors import TaskCancelled, TaskDiverged, ValidationError

EMT_CU_A0 = 3.5897  # EMT's equilibrium fcc lattice constant of copper (A)


def make_ctx(atoms, tmp_path, parameters=None, calculator=None, observer=None):
    return TaskContext(
        task_id="task_opt",
        task_type="optimization",
        atoms=atoms,
        structure_name="test",
        parameters=parameters or {},
        model_key="emt",
        calculator=calculator or EMT(),
        workspace=tmp_path,
        observer=observer or NullObserver(),
    )


def strained_copper(scale: float = 1.03):
    atoms = bulk("Cu", "fcc", a=EMT_CU_A0 * scale, cubic=True)
    atoms.rattle(0.03, seed=7)
    return atoms


class HugeEnergy(Calculator):
    implemented_properties = ["energy", "forces", "stress"]

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        self.results = {
            "energy": 5e5,
            "forces": np.ones((len(self.atoms), 3)),
            "stress": np.zeros(6),
        }


class CancelAfter(NullObserver):
    def __init__(self, n: int) -> None:
        super().__init__()
        self.calls = 0
        self.n = n

    def check_cancel(self) -> None:
        self.calls += 1
        if self.calls > self.n:
            raise TaskCancelled("cancelled by test")


def test_strained_copper_relaxes_back_with_cell_filter(tmp_path):
    atoms = strained_copper()
    obs = NullObserver()
    params = {"use_filter": True, "fmax": 0.01, "optimizer": "lbfgs", "max_steps": 200}
    result = optimization.run(make_ctx(atoms, tmp_path, params, observer=obs))
    json.dumps(result)
    assert result["converged"] is True
    assert 0 < result["steps"] < 200 and result["final_fmax"] <= 0.01
    assert result["final_energy_eV"] < result["initial_energy_eV"]
    assert result["energy_change_eV"] == pytest.approx(
        result["final_energy_eV"] - result["initial_energy_eV"]
    )
    assert result["initial_volume_A3"] == pytest.approx(atoms.get_volume())
    assert result["final_volume_A3"] == pytest.approx(EMT_CU_A0**3, rel=2e-3)
    assert result["volume_change_percent"] == pytest.approx(100 * (1 / 1.03**3 - 1), abs=0.3)
    cell = result["cell_parameters"]
    for key in "abc":
        assert cell[key] == pytest.approx(EMT_CU_A0, rel=2e-3)
    for key in ("alpha", "beta", "gamma"):
        assert cell[key] == pytest.approx(90.0, abs=0.5)
    # The rattle is undone relative to the lattice; a uniform shrink is not motion.
    assert 0.0 < result["rmsd_from_initial"] < 0.1
    # The benchmark's Cartesian RMSD counts the shrink of the cell as displacement.
    assert result["rmsd_cartesian_A"] > result["rmsd_from_initial"]
    assert result["avg_step_time_ms"] > 0
    assert result["parameters_used"]["relax_cell"] is True
    assert result["parameters_used"]["optimizer"] == "LBFGS"

    files = result["output_files"]
    assert files == {"optimized_structure": "optimized.cif", "trajectory": "trajectory.traj"}
    final = read(tmp_path / files["optimized_structure"])
    assert len(final) == len(atoms)
    assert final.get_volume() == pytest.approx(result["final_volume_A3"], rel=1e-4)
    frames = read(tmp_path / files["trajectory"], index=":")
    assert len(frames) == result["steps"] + 1
    assert frames[0].get_volume() == pytest.approx(atoms.get_volume())
    assert frames[-1].get_potential_energy() == pytest.approx(result["final_energy_eV"])

    steps = [m["step"] for _, _, m in obs.progress_events]
    assert steps[-1] == result["steps"]
    assert obs.progress_events[-1][0] == 1.0
    assert {"energy", "fmax"} <= set(obs.progress_events[-1][2])


def test_fixed_cell_keeps_the_volume(tmp_path):
    atoms = strained_copper()
    result = optimization.run(make_ctx(atoms, tmp_path, {"fmax": 0.02, "optimizer": "FIRE"}))
    assert result["converged"] is True
    assert result["final_volume_A3"] == pytest.approx(result["initial_volume_A3"], rel=1e-12)
    assert result["volume_change_percent"] == pytest.approx(0.0, abs=1e-10)
    assert result["rmsd_from_initial"] > 0.005


def test_max_steps_reached_is_a_result_not_an_error(tmp_path):
    params = {"relax_cell": True, "fmax": 1e-6, "max_steps": 3, "trajectory_interval": 2}
    result = optimization.run(make_ctx(strained_copper(), tmp_path, params))
    assert result["converged"] is False and result["steps"] == 3
    assert result["final_fmax"] > 1e-6
    frames = read(tmp_path / "trajectory.traj", index=":")
    assert len(frames) == 3  # steps 0 and 2, plus the last (3)


def test_non_periodic_molecule_is_written_as_xyz(tmp_path):
    mol = molecule("N2")
    mol.positions[1, 2] += 0.1
    result = optimization.run(make_ctx(mol, tmp_path, {"fmax": 0.01, "max_steps": 50}))
    assert result["output_files"]["optimized_structure"] == "optimized.xyz"
    assert result["final_volume_A3"] is None and result["cell_parameters"] is None
    assert len(read(tmp_path / "optimized.xyz")) == 2
    with pytest.raises(ValidationError) as err:
        optimization.run(make_ctx(molecule("N2"), tmp_path, {"relax_cell": True}))
    assert err.value.field == "parameters.relax_cell"


def test_divergence_aborts(tmp_path):
    with pytest.raises(TaskDiverged):
        optimization.run(make_ctx(strained_copper(), tmp_path, calculator=HugeEnergy()))


def test_cancel_stops_the_optimizer(tmp_path):
    obs = CancelAfter(4)
    with pytest.raises(TaskCancelled):
        optimization.run(make_ctx(strained_copper(), tmp_path, {"fmax": 1e-6}, observer=obs))
    assert obs.calls == 5


def test_validate_defaults_follow_mira():
    out = optimization.validate({})
    assert (out["fmax"], out["max_steps"], out["optimizer"], out["relax_cell"]) == (
        0.05,
        500,
        "BFGS",
        False,
    )
    assert out["with_d3"] is False


def test_validate_mofsimbench_preset_and_overrides():
    out = optimization.validate({"protocol": "mofsimbench"})
    assert (out["fmax"], out["max_steps"], out["optimizer"], out["relax_cell"]) == (
        1e-3,
        5000,
        "LBFGS",
        True,
    )
    out = optimization.validate(
        {"protocol": "mofsimbench", "optimizer": "fire", "use_filter": False, "enable_d3": True}
    )
    assert out["optimizer"] == "FIRE" and out["relax_cell"] is False and out["with_d3"]


@pytest.mark.parametrize(
    "raw, field",
    [
        ({"max_steps": -10}, "parameters.max_steps"),
        ({"optimizer": "GradientDescent"}, "parameters.optimizer"),
        ({"dtype": "bfloat16"}, "parameters.dtype"),
        ({"fmax": -0.1}, "parameters.fmax"),
        ({"use_filter": "sometimes"}, "parameters.use_filter"),
        ({"trajectory_interval": 0}, "parameters.trajectory_interval"),
        ({"temperature": 300}, "parameters.temperature"),
    ],
)
def test_validate_rejects_bad_values(raw, field):
    with pytest.raises(ValidationError) as err:
        optimization.validate(raw)
    assert err.value.field == field


@pytest.mark.slow
def test_sevennet_single_point_and_optimization_on_a_small_mof(tmp_path, mofsimbench_dir):
    import torch

    torch.serialization.add_safe_globals([slice])  # sevenn checkpoints pickle slices
    from sevenn.calculator import SevenNetCalculator

    from executors.tasks import single_point

    atoms = read(mofsimbench_dir / "hcmof" / "RSM0010.cif")  # 22 atoms, Zn
    calc = SevenNetCalculator("7net-0", device="cpu")

    sp = single_point.run(make_ctx(atoms, tmp_path / "sp", calculator=calc))
    json.dumps(sp)
    assert sp["natoms"] == 22
    # An experimental framework: several eV/atom bound, modest forces and pressure.
    assert -9.0 < sp["energy_per_atom_eV"] < -5.0
    assert sp["max_force_eV_A"] < 5.0 and abs(sp["pressure_GPa"]) < 10.0

    params = {"fmax": 0.2, "max_steps": 5, "relax_cell": True}
    result = optimization.run(make_ctx(atoms, tmp_path / "opt", params, calculator=calc))
    json.dumps(result)
    assert result["initial_energy_eV"] == pytest.approx(sp["energy_eV"], abs=1e-4)
    assert result["steps"] <= 5
    assert result["converged"] == (result["final_fmax"] <= 0.2)
    assert result["final_energy_eV"] <= result["initial_energy_eV"] + 1e-3
    assert abs(result["volume_change_percent"]) < 5.0
    assert (tmp_path / "opt" / "optimized.cif").is_file()
    assert len(read(tmp_path / "opt" / "trajectory.traj", index=":")) == result["steps"] + 1
