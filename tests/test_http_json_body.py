"""Hostile JSON bodies on every route that reads one, through a real server: each answers
400 with code 40001 naming the body, never 500."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from aiohttp.test_utils import TestClient, TestServer

from mofsim_core.config import Config
from mofsim_http.app import create_app
from tests.daemon_helpers import cu_xyz

DEEP_ARRAYS = b"[" * 100_000 + b"]" * 100_000
DEEP_OBJECTS = b'{"a":' * 5_000 + b"1" + b"}" * 5_000
CU = (
    '{"source": "inline", "format": "extxyz", "name": "Cu", "content": '
    + json.dumps(cu_xyz())
    + "}"
)
HOSTILE: dict[str, bytes] = {
    "deep-arrays": DEEP_ARRAYS,
    "deep-objects": DEEP_OBJECTS,
    "deep-parameter": (
        '{"model": "emt", "structure": '
        + CU
        + ', "parameters": {"x": '
        + "[" * 3000
        + "]" * 3000
        + "}}"
    ).encode(),
    "overflow-number": (
        '{"model": "emt", "structure": ' + CU + ', "parameters": {"max_steps": 1e400}}'
    ).encode(),
    "nan": b'{"model": "emt", "parameters": {"fmax": NaN}}',
    "bad-utf8": b'{"model": "\xff\xfe\xfa"}',
}
ROUTES = [
    "/api/v1/tasks/optimization",
    "/api/v1/tasks",
    "/api/v1/tasks/batch",
    "/mira/api/v1/tasks/optimization",
    "/api/v1/structures",
    "/api/v1/models/emt/load",
    "/api/v1/tasks/task_x/keep",
]
pytestmark = pytest.mark.asyncio


def error_of(doc: dict[str, Any]) -> tuple[int, str | None, str]:
    """(code, field, message) from either dialect's error body."""
    if "error_code" in doc:  # MIRA: the name as error_code, the number as code
        return doc["code"], doc["field"], doc["detail"]
    return doc["code"], doc["error"]["field"], doc["error"]["detail"]


@pytest_asyncio.fixture
async def client(tmp_path: Path) -> AsyncIterator[TestClient]:
    config = Config(spool=str(tmp_path / "spool"), http_rate_limit=0)
    async with TestClient(TestServer(create_app(config))) as c:
        yield c


@pytest.mark.parametrize("route", ROUTES)
async def test_hostile_bodies_answer_400_on_every_json_route(
    client: TestClient, route: str
) -> None:
    for kind, body in HOSTILE.items():
        resp = await client.post(route, data=body, headers={"Content-Type": "application/json"})
        doc = await resp.json()
        assert resp.status == 400, (kind, resp.status, doc)
        assert error_of(doc)[:2] == (40001, "body"), (kind, doc)


async def test_the_message_says_what_is_wrong(client: TestClient) -> None:
    resp = await client.post("/api/v1/tasks/optimization", data=DEEP_ARRAYS)
    assert "nested deeper than 64 levels" in error_of(await resp.json())[2]
    resp = await client.post("/api/v1/tasks/optimization", data=HOSTILE["overflow-number"])
    assert "1e400 is out of range" in error_of(await resp.json())[2]


async def test_a_deep_list_inside_a_string_parameter_is_refused(client: TestClient) -> None:
    body = {
        "model": "emt",
        "structure": json.loads(CU),
        "parameters": {"supercell": "[" * 100_000 + "]" * 100_000},
    }
    resp = await client.post("/api/v1/tasks/optimization", json=body)
    doc = await resp.json()
    assert resp.status == 400, doc
    assert error_of(doc)[1] == "parameters.supercell"


@pytest.mark.parametrize("task_id", ["abc\n", "abc\r\n", "\nabc", "a/b", "..", ""])
async def test_task_ids_must_match_the_pattern_whole(client: TestClient, task_id: str) -> None:
    body = {"model": "emt", "structure": json.loads(CU), "task_id": task_id}
    resp = await client.post("/api/v1/tasks/single-point", json=body)
    doc = await resp.json()
    assert resp.status == 400, doc
    assert error_of(doc)[1] == "task_id"
