"""``mofsim models upload --config``: inline JSON, or a JSON or YAML file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mofsim_cli.upload_config import read_config
from spool.errors import ValidationError
from tests.model_factories import LJ_CONFIG


def test_inline_and_files_read_alike(tmp_path: Path) -> None:
    assert read_config(json.dumps(LJ_CONFIG)) == LJ_CONFIG
    as_json = tmp_path / "interface.json"
    as_json.write_text(json.dumps(LJ_CONFIG))
    assert read_config(str(as_json)) == LJ_CONFIG
    as_yaml = tmp_path / "interface.yaml"
    as_yaml.write_text(
        "inputs: [positions, edge_index, shifts]\noutputs: [energy]\n"
        "cutoff: 5.0\nprecision: float64\n"
    )
    assert read_config(str(as_yaml)) == LJ_CONFIG


@pytest.mark.parametrize("text", ["{precision", "[1, 2]", "no-such-file.json"])
def test_what_is_no_object_is_refused(text: str) -> None:
    with pytest.raises(ValidationError) as exc:
        read_config(text)
    assert exc.value.field == "config"
