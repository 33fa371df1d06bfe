"""The audit log records every administrative or destructive operation, whichever face
asked for it: keys created and revoked (API and CLI), models loaded and unloaded,
custom models uploaded and validated, tasks cancelled (with their state then).  A real
daemon on a temporary spool, the HTTP API on loopback, the CLI in this process; the
records are read back through ``GET /api/v1/system/logs?kind=audit``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
from typer.testing import CliRunner

from mofsim_cli.main import app as cli_app
from mofsim_core import logs
from spool import Spool
from tests.daemon_helpers import Daemon, LiveServer, slow_job, status, wait_for


def cli(*args: str) -> Any:
    result = CliRunner().invoke(cli_app, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result


def test_admin_operations_are_audited_from_the_api_and_the_cli(tmp_path: Path) -> None:
    sp = Spool(tmp_path / "spool")
    root = str(sp.root)
    # The server runs in this process: its audit records go where `mofsim serve` puts
    # them (the CLI below sends its own there too).
    logs.audit_into(sp.paths.state_dir / "logs")
    boss = json.loads(
        cli("keys", "create", "--admin", "--name", "boss", "--json", "--spool", root).stdout
    )
    temp = json.loads(cli("keys", "create", "--name", "temp", "--json", "--spool", root).stdout)
    cli("keys", "revoke", temp["id"], "--spool", root)

    server = LiveServer(sp.root, http_rate_limit=0)
    with Daemon(sp.root, slots="cpu:1"):
        server.start()
        try:
            headers = {"X-API-Key": boss["key"]}
            with httpx.Client(base_url=server.url, headers=headers, timeout=60) as http:
                rids: dict[str, str] = {}

                def call(name: str, method: str, url: str, **kw: Any) -> dict[str, Any]:
                    resp = http.request(method, url, **kw)
                    assert resp.status_code < 300, resp.text
                    rids[name] = resp.headers["X-Request-ID"]
                    return dict(resp.json()["data"])

                user = call("key.created", "POST", "/api/v1/auth/keys", json={"name": "user"})
                call("key.revoked", "DELETE", f"/api/v1/auth/keys/{user['id']}")
                call("model.load", "POST", "/api/v1/models/emt/load", json={"slot": "cpu0"})
                call("model.unload", "POST", "/api/v1/models/emt/unload")
                junk = b"PK\x03\x04" + bytes(range(256)) * 8  # a torch archive's magic only
                model = call(
                    "model.uploaded",
                    "POST",
                    "/api/v1/models/custom",
                    files={"file": ("tiny.model", junk, "application/octet-stream")},
                    data={"name": "tiny", "framework": "mace"},
                )
                verdict = call(
                    "model.validated", "POST", f"/api/v1/models/custom/{model['model_id']}/validate"
                )
                assert verdict["valid"] is False

                job = slow_job()
                sp.submit(job)
                wait_for(lambda: status(sp, job.task_id) == "RUNNING", 60, "running")
                call("task.cancel", "POST", f"/api/v1/tasks/{job.task_id}/cancel")
                wait_for(lambda: status(sp, job.task_id) == "CANCELLED", 60, "cancelled")

                page = http.get("/api/v1/system/logs?kind=audit&page_size=1000").json()["data"]
        finally:
            server.close()

    records = [
        {**r["extra"], "message": r["message"], "task_id": r["task_id"]} for r in page["items"]
    ]
    by_action: dict[str, list[dict[str, Any]]] = {}
    for r in records:
        by_action.setdefault(r["message"], []).append(r)
    # The CLI's: the admin key, a key made and revoked, each by the user at the terminal.
    assert [r["key_id"] for r in by_action["key.created"]] == [boss["id"], temp["id"], user["id"]]
    assert [r["key_id"] for r in by_action["key.revoked"]] == [temp["id"], user["id"]]
    cli_records = by_action["key.created"][:2] + by_action["key.revoked"][:1]
    assert all(r["by"].startswith("cli:") and r["request_id"] is None for r in cli_records)
    # The API's: each by the admin key, with the id of the request that did it.
    for action, rid in rids.items():
        (mine,) = [r for r in by_action[action] if r["request_id"] == rid]
        assert mine["by"] == boss["id"], mine
    assert by_action["model.load"][0]["model_key"] == "emt"
    assert by_action["model.load"][0]["slot"] == "cpu0"
    assert by_action["model.uploaded"][0]["model_id"] == model["model_id"]
    assert by_action["model.validated"][0]["valid"] is False
    (cancel,) = by_action["task.cancel"]
    assert (cancel["task_id"], cancel["state"]) == (job.task_id, "RUNNING")
