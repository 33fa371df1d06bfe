"""Keep flag, audited deletion, webhook delivery records and the retention dry run, over
a real server on a loopback port."""

from __future__ import annotations

from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer

from mofsim_core.config import Config
from mofsim_core.webhooks import Delivery, Subscription, WebhookDispatcher
from mofsim_http.app import create_app
from spool import Job, Spool, transitions


def finished(sp: Spool) -> str:
    job = Job.from_dict(
        {"task_type": "single-point-energy", "model": "emt", "structure": "builtin:MOF-5"}
    )
    claimed = transitions.claim(sp.paths, sp.submit(job), "cpu0", job.task_id)
    assert claimed is not None
    (sp.paths.workspace(job.task_id) / "trajectory.traj").write_bytes(b"x")
    transitions.atomic_write_json(sp.paths, sp.paths.result_file(job.task_id), {"result": {}})
    transitions.finish(sp.paths, claimed, "COMPLETED")
    sp.events(job.task_id).status("COMPLETED")
    return job.task_id


@pytest.mark.asyncio
async def test_keep_delete_webhooks_and_plan(tmp_path: Path) -> None:
    sp = Spool(tmp_path / "spool")
    tid = finished(sp)
    (sp.paths.state_dir / "webhooks").mkdir()
    WebhookDispatcher(sp.paths.state_dir / "webhooks")._record(
        Delivery(tid, "task.completed", b"{}", Subscription("http://127.0.0.1:9/x")),
        False,
        500,
        "HTTP 500",
        1.0,
        False,
    )
    app = create_app(Config(spool=str(sp.root), http="127.0.0.1:0"))
    async with TestClient(TestServer(app)) as client:
        r = await client.post(f"/api/v1/tasks/{tid}/keep", json={"keep": True})
        assert r.status == 200 and (await r.json())["data"]["keep"] is True
        r = await client.post(f"/api/v1/tasks/{tid}/keep", json={"keep": "yes"})
        assert r.status == 400 and (await r.json())["error"]["field"] == "keep"
        r = await client.get(f"/api/v1/tasks/{tid}/webhooks")
        items = (await r.json())["data"]["items"]
        assert [i["status_code"] for i in items] == [500]
        r = await client.get("/api/v1/system/retention")
        assert r.status == 200 and (await r.json())["data"]["actions"] == []
        r = await client.delete(f"/api/v1/tasks/{tid}")
        body = await r.json()
        assert r.status == 200 and "result.json" in body["data"]["removed"]
        r = await client.get(f"/api/v1/tasks/{tid}")
        assert (await r.json())["data"]["status"] == "COMPLETED"
        r = await client.delete("/api/v1/tasks/task_missing")
        assert r.status == 404 and (await r.json())["code"] == 30003
