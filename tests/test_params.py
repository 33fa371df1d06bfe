"""The declarative parameter toolkit: names, aliases, presets, coercion, errors, schema."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from executors.params import COMMON_PARAMS, Param, ParamSchema, require_one_of
from spool.errors import ValidationError

SCHEMA = ParamSchema(
    [
        Param("fmax", float, 0.05, min=0.0, exclusive_min=True),
        Param("max_steps", int, 500, min=0, aliases=("steps",)),
        Param("optimizer", str, "BFGS", choices=("BFGS", "LBFGS", "FIRE")),
        Param("relax_cell", bool, False, aliases=("use_filter",)),
        Param("supercell", list, [1, 1, 1], item_type=int, length=3, min=1),
        Param("indices", list, None, item_type=int, min=0, min_length=1),
    ]
)
PRESETS = {
    "mofsimbench": {"fmax": 1e-3, "max_steps": 5000, "optimizer": "LBFGS", "relax_cell": True}
}


def field_of(raw: dict) -> str | None:
    with pytest.raises(ValidationError) as err:
        SCHEMA.validate(raw, PRESETS)
    return err.value.field


def test_defaults_include_common_params():
    out = SCHEMA.validate({}, PRESETS)
    assert out == {
        "fmax": 0.05,
        "max_steps": 500,
        "optimizer": "BFGS",
        "relax_cell": False,
        "supercell": [1, 1, 1],
        "with_d3": False,
        "force_d3": False,
        "dtype": "float32",
        "protocol": "default",
    }
    assert "indices" not in out  # no default, not given


def test_mira_aliases_map_to_spec_names():
    out = SCHEMA.validate({"use_filter": True, "enable_d3": True, "steps": 7}, PRESETS)
    assert out["relax_cell"] is True and out["with_d3"] is True and out["max_steps"] == 7
    assert "use_filter" not in out and "enable_d3" not in out


def test_alias_and_name_with_different_values_conflict():
    with pytest.raises(ValidationError, match="same parameter") as err:
        SCHEMA.validate({"with_d3": True, "enable_d3": False})
    assert err.value.field == "parameters.enable_d3"
    assert SCHEMA.validate({"with_d3": True, "enable_d3": "true"})["with_d3"] is True


def test_mofsimbench_preset_and_explicit_override():
    out = SCHEMA.validate({"protocol": "mofsimbench"}, PRESETS)
    assert (out["fmax"], out["max_steps"], out["optimizer"], out["relax_cell"]) == (
        1e-3,
        5000,
        "LBFGS",
        True,
    )
    out = SCHEMA.validate({"protocol": "MOFSimBench", "max_steps": 10}, PRESETS)
    assert out["max_steps"] == 10 and out["fmax"] == 1e-3 and out["protocol"] == "mofsimbench"


def test_validation_is_idempotent():
    for raw in (
        {},
        {"protocol": "mofsimbench", "fmax": "0.01"},
        {"use_filter": "yes", "supercell": "2,2,1", "indices": [3, 1]},
    ):
        once = SCHEMA.validate(raw, PRESETS)
        assert SCHEMA.validate(once, PRESETS) == once


def test_string_numbers_and_booleans_are_coerced():
    out = SCHEMA.validate(
        {
            "fmax": "1e-2",
            "max_steps": "250",
            "relax_cell": "false",
            "optimizer": "lbfgs",
            "dtype": "FLOAT64",
        }
    )
    assert out["fmax"] == 0.01 and out["max_steps"] == 250 and out["relax_cell"] is False
    assert out["optimizer"] == "LBFGS" and out["dtype"] == "float64"
    assert SCHEMA.validate({"max_steps": 30.0})["max_steps"] == 30
    assert isinstance(SCHEMA.validate({"fmax": 1})["fmax"], float)


def test_lists_are_coerced_and_checked():
    assert SCHEMA.validate({"supercell": "2,2,1"})["supercell"] == [2, 2, 1]
    assert SCHEMA.validate({"supercell": "[3, 3, 3]"})["supercell"] == [3, 3, 3]
    assert SCHEMA.validate({"supercell": 2})["supercell"] == [2, 2, 2]
    assert SCHEMA.validate({"indices": ("4", 5)})["indices"] == [4, 5]
    assert field_of({"supercell": [2, 2]}) == "parameters.supercell"
    assert field_of({"supercell": [2, 0, 2]}) == "parameters.supercell"
    assert field_of({"indices": []}) == "parameters.indices"
    assert field_of({"indices": [1, "a"]}) == "parameters.indices"
    assert field_of({"indices": 3}) == "parameters.indices"


@pytest.mark.parametrize(
    "raw, field",
    [
        ({"max_steps": -1}, "parameters.max_steps"),
        ({"steps": -5}, "parameters.steps"),
        ({"max_steps": 2.5}, "parameters.max_steps"),
        ({"max_steps": True}, "parameters.max_steps"),
        ({"fmax": 0}, "parameters.fmax"),
        ({"fmax": "abc"}, "parameters.fmax"),
        ({"fmax": "nan"}, "parameters.fmax"),
        ({"optimizer": "SGD"}, "parameters.optimizer"),
        ({"dtype": "float16"}, "parameters.dtype"),
        ({"relax_cell": "maybe"}, "parameters.relax_cell"),
        ({"protocol": "fast"}, "parameters.protocol"),
        ({"optimizer": 3}, "parameters.optimizer"),
    ],
)
def test_bad_values_name_their_field(raw, field):
    assert field_of(raw) == field


def test_unknown_keys_rejected_by_name_but_envelope_keys_dropped():
    with pytest.raises(ValidationError) as err:
        SCHEMA.validate({"fmax": 0.1, "temperatur": 300, "bogus": 1})
    assert "bogus" in err.value.message and "temperatur" in err.value.message
    assert err.value.field == "parameters.bogus"
    out = SCHEMA.validate({"structure_id": "abc", "model_key": "mace-mp", "fmax": 0.1})
    assert "structure_id" not in out and "model_key" not in out and out["fmax"] == 0.1


def test_null_means_default_unless_nullable():
    assert SCHEMA.validate({"fmax": None})["fmax"] == 0.05
    schema = ParamSchema([Param("seed", int, 42, nullable=True)], include_common=False)
    assert schema.validate({}) == {"seed": 42}
    assert schema.validate({"seed": None}) == {}


def test_non_mapping_parameters_rejected():
    with pytest.raises(ValidationError) as err:
        SCHEMA.validate(["fmax"])  # type: ignore[arg-type]
    assert err.value.field == "parameters"
    assert SCHEMA.validate(None)["fmax"] == 0.05


def test_schema_declaration_errors_are_programming_errors():
    with pytest.raises(ValueError):
        ParamSchema([Param("a", int, 1, aliases=("b",)), Param("b", int, 2)])
    with pytest.raises(ValueError):
        ParamSchema([Param("a", int, 1)]).validate(
            {"protocol": "mofsimbench"}, {"mofsimbench": {"zzz": 1}}
        )


def test_task_params_override_common_ones():
    schema = ParamSchema([Param("dtype", str, "float64", choices=("float64",))])
    assert schema.validate({})["dtype"] == "float64"


def test_to_schema_is_json_schema_like():
    doc = SCHEMA.to_schema(title="optimization")
    json.dumps(doc)
    props = doc["properties"]
    assert doc["type"] == "object" and doc["additionalProperties"] is False
    assert props["fmax"]["type"] == "number" and props["fmax"]["exclusiveMinimum"] == 0.0
    assert props["max_steps"] == {
        "type": "integer",
        "minimum": 0,
        "default": 500,
        "description": "(also accepted as: steps)",
    }
    assert props["optimizer"]["enum"] == ["BFGS", "LBFGS", "FIRE"]
    assert props["supercell"]["items"] == {"type": "integer", "minimum": 1}
    assert props["supercell"]["minItems"] == props["supercell"]["maxItems"] == 3
    assert props["indices"]["type"] == ["array", "null"]
    assert props["use_filter"]["description"] == "alias of relax_cell"
    assert props["dtype"]["enum"] == ["float32", "float64"]
    assert {p.name for p in COMMON_PARAMS} <= set(props)


def test_require_one_of():
    assert require_one_of({"a": 1, "b": None}, ["a", "b"]) == "a"
    with pytest.raises(ValidationError) as err:
        require_one_of({}, ["a", "b"])
    assert err.value.field == "parameters.b"
    with pytest.raises(ValidationError, match="got a, b"):
        require_one_of({"a": 1, "b": 2}, ["a", "b"])


def test_import_is_light():
    code = (
        "import sys, executors.params; "
        "assert not {'torch', 'ase', 'numpy'} & set(sys.modules), sys.modules.keys()"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
