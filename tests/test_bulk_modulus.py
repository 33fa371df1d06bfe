"""bulk-modulus: volume grid, EOS fit, and EMT copper against an independent ase.eos fit."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from ase.build import bulk
from ase.calculators.emt import EMT
from ase.eos import EquationOfState, birchmurnaghan
from ase.filters import FrechetCellFilter
from ase.io import read
from ase.optimize import LBFGS
from ase.units import GPa

from executors.api import NullObserver, TaskContext
from executors.tasks import bulk_modulus as bm
from spool.errors import ValidationError


def test_defaults_are_the_seed_api_values() -> None:
    default = bm.validate({})
    assert default["protocol"] == "default"
    assert (default["strain_range"], default["num_points"], default["pre_optimize"]) == (
        0.1,
        9,
        True,
    )
    # The seed names no relaxation settings: the benchmark's.
    assert (default["optimizer"], default["fmax"], default["max_steps"]) == ("LBFGS", 1e-3, 1000)
    assert bm.volume_factors(default["strain_range"], default["num_points"])[0] == (
        pytest.approx(0.9)
    )


def test_mofsimbench_preset_and_overrides() -> None:
    bench = bm.validate({"protocol": "mofsimbench", "model_key": "x"})
    assert {
        k: bench[k]
        for k in (
            "strain_range",
            "num_points",
            "pre_optimize",
            "optimizer",
            "fmax",
            "max_steps",
            "eos",
        )
    } == {
        "strain_range": 0.04,
        "num_points": 11,
        "pre_optimize": True,
        "optimizer": "LBFGS",
        "fmax": 1e-3,
        "max_steps": 1000,
        "eos": "birchmurnaghan",
    }
    assert bm.validate({"protocol": "mofsimbench", "num_points": 7})["num_points"] == 7
    mira = bm.validate({"strain_range": 0.1, "num_points": 9, "enable_d3": True})
    assert (mira["strain_range"], mira["num_points"], mira["with_d3"]) == (0.1, 9, True)
    assert bm.validate(mira) == mira
    assert bm.validate(bench) == bench
    assert bm.SCHEMA.to_schema()["x-presets"]["mofsimbench"]["num_points"] == 11


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"num_points": 3}, "parameters.num_points"),
        ({"strain_range": 0}, "parameters.strain_range"),
        ({"strain_range": -0.04}, "parameters.strain_range"),
        ({"strain_range": 0.9}, "parameters.strain_range"),
        ({"max_steps": -1}, "parameters.max_steps"),
        ({"eos": "sj"}, "parameters.eos"),
    ],
)
def test_bad_parameters_name_the_field(body: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError) as err:
        bm.validate(body)
    assert err.value.field == field


def test_volume_grid_is_in_volume_not_length() -> None:
    factors = bm.volume_factors(0.04, 11)
    assert factors[0] == pytest.approx(0.96) and factors[-1] == pytest.approx(1.04)
    assert factors[5] == pytest.approx(1.0)
    atoms = bulk("Cu", "fcc", a=3.6, cubic=True)
    scaled = bm.scaled_copy(atoms, 0.96)
    assert scaled.get_volume() == pytest.approx(0.96 * atoms.get_volume(), rel=1e-12)
    np.testing.assert_allclose(
        scaled.get_scaled_positions(), atoms.get_scaled_positions(), atol=1e-12
    )


def test_fit_recovers_a_known_curve() -> None:
    e0, b0, bp, v0 = -3.0, 0.8, 4.5, 12.0  # B0 in eV/A^3
    volumes = np.linspace(0.94, 1.06, 9) * v0
    fit = bm.fit_eos(volumes, birchmurnaghan(volumes, e0, b0, bp, v0))
    assert fit["v0"] == pytest.approx(v0, rel=1e-6)
    assert fit["e0"] == pytest.approx(e0, abs=1e-8)
    assert fit["b0_GPa"] == pytest.approx(b0 / GPa, rel=1e-5)
    assert fit["b0_prime"] == pytest.approx(bp, rel=1e-4)
    assert fit["rms_residual_eV"] < 1e-8
    assert len(fit["curve_volumes"]) == len(fit["curve_energies"]) == 101


def _independent_emt_fit() -> float:
    atoms = bulk("Cu", "fcc", a=3.7)
    atoms.calc = EMT()
    opt: Any = LBFGS(FrechetCellFilter(atoms), logfile=None)  # type: ignore[arg-type]
    opt.run(fmax=1e-4, steps=200)
    cell = atoms.cell.copy()
    volumes, energies = [], []
    for s in np.linspace(0.96, 1.04, 11):
        atoms.set_cell(cell * s ** (1 / 3), scale_atoms=True)
        volumes.append(atoms.get_volume())
        energies.append(atoms.get_potential_energy())
    _, _, b = EquationOfState(volumes, energies, eos="birchmurnaghan").fit()
    return float(b / GPa)


def test_emt_copper_matches_an_independent_fit(tmp_path: Path) -> None:
    observer = NullObserver()
    ctx = TaskContext(
        task_id="t",
        task_type="bulk-modulus",
        atoms=bulk("Cu", "fcc", a=3.7),
        structure_name="Cu",
        parameters={"protocol": "mofsimbench"},
        model_key="emt",
        calculator=EMT(),
        workspace=tmp_path,
        observer=observer,
    )
    result = bm.run(ctx)
    json.dumps(result, allow_nan=False)
    reference = _independent_emt_fit()
    assert result["bulk_modulus_GPa"] == pytest.approx(reference, rel=0.01)
    assert 125.0 < result["bulk_modulus_GPa"] < 145.0  # EMT copper: ~134 GPa
    assert 3.5 < result["b0_prime"] < 6.0
    assert result["reliable"] is True and abs(result["v0_offset_percent"]) < 0.1
    assert result["all_points_converged"] is True
    assert result["relaxation"]["converged"] is True
    assert len(result["points"]) == 11 and result["fit_rms_residual_eV"] < 1e-4
    assert result["relaxed_volume_A3"] == pytest.approx(11.565, rel=2e-3)
    messages = [m for _, m, _ in observer.progress_events if m.endswith("volumes")]
    assert messages[0] == "1/11 volumes" and messages[-1] == "11/11 volumes"
    fractions = [f for f, _, _ in observer.progress_events if f is not None]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    assert result["parameters_used"]["num_points"] == 11
    assert result["output_files"] == {
        "plot": "eos.png",
        "relaxed_structure": "relaxed_structure.cif",
    }
    assert (tmp_path / result["output_files"]["plot"]).read_bytes().startswith(b"\x89PNG")
    assert len(read(tmp_path / result["output_files"]["relaxed_structure"])) == 1


def test_unrelaxed_input_is_flagged_unreliable(tmp_path: Path) -> None:
    # Without the relaxation the grid is centred 3 % above the EMT minimum, outside +-1 %.
    atoms = bulk("Cu", "fcc", a=3.59 * 1.03 ** (1 / 3))
    ctx = TaskContext(
        task_id="t",
        task_type="bulk-modulus",
        atoms=atoms,
        structure_name="Cu",
        parameters={"pre_optimize": False, "num_points": 7, "strain_range": 0.05},
        model_key="emt",
        calculator=EMT(),
        workspace=tmp_path,
    )
    result = bm.run(ctx)
    assert result["relaxation"] is None
    assert result["reliable"] is False
    assert result["v0_offset_percent"] < -1.0
