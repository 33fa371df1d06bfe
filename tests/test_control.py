"""Model load/unload requests (mofsim_core.model_requests, mofsim_core.control) and the
slot snapshot (mofsim_core.slot_state): the protocol with executor doubles and a fake
clock, then through a real daemon."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mofsim_core.control import ModelControl
from mofsim_core.devices import Slot
from mofsim_core.devices_cpu import CpuBackend
from mofsim_core.model_requests import list_requests, read_request, requests_dir, submit_request
from mofsim_core.slot_state import (
    SlotStateWriter,
    daemon_status,
    pid_alive,
    read_snapshot,
    snapshot_path,
)
from spool.errors import ValidationError
from spool.layout import SpoolPaths
from spool.store import Spool
from tests.daemon_helpers import Daemon, quick_job, status, wait_for


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


class Proc:
    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.returncode: int | None = None


class ExecutorDouble:
    """The parts of mofsimd.executor_pool.Executor that control and slot_state use."""

    def __init__(self, index: int) -> None:
        self.slot = Slot(f"cpu{index}", "cpu", index, "CPU", "")
        self.proc = Proc(10_000 + index)
        self.ready = True
        self.current: Any = None
        self.loaded_models: list[str] = []
        self.restarts = 0
        self.started_at = 1.0
        self.sent: list[dict[str, Any]] = []
        self.killed = False
        self.on_message: Any = None

    @property
    def slot_id(self) -> str:
        return self.slot.slot_id

    @property
    def alive(self) -> bool:
        return self.proc.returncode is None

    @property
    def idle(self) -> bool:
        return self.ready and self.current is None and self.alive

    def send(self, msg: dict[str, Any]) -> None:
        self.sent.append(msg)

    def kill(self) -> None:
        self.killed = True
        self.proc.returncode = -9

    def reply(self, **msg: Any) -> None:
        """What Executor._read_loop does with a line from the worker."""
        if "loaded" in msg:
            self.loaded_models = list(msg["loaded"])
        self.on_message(self, msg)


@pytest.fixture
def paths(tmp_path: Path) -> SpoolPaths:
    return SpoolPaths(tmp_path / "spool").ensure()


def test_requests_are_files_with_fifo_names(paths: SpoolPaths) -> None:
    a = submit_request(paths, "load", "emt", slot="cpu0")
    b = submit_request(paths, "unload", "emt")
    names = sorted(os.listdir(requests_dir(paths)))
    assert [n.split("-", 1)[1] for n in names if n.endswith(".json")] == [
        a["request_id"] + ".json",
        b["request_id"] + ".json",
    ]
    assert read_request(paths, a["request_id"])["status"] == "pending"  # type: ignore[index]
    assert read_request(paths, "mreq_unknown") is None
    assert [r["request_id"] for r in list_requests(paths, model="emt")] == [
        b["request_id"],
        a["request_id"],
    ]
    with pytest.raises(ValidationError) as err:
        submit_request(paths, "explode", "emt")
    assert err.value.field == "action"
    with pytest.raises(ValidationError):
        submit_request(paths, "load", "emt", slot="../cpu0")


def test_load_goes_to_an_idle_slot_which_leaves_scheduling_until_it_answers(
    paths: SpoolPaths,
) -> None:
    clock = Clock()
    ctl = ModelControl(paths, clock=clock)
    busy, free = ExecutorDouble(0), ExecutorDouble(1)
    busy.current = object()  # running a task
    free.loaded_models = ["lj"]
    executors = {"cpu0": busy, "cpu1": free}
    req = submit_request(paths, "load", "EMT")
    ctl.process(executors)
    assert free.sent == [{"type": "load", "model": "emt", "with_d3": None}]  # the model decides
    assert busy.sent == [] and not free.idle and ctl.busy == {"cpu1": req["request_id"]}
    ctl.process(executors)  # nothing sent twice while waiting for the answer
    assert len(free.sent) == 1
    clock.t += 1.5
    free.reply(type="loaded", ok=True, loaded=["emt", "lj"])
    assert free.idle and ctl.busy == {}
    ctl.process(executors)
    done = read_request(paths, req["request_id"])
    assert done is not None and done["status"] == "completed"
    assert done["slots"]["cpu1"] == {"ok": True, "loaded": ["emt", "lj"], "seconds": 1.5}
    assert [n for n in os.listdir(requests_dir(paths)) if n.endswith(".json")] == []
    # Loaded already: answered without bothering an executor.
    again = submit_request(paths, "load", "emt")
    ctl.process(executors)
    assert len(free.sent) == 1
    assert "already loaded on cpu1" in read_request(paths, again["request_id"])["message"]  # type: ignore[index]


def test_unload_everywhere_waits_for_busy_slots_and_reports_failures(paths: SpoolPaths) -> None:
    clock = Clock()
    ctl = ModelControl(paths, clock=clock)
    a, b = ExecutorDouble(0), ExecutorDouble(1)
    a.loaded_models = b.loaded_models = ["emt"]
    b.current = object()
    executors = {"cpu0": a, "cpu1": b}
    req = submit_request(paths, "unload", "emt")
    ctl.process(executors)
    assert [m["type"] for m in a.sent] == ["unload"] and b.sent == []
    a.reply(type="loaded", ok=True, loaded=[])
    ctl.process(executors)
    assert read_request(paths, req["request_id"])["status"] == "pending"  # type: ignore[index]
    b.current = None  # its task finished
    ctl.process(executors)
    b.reply(type="loaded", ok=False, loaded=["emt"], error={"code": 10001, "message": "refused"})
    ctl.process(executors)
    done = read_request(paths, req["request_id"])
    assert done is not None and done["status"] == "failed"
    assert done["slots"]["cpu0"]["ok"] is True and "cpu1: refused" in done["message"]


def test_a_silent_or_dead_executor_fails_the_command(paths: SpoolPaths) -> None:
    clock = Clock()
    ctl = ModelControl(paths, clock=clock, command_timeout=60)
    silent, dying = ExecutorDouble(0), ExecutorDouble(1)
    first = submit_request(paths, "load", "emt", slot="cpu0")
    second = submit_request(paths, "load", "lj", slot="cpu1")
    executors = {"cpu0": silent, "cpu1": dying}
    ctl.process(executors)
    assert silent.sent and dying.sent
    dying.proc = Proc(20_001)  # restarted by the supervisor: a new process
    clock.t += 61
    ctl.process(executors)
    assert silent.killed  # so that the supervisor restarts it
    for req, reason in ((first, "no answer within 60 s"), (second, "exited before answering")):
        done = read_request(paths, req["request_id"])
        assert done is not None and done["status"] == "failed" and reason in done["message"]
    assert ctl.busy == {}


def test_bad_requests_fail_at_once(paths: SpoolPaths) -> None:
    ctl = ModelControl(paths)
    ex = ExecutorDouble(0)
    unknown = submit_request(paths, "load", "no-such-model")
    slot = submit_request(paths, "load", "emt", slot="gpu7")
    (requests_dir(paths) / "0000000000001-mreq_broken.json").write_text("[1, 2")
    models = paths.models / "mine"
    models.mkdir(parents=True)
    (models / "meta.json").write_text(
        json.dumps({"name": "m", "framework": "mace", "file": "model.model"})
    )
    (models / "model.model").write_bytes(b"PK\x03\x04")
    unvalidated = submit_request(paths, "load", "custom:mine")
    ctl.process({"cpu0": ex})
    assert ex.sent == []
    results = {
        r: read_request(paths, r)
        for r in (
            unknown["request_id"],
            slot["request_id"],
            unvalidated["request_id"],
            "mreq_broken",
        )
    }
    assert all(r is not None and r["status"] == "failed" for r in results.values())
    assert results[unknown["request_id"]]["error"]["code"] == 30001  # type: ignore[index]
    assert "unknown slot 'gpu7'" in results[slot["request_id"]]["message"]  # type: ignore[index]
    assert "not been validated" in results[unvalidated["request_id"]]["message"]  # type: ignore[index]


def test_snapshot_written_on_change_and_periodically(tmp_path: Path) -> None:
    clock = Clock()
    writer = SlotStateWriter(tmp_path, interval=2.0, clock=clock)
    ex = ExecutorDouble(0)
    backend = CpuBackend(1)
    assert writer.update({"cpu0": ex}, backend) is True
    snap = read_snapshot(tmp_path)
    assert snap is not None and snap["daemon_pid"] == os.getpid()
    slot = snap["slots"][0]
    assert (slot["slot_id"], slot["state"], slot["device"]) == ("cpu0", "idle", "cpu")
    assert slot["device_status"]["memory_total_mb"] > 0
    clock.t += 0.5
    assert writer.update({"cpu0": ex}, backend) is False  # nothing changed, too soon
    ex.loaded_models = ["emt"]
    assert writer.update({"cpu0": ex}, backend, {"cpu0": "mreq_x"}) is True
    slot = read_snapshot(tmp_path)["slots"][0]  # type: ignore[index]
    assert slot["loaded_models"] == ["emt"] and slot["state"] == "loading"
    assert slot["control_request"] == "mreq_x"
    clock.t += 2.5
    assert writer.update({"cpu0": ex}, backend, {"cpu0": "mreq_x"}) is True  # heartbeat
    ex.proc.returncode = 1
    writer.update({"cpu0": ex}, backend)
    assert read_snapshot(tmp_path)["slots"][0]["state"] == "down"  # type: ignore[index]
    snapshot_path(tmp_path).write_text("{not json")
    assert read_snapshot(tmp_path) is None


def test_daemon_status_from_lock_pid_and_snapshot(tmp_path: Path) -> None:
    (tmp_path / "state").mkdir()
    assert daemon_status(tmp_path)["alive"] is False
    done = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    dead_pid = int(done.stdout)
    assert not pid_alive(dead_pid) and pid_alive(os.getpid())
    (tmp_path / "state" / "daemon.lock").write_text(str(dead_pid))
    assert daemon_status(tmp_path)["alive"] is False
    (tmp_path / "state" / "daemon.lock").write_text(str(os.getpid()))
    st = daemon_status(tmp_path)
    assert st["alive"] is True and st["responsive"] is False  # no snapshot yet
    SlotStateWriter(tmp_path).update({}, CpuBackend(1))
    st = daemon_status(tmp_path)
    assert st["responsive"] is True and st["snapshot_age_seconds"] < 5


# --- through a real daemon ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Spool]:
    root = tmp_path_factory.mktemp("control") / "spool"
    d = Daemon(root, slots="cpu:2").start()
    try:
        yield Spool(root)
    finally:
        d.stop()


def _finished(spool: Spool, request_id: str) -> dict[str, Any]:
    result: dict[str, Any] = wait_for(
        lambda: (r := read_request(spool.paths, request_id)) and r["status"] != "pending" and r,
        60,
        f"request {request_id}",
    )
    return result


def _loaded(spool: Spool) -> dict[str, list[str]]:
    snap = read_snapshot(spool.root)
    assert snap is not None
    return {s["slot_id"]: s["loaded_models"] for s in snap["slots"]}


def test_daemon_loads_and_unloads_on_request(daemon: Spool) -> None:
    req = submit_request(daemon.paths, "load", "emt", slot="cpu1")
    done = _finished(daemon, req["request_id"])
    assert done["status"] == "completed" and done["slots"]["cpu1"]["loaded"] == ["emt"]
    wait_for(lambda: _loaded(daemon)["cpu1"] == ["emt"], 10, "the snapshot to show it")
    req = submit_request(daemon.paths, "load", "lj")  # any slot: the emptier one
    done = _finished(daemon, req["request_id"])
    assert done["status"] == "completed" and list(done["slots"]) == ["cpu0"]
    req = submit_request(daemon.paths, "unload", "emt")
    assert _finished(daemon, req["request_id"])["status"] == "completed"
    wait_for(lambda: _loaded(daemon) == {"cpu0": ["lj"], "cpu1": []}, 10, "unloaded")
    # Scheduling goes on as before: a task submitted now runs.
    job = quick_job()
    daemon.submit(job)
    wait_for(lambda: status(daemon, job.task_id) == "COMPLETED", 60, "the task")


def test_daemon_refuses_what_it_cannot_do(daemon: Spool) -> None:
    bad_slot = submit_request(daemon.paths, "load", "emt", slot="gpu9")
    bad_model = submit_request(daemon.paths, "load", "nonexistent-model")
    assert "unknown slot" in _finished(daemon, bad_slot["request_id"])["message"]
    assert _finished(daemon, bad_model["request_id"])["error"]["code"] == 30001
    snap = read_snapshot(daemon.root)
    assert snap is not None and daemon_status(daemon.root)["responsive"] is True
    assert {s["state"] for s in snap["slots"]} <= {"idle", "busy"}
