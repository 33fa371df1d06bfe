"""/api/v1/structures through a real server: every upload form, bad inputs, list,
detail, preview, delete with its tasks, built-ins."""

from __future__ import annotations

import io
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from aiohttp import FormData
from aiohttp.test_utils import TestClient, TestServer

from mofsim_core.config import Config
from mofsim_core.mirror_sqlite import SqliteMirror
from mofsim_http.app import create_app
from spool import transitions
from spool.job import Job
from spool.store import Spool


def cu_text(fmt: str = "cif", repeat: int = 1) -> str:
    from ase.build import bulk
    from ase.io import write

    atoms = bulk("Cu", "fcc", a=3.61, cubic=True).repeat(repeat)
    if fmt == "cif":
        buf = io.BytesIO()
        write(buf, atoms, format="cif")
        return buf.getvalue().decode()
    out = io.StringIO()
    write(out, atoms, format=fmt)
    return out.getvalue()


def _config(root: Path, **kw: Any) -> Config:
    return Config(spool=str(root), slots="cpu:1", http_rate_limit=0, **kw)


@pytest_asyncio.fixture
async def client(tmp_path: Path) -> AsyncIterator[TestClient[Any, Any]]:
    app = create_app(_config(tmp_path / "spool"))
    async with TestClient(TestServer(app)) as c:
        yield c


def _multipart(
    content: bytes | str, filename: str | None = "cu.cif", field: str = "file", **fields: str
) -> FormData:
    form = FormData()
    data = content.encode() if isinstance(content, str) else content
    form.add_field(field, data, filename=filename, content_type="application/octet-stream")
    for k, v in fields.items():
        form.add_field(k, v)
    return form


async def _upload(client: TestClient[Any, Any], **kw: Any) -> dict[str, Any]:
    resp = await client.post("/api/v1/structures", data=_multipart(cu_text(), **kw))
    assert resp.status == 201, await resp.text()
    data: dict[str, Any] = (await resp.json())["data"]
    return data


@pytest.mark.asyncio
async def test_multipart_upload_is_parsed_checked_and_stored(
    client: TestClient[Any, Any], tmp_path: Path
) -> None:
    resp = await client.post(
        "/api/v1/structures", data=_multipart(cu_text(), filename="Cu-fcc.cif", name="copper")
    )
    assert resp.status == 201
    body = await resp.json()
    assert body["success"] is True and body["code"] == 201
    data = body["data"]
    assert data["file_id"].startswith("struct_") and data["name"] == "copper"
    assert (data["format"], data["formula"], data["natoms"]) == ("cif", "Cu4", 4)
    assert data["filename"] == "Cu-fcc.cif" and data["elements"] == ["Cu"]
    assert data["volume"] == pytest.approx(3.61**3, rel=1e-6)
    assert data["density"] == pytest.approx(4 * 63.546 * 1.66053906660 / 3.61**3, rel=1e-3)
    assert data["cell"]["a"] == pytest.approx(3.61) and data["spacegroup"] == "Fm-3m (225)"
    folder = tmp_path / "spool" / "structures" / data["file_id"]
    assert sorted(p.name for p in folder.iterdir()) == ["meta.json", "structure.cif"]
    meta = json.loads((folder / "meta.json").read_text())
    assert meta["file_id"] == data["file_id"] and meta["summary"]["natoms"] == 4
    # What the executors read back is the same structure.
    from executors.structure_io import load_structure

    atoms, name = load_structure(
        {"source": "upload", "file_id": data["file_id"]}, tmp_path / "spool"
    )
    assert (len(atoms), name) == (4, "copper")


@pytest.mark.asyncio
async def test_every_upload_form_of_both_seeds(client: TestClient[Any, Any]) -> None:
    xyz = cu_text("extxyz")
    # MIRA's requests example: a url-encoded form with name, format, content.
    r1 = await client.post(
        "/api/v1/structures/upload", data={"name": "MOF", "format": "cif", "content": cu_text()}
    )
    # curl -F content=@structure.cif: a multipart part named content.
    r2 = await client.post(
        "/api/v1/structures/upload",
        data=_multipart(xyz, filename="s.xyz", field="content", name="by-curl"),
    )
    # /upload/file with only a file: the name comes from the file's name.
    r3 = await client.post(
        "/api/v1/structures/upload/file", data=_multipart(cu_text("vasp"), filename="POSCAR")
    )
    # A JSON body, for scripts.
    r4 = await client.post(
        "/api/v1/structures", json={"name": "j", "format": "extxyz", "content": xyz}
    )
    bodies = [await r.json() for r in (r1, r2, r3, r4)]
    assert [r.status for r in (r1, r2, r3, r4)] == [201] * 4, bodies
    data = [b["data"] for b in bodies]
    assert [d["format"] for d in data] == ["cif", "xyz", "poscar", "extxyz"]
    assert [d["name"] for d in data] == ["MOF", "by-curl", "POSCAR", "j"]
    assert {d["natoms"] for d in data} == {4}
    assert len({d["file_id"] for d in data}) == 4


@pytest.mark.asyncio
async def test_client_file_names_never_become_paths(
    client: TestClient[Any, Any], tmp_path: Path
) -> None:
    resp = await client.post(
        "/api/v1/structures/upload/file",
        data=_multipart(cu_text(), filename="../../etc/passwd", format="cif"),
    )
    assert resp.status == 201
    data = (await resp.json())["data"]
    assert data["filename"] == "passwd" and data["name"] == "passwd"
    assert data["file_id"].startswith("struct_")
    written = [p for p in tmp_path.rglob("*") if p.is_file() and "passwd" in p.name]
    assert written == []
    stored = tmp_path / "spool" / "structures" / data["file_id"] / "structure.cif"
    assert stored.read_text() == cu_text()


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("content", "filename", "fields", "status", "code"),
    [
        (b"\x00\x01\x02\xff" * 300, "junk.cif", {}, 422, 40002),  # binary garbage as CIF
        ("HEADER protein\nATOM 1 C\n", "x.pdb", {}, 415, 40003),  # not a supported type
        ("data_x\n", "x.cif", {"format": "gaussian"}, 415, 40003),  # unknown format name
        ("2\nwater-ish\nO 0 0 0\nH 0 0 0.1\n", "m.xyz", {}, 422, 40002),  # no periodic cell
        ("", "empty.cif", {}, 422, 40002),
    ],
)
async def test_bad_uploads_get_their_codes(
    client: TestClient[Any, Any],
    content: Any,
    filename: str,
    fields: dict[str, str],
    status: int,
    code: int,
) -> None:
    resp = await client.post(
        "/api/v1/structures", data=_multipart(content, filename=filename, **fields)
    )
    body = await resp.json()
    assert (resp.status, body["code"]) == (status, code), body
    assert body["success"] is False and body["error"]["detail"]


@pytest.mark.asyncio
async def test_overlapping_atoms_are_refused_with_the_reason(
    client: TestClient[Any, Any], tmp_path: Path
) -> None:
    from ase import Atoms
    from ase.io import write

    atoms = Atoms("Cu2", positions=[[0, 0, 0], [0.1, 0, 0]], cell=[5, 5, 5], pbc=True)
    buf = io.StringIO()
    write(buf, atoms, format="extxyz")
    resp = await client.post(
        "/api/v1/structures", data=_multipart(buf.getvalue(), filename="overlap.xyz")
    )
    body = await resp.json()
    assert resp.status == 422 and body["code"] == 40002
    assert "too close" in body["error"]["detail"]
    resp = await client.post("/api/v1/structures", data={"name": "nothing"})
    assert resp.status == 400 and (await resp.json())["error"]["field"] == "file"
    assert list((tmp_path / "spool" / "structures").iterdir()) == []


@pytest.mark.asyncio
async def test_oversized_upload_is_413(tmp_path: Path) -> None:
    app = create_app(_config(tmp_path / "spool", max_upload_mb=0.002))  # about 2 kB
    async with TestClient(TestServer(app)) as c:
        big = cu_text("extxyz", repeat=3)  # 108 atoms, about 8 kB
        assert len(big) > 4000
        resp = await c.post("/api/v1/structures", data=_multipart(big, filename="big.xyz"))
        body = await resp.json()
        assert resp.status == 413 and body["code"] == 40004
        resp = await c.post("/api/v1/structures/upload", data={"content": big})
        assert resp.status == 413
        small = await c.post("/api/v1/structures", data=_multipart(cu_text(), filename="a.cif"))
        assert small.status == 201


@pytest.mark.asyncio
async def test_list_detail_preview(client: TestClient[Any, Any]) -> None:
    ids = [(await _upload(client, name=f"s{i}"))["file_id"] for i in range(3)]
    resp = await client.get("/api/v1/structures", params={"page": 1, "page_size": 2})
    data = (await resp.json())["data"]
    expected = {"page": 1, "page_size": 2, "total": 3, "total_pages": 2}
    assert data["pagination"] == {**data["pagination"], **expected}
    assert [i["file_id"] for i in data["items"]] == ids[::-1][:2]  # newest first
    resp = await client.get("/api/v1/structures", params={"skip": 2, "limit": 2})
    data = (await resp.json())["data"]
    assert [i["file_id"] for i in data["items"]] == [ids[0]]
    assert data["pagination"]["page"] == 2
    resp = await client.get("/api/v1/structures", params={"page": 0})
    assert resp.status == 400 and (await resp.json())["error"]["field"] == "page"

    detail = (await (await client.get(f"/api/v1/structures/{ids[1]}")).json())["data"]
    assert (detail["name"], detail["formula"], detail["natoms"]) == ("s1", "Cu4", 4)
    assert set(detail["cell"]) == {"a", "b", "c", "alpha", "beta", "gamma"}

    preview = (await (await client.get(f"/api/v1/structures/{ids[1]}/preview")).json())["data"]
    assert preview["symbols"] == ["Cu"] * 4 and len(preview["positions"]) == 4
    assert preview["cell"][0][0] == pytest.approx(3.61) and preview["pbc"] == [True] * 3
    assert preview["head"][0].startswith("data_") and preview["truncated"] is False
    resp = await client.get(f"/api/v1/structures/{ids[1]}/preview", params={"max_atoms": 1})
    cut = (await resp.json())["data"]
    assert len(cut["symbols"]) == 1 and cut["truncated"] is True and cut["natoms"] == 4

    for bad in ("struct_0000000000000000", "..%2F..%2Fetc", "MOF-5"):
        resp = await client.get(f"/api/v1/structures/{bad}")
        assert resp.status == 404 and (await resp.json())["code"] == 30002


@pytest.mark.asyncio
async def test_builtin_list(client: TestClient[Any, Any]) -> None:
    resp = await client.get("/api/v1/structures/builtin")
    data = (await resp.json())["data"]
    names = [i["name"] for i in data["items"]]
    assert {"MOF-5", "HKUST-1", "UiO-66", "ZIF-8", "CALF-20"} <= set(names)
    mof5 = data["items"][names.index("MOF-5")]
    assert mof5["natoms"] == 106 and mof5["structure"] == {"source": "builtin", "name": "MOF-5"}


def _job(file_id: str | None) -> Job:
    ref: dict[str, Any] = (
        {"source": "upload", "file_id": file_id}
        if file_id
        else {"source": "builtin", "name": "MOF-5"}
    )
    return Job.from_dict({"task_type": "single-point-energy", "model": "emt", "structure": ref})


@pytest.mark.asyncio
async def test_delete_removes_the_structure_and_its_tasks(
    client: TestClient[Any, Any], tmp_path: Path
) -> None:
    fid = (await _upload(client))["file_id"]
    spool = Spool(tmp_path / "spool")
    queued, running, done, other = (_job(fid), _job(fid), _job(fid), _job(None))
    for job in (queued, running, done, other):
        spool.submit(job)
    # What the daemon does: claim two, finish one of them.
    for job in (running, done):
        loc = spool.locate(job.task_id)
        assert loc is not None
        transitions.claim(spool.paths, loc.path, "cpu0", job.task_id)
    transitions.atomic_write_json(
        spool.paths, spool.paths.result_file(done.task_id), {"result": {}}
    )
    transitions.finish(
        spool.paths, spool.paths.claimed_dir("cpu0") / f"{done.task_id}.json", "COMPLETED"
    )
    mirror = SqliteMirror(spool.paths.state_dir / "mirror.sqlite")
    try:
        for job in (queued, running, done, other):
            mirror.upsert_task(spool.record(job.task_id))
        resp = await client.delete(f"/api/v1/structures/{fid}")
        assert resp.status == 200
        data = (await resp.json())["data"]
        assert data["deleted_tasks"] == 2
        assert sorted(data["deleted_task_ids"]) == sorted([queued.task_id, done.task_id])
        assert data["cancelled_running_task_ids"] == [running.task_id]
        for job in (queued, done):
            assert spool.locate(job.task_id) is None
            assert not spool.paths.workspace(job.task_id).exists()
            assert mirror.get_task(job.task_id) is None
        assert spool.cancel_requested(running.task_id)  # the executor stops it
        assert spool.record(other.task_id)["status"] == "QUEUED"
        assert mirror.get_task(other.task_id) is not None
    finally:
        mirror.close()
    assert (await client.get(f"/api/v1/structures/{fid}")).status == 404
    assert (await client.delete(f"/api/v1/structures/{fid}")).status == 404
    listing = (await (await client.get("/api/v1/structures")).json())["data"]
    assert listing["pagination"]["total"] == 0


@pytest.mark.asyncio
async def test_list_sees_uploads_from_other_processes(
    client: TestClient[Any, Any], tmp_path: Path
) -> None:
    from mofsim_core.structure_service import store_structure

    first = await _upload(client)
    # Another server process on the same spool stores one: the cached index notices.
    meta = store_structure(Spool(tmp_path / "spool"), cu_text(), name="elsewhere")
    data = (await (await client.get("/api/v1/structures")).json())["data"]
    assert [i["file_id"] for i in data["items"]] == [meta["file_id"], first["file_id"]]
