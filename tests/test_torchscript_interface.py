"""The interface config of a generic PyTorch upload: what it accepts, and which field a
wrong one is blamed on."""

from __future__ import annotations

from typing import Any

import pytest

from executors.torchscript_interface import LENGTH_UNITS, check_config, parse_interface
from spool.errors import ValidationError
from tests.model_factories import LJ_CONFIG


def test_a_full_config_reads_as_declared() -> None:
    iface = parse_interface(
        {
            "inputs": ["positions", "atomic_numbers", "cell", "pbc"],
            "outputs": ["energy", "forces"],
            "units": {"energy": "kcal/mol", "length": "Bohr"},
            "precision": "float32",
            "elements": ["C", "O"],
        }
    )
    assert iface.outputs == ("energy", "forces") and iface.stress == "autograd"
    assert iface.energy_eV == pytest.approx(0.0433641, rel=1e-6)
    assert iface.length_A == LENGTH_UNITS["bohr"] and not iface.needs_neighbours
    lj = parse_interface(dict(LJ_CONFIG))
    assert lj.needs_neighbours and lj.cutoff == 5.0 and lj.energy_eV == lj.length_A == 1.0
    returned = parse_interface({**LJ_CONFIG, "outputs": ["energy", "forces", "stress"]})
    assert returned.stress == "none"  # returned, nothing to derive


@pytest.mark.parametrize(
    ("change", "field", "words"),
    [
        ({"outputs": None}, "config.outputs", "required"),
        ({"outputs": ["forces"]}, "config.outputs", "must include energy"),
        ({"outputs": ["energy", "virial"]}, "config.outputs", "'virial'"),
        ({"inputs": None}, "config.inputs", "required"),
        ({"inputs": ["edge_index", "shifts"]}, "config.inputs", "positions"),
        ({"inputs": ["positions", "positions"]}, "config.inputs", "twice"),
        ({"inputs": "positions"}, "config.inputs", "list"),
        ({"cutoff": None}, "config.cutoff", "edge_index"),
        ({"cutoff": -1}, "config.cutoff", "positive"),
        ({"units": {"energy": "erg"}}, "config.units.energy", "'erg'"),
        ({"units": {"length": "furlong"}}, "config.units.length", "furlong"),
        ({"units": {"time": "fs"}}, "config.units.time", "time"),
        ({"stress": "virial"}, "config.stress", "autograd"),
        ({"weights": "x"}, "config.weights", "'weights'"),
    ],
)
def test_bad_configs_name_their_field(change: dict[str, Any], field: str, words: str) -> None:
    config = {k: v for k, v in {**LJ_CONFIG, **change}.items() if v is not None}
    with pytest.raises(ValidationError, match=words) as exc:
        check_config(config)
    assert exc.value.field == field


def test_derived_stress_needs_the_cell_to_reach_the_model() -> None:
    config = {"inputs": ["positions", "atomic_numbers"], "outputs": ["energy"]}
    with pytest.raises(ValidationError) as exc:
        check_config(config)
    assert exc.value.field == "config.stress"
    assert parse_interface({**config, "stress": "none"}).stress == "none"
