"""Operations through a real daemon: webhooks of a task, alerts from an injected fault,
JSON log files."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from mofsim_core.alerts import read_active, read_history
from mofsim_core.devices_simulated import SimulatedBackend
from mofsim_core.webhooks import deliveries, verify
from spool import Spool
from tests.daemon_helpers import Daemon, quick_job, slow_job, status, wait_for


class Receiver:
    """Fails the first ``fail_first`` POSTs, then accepts; remembers every request."""

    def __init__(self, fail_first: int = 0) -> None:
        self.fail_first = fail_first
        self.requests: list[tuple[dict[str, str], bytes]] = []
        self.lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers["Content-Length"]))
                with outer.lock:
                    outer.requests.append((dict(self.headers), body))
                    n = len(outer.requests)
                self.send_response(500 if n <= outer.fail_first else 200)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def accepted(self) -> list[dict[str, Any]]:
        with self.lock:
            ok = self.requests[self.fail_first :]
        return [json.loads(body) | {"_headers": h, "_raw": body} for h, body in ok]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver(fail_first=2)
    yield r
    r.server.shutdown()
    r.server.server_close()


def test_task_webhooks_are_signed_retried_and_not_duplicated(
    tmp_path: Path, receiver: Receiver
) -> None:
    sp = Spool(tmp_path / "spool")
    job = quick_job(
        options={
            "notify_url": receiver.url,
            "notify_secret": "k3y",
            "notify_events": ["task.started", "task.completed"],
            "retry_times": 3,
            "retry_interval_seconds": 0.05,
        }
    )
    # The receiver is on loopback: allowed explicitly, as a server's operator would.
    with Daemon(sp.root, webhook_allow_private=True):
        sp.submit(job)
        wait_for(lambda: status(sp, job.task_id) == "COMPLETED", 60, "task")
        wait_for(
            lambda: {b["event"] for b in receiver.accepted()} >= {"task.started", "task.completed"},
            30,
            "both webhooks",
        )
    got = receiver.accepted()
    ids = [b["_headers"]["X-MOFSim-Delivery"] for b in got]
    assert len(ids) == len(set(ids)) == 2  # each delivery accepted exactly once
    for body in got:
        assert verify("k3y", body["_raw"], body["_headers"]["X-MOFSim-Signature"])
        assert body["task_id"] == job.task_id
    done = next(b for b in got if b["event"] == "task.completed")
    assert done["status"] == "COMPLETED" and done["summary"]["duration_seconds"] is not None
    attempts = deliveries(sp.paths.state_dir / "webhooks", job.task_id)
    assert sum(1 for a in attempts if not a["ok"]) == 2  # the two refusals, recorded
    assert sum(1 for a in attempts if a["ok"]) == 2


def test_started_says_running_and_every_end_carries_its_duration(tmp_path: Path) -> None:
    """task.started names the state the task is in (RUNNING), and a timed-out or
    cancelled task's run time is counted from its own start and end; a task that never
    started has none."""
    from mofsim_core.task_service import cancel_task

    receiver = Receiver()
    sp = Spool(tmp_path / "spool")
    options = {
        "notify_url": receiver.url,
        "notify_events": ["task.started", "task.timeout", "task.cancelled", "task.failed"],
        "retry_interval_seconds": 0.05,
    }
    timed = slow_job(options={**options, "timeout": 2})
    cancelled = slow_job(options=options)
    never = quick_job(model="no-such-model", options=options)
    try:
        with Daemon(sp.root, webhook_allow_private=True):
            sp.submit(timed)
            wait_for(lambda: status(sp, timed.task_id) == "TIMEOUT", 60, "timeout")
            sp.submit(cancelled)
            wait_for(lambda: status(sp, cancelled.task_id) == "RUNNING", 60, "running")
            answer = cancel_task(sp, None, cancelled.task_id)
            assert (answer["status"], answer["cancel_requested"]) in (
                ("CANCELLED", False),
                ("RUNNING", True),  # a machine too busy to take a step within the wait
            )
            wait_for(lambda: status(sp, cancelled.task_id) == "CANCELLED", 60, "cancel")
            sp.submit(never)
            wait_for(lambda: status(sp, never.task_id) == "FAILED", 60, "failure")
            wait_for(lambda: len(receiver.accepted()) >= 5, 30, "five webhooks")
    finally:
        receiver.server.shutdown()
        receiver.server.server_close()
    got = {(b["task_id"], b["event"]): b for b in receiver.accepted()}
    assert got[timed.task_id, "task.started"]["status"] == "RUNNING"
    assert got[cancelled.task_id, "task.started"]["status"] == "RUNNING"
    timed_out = got[timed.task_id, "task.timeout"]
    assert timed_out["status"] == "TIMEOUT"
    # From its RUNNING event (after the executor's setup) to its end: under the timeout.
    assert 0 < timed_out["summary"]["duration_seconds"] < 30
    stopped = got[cancelled.task_id, "task.cancelled"]
    assert stopped["status"] == "CANCELLED" and stopped["summary"]["duration_seconds"] > 0
    failed = got[never.task_id, "task.failed"]
    assert failed["status"] == "FAILED" and failed["summary"]["duration_seconds"] is None


def test_hot_card_fires_an_alert_reaching_the_webhook_then_resolves(
    tmp_path: Path, receiver: Receiver
) -> None:
    sp = Spool(tmp_path / "spool")
    rules = tmp_path / "alerts.toml"
    rules.write_text(
        f'[channels]\nwebhook_url = "{receiver.url}"\ninterval_s = 0.2\n'
        "warning_window_s = 0\nwebhook_retry_interval_s = 0.05\n"
    )
    with Daemon(
        sp.root,
        slots="simulate:2",
        alert_rules=str(rules),
        webhook_allowed_networks=["127.0.0.0/8"],
    ):
        cards = SimulatedBackend(2, state_file=sp.paths.state_dir / "simulated-devices.json")
        cards.set_temperature(1, 91.0)
        alerts_dir = sp.paths.state_dir / "alerts"
        wait_for(
            lambda: [a for a in read_active(alerts_dir) if a["type"] == "gpu_temperature_high"],
            30,
            "alert firing",
        )
        wait_for(lambda: any(b.get("count") for b in receiver.accepted()), 30, "webhook")
        cards.set_temperature(1, 55.0)
        wait_for(lambda: not read_active(alerts_dir), 30, "alert resolved")
        wait_for(lambda: len(receiver.accepted()) >= 2, 30, "resolution webhook")
    history = read_history(alerts_dir)
    assert [h["resolved"] for h in history[:2]] == [True, False]
    sent = [a for b in receiver.accepted() for a in b.get("alerts", [b])]
    assert any(
        a["type"] == "gpu_temperature_high" and a["details"]["temperature_c"] == 91.0 for a in sent
    )
    assert any(a["type"] == "gpu_temperature_high" and a["resolved"] for a in sent)


def test_daemon_writes_json_system_log_files(tmp_path: Path) -> None:
    sp = Spool(tmp_path / "spool")
    with Daemon(sp.root):
        job = quick_job()
        sp.submit(job)
        wait_for(lambda: status(sp, job.task_id) == "COMPLETED", 60, "task")
    today = datetime.now(UTC).date().isoformat()
    lines = (sp.paths.state_dir / "logs" / f"system-{today}.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines]
    assert any("mofsimd up" in r["message"] for r in records)
    assert all(set(r) >= {"timestamp", "level", "logger", "message"} for r in records)


def test_a_write_the_spool_refused_raises_the_low_disk_alert_at_once(tmp_path: Path) -> None:
    import time
    from types import SimpleNamespace

    from mofsim_core.config import load_config
    from mofsimd.operations import Operations

    sp = Spool(tmp_path / "spool")
    rules = tmp_path / "alerts.toml"
    # A threshold no real disk is under: only a refused write can fire the rule.
    rules.write_text("[rules.disk_space_low]\nthreshold = 1e-12\n")
    config = load_config(overrides={"spool": str(sp.root), "alert_rules": str(rules)}, env={})
    ops = Operations(sp, config)
    daemon = SimpleNamespace(backend=SimpleNamespace(status=list), executors={})
    alerts_dir = sp.paths.state_dir / "alerts"
    ops._evaluate_alerts(daemon, time.time())
    assert not [a for a in read_active(alerts_dir) if a["type"] == "disk_space_low"]
    ops.check_alerts_soon()  # what the supervisor does when a write meets ENOSPC
    ops._evaluate_alerts(daemon, time.time())
    (alert,) = [a for a in read_active(alerts_dir) if a["type"] == "disk_space_low"]
    assert alert["level"] == "WARNING"


def test_consecutive_failures_of_a_model_count_across_a_restart(tmp_path: Path) -> None:
    sp = Spool(tmp_path / "spool")
    rules = tmp_path / "alerts.toml"
    rules.write_text("[channels]\ninterval_s = 0.2\n")
    broken = {"source": "inline", "format": "extxyz", "content": "not a structure"}
    alerts_dir = sp.paths.state_dir / "alerts"

    def fail(n: int) -> None:
        jobs = [quick_job(structure=broken) for _ in range(n)]
        for job in jobs:
            sp.submit(job)
        for job in jobs:
            wait_for(lambda job=job: status(sp, job.task_id) == "FAILED", 60, "failure")

    def streak_alerts() -> list[dict[str, Any]]:
        return [a for a in read_active(alerts_dir) if a["type"] == "model_consecutive_failures"]

    with Daemon(sp.root, alert_rules=str(rules)):
        fail(4)
    with Daemon(sp.root, alert_rules=str(rules)):
        fail(2)  # 6 in a row: over the threshold of 5 only if the first 4 still count
        (alert,) = wait_for(streak_alerts, 30, "the failure alert")
        assert alert["details"] == {"model": "emt", "failures": 6}
        good = quick_job()
        sp.submit(good)
        wait_for(lambda: status(sp, good.task_id) == "COMPLETED", 60, "a success")
        wait_for(lambda: not streak_alerts(), 30, "the alert resolved")
