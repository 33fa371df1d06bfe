"""SSE streams of a task's events: names, ids, resume, heartbeat, end, shutdown.

The events are written here the way the daemon and the executor write them (the
spool's EventWriter), so each step of a task's life can be driven from the test.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from aiohttp import ClientResponse
from aiohttp.test_utils import TestClient, TestServer

from mofsim_core.config import Config
from mofsim_http.app import SHUTDOWN_KEY, SPOOL_KEY, create_app
from mofsim_http.sse import format_event, read_new
from spool import Job, Spool
from tests.daemon_helpers import quick_job

TIMEOUT = 20


@pytest_asyncio.fixture
async def client(tmp_path: Path) -> AsyncIterator[TestClient]:
    config = Config(spool=str(tmp_path / "spool"), sse_heartbeat_s=0.1, http_rate_limit=0)
    app = create_app(config)
    async with TestClient(TestServer(app)) as c:
        yield c


def spool_of(client: TestClient) -> Spool:
    assert client.app is not None
    return client.app[SPOOL_KEY]


async def next_sse(resp: ClientResponse) -> dict[str, Any] | None:
    """The next event or comment of a stream; None at its end."""
    out: dict[str, Any] = {}
    while True:
        raw = await asyncio.wait_for(resp.content.readline(), TIMEOUT)
        if not raw:
            return None
        line = raw.decode().rstrip("\n")
        if line == "":
            if out:
                return out
            continue
        if line.startswith(":"):
            return {"comment": line[1:].strip()}
        name, _, value = line.partition(": ")
        if name == "data":
            out["data"] = json.loads(value)
        elif name == "id":
            out["id"] = int(value)
        else:
            out[name] = value


async def read_all(resp: ClientResponse) -> list[dict[str, Any]]:
    events = []
    while (ev := await next_sse(resp)) is not None:
        if "event" in ev:
            events.append(ev)
    return events


def queued(spool: Spool) -> Job:
    job = quick_job()
    spool.submit(job)
    return job


def run_to_end(spool: Spool, task_id: str) -> None:
    """The events of a task's life, as supervisor and executor append them."""
    ev = spool.events(task_id)
    ev.status("ASSIGNED", "Task assigned to cpu0", slot="cpu0")
    ev.status("RUNNING", "Task running", slot="cpu0")
    ev.emit("step 1", level="DEBUG", logger="task.optimization")
    ev.emit("progress", event="progress", progress=0.5, step=1)
    ev.emit("almost there", level="WARNING")
    ev.status("COMPLETED", "Task completed")


def test_event_format_and_reader(tmp_path: Path) -> None:
    text = format_event("status", {"a": "x\ny"}, 42).decode()
    assert text == 'event: status\nid: 42\ndata: {"a":"x\\ny"}\n\n'
    path = tmp_path / "events.jsonl"
    path.write_bytes(b'{"event":"log","n":1}\n{"event":"st')  # a writer mid-line
    events, end = read_new(path, 0)
    assert [e.data["n"] for e in events] == [1] and end == len(b'{"event":"log","n":1}\n')
    assert read_new(path, end) == ([], end)


@pytest.mark.asyncio
async def test_stream_sends_named_events_with_ids_and_closes_after_the_end(
    client: TestClient,
) -> None:
    spool = spool_of(client)
    job = queued(spool)
    resp = await client.get(f"/api/v1/tasks/{job.task_id}/events")
    assert resp.status == 200
    assert resp.headers["Content-Type"].startswith("text/event-stream")
    first = await next_sse(resp)
    while first is not None and "event" not in first:
        first = await next_sse(resp)
    assert first is not None and first["event"] == "status" and first["id"] == 0
    assert first["data"]["extra"]["status"] == "QUEUED"
    run_to_end(spool, job.task_id)  # while the client is connected
    rest = await read_all(resp)
    names = [e["event"] for e in rest]
    assert names == ["status", "status", "log", "progress", "log", "status", "end"]
    ids = [first["id"]] + [e["id"] for e in rest]
    assert ids == sorted(ids) and len(set(ids[:-1])) == len(ids) - 1
    assert rest[3]["data"]["extra"]["progress"] == 0.5
    assert rest[-1]["data"] == {"task_id": job.task_id, "status": "COMPLETED"}
    assert resp.content.at_eof()


@pytest.mark.asyncio
async def test_resume_with_last_event_id_gives_only_later_events(client: TestClient) -> None:
    spool = spool_of(client)
    job = queued(spool)
    run_to_end(spool, job.task_id)
    full = await read_all(await client.get(f"/api/v1/tasks/{job.task_id}/events"))
    middle = full[2]["id"]
    resumed = await read_all(
        await client.get(
            f"/api/v1/tasks/{job.task_id}/events", headers={"Last-Event-ID": str(middle)}
        )
    )
    assert [e["id"] for e in resumed] == [e["id"] for e in full[3:]]
    assert resumed[-1]["event"] == "end"
    # Reconnecting after the end: nothing new, just the end again.
    again = await read_all(
        await client.get(
            f"/api/v1/tasks/{job.task_id}/events", headers={"Last-Event-ID": str(full[-1]["id"])}
        )
    )
    assert [e["event"] for e in again] == ["end"]
    bad = await client.get(f"/api/v1/tasks/{job.task_id}/events", headers={"Last-Event-ID": "abc"})
    assert bad.status == 400 and (await bad.json())["error"]["field"] == "Last-Event-ID"


@pytest.mark.asyncio
async def test_level_and_type_filters(client: TestClient) -> None:
    spool = spool_of(client)
    job = queued(spool)
    run_to_end(spool, job.task_id)
    warn = await read_all(
        await client.get(f"/api/v1/tasks/{job.task_id}/logs/stream?level=WARNING")
    )
    logs = [e["data"]["message"] for e in warn if e["event"] == "log"]
    assert logs == ["almost there"]  # DEBUG dropped; status/progress still pass
    assert {"status", "progress", "end"} <= {e["event"] for e in warn}
    only = await read_all(await client.get(f"/api/v1/tasks/{job.task_id}/events?types=progress"))
    assert [e["event"] for e in only] == ["progress", "end"]


@pytest.mark.asyncio
async def test_heartbeat_while_idle_and_logs_accept_header(client: TestClient) -> None:
    job = queued(spool_of(client))
    resp = await client.get(
        f"/api/v1/tasks/{job.task_id}/logs", headers={"Accept": "text/event-stream"}
    )
    assert resp.headers["Content-Type"].startswith("text/event-stream")
    seen: list[dict[str, Any]] = []
    while not any("comment" in e for e in seen):
        ev = await next_sse(resp)
        assert ev is not None
        seen.append(ev)
    assert [e["event"] for e in seen if "event" in e] == ["status"]
    assert seen[-1]["comment"].startswith("heartbeat")
    resp.close()


@pytest.mark.asyncio
async def test_stream_ends_when_the_server_shuts_down(client: TestClient) -> None:
    job = queued(spool_of(client))
    resp = await client.get(f"/api/v1/tasks/{job.task_id}/events")
    assert (await next_sse(resp)) is not None
    assert client.app is not None
    client.app[SHUTDOWN_KEY].set()
    events = await asyncio.wait_for(read_all(resp), 5)
    assert all(e["event"] != "end" for e in events)  # cut short, not finished
    assert resp.content.at_eof()


@pytest.mark.asyncio
async def test_cancelled_while_queued_stream_and_unknown_task(client: TestClient) -> None:
    spool = spool_of(client)
    job = queued(spool)
    spool.request_cancel(job.task_id)
    events = await read_all(await client.get(f"/api/v1/tasks/{job.task_id}/events"))
    assert [(e["event"], e["data"].get("status")) for e in events][-1] == ("end", "CANCELLED")
    missing = await client.get("/api/v1/tasks/task_nope/events")
    assert missing.status == 404 and (await missing.json())["code"] == 30003


@pytest.mark.asyncio
async def test_task_ended_without_its_terminal_event_still_ends(client: TestClient) -> None:
    """A crash between the rename and the event: the file's place says it is over."""
    from spool import transitions

    spool = spool_of(client)
    job = queued(spool)
    loc = spool.locate(job.task_id)
    assert loc is not None
    claimed = transitions.claim(spool.paths, loc.path, "cpu0", job.task_id)
    assert claimed is not None
    transitions.finish(spool.paths, claimed, "FAILED")
    events = await read_all(await client.get(f"/api/v1/tasks/{job.task_id}/events"))
    assert events[-1]["event"] == "end" and events[-1]["data"]["status"] == "FAILED"


def test_heartbeat_setting_is_configurable() -> None:
    assert Config().sse_heartbeat_s == 15.0
    assert replace(Config(), sse_heartbeat_s=0.5).sse_heartbeat_s == 0.5
