"""A request's id followed through the whole chain: the answer, the job, the task's record,
its log lines, the daemon's system log lines about it, its webhooks; a batch's tasks all
keep the batch request's id.  A real daemon, the HTTP API on loopback, a local receiver."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from mofsim_core.mirror_factory import open_mirror
from mofsim_core.request_ids import accept_request_id
from spool import Spool
from spool.job import Job
from tests.daemon_helpers import Daemon, LiveServer, cu_xyz, status, wait_for

CU = {"source": "inline", "format": "extxyz", "content": cu_xyz(), "name": "Cu"}


class Receiver:
    """A webhook receiver on loopback that keeps every body."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers["Content-Length"]))
                with outer.lock:
                    outer.bodies.append(json.loads(body))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def events(self, task_id: str) -> dict[str, dict[str, Any]]:
        with self.lock:
            return {b["event"]: b for b in self.bodies if b["task_id"] == task_id}


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.server.shutdown()
    r.server.server_close()


def test_client_ids_are_kept_when_sane_and_replaced_otherwise() -> None:
    assert accept_request_id("trace-42.a:b/c+d=e_f") == "trace-42.a:b/c+d=e_f"
    for bad in (None, "", "has space", 'quote"d', "x" * 129, "-leading", "ünïcode"):
        made = accept_request_id(bad)
        assert made.startswith("req_") and made != bad
    # A job file's id is read back only when it is such a token.
    base = {"task_type": "single-point-energy", "model": "emt", "structure": CU}
    assert Job.from_dict({**base, "request_id": "r-1"}).request_id == "r-1"
    assert Job.from_dict({**base, "request_id": "bad id"}).request_id is None
    assert Job.from_dict(base).request_id is None


def test_request_id_follows_a_task_through_the_daemon(tmp_path: Path, receiver: Receiver) -> None:
    sp = Spool(tmp_path / "spool")
    server = LiveServer(sp.root, webhook_allow_private=True, http_rate_limit=0)
    with Daemon(sp.root, webhook_allow_private=True):
        server.start()
        try:
            with httpx.Client(base_url=server.url, timeout=30) as http:
                resp = http.post(
                    "/api/v1/tasks/single-point-energy",
                    headers={"X-Request-ID": "client-trace.42"},
                    json={
                        "model": "emt",
                        "structure": CU,
                        "options": {
                            "notify_url": receiver.url,
                            "notify_events": ["task.started", "task.completed"],
                        },
                    },
                )
                assert resp.status_code == 202
                assert resp.headers["X-Request-ID"] == "client-trace.42"
                task_id = resp.json()["data"]["task_id"]
                assert resp.json()["data"]["request_id"] == "client-trace.42"

                batch = http.post(
                    "/api/v1/tasks/batch",
                    headers={"X-Request-ID": "batch-7"},
                    json={
                        "tasks": [
                            {"task_type": "single-point-energy", "model": "emt", "structure": CU}
                            for _ in range(2)
                        ]
                    },
                )
                assert batch.status_code in (200, 201, 202, 207)
                batch_ids = batch.json()["data"]["task_ids"]

                odd = http.post(
                    "/api/v1/tasks/single-point-energy",
                    headers={"X-Request-ID": "not a token"},
                    json={"model": "emt", "structure": CU},
                )
                odd_rid = odd.headers["X-Request-ID"]
                assert odd_rid.startswith("req_")
                assert odd.json()["data"]["request_id"] == odd_rid

                every = [task_id, *batch_ids, odd.json()["data"]["task_id"]]
                wait_for(
                    lambda: all(status(sp, t) == "COMPLETED" for t in every), 120, "four tasks"
                )
                wait_for(lambda: len(receiver.events(task_id)) == 2, 30, "both webhooks")

                record = http.get(f"/api/v1/tasks/{task_id}").json()["data"]
                assert record["request_id"] == "client-trace.42"
                for t in batch_ids:
                    assert http.get(f"/api/v1/tasks/{t}").json()["data"]["request_id"] == "batch-7"
                logs = http.get(f"/api/v1/tasks/{task_id}/logs?limit=1000").json()["data"]
                assert logs["items"] and all(
                    item["extra"].get("request_id") == "client-trace.42" for item in logs["items"]
                )
        finally:
            server.close()

    # Every line of the task's own log, from the submission to the end, names it.
    lines = [json.loads(x) for x in sp.paths.events_file(task_id).read_text().splitlines()]
    statuses = [x["extra"]["status"] for x in lines if x["event"] == "status"]
    assert statuses == ["QUEUED", "ASSIGNED", "RUNNING", "COMPLETED"]
    assert all(x["extra"]["request_id"] == "client-trace.42" for x in lines)
    # So do the daemon's system log lines about the task.
    system = [
        json.loads(x)
        for f in sorted((sp.paths.state_dir / "logs").glob("system-*.jsonl"))
        for x in f.read_text().splitlines()
    ]
    about = [x for x in system if x["task_id"] == task_id]
    assert len(about) >= 2  # assigned, completed
    assert all(x["extra"]["request_id"] == "client-trace.42" for x in about)
    # The mirror keeps each log line's extra: the id is in its rows too.
    mirror = open_mirror(None, sp.paths)
    try:
        rows = mirror.task_logs(task_id, limit=1000)
    finally:
        mirror.close()
    assert rows and all(r["extra"]["request_id"] == "client-trace.42" for r in rows)
    # And the webhooks.
    hooks = receiver.events(task_id)
    assert {e: b["request_id"] for e, b in hooks.items()} == {
        "task.started": "client-trace.42",
        "task.completed": "client-trace.42",
    }
    assert hooks["task.started"]["status"] == "RUNNING"
