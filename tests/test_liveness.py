"""Executor heartbeats: a stopped executor's slot goes offline (alert, no work, its
unstarted task requeued) and comes back when it beats again; the beat goes on while
the main thread is busy."""

from __future__ import annotations

import io
import json
import os
import signal
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

from executors.liveness import start_heartbeat
from mofsim_core.alerts import read_active, read_history
from mofsim_core.slot_state import read_snapshot
from spool import Spool
from tests.daemon_helpers import (
    Daemon,
    LiveServer,
    quick_job,
    slow_job,
    status,
    status_events,
    wait_for,
)


def _slot(root: Path) -> dict[str, Any]:
    snap = read_snapshot(root)
    assert snap is not None
    (slot,) = snap["slots"]
    return dict(slot)


def _snapshot_turns(root: Path, after: float, turns: int = 2) -> None:
    """Wait until the supervisor has written its slot snapshot ``turns`` more times."""
    seen: set[float] = set()

    def turned() -> bool:
        snap = read_snapshot(root)
        if snap is not None and snap["written_at"] > after:
            seen.add(snap["written_at"])
        return len(seen) >= turns

    wait_for(turned, 30, "the supervisor loop to turn")


def test_heartbeat_thread_beats_while_the_main_thread_computes() -> None:
    out = io.StringIO()
    lock = threading.Lock()

    def reply(**msg: Any) -> None:
        with lock:
            out.write(json.dumps(msg) + "\n")

    stop = start_heartbeat(reply, 0.05)
    try:
        import numpy as np

        # A long computation that releases the interpreter lock, as a force call does.
        deadline = time.monotonic() + 0.6
        a = np.random.default_rng(0).random((300, 300))
        while time.monotonic() < deadline:
            a = a @ a
            a /= np.abs(a).max()
    finally:
        stop.set()
    beats = [json.loads(line) for line in out.getvalue().splitlines()]
    assert len(beats) >= 4 and all(b["type"] == "heartbeat" for b in beats)


def test_a_stopped_executor_goes_offline_and_comes_back(tmp_path: Path) -> None:
    sp = Spool(tmp_path / "spool")
    rules = tmp_path / "alerts.toml"
    rules.write_text("[channels]\ninterval_s = 0.2\n")
    with Daemon(sp.root, heartbeat_timeout_s=3.0, alert_rules=str(rules)):
        wait_for(lambda: _slot(sp.root)["state"] == "idle", 60, "the executor ready")
        pid = int(_slot(sp.root)["executor"]["pid"])
        os.kill(pid, signal.SIGSTOP)
        try:
            # Handed over before the silence is noticed: it sits ASSIGNED, never begun.
            job = quick_job()
            sp.submit(job)
            wait_for(lambda: status_events(sp, job.task_id)[-1:] == ["ASSIGNED"], 30, "assigned")
            alerts = sp.paths.state_dir / "alerts"
            wait_for(lambda: read_active(alerts), 30, "the heartbeat alert")
            (alert,) = read_active(alerts)
            assert alert["type"] == "worker_heartbeat_lost" and alert["level"] == "CRITICAL"
            assert alert["subject"] == "cpu0" and "worker offline" in alert["message"]
            assert alert["details"]["slot"] == "cpu0" and alert["details"]["gpu_id"] is None
            wait_for(lambda: _slot(sp.root)["state"] == "offline", 30, "the slot offline")
            wait_for(lambda: status(sp, job.task_id) == "QUEUED", 30, "the task requeued")
            assert sp.record(job.task_id).get("attempts", 0) == 0
            # Seen by readers of the slot snapshot, e.g. the API's GPU list.
            server = LiveServer(sp.root).start()
            try:
                with urllib.request.urlopen(f"{server.url}/api/v1/system/gpus", timeout=30) as r:
                    (row,) = json.load(r)["data"]["gpus"]
                assert row["slot_id"] == "cpu0" and row["state"] == "offline"
            finally:
                server.close()
            # No new task for the offline slot, however many turns the loop takes.
            _snapshot_turns(sp.root, time.time())
            assert status(sp, job.task_id) == "QUEUED"
        finally:
            os.kill(pid, signal.SIGCONT)
        wait_for(lambda: status(sp, job.task_id) == "COMPLETED", 60, "the task run")
        wait_for(lambda: not read_active(alerts), 30, "the alert resolved")
        assert _slot(sp.root)["state"] == "idle"
        assert int(_slot(sp.root)["executor"]["pid"]) == pid  # recovered, not restarted
    events = status_events(sp, job.task_id)
    assert events.count("RUNNING") == 1 and events[-1] == "COMPLETED"
    assert events.index("QUEUED", 1) < events.index("RUNNING")
    history = read_history(alerts)
    assert [h["resolved"] for h in history] == [True, False]


def test_a_running_task_outlives_a_silence_shorter_than_its_timeout(tmp_path: Path) -> None:
    """Only the task's own timeout ends a running task: a stopped executor is offline
    meanwhile, and its task goes on once it is continued."""
    sp = Spool(tmp_path / "spool")
    rules = tmp_path / "alerts.toml"
    rules.write_text("[channels]\ninterval_s = 0.2\n")
    alerts = sp.paths.state_dir / "alerts"
    with Daemon(sp.root, heartbeat_timeout_s=3.0, alert_rules=str(rules)):
        job = slow_job()
        sp.submit(job)
        wait_for(lambda: status(sp, job.task_id) == "RUNNING", 60, "running")
        pid = int(_slot(sp.root)["executor"]["pid"])
        os.kill(pid, signal.SIGSTOP)
        try:
            wait_for(lambda: _slot(sp.root)["state"] == "offline", 30, "the slot offline")
            wait_for(lambda: read_active(alerts), 30, "the heartbeat alert")
            assert _slot(sp.root)["current_task"]["task_id"] == job.task_id
        finally:
            os.kill(pid, signal.SIGCONT)
        wait_for(lambda: _slot(sp.root)["state"] == "busy", 30, "the slot back")
        wait_for(lambda: not read_active(alerts), 30, "the alert resolved")
        assert status(sp, job.task_id) == "RUNNING"
        assert int(_slot(sp.root)["executor"]["pid"]) == pid
        sp.request_cancel(job.task_id)
        wait_for(lambda: status(sp, job.task_id) == "CANCELLED", 60, "cancelled")
