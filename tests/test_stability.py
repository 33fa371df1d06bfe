"""The stability task: request shapes to stage lists, and EMT copper end to end."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from ase import Atoms
from ase.build import bulk
from ase.calculators.emt import EMT
from ase.io import read

from executors.api import NullObserver, TaskContext
from executors.tasks import stability
from spool.errors import InvalidStructure, ValidationError


def _plan(params: dict[str, Any]) -> list[dict[str, Any]]:
    return stability.plan_stages(stability.validate(params))


RELAX = {"type": "relax", "steps": 1000, "fmax": 1e-3, "optimizer": "LBFGS"}


def test_defaults_are_the_seed_api_values() -> None:
    params = stability.validate({})
    assert params["protocol"] == "default"
    assert {
        k: params[k]
        for k in (
            "nvt_steps",
            "nvt_temperature",
            "npt_steps",
            "npt_temperature",
            "npt_pressure",
            "timestep",
            "pre_optimize",
        )
    } == {
        "nvt_steps": 5000,
        "nvt_temperature": 300.0,
        "npt_steps": 10_000,
        "npt_temperature": 300.0,
        "npt_pressure": 1.01325,
        "timestep": 1.0,
        "pre_optimize": True,
    }
    relax, nvt, npt = stability.plan_stages(params)
    assert relax == RELAX  # the seed names no relaxation settings: the protocol's
    assert nvt == {
        "type": "nvt",
        "steps": 5000,
        "temperature": 300.0,
        "timestep_fs": 1.0,
        "friction": 0.01,
        "redraw_velocities": False,
    }
    assert npt == {
        "type": "npt",
        "steps": 10_000,
        "temperature": 300.0,
        "pressure_bar": 1.01325,
        "timestep_fs": 1.0,
        "tdamp_fs": 100.0,
        "pdamp_fs": 1000.0,
        "redraw_velocities": False,
    }


def test_mofsimbench_preset_is_the_benchmark_protocol() -> None:
    params = stability.validate({"protocol": "mofsimbench"})
    assert (params["nvt_steps"], params["npt_steps"], params["npt_pressure"]) == (1000, 50_000, 1.0)
    relax, nvt, npt = stability.plan_stages(params)
    assert relax == RELAX
    assert nvt == {
        "type": "nvt",
        "steps": 1000,
        "temperature": 300.0,
        "timestep_fs": 1.0,
        "friction": 0.01,
        "redraw_velocities": False,
    }
    assert npt == {
        "type": "npt",
        "steps": 50_000,
        "temperature": 300.0,
        "pressure_bar": 1.0,
        "timestep_fs": 1.0,
        "tdamp_fs": 100.0,
        "pdamp_fs": 1000.0,
        "redraw_velocities": False,
    }
    # Explicit values win over the preset.
    over = _plan({"protocol": "mofsimbench", "npt_steps": 200, "npt_pressure": 5})
    assert (over[2]["steps"], over[2]["pressure_bar"], over[1]["steps"]) == (200, 5.0, 1000)


@pytest.mark.parametrize("protocol", ["default", "mofsimbench"])
def test_bare_stage_list_takes_the_protocol_values(protocol: str) -> None:
    flat = _plan({"protocol": protocol})
    listed = stability.validate(
        {"protocol": protocol, "stages": [{"type": "relax"}, {"type": "nvt"}, {"type": "npt"}]}
    )
    assert listed["stages"] == flat
    assert stability.validate(listed) == listed
    assert not set(listed) & {"nvt_steps", "npt_steps", "npt_pressure"}  # not in effect


def test_mira_flat_body_maps_onto_stages() -> None:
    body = {
        "structure_id": "550e8400",
        "model_key": "mace-mp",
        "nvt_steps": 5000,
        "nvt_temperature": 300,
        "npt_steps": 10000,
        "npt_temperature": 350,
        "npt_pressure": 1.01325,
        "timestep": 0.5,
        "pre_optimize": True,
        "enable_d3": True,
    }
    params = stability.validate(body)
    assert params["with_d3"] is True and "structure_id" not in params
    relax, nvt, npt = stability.plan_stages(params)
    assert relax["type"] == "relax"
    assert (nvt["steps"], nvt["temperature"], nvt["timestep_fs"]) == (5000, 300.0, 0.5)
    assert (npt["steps"], npt["temperature"], npt["pressure_bar"]) == (10000, 350.0, 1.01325)
    assert npt["timestep_fs"] == 0.5
    no_relax = _plan({"pre_optimize": False, "nvt_steps": 0, "npt_steps": 10})
    assert [s["type"] for s in no_relax] == ["npt"]


def test_named_variants_expand() -> None:
    ramp = _plan({"protocol_variant": "temperature_ramp"})
    assert [s["type"] for s in ramp[:2]] == ["relax", "nvt"]
    # The benchmark's ramp: gentler NVT friction, fresh velocities at every NPT stage.
    assert ramp[1]["friction"] == 0.002
    assert all(s["redraw_velocities"] for s in ramp[2:])
    assert _plan({"protocol_variant": "temperature_ramp", "friction": 0.05})[1]["friction"] == 0.05
    assert ramp[1]["steps"] == 5000
    assert [s["temperature"] for s in ramp[2:]] == [300.0 + 100 * k for k in range(8)]
    assert {s["steps"] for s in ramp[2:]} == {20_000}
    assert {s["pressure_bar"] for s in ramp[2:]} == {1.01325}
    bench_ramp = _plan({"protocol_variant": "temperature_ramp", "protocol": "mofsimbench"})
    assert bench_ramp[1]["steps"] == 1000
    assert {(s["steps"], s["pressure_bar"]) for s in bench_ramp[2:]} == {(20_000, 1.0)}
    cu = _plan({"protocol_variant": "cu_paddlewheel", "timestep": 2.0})
    assert [s["type"] for s in cu] == ["relax", "nvt", "npt", "npt", "npt", "relax"]
    assert [s["temperature"] for s in cu[2:5]] == [300.0, 400.0, 300.0]
    assert {s["steps"] for s in cu[2:5]} == {10_000}
    assert {s["timestep_fs"] for s in cu[1:5]} == {2.0}
    assert cu[1]["friction"] == 0.01 and not any(s["redraw_velocities"] for s in cu[2:5])
    short = _plan({"protocol_variant": "cu_paddlewheel", "npt_steps": 50})
    assert {s["steps"] for s in short[2:5]} == {50}


def test_explicit_stages_and_idempotence() -> None:
    params = stability.validate(
        {
            "stages": [{"type": "nvt", "steps": 10}, {"type": "npt", "steps": 20, "pressure": 5}],
            "seed": 3,
        }
    )
    assert stability.validate(params) == params
    assert stability.plan_stages(params)[1]["pressure_bar"] == 5.0
    for request in (
        {},
        {"nvt_steps": 10, "timestep": 2},
        {"protocol_variant": "temperature_ramp"},
        {"protocol": "mofsimbench", "protocol_variant": "cu_paddlewheel"},
    ):
        once = stability.validate(request)
        assert stability.validate(once) == once
    as_text = stability.validate({"stages": json.dumps([{"type": "npt", "steps": 5}])})
    assert as_text["stages"][0]["steps"] == 5


def test_parameters_schema_describes_the_stage_list() -> None:
    schema = stability.parameters_schema()
    json.dumps(schema)
    assert schema["properties"]["nvt_steps"]["default"] == 5000
    assert schema["x-presets"]["mofsimbench"]["npt_steps"] == 50_000
    kinds = schema["properties"]["stages"]["items"]["oneOf"]
    npt = next(k for k in kinds if "npt" in k["properties"]["type"]["enum"])
    assert npt["properties"]["pdamp_fs"]["default"] == 1000.0
    relax = next(k for k in kinds if "relax" in k["properties"]["type"]["enum"])
    assert "opt" in relax["properties"]["type"]["enum"]


@pytest.mark.parametrize(
    ("request_body", "field"),
    [
        ({"nvt_steps": -1}, "parameters.nvt_steps"),
        ({"npt_steps": -100}, "parameters.npt_steps"),
        ({"timestep": 0}, "parameters.timestep"),
        ({"nvt_temperature": -5}, "parameters.nvt_temperature"),
        ({"frame_interval": 0}, "parameters.frame_interval"),
        ({"nvt_steps": 0, "npt_steps": 0}, "parameters.npt_steps"),
        ({"protocol_variant": "melt"}, "parameters.protocol_variant"),
        (
            {"protocol_variant": "temperature_ramp", "npt_temperature": 500},
            "parameters.npt_temperature",
        ),
        ({"stages": [{"type": "nvt"}], "nvt_steps": 10}, "parameters.nvt_steps"),
        (
            {"stages": [{"type": "nvt"}], "protocol_variant": "cu_paddlewheel"},
            "parameters.protocol_variant",
        ),
        ({"stages": [{"type": "nvt", "steps": -3}]}, "parameters.stages[0].steps"),
        ({"stages": "not json"}, "parameters.stages"),
        ({"nvt_stepz": 10}, "parameters.nvt_stepz"),
    ],
)
def test_bad_requests_name_the_field(request_body: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError) as err:
        stability.validate(request_body)
    assert err.value.field == field


def _ctx(atoms: Atoms, params: dict[str, Any], workspace: Path, calc: Any = None) -> TaskContext:
    return TaskContext(
        task_id="t1",
        task_type="stability",
        atoms=atoms,
        structure_name="x",
        parameters=params,
        model_key="emt",
        calculator=calc or EMT(),
        workspace=workspace,
        observer=NullObserver(),
    )


def test_copper_stays_stable_under_npt(tmp_path: Path) -> None:
    atoms = bulk("Cu", "fcc", a=3.6, cubic=True).repeat(2)  # 32 atoms
    params = {
        "relax_steps": 50,
        "nvt_steps": 40,
        "npt_steps": 200,
        "timestep": 2.0,
        "frame_interval": 20,
        "seed": 1,
    }
    result = stability.run(_ctx(atoms, params, tmp_path))
    json.dumps(result, allow_nan=False)  # JSON-safe, no numpy types or NaN
    assert result["stability_assessment"] == "stable"
    assert abs(result["volume_change_percent"]) < 3.0
    coordination = result["metal_coordination"]
    assert (coordination["input"], coordination["after_relaxation"], coordination["final"]) == (
        12.0,
        12.0,
        12.0,
    )
    assert coordination["by_element"]["final"] == {"Cu": 12.0}
    assert (coordination["reference"], coordination["judged_element"]) == ("input", "Cu")
    assert result["verdict"]["decided_by"] == []
    assert result["nvt_duration_ps"] == pytest.approx(0.08)
    assert result["npt_duration_ps"] == pytest.approx(0.4)
    assert 100.0 < result["avg_temperature"] < 600.0
    assert 0.01 < result["final_rmsd"] < 0.5  # thermal vibration, no rearrangement
    assert result["com_drift_A"] < 1e-6
    assert result["avg_step_time_ms"] > 0.0
    assert result["thresholds"]["max_volume_change_percent"] == 10.0
    npt_drift = result["energy_drift"][-1]
    assert npt_drift["quantity"] == "conserved_energy"
    assert abs(npt_drift["drift_meV_per_atom_per_ps"]) < 5.0
    series = result["time_series"]
    assert len(series["time_ps"]) == result["n_frames"] == 2 + 2 + 10
    assert series["volume_ratio"][0] == 1.0
    assert [s["type"] for s in result["parameters_used"]["stages"]] == ["relax", "nvt", "npt"]
    frames = read(tmp_path / result["trajectory_file"], index=":")
    assert [f.info["stage_type"] for f in frames][-1] == "npt"
    assert len(frames) == result["n_frames"]
    png = (tmp_path / result["output_files"]["plot"]).read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 5000
    assert len(read(tmp_path / result["output_files"]["final_structure"])) == 32


def test_overcompressed_crystal_is_unstable(tmp_path: Path) -> None:
    # Cu squeezed to a = 3.3 A (EMT a0 = 3.59 A) springs back by ~30 % in volume.
    atoms = bulk("Cu", "fcc", a=3.3, cubic=True)
    params = {
        "pre_optimize": False,
        "nvt_steps": 0,
        "npt_steps": 150,
        "timestep": 2.0,
        "pdamp": 100,
        "frame_interval": 50,
    }
    result = stability.run(_ctx(atoms, params, tmp_path))
    assert result["stability_assessment"] == "unstable"
    assert result["volume_change_percent"] > 10.0
    assert "volume change" in result["verdict"]["reasons"][0]
    assert result["verdict"]["decided_by"] == ["volume"]


def test_molecule_is_refused(tmp_path: Path) -> None:
    from ase.build import molecule

    with pytest.raises(InvalidStructure):
        stability.run(_ctx(molecule("H2O"), {"npt_steps": 5}, tmp_path))


def test_threshold_from_the_request_decides(tmp_path: Path) -> None:
    atoms = bulk("Cu", "fcc", a=3.6, cubic=True)
    params = {
        "pre_optimize": False,
        "nvt_steps": 0,
        "npt_steps": 30,
        "max_volume_change_percent": 1e-6,
    }
    result = stability.run(_ctx(atoms, params, tmp_path))
    assert result["stability_assessment"] == "unstable"
    assert result["thresholds"]["max_volume_change_percent"] == 1e-6


def test_plot_title_names_what_decided() -> None:
    from executors.stability_report import plot_title

    base = {
        "volume_change_percent": 2.5,
        "metal_coordination": {"judged_element": "Zn"},
    }
    by_coordination = {
        **base,
        "verdict": {"decided_by": ["coordination"], "coordination_change": -1.25},
    }
    title = plot_title(by_coordination, "MOF-5", "sevennet-0")
    assert title.startswith("MOF-5 · sevennet-0")
    assert "Zn coordination -1.25" in title and "volume" not in title
    by_volume = {**base, "verdict": {"decided_by": ["volume"], "coordination_change": 0.0}}
    assert "unstable by volume change +2.50 %" in plot_title(by_volume, "x", "m")
    stable = {**base, "verdict": {"decided_by": [], "coordination_change": 0.0}}
    assert "stable: volume change +2.50 %, Zn coordination +0.00" in plot_title(stable, "x", "m")
