"""Configuration precedence: defaults < TOML < environment < flags."""

from __future__ import annotations

from pathlib import Path

import pytest

from mofsim_core.config import Config, load_config
from spool.errors import ValidationError

ROOT = Path(__file__).resolve().parents[1]


def test_precedence(tmp_path: Path) -> None:
    f = tmp_path / "m.toml"
    f.write_text('[daemon]\nslots = "cpu:2"\ndefault_timeout = 60\nmax_attempts = 5\n')
    cfg = load_config(f, {"max_attempts": 7}, env={"MOFSIM_SLOTS": "simulate:3"})
    assert cfg.slots == "simulate:3"
    assert cfg.default_timeout == 60.0 and cfg.max_attempts == 7


def test_shipped_config_file_loads_with_the_defaults() -> None:
    cfg = load_config(ROOT / "etc" / "mofsim.toml", env={})
    assert cfg == Config()


def test_bad_values_name_the_setting(tmp_path: Path) -> None:
    f = tmp_path / "m.toml"
    f.write_text('[daemon]\nmax_attempts = "many"\n')
    with pytest.raises(ValidationError) as e:
        load_config(f, env={})
    assert e.value.field == "max_attempts"
    with pytest.raises(ValidationError):
        load_config(tmp_path / "missing.toml", env={})
    (tmp_path / "broken.toml").write_text("[daemon\n")
    with pytest.raises(ValidationError):
        load_config(tmp_path / "broken.toml", env={})


def test_masked_hides_database_password() -> None:
    cfg = Config(database_url="postgresql://mofsim:secret@db:5432/mofsim")
    assert "secret" not in str(cfg.masked())
