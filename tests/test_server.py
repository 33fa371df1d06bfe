"""Running the API: inside the daemon (``--http``), alone (``mofsim serve``), refusals."""

from __future__ import annotations

import gc
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from mofsim_cli.launch import run_daemon
from mofsim_cli.main import app as cli_app
from mofsim_core.config import Config, load_config
from mofsim_http.server import (
    REQUEST_PATH_MODULES,
    SHUTDOWN_TIMEOUT_S,
    HttpServer,
    parse_bind,
    settle_heap,
)
from spool import Job, Spool
from spool.errors import ValidationError
from tests.daemon_helpers import Daemon, cu_xyz, wait_for

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def test_parse_bind() -> None:
    assert parse_bind("127.0.0.1:8000") == ("127.0.0.1", 8000)
    assert parse_bind("[::1]:9000") == ("::1", 9000)
    assert parse_bind(None) == ("127.0.0.1", 8000)
    for bad in ("8000", ":8000", "host:", "host:99999", "host:http"):
        with pytest.raises(ValidationError):
            parse_bind(bad)


@pytest.mark.asyncio
async def test_http_server_starts_and_stops_in_this_loop(tmp_path: Path) -> None:
    port = free_port()
    server = HttpServer(Config(spool=str(tmp_path / "spool"), http=f"127.0.0.1:{port}"))
    await server.start()
    try:
        async with httpx.AsyncClient(base_url=server.url) as c:
            resp = await c.get("/api/v1/tasks")
        assert resp.status_code == 200 and resp.json()["data"]["items"] == []
        taken = HttpServer(Config(spool=str(tmp_path / "spool"), http=f"127.0.0.1:{port}"))
        with pytest.raises(ValidationError) as exc:
            await taken.start()
        assert "cannot listen" in exc.value.message
        # An open event stream does not hold the shutdown back.
        spool = Spool(tmp_path / "spool")
        job = Job.from_dict(
            {"task_type": "single-point-energy", "model": "emt", "structure": "builtin:HKUST-1"}
        )
        spool.submit(job)
        async with (
            httpx.AsyncClient(base_url=server.url) as c,
            c.stream("GET", f"/api/v1/tasks/{job.task_id}/events") as stream,
        ):
            lines = stream.aiter_lines()
            assert (await anext(lines)).startswith("retry:")
            started = time.monotonic()
            await server.stop()
            assert time.monotonic() - started < SHUTDOWN_TIMEOUT_S
    finally:
        await server.stop()
    assert not listening(port)


def test_non_loopback_bind_without_keys_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "spool"
    with pytest.raises(ValidationError) as exc:
        run_daemon(
            load_config(
                overrides={"spool": str(root), "slots": "cpu:1", "http": "0.0.0.0:8123"}, env={}
            )
        )
    assert "mofsim keys create" in exc.value.message
    assert not (root / "state" / "daemon.lock").exists()  # refused before starting
    result = CliRunner().invoke(cli_app, ["serve", "--http", "0.0.0.0:8123", "--spool", str(root)])
    assert result.exit_code == 1 and "keys create" in result.output
    result = CliRunner().invoke(
        cli_app, ["keys", "create", "--admin", "--json", "--spool", str(root)]
    )
    assert result.exit_code == 0 and json.loads(result.output)["key"].startswith("msk_")
    HttpServer(Config(spool=str(root), http="0.0.0.0:8123")).check()  # now allowed


def test_daemon_serves_http_and_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    port = free_port()
    daemon = Daemon(tmp_path / "spool", http=f"127.0.0.1:{port}").start()
    try:
        assert listening(port)  # ready means the API is up too
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as c:
            resp = c.post(
                "/api/v1/tasks/single-point-energy",
                json={
                    "model": "emt",
                    "structure": {"source": "inline", "format": "extxyz", "content": cu_xyz()},
                },
            )
            assert resp.status_code == 202, resp.text
            task_id = resp.json()["data"]["task_id"]
            with c.stream("GET", f"/api/v1/tasks/{task_id}/events") as stream:
                lines = [line for line in stream.iter_lines() if line.startswith("event: ")]
            assert lines[-1] == "event: end"
            result = c.get(f"/api/v1/tasks/{task_id}/result").json()["data"]
            assert result["status"] == "COMPLETED"
    finally:
        code = daemon.stop(timeout=30)
    assert code == 0
    assert not listening(port)


def test_mofsim_serve_runs_alone_on_a_spool(tmp_path: Path) -> None:
    port = free_port()
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mofsim_cli",
            "serve",
            "--spool",
            str(tmp_path / "spool"),
            "--http",
            f"127.0.0.1:{port}",
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_for(lambda: listening(port) or proc.poll() is not None, 60, "mofsim serve")
        assert proc.poll() is None, proc.stdout.read().decode() if proc.stdout else ""
        resp = httpx.get(f"http://127.0.0.1:{port}/api/v1/tasks", timeout=10)
        assert resp.status_code == 200
    finally:
        proc.send_signal(signal.SIGTERM)
        output = proc.communicate(timeout=30)[0].decode()
    assert proc.returncode == 0, output
    assert "no daemon is running" in output  # it says why tasks will not run


def test_settle_heap_loads_the_request_path_and_freezes_what_lives() -> None:
    class Marker:
        alive = "before"

    marker = Marker()
    assert any(obj is marker for obj in gc.get_objects())  # tracked until frozen
    try:
        settle_heap()
        assert all(name in sys.modules for name in REQUEST_PATH_MODULES)
        assert gc.get_freeze_count() > 0
        # Frozen objects are out of the collector's generations, not gone.
        assert not any(obj is marker for obj in gc.get_objects())
        assert marker.alive == "before"
    finally:
        gc.unfreeze()
    assert gc.get_freeze_count() == 0
