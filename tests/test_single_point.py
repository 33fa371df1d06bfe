"""single-point-energy with EMT: values, units, non-periodic structures, validation."""

from __future__ import annotations

import json

import numpy as np
import pytest
from ase import units
from ase.build import bulk, molecule
from ase.calculators.calculator import Calculator, all_changes
from ase.calculators.emt import EMT

from executors.api import NullObserver, TaskContext
from executors.tasks import single_point
from spool.errors import TaskCancelled, TaskDiverged, ValidationError


def make_ctx(atoms, tmp_path, parameters=None, calculator=None, observer=None):
    return TaskContext(
        task_id="task_sp",
        task_type="single-point-energy",
        atoms=atoms,
        structure_name="test",
        parameters=parameters or {},
        model_key="emt",
        calculator=calculator or EMT(),
        workspace=tmp_path,
        observer=observer or NullObserver(),
    )


def strained_copper():
    atoms = bulk("Cu", "fcc", a=3.7, cubic=True) * (2, 1, 1)
    atoms.rattle(0.02, seed=4)
    return atoms


class EnergyOnly(Calculator):
    implemented_properties = ["energy", "forces"]

    def __init__(self, energy: float = -1.0) -> None:
        super().__init__()
        self.energy = energy

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        self.results = {"energy": self.energy, "forces": np.zeros((len(self.atoms), 3))}


def test_periodic_single_point_matches_emt(tmp_path):
    atoms = strained_copper()
    obs = NullObserver()
    result = single_point.run(make_ctx(atoms, tmp_path, observer=obs))
    json.dumps(result)
    ref = atoms.copy()
    ref.calc = EMT()
    assert result["energy_eV"] == pytest.approx(ref.get_potential_energy())
    assert result["energy_per_atom_eV"] == pytest.approx(result["energy_eV"] / len(atoms))
    forces = np.array(result["forces_eV_A"])
    assert forces.shape == (len(atoms), 3)
    assert forces == pytest.approx(ref.get_forces())
    assert result["max_force_eV_A"] == pytest.approx(np.linalg.norm(forces, axis=1).max())
    stress = np.array(result["stress_voigt_eV_A3"])
    assert stress == pytest.approx(ref.get_stress(voigt=True))
    assert np.array(result["stress_voigt_GPa"]) == pytest.approx(stress / units.GPa)
    assert result["pressure_GPa"] == pytest.approx(-stress[:3].mean() / units.GPa)
    assert result["pressure_GPa"] < 0  # an expanded lattice pulls inwards
    assert result["volume_A3"] == pytest.approx(atoms.get_volume())
    assert result["periodic"] is True and result["natoms"] == len(atoms)
    assert result["parameters_used"]["with_d3"] is False
    assert obs.progress_events[-1][0] == 1.0
    assert atoms.calc is None  # the job's structure is not modified


def test_non_periodic_structure_has_no_stress(tmp_path):
    result = single_point.run(make_ctx(molecule("CO"), tmp_path))
    assert result["periodic"] is False
    assert "stress_voigt_eV_A3" not in result and "pressure_GPa" not in result
    assert "volume_A3" not in result
    assert np.array(result["forces_eV_A"]).shape == (2, 3)


def test_stress_can_be_skipped_or_missing(tmp_path):
    result = single_point.run(
        make_ctx(strained_copper(), tmp_path, parameters={"compute_stress": "false"})
    )
    assert "stress_voigt_eV_A3" not in result
    result = single_point.run(make_ctx(strained_copper(), tmp_path, calculator=EnergyOnly()))
    assert "stress_voigt_eV_A3" not in result
    assert "does not implement stress" in result["stress_note"]
    assert result["energy_eV"] == -1.0 and result["max_force_eV_A"] == 0.0


def test_non_finite_energy_is_divergence(tmp_path):
    with pytest.raises(TaskDiverged):
        single_point.run(make_ctx(strained_copper(), tmp_path, calculator=EnergyOnly(float("inf"))))


def test_cancel_before_the_calculation(tmp_path):
    class Cancelled(NullObserver):
        def check_cancel(self) -> None:
            raise TaskCancelled("cancelled")

    with pytest.raises(TaskCancelled):
        single_point.run(make_ctx(strained_copper(), tmp_path, observer=Cancelled()))


def test_validate():
    assert single_point.validate({}) == {
        "compute_stress": True,
        "with_d3": False,
        "force_d3": False,
        "dtype": "float32",
        "protocol": "default",
    }
    assert single_point.validate({"enable_d3": True, "protocol": "mofsimbench"})["with_d3"]
    for bad, field in (({"dtype": "half"}, "parameters.dtype"), ({"fmax": 0.1}, "parameters.fmax")):
        with pytest.raises(ValidationError) as err:
            single_point.validate(bad)
        assert err.value.field == field
