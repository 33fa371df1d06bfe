"""The SDK's methods for managing the server, and its public ``request``, against the
real server (``live_server``: a daemon with two CPU slots and the HTTP API on loopback).
"""

from __future__ import annotations

import asyncio
import pickle
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

import mofsim_client
from mofsim_client import (
    AlertList,
    AsyncMOFSimClient,
    CancelResult,
    Devices,
    LogEntry,
    LogPage,
    ModelRequest,
    ModelStatus,
    MOFSimClient,
    PermissionDeniedError,
    RetentionPlan,
    StructureInfo,
    StructureNotFoundError,
    Task,
    TaskNotFoundError,
    ValidationError,
)
from tests.daemon_helpers import LiveServer, cu_xyz


@pytest.fixture
def client(live_server: LiveServer) -> MOFSimClient:
    with MOFSimClient(live_server.url) as c:
        yield c


@pytest.fixture(scope="module")
def done_task(live_server: LiveServer) -> str:
    """A single point that has run to completion."""
    with MOFSimClient(live_server.url) as c:
        task = c.submit_single_point(cu_xyz(), model="emt")
        task.wait(timeout=120)
        return task.task_id


def test_request_is_the_envelope_data_with_the_sdks_errors(
    client: MOFSimClient, done_task: str
) -> None:
    queue = client.request("GET", "system/queue")
    assert isinstance(queue, dict) and "by_state" in queue and "success" not in queue
    assert client.request("GET", "/api/v1/system/queue").keys() == queue.keys()
    hooks = client.request("GET", f"tasks/{done_task}/webhooks")
    assert hooks["task_id"] == done_task and hooks["items"] == []
    assert hooks["pagination"]["total"] == 0
    # A body without an envelope comes back whole.
    spec = client.request("GET", "/openapi.json")
    assert spec["info"]["version"] == mofsim_client.__version__
    assert client.health()["version"] == mofsim_client.__version__
    with pytest.raises(TaskNotFoundError) as missing:
        client.request("GET", "tasks/task_0000000000000000")
    assert missing.value.code == 30003 and missing.value.http_status == 404
    with pytest.raises(ValidationError) as refused:
        client.request("POST", f"tasks/{done_task}/keep", json={"keep": "yes"})
    assert refused.value.field == "keep"


def test_task_log_pages(client: MOFSimClient, done_task: str) -> None:
    page = client.get_log_page(done_task, limit=1000)
    assert isinstance(page, LogPage) and page.total == len(page) >= 3
    assert all(isinstance(e, LogEntry) for e in page) and page.offset == 0
    ids = [e.id for e in page.items]
    assert ids == sorted(ids) and page.last_id == ids[-1]
    tail = client.get_log_page(done_task, limit=2, offset=page.total - 2)
    assert [e.id for e in tail] == ids[-2:] and tail.total == page.total
    assert list(client.get_log_page(done_task, since=page.last_id)) == []
    assert list(client.get_log_page(done_task, since=ids[0])) != []
    warnings = client.get_log_page(done_task, level="warning")
    assert all(e.level in ("WARNING", "ERROR", "CRITICAL") for e in warnings)
    with pytest.raises(TaskNotFoundError):
        client.get_log_page("task_0000000000000000")


def test_expected_duration_request_ids_and_cancel_results(client: MOFSimClient) -> None:
    one = client.submit("single-point", cu_xyz(), "emt", options={"expected_duration": 90})
    assert one.info is not None and one.info.options is not None
    assert one.info.options["expected_duration"] == 90
    assert one.info.request_id is not None and one.info.request_id.startswith("req_")
    item = {"task_type": "single-point", "structure": cu_xyz(), "model": "emt"}
    (two,) = client.submit_batch([{**item, "expected_duration": 5}])
    assert isinstance(two, Task) and two.info is not None and two.info.options is not None
    assert two.info.options["expected_duration"] == 5
    with pytest.raises(ValidationError) as bad:
        client.submit("single-point", cu_xyz(), "emt", options={"expected_duration": -1})
    assert bad.value.field == "options.expected_duration"
    slow = client.submit(
        "optimization",
        cu_xyz(3, rattle=0.05),
        "emt",
        fmax=1e-30,
        max_steps=10_000_000,
        optimizer="FIRE",
        trajectory_interval=1_000_000,
    )
    deadline = time.monotonic() + 60
    while client.get_task_info(slow.task_id).status != "RUNNING":
        assert time.monotonic() < deadline, "the task never started"
        time.sleep(0.05)
    done = client.cancel_task(slow.task_id)
    assert isinstance(done, CancelResult) and done.task_id == slow.task_id
    # One of the eight states: stopped at its next step, or (a busy machine) still on it.
    assert (done.status, done.cancel_requested) in (("CANCELLED", False), ("RUNNING", True))
    while client.get_task_info(slow.task_id).status != "CANCELLED":
        assert time.monotonic() < deadline + 60, "the task never stopped"
        time.sleep(0.05)


def test_ordered_task_listing(client: MOFSimClient, done_task: str) -> None:
    oldest_first = list(client.list_tasks(order="created_at asc", limit=50))
    stamps = [t.created_at or "" for t in oldest_first]
    assert stamps == sorted(stamps) and done_task in {t.task_id for t in oldest_first}
    newest = list(client.list_tasks(status="COMPLETED", order="completed_at desc", limit=1))
    assert len(newest) == 1 and newest[0].status == "COMPLETED"
    with pytest.raises(ValidationError) as bad:
        list(client.list_tasks(order="colour asc"))
    assert bad.value.field == "order"


def test_models_load_unload_and_delete(client: MOFSimClient, tmp_path: Path) -> None:
    assert {m.key for m in client.list_models(family="ase")} >= {"emt", "lj"}
    assert {m.family for m in client.list_models(family="ase")} == {"ase"}
    with pytest.raises(ValidationError) as bad_family:
        client.list_models(family="no-such-family")
    assert bad_family.value.field == "family"
    status = client.get_model_status("emt")
    assert isinstance(status, ModelStatus) and status.model_key == "emt"
    assert status.daemon_running is True
    req = client.load_model("emt", slot="cpu1")
    assert isinstance(req, ModelRequest) and req.request_id and req.status == "pending"
    assert req.action == "load" and req.slot == "cpu1" and req.model_key == "emt"
    requests = client.get_model_status("emt").requests
    assert req.request_id in {r.get("request_id") for r in requests}
    assert client.unload_model("emt").action == "unload"
    with pytest.raises(ValidationError) as bad_slot:
        client.load_model("emt", slot="gpu9")
    assert bad_slot.value.field == "slot"

    weights = tmp_path / "mine.model"
    weights.write_bytes(pickle.dumps({"weights": [0.0]}))
    custom = client.upload_model(weights, name="mine", framework="mace")
    assert client.get_model(custom.key).model_id == custom.model_id  # the colon survives
    deleted = client.delete_model(str(custom.model_id))
    assert deleted["model_id"] == custom.model_id and deleted["deleted"] is True
    assert custom.key not in {m.key for m in client.list_models()}


def test_structure_detail_and_delete(client: MOFSimClient) -> None:
    info = client.upload_structure(cu_xyz(2), name="Cu32")
    detail = client.get_structure(str(info.file_id))
    assert isinstance(detail, StructureInfo) and detail.natoms == 32 and detail.name == "Cu32"
    out = client.delete_structure(str(info.file_id))
    assert out["file_id"] == info.file_id and out["deleted"] is True
    with pytest.raises(StructureNotFoundError):
        client.get_structure(str(info.file_id))


def test_devices_queue_and_configuration(client: MOFSimClient, live_server: LiveServer) -> None:
    devices = client.get_devices()
    assert isinstance(devices, Devices) and devices.source == "daemon"
    assert [g["slot_id"] for g in devices.gpus] == ["cpu0", "cpu1"] and devices.count == 2
    assert client.get_queue()["daemon_running"] is True
    config = client.get_config()
    assert config["effective"]["spool"] == str(live_server.spool_root.resolve())


def test_alerts(client: MOFSimClient) -> None:
    active = client.get_alerts()
    assert isinstance(active, AlertList) and active.kind == "active"
    assert active.engine is not None and active.total == len(active.items)
    assert all(a.type for a in active.alerts)
    rules = client.get_alerts("rules")
    assert rules.engine != "running" or "gpu_unavailable" in {r["type"] for r in rules.items}
    history = client.get_alerts("history", limit=5)
    assert history.kind == "history" and len(history.items) <= 5
    assert history.pagination["page_size"] == 5
    since = datetime(2025, 12, 30, 10, 0, tzinfo=UTC)
    filtered = client.get_alerts(
        "history", level=["CRITICAL", "WARNING"], since=since, resolved=False, offset=2
    )
    assert filtered.pagination["skip"] == 2
    assert all(a.level in ("CRITICAL", "WARNING") and not a.resolved for a in filtered.alerts)
    with pytest.raises(ValidationError) as bad_time:
        client.get_alerts("history", until="yesterday")
    assert bad_time.value.field == "until"
    with pytest.raises(ValidationError) as bad:
        client.get_alerts("recent")
    assert bad.value.field == "kind"


def test_system_logs(client: MOFSimClient) -> None:
    today = datetime.now(UTC).date()
    page = client.get_system_logs()
    assert page.kind == "system" and page.date == today.isoformat()
    assert page.total and page.total >= len(page) > 0  # the daemon logged its start
    assert all(e.message for e in page)
    same = client.get_system_logs(date=today, limit=1, offset=0)
    assert len(same) == 1 and same.total == page.total
    assert same.items[0].message == page.items[0].message
    assert client.get_system_logs(date="2001-01-01").total == 0
    with pytest.raises(ValidationError):
        client.get_system_logs(kind="secret")
    first = next(iter(client.stream_system_logs(tail=1)))
    assert isinstance(first, LogEntry) and first.message


def test_retention_keep_and_delete(client: MOFSimClient, live_server: LiveServer) -> None:
    task = client.submit_single_point(cu_xyz(), model="emt")
    task.wait(timeout=120)
    assert client.keep_task(task.task_id) == {"task_id": task.task_id, "keep": True}
    plan = client.get_retention_plan()
    assert isinstance(plan, RetentionPlan) and plan.policy
    assert task.task_id not in {a.get("task_id") for a in plan.actions}
    assert client.keep_task(task.task_id, keep=False)["keep"] is False
    out = client.delete_task_data(task.task_id)
    assert out["task_id"] == task.task_id and out["removed"]
    assert client.get_task_info(task.task_id).status == "COMPLETED"  # the record stays


def test_admin_methods_need_an_admin_key(live_server: LiveServer, tmp_path: Path) -> None:
    from mofsim_core.api_keys import KeyStore

    keys = tmp_path / "keys.json"
    _, plain = KeyStore(keys).create("reader", admin=False)
    guarded = LiveServer(live_server.spool_root, api_keys_file=str(keys)).start()
    try:
        with MOFSimClient(guarded.url, api_key=plain) as c:
            for admin_only in (c.get_config, c.get_system_logs, c.get_retention_plan):
                with pytest.raises(PermissionDeniedError):
                    admin_only()
            assert c.get_alerts().kind == "active"  # any key may read alerts
    finally:
        guarded.close()


def test_the_async_client_has_the_same_methods(live_server: LiveServer, done_task: str) -> None:
    async def main() -> None:
        async with AsyncMOFSimClient(live_server.url) as c:
            queue = await c.request("GET", "system/queue")
            assert queue.keys() == (await c.get_queue()).keys()
            with pytest.raises(TaskNotFoundError):
                await c.request("GET", "tasks/task_0000000000000000")
            page = await c.get_log_page(done_task, limit=1000)
            assert page.total == len(page) and page.last_id == page.items[-1].id
            assert list(await c.get_log_page(done_task, since=page.last_id)) == []
            listed = [t async for t in c.list_tasks(order="created_at asc", limit=50)]
            assert [t.created_at for t in listed] == sorted(t.created_at for t in listed)
            assert (await c.get_devices()).source == "daemon"
            assert (await c.get_model_status("emt")).model_key == "emt"
            assert (await c.get_alerts("history", limit=3)).kind == "history"
            assert (await c.get_system_logs()).kind == "system"
            assert "effective" in await c.get_config()
            assert isinstance(await c.get_retention_plan(), RetentionPlan)
            info = await c.upload_structure(cu_xyz(), name="Cu4")
            assert (await c.get_structure(str(info.file_id))).natoms == 4
            assert (await c.delete_structure(str(info.file_id)))["deleted"] is True
            stream = c.stream_system_logs(tail=1)
            first = await anext(stream)
            await stream.aclose()
            assert isinstance(first, LogEntry)

    asyncio.run(main())
