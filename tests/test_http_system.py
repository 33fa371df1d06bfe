"""Health, readiness, devices, queue, configuration, alerts and /metrics through a real
server, without a daemon and with one."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client.parser import text_string_to_metric_families

from mofsim_core.config import Config
from mofsim_core.mirror_sqlite import SqliteMirror
from mofsim_http.app import create_app
from spool.store import Spool
from tests.daemon_helpers import Daemon, quick_job, slow_job

Client = TestClient[Any, Any]
DSN = "postgresql://mofsim:hunter2@db.example:5432/mofsim"


def _config(root: Path, **kw: Any) -> Config:
    return Config(spool=str(root), slots="cpu:2", http_rate_limit=0, **kw)


@pytest_asyncio.fixture
async def client(tmp_path: Path) -> AsyncIterator[Client]:
    app = create_app(
        _config(tmp_path / "spool", extra={"webhook_secret": "s3cr3t", "nested": {"api_key": "k"}})
    )
    async with TestClient(TestServer(app)) as c:
        yield c


async def body_of(client: Client, path: str, status: int = 200) -> Any:
    resp = await client.get(path)
    body = await resp.json()
    assert resp.status == status, body
    return body


def metrics_of(text: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out.setdefault(sample.name, []).append((dict(sample.labels), sample.value))
    return out


def value(
    samples: dict[str, list[tuple[dict[str, str], float]]], name: str, **labels: str
) -> float:
    matches = [
        v for lab, v in samples.get(name, []) if all(lab.get(k) == x for k, x in labels.items())
    ]
    assert len(matches) == 1, (name, labels, samples.get(name))
    return matches[0]


@pytest.mark.asyncio
async def test_health_and_probes_without_a_daemon(client: Client) -> None:
    for path in ("/health", "/api/v1/health"):
        body = await body_of(client, path)
        assert body["success"] is True and body["request_id"].startswith("req_")
        assert body["status"] == "degraded" and body["version"] == body["data"]["version"]
        data = body["data"]
        assert data["daemon"]["alive"] is False and data["spool"]["writable"] is True
        assert data["spool"]["free_gb"] > 0 and data["uptime_seconds"] >= 0
    assert await body_of(client, "/healthz") == {"status": "ok"}
    ready = await body_of(client, "/readyz", status=503)
    assert ready["ready"] is False and ready["checks"]["daemon_running"] is False
    assert ready["checks"]["spool_writable"] is True


@pytest.mark.asyncio
async def test_a_405_names_the_allowed_methods_in_both_dialects(client: Client) -> None:
    for path, allowed in (
        ("/healthz", {"GET", "HEAD"}),
        ("/api/v1/tasks/batch", {"POST"}),
        ("/mira/api/v1/tasks", {"GET", "HEAD"}),
    ):
        resp = await client.request("PATCH", path)
        assert resp.status == 405, path
        assert set(resp.headers["Allow"].replace(" ", "").split(",")) >= allowed, path
        body = await resp.json()
        assert 40007 in (body.get("code"), body.get("error_code")), body


@pytest.mark.asyncio
async def test_unwritable_spool_is_unhealthy(tmp_path: Path) -> None:
    root = tmp_path / "spool"
    app = create_app(_config(root))
    async with TestClient(TestServer(app)) as c:
        # tmp/ replaced by a plain file: no write can succeed there, even as root.
        (root / "tmp").rmdir()
        (root / "tmp").write_text("")
        try:
            body = await body_of(c, "/health", status=503)
            assert body["status"] == "unhealthy" and body["data"]["spool"]["error"]
            ready = await body_of(c, "/readyz", status=503)
            assert ready["checks"]["spool_writable"] is False
        finally:
            (root / "tmp").unlink()
            (root / "tmp").mkdir()


@pytest.mark.asyncio
async def test_devices_read_directly_without_a_daemon(client: Client) -> None:
    data = (await body_of(client, "/api/v1/system/gpus"))["data"]
    assert data["source"] == "direct" and data["count"] == 2
    assert [g["slot_id"] for g in data["gpus"]] == ["cpu0", "cpu1"]
    first = data["gpus"][0]
    assert first["memory_total_mb"] > 0 and first["state"] == "no executor"
    assert first["loaded_models"] == [] and first["current_task"] is None


@pytest.mark.asyncio
async def test_queue_statistics(client: Client, tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool")
    for priority in ("HIGH", "NORMAL", "NORMAL", "LOW"):
        spool.submit(quick_job(options={"priority": priority}))
    data = (await body_of(client, "/api/v1/system/queue"))["data"]
    queued = data["queued"]
    assert queued["total"] == 4
    assert queued["by_priority"] == {"CRITICAL": 0, "HIGH": 1, "NORMAL": 2, "LOW": 1}
    assert 0 <= queued["oldest_age_seconds"] < 60 and queued["oldest_queued_at"].endswith("Z")
    assert data["by_state"]["QUEUED"] == 4 and data["by_state"]["COMPLETED"] == 0
    assert data["running"] == [] and data["daemon_running"] is False


@pytest.mark.asyncio
async def test_config_masks_secrets_and_needs_an_admin_key(tmp_path: Path) -> None:
    from mofsim_core.api_keys import KeyStore

    cfg = _config(
        tmp_path / "spool",
        database_url=None,
        extra={"webhook_secret": "s3cr3t", "nested": {"api_key": "k"}, "n": 1},
    )
    app = create_app(cfg)
    async with TestClient(TestServer(app)) as c:
        data = (await body_of(c, "/api/v1/system/config"))["data"]  # no keys yet: local
        assert data["config"]["extra"] == {
            "webhook_secret": "***",
            "nested": {"api_key": "***"},
            "n": 1,
        }
        assert data["effective"]["max_upload_bytes"] == 100 * 1024 * 1024
        keys = KeyStore(cfg.api_keys_path)
        _, user = keys.create("user")
        _, admin = keys.create("ops", admin=True)
        assert (await c.get("/api/v1/system/config")).status == 401
        resp = await c.get("/api/v1/system/config", headers={"X-API-Key": user})
        assert resp.status == 403 and (await resp.json())["code"] == 20002
        resp = await c.get("/api/v1/system/config", headers={"Authorization": f"Bearer {admin}"})
        assert resp.status == 200
        assert (await c.get("/health")).status == 200  # probes stay public
        assert (await c.get("/metrics")).status == 200


def test_database_password_is_masked() -> None:
    masked = Config(database_url=DSN).masked()
    assert "hunter2" not in str(masked) and masked["database_url"].startswith("postgresql://")


@pytest.mark.asyncio
async def test_metrics_count_what_exists(client: Client, tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool")
    jobs = [quick_job(options={"priority": "HIGH"}), quick_job(), quick_job()]
    for job in jobs:
        spool.submit(job)
    mirror = SqliteMirror(spool.paths.state_dir / "mirror.sqlite")
    try:
        for job in jobs:
            mirror.upsert_task(spool.record(job.task_id))
        mirror.upsert_task(
            {
                **spool.record(jobs[0].task_id),
                "task_id": "task_opt",
                "task_type": "optimization",
                "status": "FAILED",
            }
        )
        for n, seconds in enumerate((3.0, 100.0, 4000.0)):
            mirror.upsert_task(
                {
                    **spool.record(jobs[0].task_id),
                    "task_id": f"task_done{n}",
                    "task_type": "optimization",
                    "status": "COMPLETED",
                    "started_at": 1_700_000_000_000,
                    "completed_at": 1_700_000_000_000 + int(seconds * 1000),
                }
            )
    finally:
        mirror.close()
    hooks = spool.paths.state_dir / "webhooks"
    hooks.mkdir(parents=True)
    (hooks / "totals.json").write_text('{"task.completed": {"delivered": 5, "failed": 1}}')
    await client.get("/health")
    await client.get("/api/v1/structures/struct_0000000000000000")  # a 404
    await client.get("/no/such/path")
    resp = await client.get("/metrics")
    assert resp.status == 200 and resp.headers["Content-Type"].startswith("text/plain")
    samples = metrics_of(await resp.text())
    assert value(samples, "mofsim_tasks", state="QUEUED", task_type="single-point-energy") == 3
    assert value(samples, "mofsim_tasks", state="FAILED", task_type="optimization") == 1
    assert value(samples, "mofsim_spool_tasks", state="QUEUED") == 3
    assert value(samples, "mofsim_queue_depth", priority="HIGH") == 1
    assert value(samples, "mofsim_queue_depth", priority="NORMAL") == 2
    assert value(samples, "mofsim_queue_oldest_age_seconds") >= 0
    assert value(samples, "mofsim_daemon_up") == 0
    assert value(samples, "mofsim_http_requests_total", route="/health", status="200") == 1
    assert (
        value(
            samples,
            "mofsim_http_requests_total",
            route="/api/v1/structures/{file_id}",
            status="404",
        )
        == 1
    )
    assert value(samples, "mofsim_http_requests_total", route="unmatched", status="404") == 1
    assert (
        value(samples, "mofsim_http_request_duration_seconds_count", route="/health", method="GET")
        == 1
    )
    done = {"task_type": "optimization", "state": "COMPLETED"}
    assert value(samples, "mofsim_task_duration_seconds_count", **done) == 3
    assert value(samples, "mofsim_task_duration_seconds_sum", **done) == pytest.approx(4103)
    assert value(samples, "mofsim_task_duration_seconds_bucket", le="5.0", **done) == 1
    assert value(samples, "mofsim_task_duration_seconds_bucket", le="120.0", **done) == 2
    assert value(samples, "mofsim_task_duration_seconds_bucket", le="+Inf", **done) == 3
    assert "mofsim_task_duration_seconds_count" not in {  # started but never ran: absent
        n for n, rows in samples.items() for lab, _ in rows if lab.get("state") == "FAILED"
    }
    assert (
        value(
            samples, "mofsim_webhook_deliveries_total", event="task.completed", outcome="delivered"
        )
        == 5
    )
    assert (
        value(samples, "mofsim_webhook_deliveries_total", event="task.completed", outcome="failed")
        == 1
    )
    assert "process_resident_memory_bytes" in samples
    assert "mofsim_device_memory_used_bytes" not in samples  # no daemon, no snapshot


@pytest.mark.asyncio
async def test_with_a_daemon(tmp_path: Path) -> None:
    root = tmp_path / "spool"
    spool = Spool(root)
    with Daemon(root, slots="cpu:2"):
        app = create_app(_config(root))
        async with TestClient(TestServer(app)) as c:
            body = await body_of(c, "/health")
            assert body["status"] == "healthy" and body["data"]["daemon"]["responsive"]
            assert (await body_of(c, "/readyz"))["ready"] is True
            job = slow_job()
            spool.submit(job)

            async def running() -> Any:
                data = (await body_of(c, "/api/v1/system/queue"))["data"]
                return data if data["running"] else None

            deadline = time.monotonic() + 60
            while (queue := await running()) is None:
                assert time.monotonic() < deadline
                await asyncio.sleep(0.05)
            assert queue["running"][0]["task_id"] == job.task_id
            assert queue["slots"]["total"] == 2 and queue["slots"]["busy"] == 1
            gpus = (await body_of(c, "/api/v1/system/gpus"))["data"]
            assert gpus["source"] == "daemon" and gpus["count"] == 2
            busy = [g for g in gpus["gpus"] if g["current_task"]]
            assert busy[0]["current_task"]["task_id"] == job.task_id
            assert busy[0]["executor"]["alive"] is True and busy[0]["state"] == "busy"
            samples = metrics_of(await (await c.get("/metrics")).text())
            assert value(samples, "mofsim_daemon_up") == 1
            assert value(samples, "mofsim_slot_busy", slot=busy[0]["slot_id"]) == 1
            assert value(samples, "mofsim_executor_restarts_total", slot="cpu0") == 0
            assert value(samples, "mofsim_device_memory_total_bytes", slot="cpu0") > 0
            spool.request_cancel(job.task_id)  # so that the daemon stops at once
