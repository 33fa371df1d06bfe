"""heat-capacity: validation, unit conversions, Gamma modes, and EMT copper phonons."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from ase.build import bulk
from ase.calculators.emt import EMT
from ase.units import kB
from ase.units import kJ as kJ_per_eV
from ase.units import mol as avogadro

from executors.api import NullObserver, TaskContext
from executors.tasks import heat_capacity as hc
from spool.errors import ValidationError

R = kB * avogadro / kJ_per_eV * 1000.0  # J/(K mol)


def test_defaults_are_the_seed_api_values() -> None:
    default = hc.validate({})
    assert default["protocol"] == "default"
    assert default["supercell"] == [2, 2, 2]
    assert default["displacement"] == 0.01
    assert default["temperature_range"] == [0.0, 1000.0, 50.0]
    assert default["pre_optimize"] is True
    # The seed names no relaxation or mesh settings: the benchmark's.
    assert (default["optimizer"], default["fmax"], default["max_steps"], default["mesh"]) == (
        "BFGS",
        1e-3,
        1000,
        100.0,
    )


def test_mofsimbench_preset_and_mira_shape() -> None:
    bench = hc.validate({"protocol": "mofsimbench"})
    assert {
        k: bench[k]
        for k in (
            "supercell",
            "displacement",
            "temperature_range",
            "mesh",
            "pre_optimize",
            "optimizer",
            "fmax",
            "max_steps",
        )
    } == {
        "supercell": [1, 1, 1],
        "displacement": 0.01,
        "temperature_range": [0.0, 1000.0, 10.0],
        "mesh": 100.0,
        "pre_optimize": True,
        "optimizer": "BFGS",
        "fmax": 1e-3,
        "max_steps": 1000,
    }
    assert hc.validate({"protocol": "mofsimbench", "supercell": [3, 3, 3]})["supercell"] == [
        3,
        3,
        3,
    ]
    mira = hc.validate(
        {
            "structure_id": "s",
            "model_key": "m",
            "supercell": [2, 2, 2],
            "displacement": 0.01,
            "temperature_range": [0, 1000, 50],
            "pre_optimize": True,
        }
    )
    assert mira["supercell"] == [2, 2, 2] and mira["temperature_range"] == [0.0, 1000.0, 50.0]
    assert hc.validate(mira) == mira
    assert hc.validate(bench) == bench
    assert hc.SCHEMA.to_schema()["x-presets"]["mofsimbench"]["supercell"] == [1, 1, 1]
    assert hc.validate({"supercell": 3})["supercell"] == [3, 3, 3]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"supercell": [0, 0, 0]}, "parameters.supercell"),
        ({"supercell": [2, -1, 2]}, "parameters.supercell"),
        ({"supercell": [2, 2]}, "parameters.supercell"),
        ({"displacement": 0}, "parameters.displacement"),
        ({"temperature_range": [0, 1000, 0]}, "parameters.temperature_range"),
        ({"temperature_range": [500, 100, 10]}, "parameters.temperature_range"),
        ({"temperature_range": [-10, 100, 10]}, "parameters.temperature_range"),
        ({"temperature_range": [0, 1e9, 1e-3]}, "parameters.temperature_range"),
        ({"temperature_range": [0, 100]}, "parameters.temperature_range"),
    ],
)
def test_bad_parameters_name_the_field(body: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError) as err:
        hc.validate(body)
    assert err.value.field == field


def test_value_at_interpolates_inside_the_grid_only() -> None:
    assert hc.value_at([0, 250, 350], [0.0, 10.0, 20.0], 300.0) == pytest.approx(15.0)
    assert hc.value_at([0, 300], [1.0, 2.0], 300.0) == 2.0
    assert hc.value_at([0, 200], [1.0, 2.0], 300.0) is None


def test_cv_conversions() -> None:
    cv = hc.cv_conversions([0.0, 24.0], cell_mass_amu=120.0, n_atoms=2)
    assert cv["J_per_K_g"] == [0.0, pytest.approx(0.2)]
    assert cv["J_per_K_mol_atoms"] == [0.0, 12.0]


def test_gamma_modes_count_only_optical_imaginary_ones() -> None:
    summary = hc.gamma_mode_summary([-0.05, 0.001, -0.002, -1.5, 3.0, 4.0], 0.01)
    assert summary["imaginary_modes_gamma"] == 1  # -1.5; the three near zero are acoustic
    assert summary["lowest_frequency_thz"] == -1.5
    assert sorted(summary["acoustic_frequencies_gamma_thz"]) == [-0.05, -0.002, 0.001]


def test_emt_copper_reaches_dulong_petit(tmp_path: Path) -> None:
    observer = NullObserver()
    ctx = TaskContext(
        task_id="t",
        task_type="heat-capacity",
        atoms=bulk("Cu", "fcc", a=3.6),
        structure_name="Cu",
        parameters={"supercell": [2, 2, 2], "temperature_range": [0, 1000, 25]},
        model_key="emt",
        calculator=EMT(),
        workspace=tmp_path,
        observer=observer,
    )
    result = hc.run(ctx)
    json.dumps(result, allow_nan=False)
    temps = result["temperatures_K"]
    assert temps[0] == 0.0 and temps[-1] == 1000.0 and len(temps) == 41
    per_atom = result["heat_capacity"]["J_per_K_mol_atoms"]
    assert per_atom[-1] == pytest.approx(3 * R, rel=0.02)  # Dulong-Petit at 1000 K
    assert per_atom[0] == pytest.approx(0.0, abs=1e-6)
    assert all(b >= a - 1e-9 for a, b in zip(per_atom, per_atom[1:], strict=False))
    # Per gram: the cell's Cv over its mass (Cu: 63.546 g/mol).
    assert result["cv_J_per_K_g"][-1] == pytest.approx(result["cv_J_per_K_mol"][-1] / 63.546)
    # 300 K is grid point 12 here; off-grid interpolation is tested below.
    assert result["cv_300K_J_per_K_mol"] == pytest.approx(result["cv_J_per_K_mol"][12])
    assert 0.85 * 3 * R < result["cv_300K_J_per_K_mol"] < 3 * R
    assert result["imaginary_modes_gamma"] == 0
    assert result["n_displacements"] == 1 and result["supercell_atoms"] == 8
    assert result["avg_step_time_ms"] > 0.0
    assert len(result["entropy_J_per_K_mol"]) == len(result["free_energy_kJ_per_mol"]) == 41
    messages = [m for _, m, _ in observer.progress_events if m.endswith("displacements")]
    assert messages == ["1/1 displacements"]
    assert result["output_files"] == {
        "plot": "heat_capacity.png",
        "relaxed_structure": "relaxed_structure.cif",
    }
    assert (tmp_path / result["output_files"]["plot"]).read_bytes().startswith(b"\x89PNG")
    assert (tmp_path / result["output_files"]["relaxed_structure"]).stat().st_size > 0


def test_default_protocol_runs_on_a_2x2x2_supercell(tmp_path: Path) -> None:
    ctx = TaskContext(
        task_id="t",
        task_type="heat-capacity",
        atoms=bulk("Cu", "fcc", a=3.6),
        structure_name="Cu",
        parameters={},
        model_key="emt",
        calculator=EMT(),
        workspace=tmp_path,
    )
    result = hc.run(ctx)
    assert result["supercell_atoms"] == 8
    assert result["temperatures_K"] == [50.0 * k for k in range(21)]
    assert result["parameters_used"]["supercell"] == [2, 2, 2]
    assert result["cv_300K_J_per_K_mol"] == pytest.approx(result["cv_J_per_K_mol"][6])


def test_off_grid_highlight_is_interpolated(tmp_path: Path) -> None:
    ctx = TaskContext(
        task_id="t",
        task_type="heat-capacity",
        atoms=bulk("Cu", "fcc", a=3.6),
        structure_name="Cu",
        parameters={
            "supercell": [2, 2, 2],
            "temperature_range": [0, 1000, 70],
            "pre_optimize": False,
        },
        model_key="emt",
        calculator=EMT(),
        workspace=tmp_path,
    )
    result = hc.run(ctx)
    temps, cv = result["temperatures_K"], result["cv_J_per_K_mol"]
    assert 300.0 not in temps
    lo = max(k for k, t in enumerate(temps) if t < 300.0)
    w = (300.0 - temps[lo]) / (temps[lo + 1] - temps[lo])
    expected = cv[lo] + w * (cv[lo + 1] - cv[lo])
    assert result["cv_300K_J_per_K_mol"] == pytest.approx(expected, rel=1e-9)
    assert result["relaxation"] is None
