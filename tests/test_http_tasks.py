"""``/api/v1/tasks`` through a real server on a loopback port.

Validation, lists, cancel and batches run against a spool with no daemon (tasks stay
queued); the run tests start a real daemon on the same spool and EMT does the physics.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from aiohttp.test_utils import TestClient, TestServer

from mofsim_core.config import Config
from mofsim_core.task_listing import list_tasks
from mofsim_core.task_records import queued_record
from mofsim_core.task_submit import MAX_BATCH, submit_batch
from mofsim_http.app import SPOOL_KEY, create_app
from spool import Job, Spool
from tests.daemon_helpers import Daemon, cu_xyz

CU = {"source": "inline", "format": "extxyz", "content": cu_xyz(), "name": "Cu"}
ENDPOINTS = [
    "optimization",
    "stability",
    "bulk-modulus",
    "heat-capacity",
    "interaction-energy",
    "single-point-energy",
    "single-point",
]
# Parameters each type needs to be valid at all (interaction-energy needs a guest).
NEEDS = {"interaction-energy": {"gas": "CO2"}}


@pytest_asyncio.fixture
async def client(tmp_path: Path) -> AsyncIterator[TestClient]:
    config = Config(spool=str(tmp_path / "spool"), http_rate_limit=0, max_upload_mb=0.05)
    async with TestClient(TestServer(create_app(config))) as c:
        yield c


def spool_of(client: TestClient) -> Spool:
    assert client.app is not None
    return client.app[SPOOL_KEY]


async def submit(client: TestClient, endpoint: str, body: dict[str, Any]) -> tuple[int, Any]:
    resp = await client.post(f"/api/v1/tasks/{endpoint}", json=body)
    return resp.status, await resp.json()


def body_for(endpoint: str, **changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": "emt",
        "structure": dict(CU),
        "parameters": dict(NEEDS.get(endpoint, {})),
    }
    body.update(changes)
    return {k: v for k, v in body.items() if v is not None}


# Each case: changes to a valid body, then the expected HTTP status, code and field.
BAD_CASES: list[tuple[dict[str, Any], int, int, str]] = [
    ({"model": None}, 400, 40001, "model"),
    ({"model": "no-such-model"}, 404, 30001, "model"),
    ({"structure": None}, 400, 40001, "structure"),
    ({"structure": {"source": "builtin", "name": "MOF-99"}}, 404, 30002, "structure.name"),
    (
        {"structure": {"source": "upload", "file_id": "struct_missing"}},
        404,
        30002,
        "structure.file_id",
    ),
    (
        {"structure": {"source": "inline", "content": "not a structure\x00\x01"}},
        422,
        40002,
        "structure",
    ),
    ({"structure": {"source": "inline", "content": "hello"}}, 422, 40002, "structure.format"),
    (
        {"structure": {"source": "inline", "format": "cif", "content": "data_x\n_cell_length_a 1"}},
        422,
        40002,
        "structure",
    ),
    (
        {"structure": {"source": "inline", "format": "pdb", "content": "x"}},
        415,
        40003,
        "structure.format",
    ),
    ({"structure": {"source": "path", "path": "/etc/passwd"}}, 400, 40001, "structure.source"),
    ({"structure": {"source": "builtin", "name": "MOF-5"}}, 422, 40002, "structure"),  # Zn
    (
        {"structure": {"source": "builtin", "name": "MOF-5", "colour": 1}},
        400,
        40001,
        "structure.colour",
    ),
    ({"task_type": "optimization-x"}, 400, 40001, "task_type"),
    ({"options": {"priority": "URGENT"}}, 400, 40001, "options.priority"),
    ({"options": {"timeout": -5}}, 400, 40001, "options.timeout"),
    ({"options": {"notify_url": "ftp://x"}}, 400, 40001, "options.notify_url"),
    ({"options": {"notify_events": ["task.exploded"]}}, 400, 40001, "options.notify_events"),
    ({"options": {"bogus": 1}}, 400, 40001, "options.bogus"),
    ({"bogus_knob": 3}, 400, 40001, "bogus_knob"),
]


@pytest.mark.asyncio
@pytest.mark.parametrize("endpoint", ENDPOINTS)
async def test_validation_errors_name_the_field(client: TestClient, endpoint: str) -> None:
    for changes, status, code, field in BAD_CASES:
        got_status, body = await submit(client, endpoint, body_for(endpoint, **changes))
        assert (got_status, body["code"], body["error"]["field"]) == (status, code, field), (
            changes,
            body,
        )
        assert body["success"] is False and body["request_id"].startswith("req_")
    got, body = await submit(
        client, endpoint, body_for(endpoint, parameters={"fmax": -1, **NEEDS.get(endpoint, {})})
    )
    if endpoint in ("optimization", "bulk-modulus"):
        assert (got, body["error"]["field"]) == (400, "parameters.fmax")
    else:
        assert got == 400 and body["error"]["field"].startswith("parameters.")
    assert spool_of(client).queued() == []  # nothing invalid was ever queued
    got, body = await submit(client, endpoint, body_for(endpoint))
    assert got == 202, body
    task_type = "single-point-energy" if endpoint == "single-point" else endpoint
    assert body["data"]["task_type"] == task_type and body["data"]["status"] == "QUEUED"
    assert body["data"]["queue_position"] == 1


@pytest.mark.asyncio
async def test_expected_duration_is_an_option_within_the_timeout_bound(
    client: TestClient,
) -> None:
    status, body = await submit(
        client, "single-point", body_for("single-point", options={"expected_duration": 600})
    )
    assert status == 202 and body["data"]["options"]["expected_duration"] == 600
    job = spool_of(client).load_job(body["data"]["task_id"])
    assert job.options["expected_duration"] == 600  # what a Slurm pilot reads
    limit = Config().limits.max_timeout_s
    for bad in (0, -5, "soon", True, limit * 2):
        status, body = await submit(
            client, "single-point", body_for("single-point", options={"expected_duration": bad})
        )
        assert (status, body["code"]) == (400, 40001), (bad, body)
        assert body["error"]["field"] == "options.expected_duration"


@pytest.mark.asyncio
async def test_body_shapes(client: TestClient) -> None:
    resp = await client.post(
        "/api/v1/tasks/optimization",
        data=b"{not json",
        headers={"Content-Type": "application/json"},
    )
    assert resp.status == 400 and (await resp.json())["error"]["field"] == "body"
    status, body = await submit(client, "optimization", [1, 2])  # type: ignore[arg-type]
    assert (status, body["error"]["field"]) == (400, "body")
    # POST /tasks takes the type from the body; MIRA's flat shape is accepted.
    spool = spool_of(client)
    (spool.paths.structures / "struct_cu").mkdir(parents=True)
    (spool.paths.structures / "struct_cu" / "structure.extxyz").write_text(cu_xyz())
    resp = await client.post(
        "/api/v1/tasks",
        json={
            "task_type": "optimization",
            "structure_id": "struct_cu",
            "model_key": "emt",
            "fmax": 0.05,
            "max_steps": 5,
            "optimizer": "FIRE",
            "use_filter": False,
            "priority": "HIGH",
            "notify_url": "https://example.org/hook",
            "notify_secret": "s3cret",
        },
    )
    body = await resp.json()
    assert resp.status == 202, body
    record = body["data"]
    assert record["priority"] == "HIGH" and record["structure"]["file_id"] == "struct_cu"
    assert record["parameters"]["fmax"] == 0.05 and record["options"]["notify_secret"] == "***"
    job = spool.load_job(record["task_id"])
    assert job.options["notify_secret"] == "s3cret"  # kept for the webhook, never shown
    resp = await client.post("/api/v1/tasks", json={"model": "emt", "structure": CU})
    assert (await resp.json())["error"]["field"] == "task_type"
    status, body = await submit(
        client, "optimization", {"structure_id": "nope", "model_key": "emt"}
    )
    assert (status, body["code"], body["error"]["field"]) == (404, 30002, "structure_id")


@pytest.mark.asyncio
async def test_oversized_body_is_refused_with_our_envelope(client: TestClient) -> None:
    big = {"model": "emt", "structure": {**CU, "content": "x" * 100_000}}
    status, body = await submit(client, "optimization", big)
    assert (status, body["code"]) == (413, 40004)
    assert body["success"] is False

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: caught while reading
        for _ in range(20):
            yield b" " * 10_000

    resp = await client.post("/api/v1/tasks/optimization", data=chunks())
    assert resp.status == 413 and (await resp.json())["code"] == 40004


@pytest.mark.asyncio
async def test_list_pagination_both_styles_and_filters(client: TestClient) -> None:
    ids = []
    for i in range(5):
        endpoint = "optimization" if i % 2 else "single-point-energy"
        status, body = await submit(client, endpoint, body_for(endpoint))
        assert status == 202
        ids.append(body["data"]["task_id"])
    newest_first = ids[::-1]
    resp = await client.get("/api/v1/tasks?page=2&page_size=2")
    data = (await resp.json())["data"]
    assert [t["task_id"] for t in data["items"]] == newest_first[2:4]
    assert {k: data["pagination"][k] for k in ("page", "page_size", "total", "total_pages")} == {
        "page": 2,
        "page_size": 2,
        "total": 5,
        "total_pages": 3,
    }
    data = (await (await client.get("/api/v1/tasks?skip=4&limit=2")).json())["data"]
    assert [t["task_id"] for t in data["items"]] == newest_first[4:]
    assert data["pagination"]["page"] == 3
    data = (await (await client.get("/api/v1/tasks?task_type=optimization")).json())["data"]
    assert data["pagination"]["total"] == 2
    data = (await (await client.get("/api/v1/tasks?status=queued,running&model=EMT")).json())[
        "data"
    ]
    assert data["pagination"]["total"] == 5
    assert all(t["status"] == "QUEUED" and "result" not in t for t in data["items"])
    # Cancelled behind the server's back (as `mofsim cancel` does): lists catch up.
    spool_of(client).request_cancel(ids[0])
    data = (await (await client.get("/api/v1/tasks?status=QUEUED")).json())["data"]
    assert ids[0] not in [t["task_id"] for t in data["items"]]
    data = (await (await client.get("/api/v1/tasks?status=CANCELLED")).json())["data"]
    assert [t["task_id"] for t in data["items"]] == [ids[0]]
    for query, field in [
        ("status=sleeping", "status"),
        ("page_size=0", "page_size"),
        ("limit=abc", "limit"),
        ("limit=", "limit"),  # given but empty: not the default
        ("page=", "page"),
        ("order=colour", "order"),
        ("task_type=cooking", "task_type"),
    ]:
        resp = await client.get(f"/api/v1/tasks?{query}")
        assert resp.status == 400 and (await resp.json())["error"]["field"] == field, query
    # Without the mirror the spool answers the same.
    items, total = list_tasks(spool_of(client), None, limit=2, offset=2)
    assert total == 5 and [t["task_id"] for t in items] == newest_first[2:4]
    items, total = list_tasks(spool_of(client), None, status="cancelled")
    assert total == 1


@pytest.mark.asyncio
async def test_cancel_queued_then_terminal_and_unknown(client: TestClient) -> None:
    status, body = await submit(client, "single-point-energy", body_for("single-point"))
    task_id = body["data"]["task_id"]
    resp = await client.post(f"/api/v1/tasks/{task_id}/cancel")
    body = await resp.json()
    assert resp.status == 200 and body["data"]["status"] == "CANCELLED"
    resp = await client.post(f"/api/v1/tasks/{task_id}/cancel")
    body = await resp.json()
    assert (resp.status, body["code"]) == (409, 50005)
    assert "already CANCELLED" in body["error"]["detail"]
    resp = await client.get(f"/api/v1/tasks/{task_id}/result")
    assert (resp.status, (await resp.json())["code"]) == (409, 50004)
    for path in (
        "/api/v1/tasks/task_nope",
        "/api/v1/tasks/task_nope/result",
        "/api/v1/tasks/task_nope/logs",
        "/api/v1/tasks/..%2Fetc/logs",
    ):
        resp = await client.get(path)
        assert resp.status == 404, path
    resp = await client.post("/api/v1/tasks/task_nope/cancel")
    assert (resp.status, (await resp.json())["code"]) == (404, 30003)


@pytest.mark.asyncio
async def test_batch_reports_per_item(client: TestClient) -> None:
    good = {"task_type": "single-point-energy", **body_for("single-point")}
    bad = {"task_type": "optimization", **body_for("optimization", model="nope")}
    resp = await client.post("/api/v1/tasks/batch", json={"tasks": [good, bad, good]})
    body = await resp.json()
    assert resp.status == 202, body
    data = body["data"]
    assert (data["accepted"], data["rejected"]) == (2, 1)
    assert [item["accepted"] for item in data["items"]] == [True, False, True]
    assert data["items"][1]["error"] == {
        "code": 30001,
        "type": "ModelNotFound",
        "field": "tasks[1].model",
        "message": data["items"][1]["error"]["message"],
    }
    assert [i["task"]["queue_position"] for i in data["items"] if i["accepted"]] == [1, 2]
    resp = await client.post("/api/v1/tasks/batch", json={"tasks": [bad]})
    body = await resp.json()
    assert resp.status == 404 and body["error"]["field"] == "tasks[0].model"
    resp = await client.post("/api/v1/tasks/batch", json={"tasks": []})
    assert (await resp.json())["error"]["field"] == "tasks"
    with pytest.raises(Exception) as exc:  # over the limit, checked before any item
        submit_batch(spool_of(client), None, [good] * (MAX_BATCH + 1))
    assert getattr(exc.value, "field", None) == "tasks"
    assert len(spool_of(client).queued()) == 2


# --- with a real daemon -------------------------------------------------------------------


@pytest.fixture(scope="module")
def daemon_spool(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    root = tmp_path_factory.mktemp("served") / "spool"
    with Daemon(root):
        yield root


@pytest_asyncio.fixture
async def live(daemon_spool: Path) -> AsyncIterator[TestClient]:
    config = Config(spool=str(daemon_spool), http_rate_limit=0)
    async with TestClient(TestServer(create_app(config))) as c:
        yield c


async def follow_to_end(client: TestClient, task_id: str) -> list[dict[str, Any]]:
    """Wait for a task through its event stream; the events seen."""
    resp = await client.get(f"/api/v1/tasks/{task_id}/events")
    assert resp.status == 200
    events: list[dict[str, Any]] = []
    current: dict[str, Any] = {}
    async for raw in resp.content:
        line = raw.decode().rstrip("\n")
        if line.startswith("event: "):
            current["event"] = line[7:]
        elif line.startswith("data: "):
            current["data"] = json.loads(line[6:])
        elif line == "" and current:
            events.append(current)
            current = {}
    return events


@pytest.mark.asyncio
async def test_emt_tasks_run_and_report(live: TestClient) -> None:
    status, body = await submit(live, "single-point-energy", body_for("single-point"))
    sp_id = body["data"]["task_id"]
    status, body = await submit(
        live,
        "optimization",
        body_for(
            "optimization",
            structure={**CU, "content": cu_xyz(rattle=0.05)},
            parameters={"fmax": 0.05, "max_steps": 50, "optimizer": "FIRE"},
        ),
    )
    opt_id = body["data"]["task_id"]
    for task_id in (sp_id, opt_id):
        events = await asyncio.wait_for(follow_to_end(live, task_id), 120)
        statuses = [e["data"]["extra"]["status"] for e in events if e["event"] == "status"]
        assert statuses[0] == "QUEUED" and statuses[-1] == "COMPLETED" and "RUNNING" in statuses
        assert events[-1] == {"event": "end", "data": {"task_id": task_id, "status": "COMPLETED"}}
    record = (await (await live.get(f"/api/v1/tasks/{sp_id}")).json())["data"]
    assert record["status"] == "COMPLETED" and record["result_url"].endswith("/result")
    result = (await (await live.get(f"/api/v1/tasks/{sp_id}/result")).json())["data"]
    assert result["task_type"] == "single-point-energy" and result["model"] == "emt"
    assert isinstance(result["result"]["energy_eV"], float)
    assert set(result) >= {
        "structure_name",
        "created_at",
        "started_at",
        "completed_at",
        "duration_seconds",
        "gpu_id",
        "metrics",
    }
    opt = (await (await live.get(f"/api/v1/tasks/{opt_id}/result")).json())["data"]
    assert opt["result"]["steps"] >= 1 and opt["completed_at"] is not None
    files = opt["result"]["output_files"]
    assert files and all(url.startswith("/api/v1/files/") for url in files.values())
    logs = (await (await live.get(f"/api/v1/tasks/{opt_id}/logs?limit=2")).json())["data"]
    assert len(logs["items"]) == 2 and logs["pagination"]["total"] > 2
    later = (
        await (
            await live.get(f"/api/v1/tasks/{opt_id}/logs?since={logs['last_id']}&types=status")
        ).json()
    )["data"]
    assert all(i["id"] > logs["last_id"] and i["event"] == "status" for i in later["items"])
    assert later["items"][-1]["extra"]["status"] == "COMPLETED"
    listed = (await (await live.get("/api/v1/tasks?status=COMPLETED")).json())["data"]
    assert {sp_id, opt_id} <= {t["task_id"] for t in listed["items"]}


@pytest.mark.asyncio
async def test_failed_task_result_carries_its_error(live: TestClient) -> None:
    # A job file from elsewhere (the spool accepts any model name; the daemon fails it).
    job = Job.from_dict(
        {"task_type": "single-point-energy", "model": "not-a-model", "structure": CU}
    )
    spool_of(live).submit(job)
    events = await asyncio.wait_for(follow_to_end(live, job.task_id), 60)
    assert events[-1]["data"]["status"] == "FAILED"
    resp = await live.get(f"/api/v1/tasks/{job.task_id}/result")
    body = await resp.json()
    assert (resp.status, body["code"]) == (409, 50001)
    assert "not-a-model" in body["error"]["detail"]


def test_queued_record_is_what_the_spool_says(tmp_path: Path) -> None:
    """The record built for a task just published equals ``Spool.record``'s."""
    spool = Spool(tmp_path / "spool")
    for structure in (CU, "builtin:HKUST-1", {"source": "upload", "file_id": "f1", "name": "mine"}):
        job = Job.from_dict(
            {
                "task_type": "optimization",
                "model": "emt",
                "structure": structure,
                "parameters": {"fmax": 0.1},
                "options": {"priority": "LOW", "timeout": 60},
            }
        )
        spool.submit(job)
        assert queued_record(job) == spool.record(job.task_id)


@pytest.mark.asyncio
async def test_cancel_running_task_is_cooperative(live: TestClient) -> None:
    status, body = await submit(
        live,
        "optimization",
        body_for(
            "optimization",
            structure={**CU, "content": cu_xyz(3, rattle=0.05)},
            parameters={
                "fmax": 1e-30,
                "max_steps": 10_000_000,
                "optimizer": "FIRE",
                "trajectory_interval": 1_000_000,
            },
        ),
    )
    assert status == 202
    task_id = body["data"]["task_id"]
    resp = await live.get(f"/api/v1/tasks/{task_id}/events?types=status,progress")
    seen: list[str] = []

    async def read_until(predicate: Any) -> None:
        async for raw in resp.content:
            line = raw.decode()
            if line.startswith("data: "):
                data = json.loads(line[6:])
                seen.append(data.get("event") or f"end:{data['status']}")
                if predicate(data):
                    return

    await asyncio.wait_for(read_until(lambda d: d.get("event") == "progress"), 60)
    cancel = await live.post(f"/api/v1/tasks/{task_id}/cancel")
    # The answer waits for the step that sees the request: the task's real end state.
    answer = (await cancel.json())["data"]
    assert (answer["status"], answer["cancel_requested"]) == ("CANCELLED", False)
    await asyncio.wait_for(read_until(lambda d: "event" not in d), 60)
    assert seen[-1] == "end:CANCELLED"
    record = (await (await live.get(f"/api/v1/tasks/{task_id}")).json())["data"]
    assert record["status"] == "CANCELLED"
