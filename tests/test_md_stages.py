"""Stage specifications: defaults per protocol, aliases, errors naming the field."""

from __future__ import annotations

from typing import Any

import pytest

from executors.md_stages import normalize_stage, normalize_stages, stage_defaults
from spool.errors import ValidationError


def test_stage_defaults_follow_the_protocol() -> None:
    relax = {"type": "relax", "steps": 1000, "fmax": 1e-3, "optimizer": "LBFGS"}
    for protocol in ("default", "mofsimbench"):
        assert normalize_stage({"type": "relax"}, protocol=protocol) == relax
    # default: the seed API's MD values.
    assert normalize_stage({"type": "nvt"}) == {
        "type": "nvt",
        "steps": 5000,
        "temperature": 300.0,
        "timestep_fs": 1.0,
        "friction": 0.01,
        "redraw_velocities": False,
    }
    assert normalize_stage({"type": "npt"}) == {
        "type": "npt",
        "steps": 10_000,
        "temperature": 300.0,
        "pressure_bar": 1.01325,
        "timestep_fs": 1.0,
        "tdamp_fs": 100.0,
        "pdamp_fs": 1000.0,
        "redraw_velocities": False,
    }
    # mofsimbench: the benchmark's.
    assert normalize_stage({"type": "nvt"}, protocol="mofsimbench") == {
        "type": "nvt",
        "steps": 1000,
        "temperature": 300.0,
        "timestep_fs": 1.0,
        "friction": 0.01,
        "redraw_velocities": False,
    }
    assert normalize_stage({"type": "npt"}, protocol="mofsimbench") == {
        "type": "npt",
        "steps": 50_000,
        "temperature": 300.0,
        "pressure_bar": 1.0,
        "timestep_fs": 1.0,
        "tdamp_fs": 100.0,
        "pdamp_fs": 1000.0,
        "redraw_velocities": False,
    }
    assert stage_defaults("npt", "mofsimbench")["steps"] == 50_000
    # What a stage gives, under any spelling, wins over the preset.
    given = normalize_stage({"type": "npt", "nsteps": 7, "pressure": 2}, protocol="mofsimbench")
    assert (given["steps"], given["pressure_bar"]) == (7, 2.0)


def test_stage_aliases_and_idempotence() -> None:
    stage = normalize_stage({"type": "OPT", "max_steps": "20", "optimizer": "fire"})
    assert stage == {"type": "relax", "steps": 20, "fmax": 1e-3, "optimizer": "FIRE"}
    npt = normalize_stage({"type": "npt", "temperature_K": 400, "pressure": 10, "tdamp": 50})
    assert (npt["temperature"], npt["pressure_bar"], npt["tdamp_fs"]) == (400.0, 10.0, 50.0)
    assert normalize_stage(npt) == npt


@pytest.mark.parametrize(
    ("stages", "field"),
    [
        ([{"type": "nvt", "steps": -5}], "parameters.stages[0].steps"),
        (
            [{"type": "relax"}, {"type": "npt", "temperature": 0}],
            "parameters.stages[1].temperature",
        ),
        ([{"type": "nvt"}, {"type": "npt", "timestep_fs": -1}], "parameters.stages[1].timestep_fs"),
        ([{"type": "nve"}], "parameters.stages[0].type"),
        ([{"type": "nvt", "bogus": 1}], "parameters.stages[0].bogus"),
        (["nvt"], "parameters.stages[0]"),
        ([], "parameters.stages"),
        ([{"type": "relax"}], "parameters.stages"),
    ],
)
def test_bad_stages_name_the_field(stages: Any, field: str) -> None:
    with pytest.raises(ValidationError) as err:
        normalize_stages(stages)
    assert err.value.field == field
