"""Generic PyTorch uploads end to end: a TorchScript Lennard-Jones and its interface
config go up through the HTTP API, pass validation in the sandbox, and run a single point
and an optimization in a real daemon, matching ASE's own Lennard-Jones; bad configs and
a model that answers in the wrong shape are refused by name.  An upload's with_d3 adds
D3 to its tasks unless they say otherwise."""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import pytest_asyncio
from aiohttp import FormData
from aiohttp.test_utils import TestClient, TestServer
from ase import Atoms
from ase.build import bulk
from ase.calculators.lj import LennardJones
from ase.io import write

from mofsim_core.config import Config
from mofsim_http.app import create_app
from tests.daemon_helpers import Daemon
from tests.model_factories import LJ_CONFIG, torchscript_lj
from tests.test_http_tasks import follow_to_end

Client = TestClient[Any, Any]


@pytest.fixture(scope="module")
def daemon_root(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    root = tmp_path_factory.mktemp("pytorch") / "spool"
    with Daemon(root, slots="cpu:2"):
        yield root


@pytest_asyncio.fixture
async def live(daemon_root: Path) -> AsyncIterator[Client]:
    config = Config(spool=str(daemon_root), slots="cpu:2", http_rate_limit=0)
    async with TestClient(TestServer(create_app(config))) as c:
        yield c


def argon(rattle: float = 0.1) -> Atoms:
    """Compressed below the potential's minimum and rattled: forces of tenths of eV/A."""
    atoms = bulk("Ar", "fcc", a=3.7).repeat(2)
    atoms.rattle(rattle, seed=1)
    return atoms


def inline(atoms: Atoms) -> dict[str, Any]:
    buf = io.StringIO()
    write(buf, atoms, format="extxyz")
    return {"source": "inline", "format": "extxyz", "content": buf.getvalue(), "name": "Ar32"}


def lj_energy(atoms: Atoms) -> float:
    ref = atoms.copy()
    ref.calc = LennardJones(sigma=2.3, epsilon=0.01, rc=5.0)
    return float(ref.get_potential_energy())


def form(raw: bytes, config: dict[str, Any] | None, **fields: str) -> FormData:
    data = FormData()
    data.add_field("file", raw, filename="lj.pt", content_type="application/octet-stream")
    values = {"name": "lj", "framework": "pytorch", "elements": "Ar", **fields}
    if config is not None:
        values["config"] = json.dumps(config)
    for key, value in values.items():
        data.add_field(key, value)
    return data


async def upload(client: Client, raw: bytes, config: dict[str, Any], **fields: str) -> Any:
    resp = await client.post("/api/v1/models/custom", data=form(raw, config, **fields))
    body = await resp.json()
    assert resp.status == 201, body
    return body["data"]


async def validate(client: Client, model_id: str) -> Any:
    resp = await client.post(f"/api/v1/models/custom/{model_id}/validate")
    assert resp.status == 200, await resp.text()
    return (await resp.json())["data"]


async def run_task(client: Client, endpoint: str, body: dict[str, Any]) -> Any:
    resp = await client.post(f"/api/v1/tasks/{endpoint}", json=body)
    created = await resp.json()
    assert resp.status in (200, 201, 202), created
    task_id = created["data"]["task_id"]
    events = await asyncio.wait_for(follow_to_end(client, task_id), 180)
    assert events[-1]["data"]["status"] == "COMPLETED", events[-3:]
    return (await (await client.get(f"/api/v1/tasks/{task_id}/result")).json())["data"]


@pytest.mark.asyncio
async def test_a_torchscript_model_validates_and_runs_tasks(live: Client) -> None:
    info = await upload(
        live, torchscript_lj(), LJ_CONFIG, description="Lennard-Jones argon in TorchScript"
    )
    assert info["framework"] == "pytorch" and info["validated"] is False
    assert info["config"] == LJ_CONFIG and info["elements"] == ["Ar"]
    assert info["with_d3"] is False and info["d3_included"] is False
    verdict = await validate(live, info["model_id"])
    assert verdict["valid"] is True, verdict
    check = verdict["validation"]
    assert check["tested_formula"] == "Ar2" and check["stress_finite"] is True
    assert check["safe_form"] == {"written": False, "as_uploaded": True}
    detail = (await (await live.get(f"/api/v1/models/{info['model_key']}")).json())["data"]
    assert detail["validated"] is True and detail["custom"]["weights_only"] is True

    atoms = argon()
    sp = await run_task(
        live, "single-point", {"model": info["model_key"], "structure": inline(atoms)}
    )
    ref = atoms.copy()
    ref.calc = LennardJones(sigma=2.3, epsilon=0.01, rc=5.0)
    assert sp["result"]["energy_eV"] == pytest.approx(ref.get_potential_energy(), abs=1e-6)
    forces = np.array(sp["result"]["forces_eV_A"])
    assert np.abs(forces - ref.get_forces()).max() < 1e-5
    assert sp["provenance"]["with_d3"] is False

    opt = await run_task(
        live,
        "optimization",
        {
            "model": info["model_key"],
            "structure": inline(atoms),
            "parameters": {"fmax": 0.01, "max_steps": 300, "dtype": "float64"},
        },
    )
    result = opt["result"]
    assert result["converged"] is True and result["steps"] >= 1
    assert result["initial_energy_eV"] == pytest.approx(lj_energy(atoms), abs=1e-8)
    assert result["final_energy_eV"] < result["initial_energy_eV"] - 1e-3


@pytest.mark.asyncio
async def test_with_d3_adds_d3_unless_the_task_says(live: Client) -> None:
    info = await upload(live, torchscript_lj(), LJ_CONFIG, with_d3="true")
    assert info["with_d3"] is True and info["d3_included"] is False
    assert (await validate(live, info["model_id"]))["valid"] is True
    atoms = argon()
    body = {"model": info["model_key"], "structure": inline(atoms)}
    default = await run_task(live, "single-point", body)
    plain = await run_task(live, "single-point", {**body, "parameters": {"with_d3": False}})
    assert default["provenance"]["with_d3"] is True
    assert plain["provenance"]["with_d3"] is False
    assert plain["result"]["energy_eV"] == pytest.approx(lj_energy(atoms), abs=1e-6)
    # D3 binds: the default run is lower by the dispersion energy.
    assert default["result"]["energy_eV"] < plain["result"]["energy_eV"] - 0.01


@pytest.mark.asyncio
async def test_weights_with_d3_refuse_a_second_term(live: Client) -> None:
    info = await upload(live, torchscript_lj(), {**LJ_CONFIG, "d3_included": True})
    assert info["d3_included"] is True and info["with_d3"] is False
    assert "d3_included" not in info["config"]
    assert (await validate(live, info["model_id"]))["valid"] is True
    body = {"model": info["model_key"], "structure": inline(argon())}
    resp = await live.post(
        "/api/v1/tasks/single-point", json={**body, "parameters": {"with_d3": True}}
    )
    created = await resp.json()
    if resp.status < 300:  # refused when the executor builds the calculator
        events = await asyncio.wait_for(follow_to_end(live, created["data"]["task_id"]), 120)
        assert events[-1]["data"]["status"] == "FAILED"
    else:
        assert created["error"]["field"] == "with_d3"
    resp = await live.post(
        "/api/v1/models/custom",
        data=form(torchscript_lj(), LJ_CONFIG, with_d3="true", d3_included="true"),
    )
    body = await resp.json()
    assert (resp.status, body["code"], body["error"]["field"]) == (400, 40001, "with_d3")


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("config", "field"),
    [
        (None, "config.inputs"),
        ({k: v for k, v in LJ_CONFIG.items() if k != "outputs"}, "config.outputs"),
        ({**LJ_CONFIG, "precision": "float16"}, "config.precision"),
        ({**LJ_CONFIG, "dtype": "int8"}, "config.dtype"),
        ({**LJ_CONFIG, "units": {"energy": "calories"}}, "config.units.energy"),
        ({**LJ_CONFIG, "cutoff": None}, "config.cutoff"),
    ],
)
async def test_bad_configs_are_refused_by_field(
    live: Client, config: dict[str, Any] | None, field: str
) -> None:
    if config is not None:
        config = {k: v for k, v in config.items() if v is not None}
    resp = await live.post("/api/v1/models/custom", data=form(torchscript_lj(), config))
    body = await resp.json()
    assert (resp.status, body["code"], body["error"]["field"]) == (400, 40001, field), body
    assert field in body["error"]["detail"]


@pytest.mark.asyncio
async def test_outputs_of_the_wrong_shape_fail_validation(live: Client) -> None:
    config = {**LJ_CONFIG, "outputs": ["energy", "forces"], "stress": "none"}
    info = await upload(live, torchscript_lj(returns="flat-forces"), config)
    verdict = await validate(live, info["model_id"])
    assert verdict["valid"] is False
    error = verdict["validation"]["error"]
    assert error["field"] == "config.outputs" and "forces has shape [6]" in error["message"]
    resp = await live.post(f"/api/v1/models/{info['model_key']}/load")
    assert resp.status == 409
