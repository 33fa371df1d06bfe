"""The ``mofsim`` CLI in remote mode (``--server URL``), against the real HTTP server on a
loopback port and a real daemon (EMT) on the same spool.

The same task is shown both ways, through the spool (``--spool``) and through the
server (``--server``): every command must print the same document and the same table;
the only difference is where output files are (paths here, URLs there).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from mofsim_cli.main import app
from spool import Spool
from tests.daemon_helpers import LiveServer, cu_xyz, wait_for

ROOT = Path(__file__).resolve().parents[1]
ENV_VARS = ("MOFSIM_SERVER", "MOFSIM_API_KEY", "MOFSIM_SPOOL", "MOFSIM_OUTPUT")


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ENV_VARS:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="module")
def live_options() -> dict[str, Any]:
    return {"slots": "cpu:1", "http_rate_limit": 0}


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from ase.build import bulk
    from ase.io import write

    folder = tmp_path_factory.mktemp("structures")
    cu = folder / "cu.xyz"
    cu.write_text(cu_xyz())
    big = folder / "cu108.xyz"
    big.write_text(cu_xyz(3, rattle=0.05))
    cif = folder / "cu_cell.cif"
    write(cif, bulk("Cu", "fcc", a=3.61, cubic=True), format="cif")
    return {"cu": cu, "big": big, "cif": cif}


def run(
    *args: Any,
    spool: Path | None = None,
    server: str | None = None,
    env: dict[str, str] | None = None,
) -> Any:
    argv = [str(a) for a in args]
    if spool is not None:
        argv += ["--spool", str(spool)]
    if server is not None:
        argv += ["--server", server]
    return CliRunner().invoke(app, argv, env=env, catch_exceptions=False)


class Both:
    """One command, run on the spool and through the server."""

    def __init__(self, spool: Path, url: str) -> None:
        self.spool, self.url = spool, url

    def local(self, *args: Any) -> Any:
        return run(*args, spool=self.spool)

    def remote(self, *args: Any) -> Any:
        return run(*args, server=self.url)

    def same(self, *args: Any, code: int = 0) -> Any:
        """Run both ways, assert the same exit code, stdout and stderr; the output."""
        a, b = self.local(*args), self.remote(*args)
        assert a.exit_code == b.exit_code == code, (args, a.output, b.output)
        assert a.stdout == b.stdout, (args, a.stdout, b.stdout)
        assert a.stderr == b.stderr, (args, a.stderr, b.stderr)
        return b


@pytest.fixture
def both(live_server: LiveServer) -> Both:
    return Both(live_server.spool_root, live_server.url)


def _json(result: Any) -> Any:
    return json.loads(result.stdout)


# --- tasks -----------------------------------------------------------------------------------


def test_a_task_run_remotely_shows_the_same_both_ways(
    both: Both, files: dict[str, Path], live_spool: Path
) -> None:
    r = both.remote(
        "submit",
        "optimization",
        files["big"],
        "-m",
        "emt",
        "-p",
        "fmax=0.05",
        "-p",
        "max_steps=40",
        "--priority",
        "high",
        "--wait",
        "--json",
    )
    assert r.exit_code == 0, r.output
    done = _json(r)
    task_id = done["task_id"]
    assert done["status"] == "COMPLETED" and done["task_type"] == "optimization"
    assert done["result"]["steps"] > 0

    for command in (
        ["status", task_id, "--json"],
        ["status", task_id],
        ["logs", task_id, "--json"],
        ["logs", task_id],
        ["logs", task_id, "--level", "warning"],
        ["list", "--json"],
        ["list"],
        ["list", "-s", "completed", "-n", "1"],
        ["status", task_id, "-o", "table"],
    ):
        both.same(*command)
    status = _json(both.remote("status", task_id, "--json"))
    assert status["status"] == "COMPLETED" and status["priority"] == "HIGH"
    assert status["parameters"] == {"fmax": 0.05, "max_steps": 40}
    assert status["structure"] == {
        "source": "inline",
        "name": "cu108",
        "filename": "cu108.xyz",
        "format": "xyz",
    }
    assert "result" not in status  # that is mofsim result's

    local, remote = (
        _json(both.local("result", task_id, "--json")),
        _json(both.remote("result", task_id, "--json")),
    )

    def placeless(view: dict[str, Any]) -> dict[str, Any]:
        out = {k: v for k, v in view.items() if k not in ("workspace", "output_files")}
        out["result"] = {k: v for k, v in view["result"].items() if k != "output_files"}
        return out

    assert placeless(local) == placeless(remote) == placeless(done)
    assert remote["workspace"] is None
    workspace = Spool(live_spool).paths.workspace(task_id)
    assert local["workspace"] == str(workspace)
    assert (
        set(local["output_files"])
        == set(remote["output_files"])
        >= {"optimized_structure", "trajectory"}
    )
    for name, path in local["output_files"].items():
        url = remote["output_files"][name]
        assert url.startswith(both.url + "/api/v1/files/"), url
        assert httpx.get(url).content == Path(path).read_bytes()
    assert local["result"]["output_files"] == local["output_files"]
    assert remote["result"]["output_files"] == remote["output_files"]
    # The tables differ only in the lines that say where the files are.
    text_local = both.local("result", task_id).stdout.splitlines()
    text_remote = both.remote("result", task_id).stdout.splitlines()
    differ = [(a, b) for a, b in zip(text_local, text_remote, strict=True) if a != b]
    assert len(differ) == len(local["output_files"])
    assert all(str(workspace) in a and both.url in b for a, b in differ)


def test_submit_wait_streams_the_same_progress(both: Both, files: dict[str, Path]) -> None:
    r = both.remote(
        "submit", "optimization", files["big"], "-m", "emt", "-p", "fmax=0.05", "-p", "max_steps=30"
    )
    assert r.exit_code == 0, r.output
    assert r.stdout.startswith("Submitted task_") and "optimization / emt / cu108" in r.stdout
    assert f"--follow --server {both.url}" in r.stdout  # the hint reaches the same server
    r = both.remote(
        "submit",
        "optimization",
        files["big"],
        "-m",
        "emt",
        "-p",
        "fmax=0.05",
        "-p",
        "max_steps=30",
        "--wait",
    )
    assert r.exit_code == 0, r.output
    lines = r.stdout.splitlines()
    task_id = lines[0].split()[1]
    assert any("RUNNING  Task started on cpu0" in ln for ln in lines)
    assert any("progress" in ln and "step" in ln and "fmax" in ln for ln in lines)
    assert f"Task {task_id} COMPLETED" in lines
    assert "final_energy_eV" in r.stdout and "Output files" in r.stdout
    # Following the finished task again prints the same lines both ways.
    both.same("logs", task_id, "--follow")
    both.same("logs", task_id, "--follow", "--json")


def test_the_live_bar_is_fed_from_the_event_stream(both: Both, files: dict[str, Path]) -> None:
    import io

    from rich.console import Console

    from mofsim_cli.backend import LocalBackend
    from mofsim_cli.follow import BarDisplay, follow, make_display
    from mofsim_cli.remote import RemoteBackend

    task_id = _json(
        both.remote(
            "submit",
            "optimization",
            files["big"],
            "-m",
            "emt",
            "-p",
            "fmax=0.05",
            "-p",
            "max_steps=20",
            "--json",
        )
    )["task_id"]
    remote = RemoteBackend(both.url, None)
    try:
        buf = io.StringIO()
        console = Console(file=buf, force_terminal=True, width=150, color_system=None)
        display = make_display(console, task_id)
        assert isinstance(display, BarDisplay)
        source = remote.follow(task_id)
        assert follow(source, display) == "COMPLETED" == source.state
        bar = display.progress.tasks[0]
        assert bar.completed == 1.0 and bar.finished
        assert "100%" in buf.getvalue()
        assert buf.getvalue().rstrip().endswith(f"Task {task_id} COMPLETED")
        # The same events, ids and all, as reading the spool.
        streamed = [(e.offset, e.data) for e in remote.follow(task_id)]
        local = [(e.offset, e.data) for e in LocalBackend(both.spool).follow(task_id)]
        assert streamed == local and len(local) >= 5
    finally:
        remote.close()


def test_cancel_and_follow_a_running_task(
    both: Both, files: dict[str, Path], live_spool: Path
) -> None:
    sp = Spool(live_spool)
    slow = [
        "submit",
        "optimization",
        files["big"],
        "-m",
        "emt",
        "-p",
        "fmax=1e-30",
        "-p",
        "max_steps=10000000",
        "-p",
        "optimizer=FIRE",
        "-p",
        "trajectory_interval=1000000",
        "--json",
    ]
    running = _json(both.remote(*slow))["task_id"]
    wait_for(
        lambda: (
            sp.record(running)["status"] == "RUNNING" and sp.record(running)["progress"] is not None
        ),
        60,
        "the slow task to run",
    )
    queued = _json(both.remote(*slow))
    assert queued["status"] == "QUEUED" and queued["queue_position"] == 1
    both.same("status", queued["task_id"], "--json")

    r = both.remote("cancel", queued["task_id"], "--json")
    assert _json(r) == {
        "task_id": queued["task_id"],
        "status": "CANCELLED",
        "cancel_requested": False,
    }
    r = both.remote("cancel", running)
    assert r.exit_code == 0
    # The answer waits for the step that sees the request; a busy machine may need longer.
    assert r.stdout in (
        f"CANCELLED {running}\n",
        f"RUNNING {running}  (cancel requested: the executor stops at its next step)\n",
    )
    r = both.remote("logs", running, "--follow")
    assert r.exit_code == 0, r.output
    assert r.stdout.splitlines()[-1] == f"Task {running} CANCELLED"
    assert "progress" in r.stdout
    for task_id in (running, queued["task_id"]):
        both.same("cancel", task_id, code=1)  # already finished: 50005
        both.same("result", task_id, code=1)  # the task's own error: 50004
        both.same("result", task_id, "--json", code=1)
    assert both.remote("result", running).stderr.startswith("error 50004: ")


def test_errors_are_the_same_one_line_both_ways(
    both: Both, files: dict[str, Path], live_spool: Path
) -> None:
    for command in ("status", "result", "logs", "cancel"):
        r = both.same(command, "task_x", code=1)
        assert r.stderr == "error 30003: task task_x not found\n" and r.stdout == ""
    r = both.same("status", "task_x", "--json", code=1)
    assert _json(r) == {
        "error": {
            "code": 30003,
            "type": "TaskNotFound",
            "message": "task task_x not found",
            "field": None,
        }
    }
    r = both.same("logs", "task_x", "--follow", code=1)
    assert r.stdout == ""
    before = sorted(Spool(live_spool).iter_task_ids())
    refusals: list[tuple[list[Any], int, str]] = [
        (
            ["optimization", "builtin:HKUST-1", "-m", "emt", "--priority", "URGENT"],
            40001,
            "options.priority",
        ),
        (["dance", "builtin:HKUST-1", "-m", "emt"], 40001, "task_type"),
        (
            ["optimization", "builtin:HKUST-1", "-m", "emt", "--timeout", "-5"],
            40001,
            "options.timeout",
        ),
        (["optimization", files["big"], "-m", "sevenet"], 30001, "model"),
        (["optimization", files["big"], "-m", "emt", "-p", "fmax=-1"], 40001, "parameters.fmax"),
        (["optimization", files["cu"].with_name("missing.cif"), "-m", "emt"], 30002, "structure"),
        (["optimization", "builtin:NoSuchMOF", "-m", "emt"], 30002, "structure.name"),
    ]
    for argv, code, field in refusals:
        local = both.local("submit", *argv, "--json")
        remote = both.remote("submit", *argv, "--json")
        assert local.exit_code == remote.exit_code == 1, (argv, remote.output)
        err = _json(remote)["error"]
        assert (err["code"], err["field"]) == (code, field), (argv, err)
        assert _json(local)["error"]["code"] == code, (argv, local.stdout)
        human = both.remote("submit", *argv)
        assert human.stderr.startswith(f"error {code}: ") and "Traceback" not in human.output
        assert f"(field: {field})" in human.stderr
    assert sorted(Spool(live_spool).iter_task_ids()) == before
    r = both.same("list", "--state", "sleeping", code=1)
    assert r.stderr.startswith("error 40001: unknown state 'sleeping'")


def test_where_a_command_goes(both: Both, live_spool: Path, tmp_path: Path) -> None:
    # MOFSIM_SERVER alone means remote; --spool on the command line beats it.
    r = run("list", "--json", env={"MOFSIM_SERVER": both.url})
    assert r.exit_code == 0 and _json(r) == _json(both.local("list", "--json"))
    empty = tmp_path / "empty-spool"
    Spool(empty)
    r = run("list", "--json", spool=empty, env={"MOFSIM_SERVER": both.url})
    assert r.exit_code == 0 and _json(r) == []
    r = run("list", spool=empty, server=both.url)
    assert r.exit_code == 1
    assert r.stderr.startswith("error 40001: --spool and --server exclude each other")
    r = run("status", "task_x", server="http://127.0.0.1:9")
    assert r.exit_code == 1
    assert r.stderr.startswith(
        "error 10001: cannot reach the MOFSim server at http://127.0.0.1:9"
    ), r.stderr
    assert "Traceback" not in r.output


def test_remote_mode_needs_neither_the_server_stack_nor_the_physics(
    both: Both, files: dict[str, Path]
) -> None:
    code = (
        "import sys\n"
        "from typer.testing import CliRunner\n"
        "from mofsim_cli.main import app\n"
        f"url = {both.url!r}\n"
        "for argv in (['list', '--json'], ['models', 'list'], ['structures', 'builtin'],\n"
        f"             ['submit', 'single-point', {str(files['cu'])!r}, '-m', 'emt']):\n"
        "    r = CliRunner().invoke(app, [*argv, '--server', url])\n"
        "    assert r.exit_code == 0, r.output\n"
        "heavy = ('torch', 'ase', 'numpy', 'aiohttp', 'loguru', 'mofsimd', 'mofsim_http',\n"
        "         'executors.models')\n"
        "print(sorted(m for m in heavy if m in sys.modules))\n"
    )
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    for name in ENV_VARS:
        env.pop(name, None)
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


# --- API keys --------------------------------------------------------------------------------


def test_api_keys_from_the_flag_and_the_environment(tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    keys = {}
    for admin in (False, True):
        r = run("keys", "create", "--json", *(["--admin"] if admin else []), spool=spool)
        assert r.exit_code == 0, r.output
        keys[admin] = _json(r)["key"]
    live = LiveServer(spool, http_rate_limit=0).start()
    try:
        r = run("list", server=live.url)
        assert r.exit_code == 1 and r.stderr.startswith("error 20001: ")
        r = run("list", "--json", "--api-key", keys[False], server=live.url)
        assert r.exit_code == 0 and _json(r) == []
        r = run("list", "--json", server=live.url, env={"MOFSIM_API_KEY": keys[False]})
        assert r.exit_code == 0 and _json(r) == []
        r = run("system", "config", "--api-key", keys[False], server=live.url)
        assert r.exit_code == 1 and r.stderr.startswith("error 20002: ")
        r = run("system", "config", "--json", "--api-key", keys[True], server=live.url)
        assert r.exit_code == 0, r.output
        cfg = _json(r)
        assert cfg["effective"]["spool"] == str(spool.resolve())
        text = run("system", "config", "--api-key", keys[True], server=live.url).stdout
        assert "Configuration" in text and "max_upload_bytes" in text
    finally:
        live.close()


# --- models, structures, system --------------------------------------------------------------


def test_models_both_ways(both: Both, live_spool: Path, tmp_path: Path) -> None:
    listed = _json(both.same("models", "list", "--json"))
    assert {"sevennet-0", "mace-mp", "emt", "lj"} <= {m["key"] for m in listed}
    ase = both.same("models", "list", "--family", "ase")
    assert "emt" in ase.stdout and "sevennet-0" not in ase.stdout
    r = both.same("models", "list", "--family", "grace", "--json", code=1)
    assert _json(r)["error"]["field"] == "family"
    detail = _json(both.same("models", "show", "7net-0", "--json"))
    assert detail["key"] == "sevennet-0" and "Cu" in detail["elements"]
    assert "SevenNet" in both.same("models", "show", "sevennet-0").stdout
    r = both.same("models", "show", "sevenet-0", code=1)
    assert r.stderr.startswith("error 30001: ") and "sevennet-0" in r.stderr

    r = both.remote("models", "load", "emt", "--slot", "cpu0", "--json")
    assert r.exit_code == 0, r.output
    request = _json(r)
    assert request["model_key"] == "emt" and request["status"] == "pending"
    wait_for(
        lambda: _json(both.local("models", "status", "emt", "--json"))["loaded"], 60, "emt to load"
    )
    status = _json(both.same("models", "status", "emt", "--json"))
    assert [s["slot_id"] for s in status["slots"]] == ["cpu0"]
    assert request["request_id"] in both.same("models", "status", "emt").stdout
    r = both.local("models", "unload", "emt")
    assert r.exit_code == 0 and r.stdout.startswith("unload of emt requested")
    wait_for(
        lambda: not _json(both.remote("models", "status", "emt", "--json"))["loaded"],
        60,
        "emt to unload",
    )

    weights = tmp_path / "broken.model"
    weights.write_bytes(b"PK\x03\x04" + bytes(range(256)) * 4)
    r = both.remote(
        "models",
        "upload",
        weights,
        "--name",
        "broken",
        "--framework",
        "mace",
        "--description",
        "not a model",
        "--json",
    )
    assert r.exit_code == 0, r.output
    info = _json(r)
    assert info["validated"] is False and info["framework"] == "mace"
    assert info["description"] == "not a model" and info["with_d3"] is False
    custom = _json(both.same("models", "list", "--family", "custom", "--json"))
    assert [m["model_id"] for m in custom] == [info["model_id"]]
    r = both.local("models", "validate", info["model_id"], "--json")
    assert r.exit_code == 0, r.output
    verdict = _json(r)
    assert verdict["valid"] is False and verdict["validation"]["error"]["code"] == 30005
    r = both.remote("models", "delete", info["model_id"])
    assert r.exit_code == 0 and r.stdout == f"deleted {info['model_key']}\n"
    both.same("models", "delete", info["model_id"], code=1)
    r = both.local("models", "upload", weights, "--name", "x", "--framework", "tensorflow")
    assert r.exit_code == 1 and "(field: framework)" in r.stderr


def test_structures_both_ways(both: Both, files: dict[str, Path], live_spool: Path) -> None:
    builtin = _json(both.same("structures", "builtin", "--json"))
    assert {"MOF-5", "HKUST-1", "UiO-66", "ZIF-8", "CALF-20"} <= {s["name"] for s in builtin}
    assert "builtin:MOF-5" in both.same("structures", "builtin").stdout

    r = both.remote("structures", "upload", files["cif"], "--name", "copper", "--json")
    assert r.exit_code == 0, r.output
    up = _json(r)
    assert up["name"] == "copper" and up["natoms"] == 4 and up["formula"] == "Cu4"
    r = both.local("structures", "upload", files["cu"], "--json")
    assert r.exit_code == 0, r.output
    local_up = _json(r)
    listed = _json(both.same("structures", "list", "--json"))
    assert [s["file_id"] for s in listed][:2] == [local_up["file_id"], up["file_id"]]
    both.same("structures", "list")
    shown = both.same("structures", "show", up["file_id"], "--json")
    assert _json(shown)["file_id"] == up["file_id"]
    assert "Cu4" in both.same("structures", "show", up["file_id"]).stdout

    r = both.remote(
        "submit", "single-point", f"upload:{up['file_id']}", "-m", "emt", "--wait", "--json"
    )
    assert r.exit_code == 0, r.output
    used_by = _json(r)["task_id"]
    r = both.local("structures", "delete", up["file_id"], "--json")
    assert r.exit_code == 0, r.output
    assert _json(r)["deleted_task_ids"] == [used_by]
    r = both.same("structures", "show", up["file_id"], code=1)
    assert r.stderr.startswith("error 30002: ")
    r = both.remote("structures", "delete", local_up["file_id"])
    assert r.exit_code == 0 and r.stdout.startswith(f"deleted {local_up['file_id']}")
    r = both.same("structures", "upload", files["cu"].with_name("none.cif"), code=1)
    assert r.stderr.startswith("error 30002: ")


def test_system_both_ways(both: Both) -> None:
    local, remote = (
        _json(both.local("system", "gpus", "--json")),
        _json(both.remote("system", "gpus", "--json")),
    )
    assert local["source"] == remote["source"] == "daemon"
    assert (
        [(g["slot_id"], g["device"], g["state"] in ("idle", "busy")) for g in local["gpus"]]
        == [(g["slot_id"], g["device"], True) for g in remote["gpus"]]
        == [("cpu0", "cpu", True)]
    )
    text = both.remote("system", "gpus").stdout
    assert "SLOT" in text and "cpu0" in text and "daemon snapshot" in text

    local, remote = (
        _json(both.local("system", "queue", "--json")),
        _json(both.remote("system", "queue", "--json")),
    )
    for doc in (local, remote):
        assert set(doc["queued"]["by_priority"]) == {"CRITICAL", "HIGH", "NORMAL", "LOW"}
        assert doc["daemon_running"] is True
    for state in ("QUEUED", "COMPLETED", "FAILED", "CANCELLED", "TIMEOUT"):
        assert local["by_state"][state] == remote["by_state"][state], state
    assert "Tasks by state" in both.remote("system", "queue").stdout

    for flag in ("--active", "--history"):
        both.same("system", "alerts", flag, "--json")
    filters = ("--level", "warning,critical", "--since", "2025-12-30T10:00:00Z", "--limit", "3")
    both.same("system", "alerts", "--history", *filters, "--json")
    r = both.local("system", "alerts", "--active", "--history")
    assert r.exit_code == 1 and "(field: history)" in r.stderr

    health = _json(both.remote("system", "health", "--json"))
    assert health["status"] == "healthy" and health["daemon"]["alive"] is True
    assert "healthy" in both.remote("system", "health").stdout
    for command in ("health", "config"):
        r = both.local("system", command)
        assert r.exit_code == 1
        assert r.stderr.startswith("error 40001: mofsim system "), r.stderr
        assert "--server" in r.stderr and "(field: server)" in r.stderr
