"""/api/v1/files: a real task's outputs downloaded with their content types; ids that
are not the task's listed outputs are refused."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from aiohttp import FormData
from aiohttp.test_utils import TestClient, TestServer

from mofsim_core.config import Config
from mofsim_core.output_files import (
    content_type_for,
    file_id,
    file_url,
    find_output,
    output_file_urls,
    parse_file_id,
)
from mofsim_http.app import create_app
from spool import transitions
from spool.errors import FileNotFound, ResultNotReady
from spool.job import Job
from spool.store import Spool
from tests.daemon_helpers import Daemon, cu_xyz, quick_job, status, wait_for

Client = TestClient[Any, Any]


@pytest.fixture(scope="module")
def finished_task(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Spool, str]]:
    """An optimization run by a real daemon on an uploaded structure."""
    from mofsim_core.structure_service import store_structure

    root = tmp_path_factory.mktemp("files") / "spool"
    spool = Spool(root)
    cif = _cu_cif()
    meta = store_structure(spool, cif, name="Cu", filename="Cu.cif")
    job = Job.from_dict(
        {
            "task_type": "optimization",
            "model": "emt",
            "structure": {"source": "upload", "file_id": meta["file_id"]},
            "parameters": {"fmax": 0.5, "max_steps": 3, "optimizer": "FIRE"},
        }
    )
    with Daemon(root, slots="cpu:1"):
        spool.submit(job)
        wait_for(lambda: status(spool, job.task_id) in ("COMPLETED", "FAILED"), 90, "the task")
    assert status(spool, job.task_id) == "COMPLETED", spool.record(job.task_id)["error"]
    yield spool, job.task_id


def _cu_cif() -> str:
    import io

    from ase.build import bulk
    from ase.io import write

    atoms = bulk("Cu", "fcc", a=3.6, cubic=True)
    atoms.rattle(0.05, seed=1)
    buf = io.BytesIO()
    write(buf, atoms, format="cif")
    return buf.getvalue().decode()


@pytest_asyncio.fixture
async def client(finished_task: tuple[Spool, str]) -> AsyncIterator[Client]:
    spool, _ = finished_task
    app = create_app(Config(spool=str(spool.root), slots="cpu:1", http_rate_limit=0))
    async with TestClient(TestServer(app)) as c:
        yield c


@pytest.mark.asyncio
async def test_outputs_download_with_their_content_types(
    client: Client, finished_task: tuple[Spool, str]
) -> None:
    spool, task_id = finished_task
    record = spool.record(task_id)
    outputs = record["result"]["result"]["output_files"]
    assert outputs == {"optimized_structure": "optimized.cif", "trajectory": "trajectory.traj"}
    urls = output_file_urls(task_id, outputs)
    assert urls["optimized_structure"] == f"/api/v1/files/{task_id}~optimized.cif"
    workspace = spool.paths.workspace(task_id)
    expected = {"optimized_structure": "chemical/x-cif", "trajectory": "application/octet-stream"}
    for key, url in urls.items():
        resp = await client.get(url)
        assert resp.status == 200
        assert resp.headers["Content-Type"] == expected[key]
        body = await resp.read()
        assert body == (workspace / outputs[key]).read_bytes()
        assert f'filename="{task_id}_{outputs[key]}"' in resp.headers["Content-Disposition"]
    from ase.io import read

    cif = (await (await client.get(urls["optimized_structure"])).read()).decode()
    assert cif.startswith("data_") and len(read(workspace / "optimized.cif")) == 4
    # The task's event log is downloadable too, as JSON lines.
    resp = await client.get(file_url(task_id, "events.jsonl"))
    assert resp.status == 200 and resp.headers["Content-Type"] == "application/x-ndjson"
    assert b'"status":"COMPLETED"' in await resp.read()


@pytest.mark.asyncio
async def test_only_listed_outputs_inside_the_workspace_are_served(
    client: Client, finished_task: tuple[Spool, str]
) -> None:
    spool, task_id = finished_task
    (spool.paths.workspace(task_id) / "secret.txt").write_text("not an output")
    for fid in (
        f"{task_id}~secret.txt",
        f"{task_id}~..~..~state~mirror.sqlite",
        f"{task_id}~%2E%2E~job.json",
        f"{task_id}",
        "~optimized.cif",
        "..~etc~passwd",
        f"{task_id}~.hidden",
    ):
        resp = await client.get(f"/api/v1/files/{fid}")
        body = await resp.json()
        assert resp.status == 404, (fid, body)
        assert body["code"] == 30007
    resp = await client.get("/api/v1/files/task_nonexistent~optimized.cif")
    assert resp.status == 404 and (await resp.json())["code"] == 30003


@pytest.mark.asyncio
async def test_files_of_a_task_not_finished_are_not_ready(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool")
    job = quick_job()
    spool.submit(job)  # no daemon: it stays queued
    app = create_app(Config(spool=str(spool.root), slots="cpu:1", http_rate_limit=0))
    async with TestClient(TestServer(app)) as c:
        resp = await c.get(file_url(job.task_id, "optimized.cif"))
        body = await resp.json()
        assert resp.status == 409 and body["code"] == 50003
        resp = await c.get(file_url(job.task_id, "events.jsonl"))  # the log: any time
        assert resp.status == 200


def test_ids_helpers_and_kinds(finished_task: tuple[Spool, str]) -> None:
    spool, task_id = finished_task
    assert parse_file_id(file_id(task_id, "sub/dir/f.xyz")) == (task_id, "sub/dir/f.xyz")
    for bad in ("../x", "/abs", "a/../b", "x~y"):
        with pytest.raises(FileNotFound):
            file_id(task_id, bad)
    assert output_file_urls(task_id, {"ok": "a.png", "bad": "../a.png", "n": 3}) == {
        "ok": f"/api/v1/files/{task_id}~a.png"
    }
    assert find_output(spool, task_id, "structure").name == "optimized.cif"
    assert find_output(spool, task_id, "trajectory").content_type == "application/octet-stream"
    assert find_output(spool, task_id, "log").name == "events.jsonl"
    with pytest.raises(FileNotFound):
        find_output(spool, task_id, "plot")
    assert [content_type_for(n) for n in ("a.png", "b.json", "c.xyz", "POSCAR", "d.bin")] == [
        "image/png",
        "application/json",
        "chemical/x-xyz",
        "text/plain",
        "application/octet-stream",
    ]
    queued = Job.from_dict(
        {
            "task_type": "single-point-energy",
            "model": "emt",
            "structure": {"source": "inline", "format": "extxyz", "content": cu_xyz()},
        }
    )
    spool.submit(queued)
    with pytest.raises(ResultNotReady):
        find_output(spool, queued.task_id, "structure")


@pytest.mark.asyncio
async def test_upload_then_download_round_trip_names_are_opaque(client: Client) -> None:
    form = FormData()
    form.add_field("file", _cu_cif().encode(), filename="../../x.cif")
    resp = await client.post("/api/v1/structures", data=form)
    assert resp.status == 201
    fid = (await resp.json())["data"]["file_id"]
    # A structure id is not a task output id: the files endpoint does not serve uploads.
    assert (await client.get(f"/api/v1/files/{fid}")).status == 404


@pytest.mark.asyncio
async def test_a_workspace_that_is_a_link_is_not_served(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool")
    job = quick_job()
    spool.submit(job)
    claimed = transitions.claim(
        spool.paths, spool.paths.priority_dir(job.priority) / job.file_name, "cpu0", job.task_id
    )
    assert claimed is not None
    transitions.finish(spool.paths, claimed, "COMPLETED")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "result.json").write_text('{"output_files": {"structure": "secret.cif"}}')
    (elsewhere / "secret.cif").write_text("data_secret")
    (elsewhere / "events.jsonl").write_text("{}\n")
    workspace = spool.paths.workspace(job.task_id)
    shutil.rmtree(workspace)
    workspace.symlink_to(elsewhere, target_is_directory=True)
    for kind in ("structure", "log"):
        with pytest.raises(FileNotFound):
            find_output(spool, job.task_id, kind)
    app = create_app(Config(spool=str(spool.root), http_rate_limit=0))
    async with TestClient(TestServer(app)) as c:
        for name in ("secret.cif", "events.jsonl"):
            resp = await c.get(file_url(job.task_id, name))
            assert resp.status == 404, await resp.text()
