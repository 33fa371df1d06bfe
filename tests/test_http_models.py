"""/api/v1/models through a real server: catalogue, families, detail, status, load and
unload carried out by a real daemon, custom model upload, validation and deletion."""

from __future__ import annotations

import asyncio
import io
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from aiohttp import FormData
from aiohttp.test_utils import TestClient, TestServer

from executors.models import family_names
from executors.registry import task_type_names
from mofsim_core.config import Config
from mofsim_http.app import create_app
from tests.daemon_helpers import Daemon

Client = TestClient[Any, Any]


def _app_for(root: Path, **kw: Any) -> Any:
    return create_app(Config(spool=str(root), slots="cpu:2", http_rate_limit=0, **kw))


@pytest_asyncio.fixture
async def client(tmp_path: Path) -> AsyncIterator[Client]:
    async with TestClient(TestServer(_app_for(tmp_path / "spool"))) as c:
        yield c


@pytest.fixture(scope="module")
def daemon_root(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    root = tmp_path_factory.mktemp("models") / "spool"
    d = Daemon(root, slots="cpu:2").start()
    try:
        yield root
    finally:
        d.stop()


async def until(probe: Callable[[], Awaitable[Any]], timeout: float = 60.0) -> Any:
    """Poll an endpoint until it says yes (HTTP has nothing to await instead)."""
    deadline = time.monotonic() + timeout
    while True:
        value = await probe()
        if value:
            return value
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.05)


async def data_of(client: Client, path: str, status: int = 200) -> Any:
    resp = await client.get(path)
    body = await resp.json()
    assert resp.status == status, body
    return body["data"] if status < 400 else body


@pytest.mark.asyncio
async def test_catalogue_families_detail(client: Client) -> None:
    items = (await data_of(client, "/api/v1/models"))["items"]
    keys = [m["key"] for m in items]
    assert {"sevennet-0", "mace-mp", "orb-v2", "emt", "lj"} <= set(keys)
    emt = items[keys.index("emt")]
    assert set(emt) >= {
        "key",
        "name",
        "family",
        "description",
        "elements",
        "supported_tasks",
        "references",
        "loaded",
        "loaded_on",
    }
    assert emt["loaded"] is False and emt["family"] == "ase"
    ase = (await data_of(client, "/api/v1/models?family=ase"))["items"]
    assert sorted(m["key"] for m in ase) == ["emt", "lj"]
    bad = await data_of(client, "/api/v1/models?family=grace", status=400)
    assert bad["error"]["field"] == "family"
    fams = (await data_of(client, "/api/v1/models/families"))["items"]
    by_name = {f["family"]: f for f in fams}
    assert list(by_name) == family_names()
    assert {"sevennet", "mace", "orb", "ase", "custom"} <= set(by_name)
    assert by_name["ase"]["installed"] is True and "emt" in by_name["ase"]["models"]

    detail = await data_of(client, "/api/v1/models/7net-0")  # an alias
    assert detail["key"] == "sevennet-0" and "Cu" in detail["elements"]
    assert detail["supported_task_types"] == task_type_names()
    assert detail["installed"] is True and detail["d3_trained"] is False
    missing = await data_of(client, "/api/v1/models/sevenet-0", status=404)
    assert missing["code"] == 30001 and "sevennet-0" in missing["error"]["detail"]
    status = await data_of(client, "/api/v1/models/emt/status")
    assert status == {
        "model_key": "emt",
        "loaded": False,
        "device": None,
        "memory_usage_mb": None,
        "slots": [],
        "daemon_running": False,
        "requests": [],
    }
    resp = await client.post("/api/v1/models/emt/load")
    body = await resp.json()
    assert resp.status == 409 and body["code"] == 30004  # nothing could load it


@pytest.mark.asyncio
async def test_load_and_unload_through_the_daemon(daemon_root: Path) -> None:
    async with TestClient(TestServer(_app_for(daemon_root))) as client:
        resp = await client.post("/api/v1/models/EMT/load", json={"slot": "cpu1"})
        assert resp.status == 202
        req = (await resp.json())["data"]
        assert req["model_key"] == "emt" and req["status"] == "pending"
        assert req["status_url"] == "/api/v1/models/emt/status"

        async def completed(rid: str) -> Any:
            st = await data_of(client, "/api/v1/models/emt/status")
            mine = [r for r in st["requests"] if r["request_id"] == rid]
            return st if mine and mine[0]["status"] in ("completed", "failed") else None

        st = await until(lambda: completed(req["request_id"]))
        assert st["requests"][0]["status"] == "completed", st
        st = await until(lambda: _loaded(client))
        assert st["loaded"] is True and st["device"] == "cpu"
        assert [s["slot_id"] for s in st["slots"]] == ["cpu1"]
        # Measured by the executor as it loaded the model, reported with its list.
        assert isinstance(st["memory_usage_mb"], float) and st["memory_usage_mb"] >= 0
        assert st["slots"][0]["memory_usage_mb"] == st["memory_usage_mb"]
        mira = await client.get("/mira/api/v1/models/emt/status")
        assert (await mira.json())["memory_usage_mb"] == st["memory_usage_mb"]
        listing = (await data_of(client, "/api/v1/models?family=ase"))["items"]
        assert {m["key"]: m["loaded_on"] for m in listing} == {"emt": ["cpu1"], "lj": []}
        gpus = await data_of(client, "/api/v1/system/gpus")
        assert {g["slot_id"]: g["loaded_models"] for g in gpus["gpus"]}["cpu1"] == ["emt"]

        resp = await client.post("/api/v1/models/emt/unload", data=b"")
        assert resp.status == 202
        unload = (await resp.json())["data"]
        await until(lambda: completed(unload["request_id"]))
        st = await until(lambda: _loaded(client, False))
        assert st["slots"] == []

        resp = await client.post("/api/v1/models/emt/load", json={"slot": "gpu3"})
        assert resp.status == 400 and (await resp.json())["error"]["field"] == "slot"
        resp = await client.post(
            "/api/v1/models/emt/load", data=b"{nope", headers={"Content-Type": "application/json"}
        )
        assert resp.status == 400


async def _loaded(client: Client, want: bool = True) -> Any:
    st = await data_of(client, "/api/v1/models/emt/status")
    return st if st["loaded"] is want else None


def tiny_mace_bytes() -> bytes:
    import torch

    from tests.model_factories import build_tiny_mace

    buf = io.BytesIO()
    torch.save(build_tiny_mace(), buf)
    return buf.getvalue()


def _model_form(content: bytes, filename: str = "tiny.model", **fields: str) -> FormData:
    form = FormData()
    form.add_field("file", content, filename=filename, content_type="application/octet-stream")
    for k, v in {"name": "tiny", "framework": "mace", **fields}.items():
        form.add_field(k, v)
    return form


@pytest.mark.asyncio
async def test_custom_model_upload_validate_delete(client: Client, tmp_path: Path) -> None:
    weights = tiny_mace_bytes()
    resp = await client.post(
        "/api/v1/models/custom",
        data=_model_form(
            weights,
            description="my tiny MACE",
            with_d3="false",
            config=json.dumps({"precision": "float64"}),
        ),
    )
    assert resp.status == 201, await resp.text()
    info = (await resp.json())["data"]
    mid, key = info["model_id"], info["model_key"]
    assert key == f"custom:{mid}" and info["validated"] is False
    assert info["framework"] == "mace" and info["config"] == {"precision": "float64"}
    assert info["size_bytes"] == len(weights) and info["original_filename"] == "tiny.model"
    folder = tmp_path / "spool" / "models" / mid
    assert (folder / "model.model").read_bytes() == weights
    # The catalogue (executors.models) reads the same folder.
    from executors.models import resolve_model

    spec = resolve_model(key, tmp_path / "spool" / "models")
    assert spec.framework == "mace" and spec.default_dtype == "float64"

    customs = (await data_of(client, "/api/v1/models/custom"))["items"]
    assert [m["model_id"] for m in customs] == [mid]
    listed = {m["key"]: m for m in (await data_of(client, "/api/v1/models?family=custom"))["items"]}
    assert listed[key]["validated"] is False
    resp = await client.post(f"/api/v1/models/{key}/load")
    assert resp.status == 409 and (await resp.json())["code"] == 30005  # not validated

    resp = await client.post(f"/api/v1/models/custom/{mid}/validate")
    assert resp.status == 200
    verdict = (await resp.json())["data"]
    assert verdict["valid"] is True, verdict
    check = verdict["validation"]
    assert check["model_elements"] == ["Al", "Cu"] and check["tested_formula"] == "AlCu"
    assert isinstance(check["energy_eV"], float) and check["device"] == "cpu"
    meta = json.loads((folder / "meta.json").read_text())
    assert "validated" not in meta and meta["elements"] == ["Al", "Cu"]
    # The verdict lives outside the folder, bound to the digest of the weights.
    recorded = json.loads((folder.parent / ".verdicts" / f"{mid}.json").read_text())
    assert recorded["valid"] is True and recorded["sha256"] == info["sha256"]
    detail = await data_of(client, f"/api/v1/models/{key}")
    assert detail["validated"] is True and detail["elements"] == ["Al", "Cu"]
    assert detail["custom"]["validation"]["ok"] is True
    # Executors load what the sandbox wrote as data: JSON and a weights-only state dict.
    assert detail["custom"]["weights_only"] is True
    assert check["safe_form"]["written"] is True
    safe = folder.parent / ".converted" / mid
    assert sorted(recorded["safe_form"]) == ["config.json", "state.pt"]
    from executors.loaders import load_calculator
    from tests.test_loaders import alcu_cell

    atoms = alcu_cell()
    atoms.calc = load_calculator(resolve_model(key, tmp_path / "spool" / "models"))
    probe = alcu_cell()
    probe.calc = load_calculator(spec, allow_pickle=True)
    assert atoms.get_potential_energy() == pytest.approx(probe.get_potential_energy(), abs=1e-8)

    resp = await client.delete(f"/api/v1/models/custom/{mid}")
    assert resp.status == 200 and (await resp.json())["data"]["deleted"] is True
    assert not folder.exists() and not (folder.parent / ".verdicts" / f"{mid}.json").exists()
    assert not safe.exists()
    assert (await client.get(f"/api/v1/models/custom/{mid}")).status == 404
    assert (await client.get(f"/api/v1/models/{key}")).status == 404


@pytest.mark.asyncio
async def test_broken_weights_fail_validation_in_the_child(client: Client, tmp_path: Path) -> None:
    junk = b"PK\x03\x04" + bytes(range(256)) * 8  # looks like a torch archive, is not
    resp = await client.post("/api/v1/models/custom", data=_model_form(junk))
    assert resp.status == 201
    mid = (await resp.json())["data"]["model_id"]
    resp = await client.post(f"/api/v1/models/custom/{mid}/validate")
    verdict = (await resp.json())["data"]
    assert resp.status == 200 and verdict["valid"] is False
    assert verdict["validation"]["error"]["code"] == 30005
    assert "cannot load" in verdict["validation"]["error"]["message"]
    detail = await data_of(client, f"/api/v1/models/custom/{mid}")
    assert detail["validated"] is False and detail["validation"]["ok"] is False
    resp = await client.post(f"/api/v1/models/custom:{mid}/load")
    assert resp.status == 409


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("filename", "content", "fields", "status", "code"),
    [
        ("tiny.ckpt", b"PK\x03\x04rest", {}, 415, 40003),  # not a MACE extension
        ("tiny.model", b"just some text", {}, 415, 40003),  # not a torch file
        ("tiny.pt", b"PK\x03\x04rest", {"framework": "tensorflow"}, 400, 40001),
        ("tiny.pt", b"PK\x03\x04rest", {"config": "{precision"}, 400, 40001),
        ("tiny.pt", b"PK\x03\x04rest", {"config": '{"precision": "fp8"}'}, 400, 40001),
        ("tiny.pt", b"PK\x03\x04rest", {"elements": "Cu,Xx"}, 400, 40001),
    ],
)
async def test_bad_custom_uploads(
    client: Client,
    tmp_path: Path,
    filename: str,
    content: bytes,
    fields: dict[str, str],
    status: int,
    code: int,
) -> None:
    resp = await client.post(
        "/api/v1/models/custom", data=_model_form(content, filename=filename, **fields)
    )
    body = await resp.json()
    assert (resp.status, body["code"]) == (status, code), body
    assert list((tmp_path / "spool" / "models").iterdir()) == []
    assert [p for p in (tmp_path / "spool" / "tmp").iterdir() if "upload" in p.name] == []


@pytest.mark.asyncio
async def test_custom_upload_limits(tmp_path: Path) -> None:
    async with TestClient(TestServer(_app_for(tmp_path / "spool", max_upload_mb=0.001))) as client:
        resp = await client.post(
            "/api/v1/models/custom", data=_model_form(b"PK\x03\x04" + b"0" * 4000)
        )
        assert resp.status == 413
        resp = await client.post("/api/v1/models/custom", data={"name": "x"})
        assert resp.status == 400 and (await resp.json())["error"]["field"] == "file"
