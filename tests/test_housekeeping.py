"""``mofsim gc`` / ``keep`` / ``delete`` on a spool and through a real server, with the
retention policy read from a configuration file."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from mofsim_cli.main import app
from spool import Spool
from spool.events import read_events
from tests.daemon_helpers import LiveServer
from tests.test_retention import finished_task


def run(*args: Any, env: dict[str, str] | None = None) -> Any:
    return CliRunner().invoke(app, [str(a) for a in args], env=env, catch_exceptions=False)


@pytest.fixture
def config_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Trajectories compressed at once, reminders a year ahead: every finished task has
    something to do."""
    path = tmp_path / "mofsim.toml"
    path.write_text("[daemon]\nretention_compress_after_days = 0\nretention_remind_days = 365\n")
    monkeypatch.setenv("MOFSIM_CONFIG", str(path))
    for name in ("MOFSIM_SERVER", "MOFSIM_API_KEY", "MOFSIM_SPOOL"):
        monkeypatch.delenv(name, raising=False)
    return path


@pytest.fixture
def spool(tmp_path: Path) -> Spool:
    return Spool(tmp_path / "spool")


def test_gc_dry_run_then_apply_on_a_spool(spool: Spool, config_file: Path) -> None:
    kept, other = finished_task(spool), finished_task(spool)
    r = run("keep", kept, "--spool", spool.root, "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout) == {"task_id": kept, "keep": True}

    r = run("gc", "--dry-run", "--spool", spool.root, "--json")
    assert r.exit_code == 0, r.output
    plan = json.loads(r.stdout)
    assert plan["applied"] is False and plan["policy"]["compress_after_days"] == 0
    assert sorted((a["task_id"], a["action"]) for a in plan["actions"]) == sorted(
        [(kept, "compress"), (other, "compress"), (other, "remind")]
    )
    assert (spool.paths.workspace(other) / "trajectory.traj").exists()  # a dry run

    r = run("gc", "--dry-run", "--spool", spool.root, "-o", "table")
    assert "3 actions would be done" in r.stdout and "remind" in r.stdout

    r = run("gc", "--spool", spool.root)
    assert r.exit_code == 0 and "3 actions done" in r.stdout, r.output
    assert (spool.paths.workspace(other) / "trajectory.traj.gz").exists()
    messages = [e.data.get("message", "") for e in read_events(spool.paths.events_file(other))]
    assert any("Retention reminder" in m for m in messages)
    assert "nothing to do" in run("gc", "--dry-run", "--spool", spool.root).stdout


def test_delete_asks_for_confirmation_and_keeps_the_record(spool: Spool, config_file: Path) -> None:
    tid = finished_task(spool)
    r = run("delete", tid, "--spool", spool.root)  # no terminal to ask on
    assert r.exit_code == 1 and "--yes" in r.stderr
    assert (spool.paths.workspace(tid) / "optimized.cif").exists()
    r = run("delete", tid, "--spool", spool.root, "--yes", "--json")
    assert r.exit_code == 0, r.output
    assert set(json.loads(r.stdout)["removed"]) >= {"optimized.cif", "trajectory.traj"}
    assert not (spool.paths.workspace(tid) / "optimized.cif").exists()
    assert run("status", tid, "--spool", spool.root).exit_code == 0  # the record stays
    r = run("delete", "task_doesnotexist", "--spool", spool.root, "--yes")
    assert r.exit_code == 1 and "error 30003" in r.stderr


def test_a_retention_period_under_180_days_is_refused(spool: Spool, config_file: Path) -> None:
    config_file.write_text("[daemon]\nretention_keep_days = 30\n")
    r = run("gc", "--dry-run", "--spool", spool.root)
    assert r.exit_code == 1 and "retention_keep_days must be at least 180" in r.stderr


@pytest.fixture
def server(spool: Spool) -> Iterator[LiveServer]:
    live = LiveServer(
        spool.root,
        http_rate_limit=0,
        retention_compress_after_days=0.0,
        retention_remind_days=365.0,
    ).start()
    try:
        yield live
    finally:
        live.close()


def test_the_same_through_a_server(spool: Spool, config_file: Path, server: LiveServer) -> None:
    kept, other = finished_task(spool), finished_task(spool)
    local = run("gc", "--dry-run", "--spool", spool.root, "--json")
    remote = run("gc", "--dry-run", "--server", server.url, "--json")
    assert remote.exit_code == 0, remote.output
    assert json.loads(remote.stdout) == json.loads(local.stdout)

    r = run("gc", "--server", server.url)
    assert r.exit_code == 1 and "--dry-run" in r.stderr

    r = run("keep", kept, "--server", server.url, "--json")
    assert r.exit_code == 0 and json.loads(r.stdout)["keep"] is True, r.output
    r = run("keep", kept, "--off", "--server", server.url)
    assert r.exit_code == 0 and f"{kept}: no longer kept" in r.stdout

    r = run("delete", other, "--server", server.url, "--yes")
    assert r.exit_code == 0 and "optimized.cif" in r.stdout, r.output
    assert not (spool.paths.workspace(other) / "optimized.cif").exists()
