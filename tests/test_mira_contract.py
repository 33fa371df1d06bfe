"""The MIRA dialect against the letter of its guide: the four statuses, error names,
the guide's HTTP statuses and field names, list items as complete as a task's own
status, and the guide's vocabulary for models and space groups."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from aiohttp.test_utils import TestClient, TestServer

from mofsim_core.config import Config
from mofsim_core.mira_shapes import mira_supported_tasks, mira_task
from mofsim_http.app import create_app
from mofsim_http.mira_errors import KEPT_STATUSES, MIRA_HTTP_STATUSES, mira_status_of
from mofsim_http.openapi import build_openapi
from spool.errors import ERROR_CODES
from spool.states import TaskState
from tests.daemon_helpers import cu_xyz

M = "/mira/api/v1"
GUIDE_STATUSES = {"pending", "running", "completed", "failed"}


def _config(root: Path, **kw: Any) -> Config:
    return Config(spool=str(root), http_rate_limit=0, **kw)


@pytest_asyncio.fixture
async def client(tmp_path: Path) -> AsyncIterator[TestClient]:
    """No daemon: submitted tasks stay queued."""
    async with TestClient(TestServer(create_app(_config(tmp_path / "spool")))) as c:
        yield c


async def _json(resp: Any, status: int) -> Any:
    text = await resp.text()
    assert resp.status == status, text
    return json.loads(text)


async def _upload(client: TestClient, name: str = "Cu", text: str | None = None) -> str:
    form = {"name": name, "format": "extxyz", "content": text or cu_xyz(2, rattle=0.05)}
    return str((await _json(await client.post(f"{M}/structures/upload", data=form), 201))["id"])


async def _submit(client: TestClient, sid: str) -> dict[str, Any]:
    body = {"structure_id": sid, "model_key": "emt", "max_steps": 20}
    return dict(await _json(await client.post(f"{M}/tasks/optimization", json=body), 201))


# --- statuses ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("state", "status"),
    [
        ("PENDING", "pending"),
        ("QUEUED", "pending"),
        ("ASSIGNED", "pending"),
        ("RUNNING", "running"),
        ("COMPLETED", "completed"),
        ("FAILED", "failed"),
        ("CANCELLED", "failed"),
        ("TIMEOUT", "failed"),
    ],
)
def test_every_state_shows_one_of_the_guides_four_statuses(state: str, status: str) -> None:
    shown = mira_task({"task_id": "t", "task_type": "optimization", "status": state})
    assert shown["status"] == status and shown["state"] == state.lower()


def test_a_timed_out_or_cancelled_task_says_so_in_its_error_message() -> None:
    base = {"task_id": "t", "task_type": "optimization", "parameters": {}}
    timed = mira_task({**base, "status": "TIMEOUT", "error": {"message": "ran past 60 s"}})
    assert timed["error_message"] == "task timed out: ran past 60 s"
    assert timed["error_code"] == "TASK_TIMEOUT" and timed["error_code_numeric"] == 50002
    bare = mira_task({**base, "status": "CANCELLED", "error": None})
    assert bare["error_message"] == "task cancelled" and bare["error_code"] == "TASK_CANCELLED"
    said = mira_task({**base, "status": "CANCELLED", "error": {"message": "cancelled by bob"}})
    assert said["error_message"] == "cancelled by bob"
    done = mira_task({**base, "status": "COMPLETED", "progress": 0.999})
    assert "error_message" not in done and done["progress"] == 100
    running = mira_task({**base, "status": "RUNNING", "progress": 0.999})
    assert running["progress"] == 99 and isinstance(running["progress"], int)


@pytest.mark.asyncio
async def test_status_filters_take_the_four_and_the_detailed_states(client: TestClient) -> None:
    sid = await _upload(client)
    waiting = await _submit(client, sid)
    assert waiting["status"] == "pending" and waiting["state"] == "queued"
    gone = await _submit(client, sid)
    await _json(await client.post(f"{M}/tasks/{gone['task_id']}/cancel"), 200)

    async def ids(status: str) -> list[str]:
        page = await _json(await client.get(f"{M}/tasks?status={status}"), 200)
        assert all(t["status"] in GUIDE_STATUSES for t in page["tasks"])
        return [t["task_id"] for t in page["tasks"]]

    assert await ids("failed") == [gone["task_id"]]  # failed covers cancelled
    assert await ids("cancelled") == [gone["task_id"]]
    assert await ids("pending") == [waiting["task_id"]]
    assert await ids("queued") == [waiting["task_id"]]
    assert await ids("completed") == [] and await ids("timeout") == []
    assert sorted(await ids("pending,failed")) == sorted([waiting["task_id"], gone["task_id"]])
    bad = await _json(await client.get(f"{M}/tasks?status=finished-ish"), 400)
    assert bad["error_code"] == "VALIDATION" and bad["field"] == "status"
    assert "pending, running, completed, failed" in bad["detail"]


# --- list items, names ---------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_list_items_and_submit_answer_carry_what_the_status_call_shows(
    client: TestClient,
) -> None:
    sid = await _upload(client, name="my copper")
    task = await _submit(client, sid)
    assert task["structure_name"] == "my copper" and task["structure_id"] == sid
    shown = await _json(await client.get(f"{M}/tasks/{task['task_id']}"), 200)
    page = await _json(await client.get(f"{M}/tasks"), 200)
    [item] = page["tasks"]
    for key in ("structure_id", "structure_name", "current_step", "status", "state"):
        assert item[key] == shown[key], key
    assert item["structure_id"] == sid and item["structure_name"] == "my copper"


# --- errors: names, statuses, fields ------------------------------------------------------------


def test_every_error_answers_a_status_of_the_guides_table_or_a_kept_one() -> None:
    allowed = set(MIRA_HTTP_STATUSES) | set(KEPT_STATUSES)
    for name, error in ERROR_CODES.items():
        status = mira_status_of(name)
        assert status in allowed, name
        if error.http_status in allowed:
            assert status == error.http_status, name
    assert mira_status_of("RESULT_NOT_READY") == 400
    assert mira_status_of("MODEL_UNAVAILABLE") == 503
    assert mira_status_of("UNSUPPORTED_FORMAT") == 422
    assert mira_status_of("PAYLOAD_TOO_LARGE") == 400


def test_the_document_promises_only_those_statuses_on_mira_paths(tmp_path: Path) -> None:
    doc = build_openapi(create_app(_config(tmp_path / "spool")))
    allowed = {str(s) for s in (*MIRA_HTTP_STATUSES, *KEPT_STATUSES)} | {"default"}
    for path, ops in doc["paths"].items():
        if path.startswith("/mira"):
            for method, op in ops.items():
                assert set(op["responses"]) <= allowed, (method, path, op["responses"])


@pytest.mark.asyncio
async def test_errors_use_the_guides_statuses_and_field_names(tmp_path: Path) -> None:
    app = create_app(_config(tmp_path / "spool", max_upload_mb=0.001))
    async with TestClient(TestServer(app)) as client:
        sid = await _upload(client, text=cu_xyz(1))
        no_model = await _json(
            await client.post(f"{M}/tasks/optimization", json={"structure_id": sid}), 400
        )
        assert no_model["field"] == "model_key" and no_model["error_code"] == "VALIDATION"

        form = {"name": "x", "format": "cif", "content": "this is not a crystal"}
        junk = await _json(await client.post(f"{M}/structures/upload", data=form), 422)
        assert (junk["error_code"], junk["field"]) == ("INVALID_STRUCTURE", "content")
        form = {"name": "x", "format": "pdbx", "content": cu_xyz(1)}
        odd = await _json(await client.post(f"{M}/structures/upload", data=form), 422)
        assert (odd["error_code"], odd["field"], odd["code"]) == (
            "UNSUPPORTED_FORMAT",
            "format",
            40003,
        )
        big = {"name": "x", "format": "extxyz", "content": cu_xyz(3)}
        large = await _json(await client.post(f"{M}/structures/upload", data=big), 400)
        assert large["error_code"] == "PAYLOAD_TOO_LARGE" and large["code"] == 40004

        wrong_method = await _json(await client.put(f"{M}/tasks"), 405)
        assert wrong_method["error_code"] == "METHOD_NOT_ALLOWED"

        # /api/v1 keeps the spec's statuses and codes.
        spec = await client.post("/api/v1/structures/upload", data=form)
        assert spec.status == 415 and (await spec.json())["code"] == 40003
        assert (await client.put("/api/v1/tasks")).status == 405


# --- models and structures in the guide's vocabulary ---------------------------------------------


def test_supported_tasks_in_the_guides_words_then_ours() -> None:
    ours = ["single-point-energy", "optimization", "stability", "bulk-modulus"]
    assert mira_supported_tasks(ours) == [
        "energy",
        "forces",
        "stress",
        "optimization",
        "md",
        "single-point-energy",
        "stability",
        "bulk-modulus",
    ]
    assert mira_supported_tasks(["optimization"]) == ["optimization"]
    assert mira_supported_tasks(None) == []


@pytest.mark.asyncio
async def test_models_and_space_groups_as_the_guide_shows_them(client: TestClient) -> None:
    models = {m["key"]: m for m in await _json(await client.get(f"{M}/models"), 200)}
    emt = models["emt"]["supported_tasks"]
    assert emt[:5] == ["energy", "forces", "stress", "optimization", "md"]
    assert "heat-capacity" in emt and "single-point-energy" in emt
    one = await _json(await client.get(f"{M}/models/emt"), 200)
    assert one["supported_tasks"] == emt

    sid = await _upload(client, text=cu_xyz(1))  # fcc copper, conventional cell
    meta = (await _json(await client.get(f"{M}/structures/{sid}"), 200))["metadata"]
    assert meta["space_group"] == "Fm-3m" and meta["space_group_number"] == 225
    # Atoms off by a thousandth of an angstrom, as a CIF's rounded coordinates leave
    # them, are still the crystal's group (a 0.001 A tolerance calls this one P1).
    rounded = cu_xyz(1, rattle=0.001, seed=3)
    sid = await _upload(client, text=rounded)
    meta = (await _json(await client.get(f"{M}/structures/{sid}"), 200))["metadata"]
    assert meta["space_group"] == "Fm-3m"


def test_state_enum_in_the_document_is_the_guides(tmp_path: Path) -> None:
    doc = build_openapi(create_app(_config(tmp_path / "spool")))
    schemas = doc["components"]["schemas"]
    assert set(schemas["MiraTaskState"]["enum"]) == GUIDE_STATUSES
    assert set(schemas["MiraTaskDetail"]["enum"]) == {s.mira_detail for s in TaskState}
    assert "INVALID_STRUCTURE" in schemas["MiraError"]["properties"]["error_code"]["enum"]
