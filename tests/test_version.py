"""One version: ``mofsim --version``, the health answers, the OpenAPI document and the
SDK say the same, and a checkout that cannot tell says ``unknown`` everywhere."""

from __future__ import annotations

import tomllib
from importlib import metadata
from pathlib import Path

import pytest
from typer.testing import CliRunner

import mofsim_client
import mofsim_core.version as version_mod
from mofsim_cli.main import app
from mofsim_client._http import USER_AGENT
from mofsim_core.version import UNKNOWN, package_version

ROOT = Path(__file__).resolve().parents[1]


def test_everyone_reports_the_projects_version() -> None:
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert package_version() == declared
    assert mofsim_client.__version__ == declared  # the SDK ships with its server
    assert USER_AGENT == f"mofsim-client/{declared}"
    r = CliRunner().invoke(app, ["--version"])
    assert r.exit_code == 0 and r.stdout.strip() == f"mofsim {declared}"


def test_the_fallbacks(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    lookup = version_mod.package_version.__wrapped__  # past the cache

    def not_installed(name: str) -> str:
        raise metadata.PackageNotFoundError(name)

    monkeypatch.setattr(metadata, "version", not_installed)
    # A checkout: the project file beside the packages says.
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert lookup() == declared
    # Neither installed nor beside its project file.
    monkeypatch.setattr(version_mod, "__file__", str(tmp_path / "pkg" / "version.py"))
    assert lookup() == UNKNOWN
    (tmp_path / "pyproject.toml").write_text("[project]\nname = 'mofsim'\n")
    assert lookup() == UNKNOWN
