"""The task-type registry: one table, found in ``executors.tasks``, read by everything.

The toy-module tests drop a new task module next to the real ones and check that each
consumer (models, routes of both dialects, the API document, job validation, metrics)
knows it without any other change: a list of task types written anywhere by hand fails
them.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client.parser import text_string_to_metric_families

import executors.tasks
from executors import registry
from executors.models import list_models, resolve_model
from executors.task_types import TaskType
from mofsim_core.config import Config
from mofsim_http.app import create_app
from spool.errors import ValidationError
from tests.daemon_helpers import cu_xyz

TOY_MODULE = '''
"""toy-energy: a task type that exists only in this test."""

from typing import Any

from executors.params import Param, ParamSchema
from executors.task_types import TaskType

TASK = TaskType(name="toy-energy", summary="A toy", aliases=("toy",), key_metrics=("toy_eV",))
SCHEMA = ParamSchema([Param("scale", float, 1.0, min=0.0, doc="a factor")])


def validate(parameters: dict[str, Any]) -> dict[str, Any]:
    return SCHEMA.validate(parameters)


def run(ctx: Any) -> dict[str, Any]:
    return {"toy_eV": 0.0, "parameters_used": dict(ctx.parameters)}
'''


def test_the_six_task_types_and_their_names() -> None:
    assert registry.task_type_names() == [
        "bulk-modulus",
        "heat-capacity",
        "interaction-energy",
        "optimization",
        "single-point-energy",
        "stability",
    ]
    assert registry.task_type_aliases() == {
        "single-point": "single-point-energy",
        "singlepoint": "single-point-energy",
    }
    assert registry.canonical_task_type("Single_Point") == "single-point-energy"
    assert registry.canonical_task_type("heat_capacity") == "heat-capacity"
    assert registry.task_type("stability").periodic
    assert not registry.task_type("optimization").periodic
    for name in registry.task_type_names():
        module = registry.task_module(name)
        assert module.TASK.name == name and callable(module.validate) and callable(module.run)
    with pytest.raises(ValidationError) as info:
        registry.canonical_task_type("teleport")
    assert info.value.field == "task_type" and "optimization" in info.value.message


def test_task_type_names_must_be_canonical() -> None:
    with pytest.raises(ValueError):
        TaskType(name="Bulk_Modulus", summary="x")
    with pytest.raises(ValueError):
        TaskType(name="bulk-modulus", summary="x", aliases=("BM",))


def test_finding_the_task_types_imports_no_physics() -> None:
    """Every process that names a task type reads the table; it must stay cheap."""
    code = (
        "import sys\n"
        "from executors import registry\n"
        "registry.task_type_names()\n"
        "heavy = {'numpy', 'ase', 'torch', 'phonopy', 'scipy'} & set(sys.modules)\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.fixture
def toy_task(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """``executors.tasks.toy_energy`` exists for the test's duration."""
    extra = tmp_path / "more_tasks"
    extra.mkdir()
    (extra / "toy_energy.py").write_text(TOY_MODULE)
    monkeypatch.setattr(executors.tasks, "__path__", [*executors.tasks.__path__, str(extra)])
    registry.reload()
    yield "toy-energy"
    monkeypatch.undo()
    sys.modules.pop("executors.tasks.toy_energy", None)
    registry.reload()


def test_a_new_module_is_a_new_task_type(toy_task: str, tmp_path: Path) -> None:
    assert toy_task in registry.task_type_names()
    assert registry.canonical_task_type("TOY") == toy_task
    assert registry.validate_parameters("toy", {"scale": "2"})["scale"] == 2.0
    # Every model runs it, built-in or uploaded, without a word in the catalogue.
    emt = resolve_model("emt")
    assert emt.supports(toy_task) and toy_task in emt.to_dict()["supported_tasks"]
    assert all(toy_task in m.task_types() for m in list_models(tmp_path))


def test_a_name_taken_twice_is_refused(
    toy_task: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    clash = tmp_path / "clash"
    clash.mkdir()
    (clash / "toy_again.py").write_text(TOY_MODULE.replace('"toy-energy"', '"toy-again"'))
    monkeypatch.setattr(executors.tasks, "__path__", [*executors.tasks.__path__, str(clash)])
    registry.reload()
    try:
        with pytest.raises(RuntimeError, match="'toy'"):
            registry.task_type_names()
    finally:
        sys.modules.pop("executors.tasks.toy_again", None)


@pytest_asyncio.fixture
async def client(toy_task: str, tmp_path: Path) -> AsyncIterator[TestClient[Any, Any]]:
    config = Config(spool=str(tmp_path / "spool"), http_rate_limit=0)
    async with TestClient(TestServer(create_app(config))) as c:
        yield c


@pytest.mark.asyncio
async def test_the_api_offers_a_new_task_type(client: TestClient[Any, Any], toy_task: str) -> None:
    doc = await (await client.get("/openapi.json")).json()
    schemas = doc["components"]["schemas"]
    assert toy_task in schemas["TaskType"]["enum"]
    assert {toy_task, "toy"} <= set(schemas["TaskTypeName"]["enum"])
    assert schemas["Parameters-toy-energy"]["properties"]["scale"]["default"] == 1.0
    for path in ("/api/v1/tasks/toy-energy", "/api/v1/tasks/toy", "/mira/api/v1/tasks/toy"):
        assert "post" in doc["paths"][path], path

    structure = {"source": "inline", "format": "extxyz", "content": cu_xyz(), "name": "Cu"}
    body = {"model": "emt", "structure": structure, "parameters": {"scale": 3}}
    resp = await client.post("/api/v1/tasks/toy", json=body)
    assert resp.status == 202, await resp.text()
    task = (await resp.json())["data"]
    assert task["task_type"] == toy_task
    listed = await client.get("/api/v1/tasks", params={"task_type": "TOY"})
    assert [t["task_id"] for t in (await listed.json())["data"]["items"]] == [task["task_id"]]
    bad = await client.post("/api/v1/tasks/toy", json={**body, "parameters": {"scale": -1}})
    assert bad.status == 400 and (await bad.json())["error"]["field"] == "parameters.scale"

    metrics = await (await client.get("/metrics")).text()
    labels = [
        dict(s.labels)
        for family in text_string_to_metric_families(metrics)
        for s in family.samples
        if s.name == "mofsim_tasks"
    ]
    assert {"state": "QUEUED", "task_type": toy_task} in labels
