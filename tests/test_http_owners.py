"""Owners over HTTP: two user keys and an admin key against a real server on a loopback
port, in both dialects.  A user key sees and acts on its own tasks, structures and
custom models only (another's answer 404, as if absent); deleting what holds results
needs an admin key and is audited."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from aiohttp.test_utils import TestClient, TestServer
from loguru import logger

from mofsim_core.api_keys import KeyStore
from mofsim_core.config import Config
from mofsim_core.owners import Caller
from mofsim_core.task_listing import list_tasks
from mofsim_http.app import MIRROR_KEY, SPOOL_KEY, create_app
from spool import Job, Spool, transitions
from tests.daemon_helpers import cu_xyz

API = "/api/v1"
M = "/mira/api/v1"
CU = {"source": "inline", "format": "extxyz", "content": cu_xyz(), "name": "Cu"}
SUBMIT = {"model": "emt", "structure": CU}


@dataclass
class Keys:
    a: dict[str, str]
    b: dict[str, str]
    admin: dict[str, str]
    a_id: str
    b_id: str
    admin_id: str


@pytest.fixture
def keys(tmp_path: Path) -> Keys:
    root = tmp_path / "spool"
    store = KeyStore(root / "state" / "api_keys.json", Spool(root).paths)
    a, a_token = store.create("alice")
    b, b_token = store.create("bob")
    admin, admin_token = store.create("ops", admin=True)
    return Keys(
        {"X-API-Key": a_token},
        {"X-API-Key": b_token},
        {"Authorization": f"Bearer {admin_token}"},
        a["id"],
        b["id"],
        admin["id"],
    )


@pytest_asyncio.fixture
async def client(tmp_path: Path, keys: Keys) -> AsyncIterator[TestClient[Any, Any]]:
    config = Config(spool=str(tmp_path / "spool"), http_rate_limit=0)
    async with TestClient(TestServer(create_app(config))) as c:
        yield c


@pytest.fixture
def audits() -> Iterator[list[dict[str, Any]]]:
    """The audit records logged while the test runs."""
    seen: list[dict[str, Any]] = []
    sink = logger.add(
        lambda message: seen.append(dict(message.record["extra"])),
        filter=lambda record: record["extra"].get("kind") == "audit",
    )
    yield seen
    logger.remove(sink)


async def call(
    client: TestClient[Any, Any], method: str, url: str, headers: dict[str, str], **kw: Any
) -> tuple[int, Any]:
    resp = await client.request(method, url, headers=headers, **kw)
    text = await resp.text()
    try:
        return resp.status, json.loads(text)
    except ValueError:
        return resp.status, text


def finished_task(client: TestClient[Any, Any], owner: str) -> str:
    """A COMPLETED task of ``owner`` with one output file, mirrored as the daemon
    would."""
    app = client.app
    assert app is not None
    spool = app[SPOOL_KEY]
    job = Job.from_dict({"task_type": "single-point-energy", **SUBMIT, "owner": owner})
    claimed = transitions.claim(spool.paths, spool.submit(job), "cpu0", job.task_id)
    assert claimed is not None
    (spool.paths.workspace(job.task_id) / "trajectory.traj").write_bytes(b"frames")
    doc = {"result": {"output_files": {"trajectory": "trajectory.traj"}}}
    transitions.atomic_write_json(spool.paths, spool.paths.result_file(job.task_id), doc)
    transitions.finish(spool.paths, claimed, "COMPLETED")
    spool.events(job.task_id).status("COMPLETED")
    mirror = app[MIRROR_KEY]
    assert mirror is not None
    mirror.upsert_task(spool.record(job.task_id))
    return job.task_id


@pytest.mark.asyncio
async def test_tasks_of_another_key_are_absent_in_the_api_dialect(
    client: TestClient[Any, Any], keys: Keys, tmp_path: Path, audits: list[dict[str, Any]]
) -> None:
    status, body = await call(
        client, "POST", f"{API}/tasks/single-point-energy", keys.a, json=SUBMIT
    )
    assert status == 202 and body["data"]["owner"] == keys.a_id
    queued = body["data"]["task_id"]
    done = finished_task(client, keys.a_id)
    file_url = f"{API}/files/{done}~trajectory.traj"

    # B: every route of A's tasks answers as for a task that does not exist.
    for method, url in [
        ("GET", f"{API}/tasks/{queued}"),
        ("POST", f"{API}/tasks/{queued}/cancel"),
        ("POST", f"{API}/tasks/{done}/keep"),
        ("GET", f"{API}/tasks/{done}/logs"),
        ("GET", f"{API}/tasks/{done}/events"),
        ("GET", f"{API}/tasks/{done}/logs/stream"),
        ("GET", f"{API}/tasks/{done}/webhooks"),
        ("GET", f"{API}/tasks/{done}/result"),
    ]:
        status, body = await call(client, method, url, keys.b)
        assert (status, body["code"]) == (404, 30003), (method, url, body)
    status, body = await call(client, "GET", file_url, keys.b)
    assert (status, body["code"]) == (404, 30007), body
    status, body = await call(client, "GET", f"{API}/tasks", keys.b)
    assert body["data"]["items"] == [] and body["data"]["pagination"]["total"] == 0

    # A sees its own; the admin sees everything.
    for who in (keys.a, keys.admin):
        status, body = await call(client, "GET", f"{API}/tasks", who)
        assert {t["task_id"] for t in body["data"]["items"]} == {queued, done}
        assert (await call(client, "GET", f"{API}/tasks/{done}/result", who))[0] == 200
        status, text = await call(client, "GET", file_url, who)
        assert (status, text) == (200, "frames")
    assert (await call(client, "POST", f"{API}/tasks/{done}/keep", keys.a, json={}))[0] == 200

    # Deleting results needs an admin key, whose deletion is audited.
    status, body = await call(client, "DELETE", f"{API}/tasks/{done}", keys.a)
    assert (status, body["code"]) == (403, 20002)
    assert audits == []
    assert (await call(client, "DELETE", f"{API}/tasks/{done}", keys.admin))[0] == 200
    assert [(r["action"], r["task_id"], r["by"]) for r in audits] == [
        ("task.data_deleted", done, keys.admin_id)
    ]
    status, body = await call(client, "POST", f"{API}/tasks/{queued}/cancel", keys.admin)
    assert status == 200 and body["data"]["status"] == "CANCELLED"


@pytest.mark.asyncio
async def test_a_batch_is_owned_and_lists_filter_from_the_spool_too(
    client: TestClient[Any, Any], keys: Keys, tmp_path: Path
) -> None:
    items = [{"task_type": "single-point-energy", **SUBMIT} for _ in range(3)]
    status, body = await call(client, "POST", f"{API}/tasks/batch", keys.b, json={"tasks": items})
    assert status == 202 and body["data"]["accepted"] == 3
    status, body = await call(client, "GET", f"{API}/tasks", keys.b)
    assert body["data"]["pagination"]["total"] == 3
    assert {t["owner"] for t in body["data"]["items"]} == {keys.b_id}
    status, body = await call(client, "GET", f"{API}/tasks", keys.a)
    assert body["data"]["pagination"]["total"] == 0
    status, body = await call(client, "GET", f"{API}/tasks", keys.admin)
    assert body["data"]["pagination"]["total"] == 3
    # Without the mirror the spool is read, with the same filter.
    spool = Spool(tmp_path / "spool")
    assert list_tasks(spool, None, caller=Caller(keys.b_id, admin=False))[1] == 3
    assert list_tasks(spool, None, caller=Caller(keys.a_id, admin=False))[1] == 0
    assert list_tasks(spool, None)[1] == 3


@pytest.mark.asyncio
async def test_structures_and_tasks_of_another_key_in_the_mira_dialect(
    client: TestClient[Any, Any], keys: Keys, tmp_path: Path, audits: list[dict[str, Any]]
) -> None:
    form = {"name": "Cu", "format": "extxyz", "content": cu_xyz(2, rattle=0.05)}
    status, body = await call(client, "POST", f"{M}/structures/upload", keys.a, data=form)
    assert status == 201
    sid = body["id"]
    submit = {"structure_id": sid, "model_key": "emt"}
    status, task = await call(client, "POST", f"{M}/tasks/single-point-energy", keys.a, json=submit)
    assert status == 201, task
    tid = task["task_id"]
    done = finished_task(client, keys.a_id)

    # B cannot see, use, cancel, read or download any of it.
    status, body = await call(client, "POST", f"{M}/tasks/single-point-energy", keys.b, json=submit)
    assert (status, body["error_code"], body["field"]) == (
        404,
        "STRUCTURE_NOT_FOUND",
        "structure_id",
    ), body
    for url in (f"{M}/structures/{sid}", f"{M}/structures/{sid}/preview"):
        status, body = await call(client, "GET", url, keys.b)
        assert (status, body["error_code"]) == (404, "STRUCTURE_NOT_FOUND"), url
    status, body = await call(client, "GET", f"{M}/structures", keys.b)
    assert body == {"total": 0, "structures": []}
    for method, url in [
        ("GET", f"{M}/tasks/{tid}"),
        ("POST", f"{M}/tasks/{tid}/cancel"),
        ("GET", f"{M}/results/{done}"),
        ("GET", f"{M}/results/{done}/summary"),
        ("GET", f"{M}/results/{done}/download/log"),
        ("GET", f"{M}/results/{done}/download/trajectory"),
    ]:
        status, body = await call(client, method, url, keys.b)
        assert (status, body["error_code"]) == (404, "TASK_NOT_FOUND"), (method, url, body)
    status, body = await call(client, "GET", f"{M}/tasks", keys.b)
    assert body["total"] == 0 and body["tasks"] == []

    # A does; the admin does too.
    for who in (keys.a, keys.admin):
        status, body = await call(client, "GET", f"{M}/tasks", who)
        assert {t["task_id"] for t in body["tasks"]} == {tid, done}
        assert (await call(client, "GET", f"{M}/structures/{sid}", who))[0] == 200
        status, text = await call(client, "GET", f"{M}/results/{done}/download/trajectory", who)
        assert (status, text) == (200, "frames")

    # A structure with tasks holds results: user keys may not delete it, in either dialect.
    for who in (keys.a, keys.b):
        for url in (f"{M}/structures/{sid}", f"{API}/structures/{sid}"):
            status, body = await call(client, "DELETE", url, who)
            assert status == 403, (url, body)
    assert (await call(client, "GET", f"{M}/tasks/{tid}", keys.a))[0] == 200
    assert audits == []
    status, body = await call(client, "DELETE", f"{M}/structures/{sid}", keys.admin)
    assert status == 200 and body["deleted_tasks"] == 1
    assert [(r["action"], r["file_id"], r["by"], r["deleted_task_ids"]) for r in audits] == [
        ("structure.deleted", sid, keys.admin_id, [tid])
    ]
    assert (await call(client, "GET", f"{M}/tasks/{tid}", keys.admin))[0] == 404


@pytest.mark.asyncio
async def test_structures_of_another_key_in_the_api_dialect(
    client: TestClient[Any, Any], keys: Keys
) -> None:
    form = {"name": "Cu", "format": "extxyz", "content": cu_xyz(2, rattle=0.05)}
    status, body = await call(client, "POST", f"{API}/structures", keys.b, data=form)
    assert status == 201
    sid = body["data"]["file_id"]
    for url in (f"{API}/structures/{sid}", f"{API}/structures/{sid}/preview"):
        status, body = await call(client, "GET", url, keys.a)
        assert (status, body["code"]) == (404, 30002), url
        assert (await call(client, "GET", url, keys.b))[0] == 200
    status, body = await call(client, "GET", f"{API}/structures", keys.a)
    assert body["data"]["pagination"]["total"] == 0
    status, body = await call(client, "GET", f"{API}/structures", keys.admin)
    assert [s["file_id"] for s in body["data"]["items"]] == [sid]
    submit = {**SUBMIT, "structure": {"source": "upload", "file_id": sid}}
    status, body = await call(
        client, "POST", f"{API}/tasks/single-point-energy", keys.a, json=submit
    )
    assert (status, body["code"], body["error"]["field"]) == (404, 30002, "structure.file_id")
    status, body = await call(client, "DELETE", f"{API}/structures/{sid}", keys.admin)
    assert status == 200 and body["data"]["deleted"] is True


@pytest.mark.asyncio
async def test_custom_models_of_another_key_are_absent(
    client: TestClient[Any, Any], keys: Keys, tmp_path: Path, audits: list[dict[str, Any]]
) -> None:
    root = tmp_path / "spool" / "models"
    for model_id, owner in (("model_0000000000aa", keys.a_id), ("model_0000000000bb", None)):
        (root / model_id).mkdir(parents=True)
        meta = {"model_id": model_id, "framework": "mace", "file": "model.model", "owner": owner}
        (root / model_id / "meta.json").write_text(json.dumps(meta))
        (root / model_id / "model.model").write_bytes(b"PK")
    status, body = await call(client, "GET", f"{API}/models/custom", keys.a)
    assert [m["model_id"] for m in body["data"]["items"]] == ["model_0000000000aa"]
    status, body = await call(client, "GET", f"{API}/models/custom", keys.b)
    assert body["data"]["items"] == []
    status, body = await call(client, "GET", f"{API}/models/custom/model_0000000000aa", keys.b)
    assert (status, body["code"]) == (404, 30001)
    status, body = await call(client, "GET", f"{API}/models/custom", keys.admin)
    assert len(body["data"]["items"]) == 2
    status, body = await call(client, "DELETE", f"{API}/models/custom/model_0000000000aa", keys.a)
    assert (status, body["code"]) == (403, 20002)
    status, _ = await call(client, "DELETE", f"{API}/models/custom/model_0000000000aa", keys.admin)
    assert status == 200 and not (root / "model_0000000000aa").exists()
    assert [(r["action"], r["model_id"], r["by"]) for r in audits] == [
        ("model.deleted", "model_0000000000aa", keys.admin_id)
    ]


@pytest.mark.asyncio
async def test_catalogues_and_submissions_show_a_key_only_its_own_or_shared_models(
    client: TestClient[Any, Any], keys: Keys, tmp_path: Path
) -> None:
    root = tmp_path / "spool" / "models"
    owned = {"model_0000000000aa": (keys.a_id, False), "model_0000000000cc": (keys.admin_id, True)}
    for model_id, (owner, shared) in owned.items():
        (root / model_id).mkdir(parents=True)
        meta = {
            "model_id": model_id,
            "framework": "mace",
            "file": "model.model",
            "owner": owner,
            "shared": shared,
        }
        (root / model_id / "meta.json").write_text(json.dumps(meta))
        (root / model_id / "model.model").write_bytes(b"PK")

    async def catalogue(headers: dict[str, str]) -> list[str]:
        _, body = await call(client, "GET", f"{API}/models?family=custom", headers)
        _, mira = await call(client, "GET", f"{M}/models?family=custom", headers)
        _, fams = await call(client, "GET", f"{API}/models/families", headers)
        custom = next(f for f in fams["data"]["items"] if f["family"] == "custom")
        keys_ = sorted(m["key"] for m in body["data"]["items"])
        assert sorted(m["key"] for m in mira) == keys_
        assert sorted(custom["models"]) == keys_
        return keys_

    assert await catalogue(keys.a) == ["custom:model_0000000000aa", "custom:model_0000000000cc"]
    assert await catalogue(keys.b) == ["custom:model_0000000000cc"]
    assert len(await catalogue(keys.admin)) == 2
    for url in (f"{API}/models/custom:model_0000000000aa", f"{M}/models/model_0000000000aa"):
        status, body = await call(client, "GET", url, keys.b)
        assert status == 404 and "30001" in json.dumps(body), url
    status, body = await call(client, "GET", f"{API}/models/custom:model_0000000000cc", keys.b)
    assert status == 200 and body["data"]["custom"]["shared"] is True
    # Another key's model is unknown to a submission, before any other check (it is not
    # validated, and that must not show); a shared one is known, so its state is told.
    bad = {**SUBMIT, "model": "custom:model_0000000000aa"}
    status, body = await call(client, "POST", f"{API}/tasks/single-point", keys.b, json=bad)
    assert (status, body["code"], body["error"]["field"]) == (404, 30001, "model")
    mira = {"model_key": "model_0000000000aa", "structure": CU}
    status, body = await call(client, "POST", f"{M}/tasks/single-point", keys.b, json=mira)
    assert status == 404 and "30001" in json.dumps(body)
    shared = {**SUBMIT, "model": "custom:model_0000000000cc"}
    status, body = await call(client, "POST", f"{API}/tasks/single-point", keys.b, json=shared)
    assert body["code"] == 30005 and "validat" in body["error"]["detail"]
    status, body = await call(client, "POST", f"{API}/tasks/single-point", keys.a, json=bad)
    assert body["code"] == 30005
