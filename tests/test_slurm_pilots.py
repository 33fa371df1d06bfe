"""Pilots on a real Slurm: the single-node cluster of ``scripts/slurm-up`` (``make
slurm-up``) on this machine, its spool shared with the node by being on the same disk.
Without a running Slurm these tests skip, saying why."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from mofsim_cli.system_cmd import gpus_blocks
from mofsim_core.inventory import gpu_inventory
from mofsim_core.slot_state import read_snapshot
from mofsimd import pilot_channel, slurm_cli
from spool import Spool
from spool.events import read_events
from tests.daemon_helpers import (
    Daemon,
    LiveServer,
    quick_job,
    slow_job,
    status,
    status_events,
    wait_for,
)

FAST = {"poll_s": 0.5, "heartbeat_stale_s": 3.0, "idle_s": 3.0, "time_limit": "00:15:00"}


def _slurm_problem() -> str | None:
    if shutil.which("sbatch") is None or shutil.which("squeue") is None:
        return "Slurm's commands are not installed (make slurm-up sets up a local Slurm)"
    try:
        out = subprocess.run(
            ["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"sinfo does not answer: {exc}"
    states = out.stdout.split()
    if out.returncode != 0 or not any(s.rstrip("*") in ("idle", "mixed") for s in states):
        return f"no idle Slurm node (sinfo: {out.stdout.strip() or out.stderr.strip()})"
    return None


@pytest.fixture(scope="module")
def slurm() -> None:
    problem = _slurm_problem()
    if problem is not None:
        pytest.skip(problem)


@pytest.fixture
def spool(tmp_path: Path, slurm: None) -> Iterator[Spool]:
    sp = Spool(tmp_path / "spool")
    yield sp
    # Whatever a failed test left behind must not hold the node's CPUs.
    live = [i for i, j in _pilots(sp).items() if j.live]
    slurm_cli.cancel(live)


def _pilots(sp: Spool) -> dict[str, slurm_cli.JobInfo]:
    return slurm_cli.query(pilot_channel.job_name(sp.root))


def _wait_states(sp: Spool, states: set[str]) -> None:
    """Slurm passes through COMPLETING on the way to an end state."""
    wait_for(lambda: {j.state for j in _pilots(sp).values()} == states, 30, f"pilots {states}")


def _slots(sp: Spool) -> list[dict[str, Any]]:
    snap = read_snapshot(sp.root)
    return list(snap["slots"]) if snap else []


def _slot_of(sp: Spool, task_id: str) -> str | None:
    for e in read_events(sp.paths.events_file(task_id)):
        if e.kind == "status" and e.data["extra"].get("status") == "ASSIGNED":
            slot = e.data["extra"].get("slot")
    return slot if "slot" in locals() else None


def _lj_job() -> Any:
    return quick_job(model="lj")


def test_pilots_run_jobs_warm_and_leave_when_idle(spool: Spool) -> None:
    d = Daemon(spool.root, "slurm", slurm={**FAST, "max_pilots": 2}).start()
    try:
        jobs = [quick_job() if i % 2 else _lj_job() for i in range(8)]
        for job in jobs:
            spool.submit(job)
        wait_for(lambda: all(status(spool, j.task_id) == "COMPLETED" for j in jobs), 120, "8 tasks")
        slots = {_slot_of(spool, j.task_id) for j in jobs}
        pilots = _pilots(spool)
        assert 1 <= len(pilots) <= 2  # never more than max_pilots
        assert slots <= {pilot_channel.slot_id(i, "cpu") for i in pilots}
        for job in jobs:
            result = json.loads(spool.paths.result_file(job.task_id).read_text())
            assert result["provenance"]["slot"].startswith("slurm:")
            assert status_events(spool, job.task_id).count("RUNNING") == 1
        # Warm: the same pilot ran both models more than once without loading again.
        loads = [
            e
            for j in jobs
            for e in read_events(spool.paths.events_file(j.task_id))
            if e.data.get("extra", {}).get("load_seconds") is not None
        ]
        assert len(loads) < len(jobs)
        # min_pilots is 0: idle pilots leave by themselves, ending their Slurm jobs.
        wait_for(lambda: not any(j.live for j in _pilots(spool).values()), 60, "pilots to leave")
        _wait_states(spool, {"COMPLETED"})
    finally:
        d.stop()


def test_scancel_of_a_busy_pilot_requeues_its_task_once_as_an_attempt(spool: Spool) -> None:
    d = Daemon(spool.root, "slurm", slurm={**FAST, "max_pilots": 1}).start()
    try:
        job = slow_job(options={"timeout": 600})
        spool.submit(job)
        wait_for(lambda: status(spool, job.task_id) == "RUNNING", 60, "the task to run")
        first = _slot_of(spool, job.task_id)
        assert first is not None
        job_id = first.split(":")[1]
        slurm_cli.cancel([job_id])
        # It runs again elsewhere: a new pilot, since the first one is gone.
        wait_for(
            lambda: (
                _slot_of(spool, job.task_id) not in (None, first)
                and status(spool, job.task_id) == "RUNNING"
            ),
            90,
            "the task to run on another pilot",
        )
        events = status_events(spool, job.task_id)
        assert events.count("QUEUED") == 2  # submitted, then requeued once
        assert events.count("RUNNING") == 2
        assert spool.record(job.task_id)["attempts"] == 1
        assert _pilots(spool)[job_id].state == "CANCELLED"
        spool.request_cancel(job.task_id)
        wait_for(lambda: status(spool, job.task_id) == "CANCELLED", 30, "the cancel")
    finally:
        d.stop()


def test_a_pilot_that_cannot_start_is_shown_pending_with_slurms_reason(spool: Spool) -> None:
    # "ghost" is the feature of a node that never comes (scripts/slurm-up).
    config = {**FAST, "min_pilots": 1, "max_pilots": 1, "sbatch_options": ["--constraint=ghost"]}
    d = Daemon(spool.root, "slurm", slurm=config).start()
    try:
        pending = wait_for(
            lambda: [s for s in _slots(spool) if s["state"] == "pending" and s["pilot"]["reason"]],
            30,
            "a pending pilot with a reason",
        )
        pilot = pending[0]["pilot"]
        assert pilot["state"] == "PENDING"
        assert "ReqNodeNotAvail" in pilot["reason"] or "Resources" in pilot["reason"]
        inventory = gpu_inventory(spool.root, direct=lambda: (None, "unused"))
        assert inventory["gpus"][0]["pilot"]["job_id"] == pilot["job_id"]
        # The CLI's table of pilots, the API and /metrics say the same.
        table = gpus_blocks(inventory)[1]
        assert table.title == "Slurm pilots"
        assert pilot["reason"] in str(table.rows)
        server = LiveServer(spool.root).start()
        try:
            api = httpx.get(server.url + "/api/v1/system/gpus").json()["data"]
            assert api["gpus"][0]["pilot"]["state"] == "PENDING"
            assert f"Slurm job {pilot['job_id']}, PENDING" in api["gpus"][0]["name"]
            metrics = httpx.get(server.url + "/metrics").text
            assert f'job_id="{pilot["job_id"]}"' in metrics and 'state="PENDING"' in metrics
        finally:
            server.close()
        job = quick_job()
        spool.submit(job)
        # No second pilot beyond max_pilots, and the task waits for one that runs.
        assert len(_pilots(spool)) == 1
        assert status(spool, job.task_id) == "QUEUED"
    finally:
        d.stop()
    # on_stop = "cancel": the daemon takes its pilots with it.
    _wait_states(spool, {"CANCELLED"})


@pytest.mark.parametrize("how", ["kill -9", "stop keeping the pilots"])
def test_a_restarted_daemon_adopts_running_pilots_and_their_tasks(spool: Spool, how: str) -> None:
    config = {**FAST, "min_pilots": 1, "max_pilots": 1, "on_stop": "keep", "idle_s": 60}
    d = Daemon(spool.root, "slurm", slurm=config).start()
    warm = quick_job()
    spool.submit(warm)
    wait_for(lambda: status(spool, warm.task_id) == "COMPLETED", 60, "the first task")
    slot = _slot_of(spool, warm.task_id)
    # Some seconds of FIRE steps: still running when the daemon dies, over soon
    # after (an orphan's claim waits for its holder; nobody else times it out).
    busy = slow_job(
        parameters={
            "fmax": 1e-30,
            "max_steps": 1500,
            "optimizer": "FIRE",
            "trajectory_interval": 10**6,
        }
    )
    spool.submit(busy)
    wait_for(lambda: status(spool, busy.task_id) == "RUNNING", 30, "the second task")
    if how == "kill -9":
        d.kill9()  # the pilot is a Slurm job: it does not die with the daemon
    else:
        assert d.stop(timeout=20) == 0  # on_stop = "keep": no wait for the running task
        assert status(spool, busy.task_id) == "RUNNING"
    (job_id,) = _pilots(spool)
    assert _pilots(spool)[job_id].state == "RUNNING"
    d2 = Daemon(spool.root, "slurm", slurm={**config, "on_stop": "cancel"}).start()
    try:
        # No second pilot was submitted, and the adopted one serves the new daemon.
        after = quick_job()
        spool.submit(after)
        wait_for(lambda: status(spool, after.task_id) == "COMPLETED", 60, "a task after")
        assert list(_pilots(spool)) == [job_id]
        assert _slot_of(spool, after.task_id) == slot
        # Warm: the adopted pilot had the model loaded already.
        assert not [
            e
            for e in read_events(spool.paths.events_file(after.task_id))
            if e.data.get("extra", {}).get("load_seconds") is not None
        ]
        wait_for(
            lambda: status(spool, busy.task_id) not in ("RUNNING", "ASSIGNED", "QUEUED"),
            60,
            "the running task to end",
        )
        assert status_events(spool, busy.task_id).count("RUNNING") == 1
    finally:
        d2.stop()
    _wait_states(spool, {"CANCELLED"})


@pytest.mark.slow
def test_sevennet_single_point_on_a_pilot(spool: Spool) -> None:
    d = Daemon(spool.root, "slurm", slurm={**FAST, "max_pilots": 1}).start()
    try:
        job = quick_job(model="7net-0")
        spool.submit(job)
        wait_for(lambda: status(spool, job.task_id) == "COMPLETED", 300, "SevenNet-0")
        result = json.loads(spool.paths.result_file(job.task_id).read_text())
        assert result["provenance"]["slot"].startswith("slurm:")
        assert result["result"]["energy_eV"] < 0
    finally:
        d.stop()


def test_pilots_take_no_task_their_time_limit_would_cut_and_leave_before_it(
    spool: Spool,
) -> None:
    config = {
        **FAST,
        "max_pilots": 1,
        "time_limit": "00:02:00",
        "leave_before_end_s": 110.0,
        "idle_s": 600.0,
    }
    d = Daemon(spool.root, "slurm", slurm=config).start()
    try:
        too_long = quick_job(options={"expected_duration": 300})
        fits = quick_job(options={"timeout": 60})
        spool.submit(too_long)
        spool.submit(fits)
        wait_for(lambda: status(spool, fits.task_id) == "COMPLETED", 60, "the short task")
        # Less than leave_before_end_s left: the idle pilot ends its job, long before
        # idle_s, and no other pilot is started for a task none could finish.
        wait_for(lambda: not any(j.live for j in _pilots(spool).values()), 60, "the pilot to go")
        _wait_states(spool, {"COMPLETED"})
        assert len(_pilots(spool)) == 1
        assert status(spool, too_long.task_id) == "QUEUED"
        said = [e.data["message"] for e in read_events(spool.paths.events_file(too_long.task_id))]
        assert any("No Slurm pilot can run this task" in m for m in said)
    finally:
        d.stop()


def test_a_submission_slurm_refuses_is_shown_with_its_reason(spool: Spool) -> None:
    config = {**FAST, "min_pilots": 1, "partition": "nosuchpartition"}
    d = Daemon(spool.root, "slurm", slurm=config).start()
    try:
        (shown,) = wait_for(
            lambda: [s for s in _slots(spool) if s.get("pilot", {}).get("state") == "REJECTED"],
            30,
            "the refused submission in the snapshot",
        )
        assert "invalid partition" in shown["pilot"]["reason"].lower()
        assert shown["name"].startswith("Slurm submission, REJECTED (sbatch failed")
        assert shown["state"] == "down" and not _pilots(spool)
    finally:
        d.stop()


def test_a_pilot_its_daemon_abandoned_leaves_and_one_pinged_stays(spool: Spool) -> None:
    config = {**FAST, "min_pilots": 1, "on_stop": "keep", "abandon_after_s": 4.0}
    d = Daemon(spool.root, "slurm", slurm=config).start()
    try:
        wait_for(lambda: [s for s in _slots(spool) if s["state"] == "idle"], 60, "a ready pilot")
        (job_id,) = _pilots(spool)
        ready_at = pilot_channel.read_heartbeat(pilot_channel.pilot_dir(spool.root, job_id))
        assert ready_at is not None
        # Twice the abandon time with the daemon there: the pings keep it.
        wait_for(
            lambda: (
                (
                    pilot_channel.read_heartbeat(pilot_channel.pilot_dir(spool.root, job_id)) or {}
                ).get("t", 0)
                > ready_at["t"] + 8
            ),
            30,
            "8 s of heartbeats",
        )
        assert _pilots(spool)[job_id].state == "RUNNING"
    finally:
        d.stop()
    assert _pilots(spool)[job_id].state == "RUNNING"  # kept for a next daemon
    _wait_states(spool, {"COMPLETED"})  # which does not come: it leaves by itself


def test_timeouts_and_cancels_end_tasks_on_a_pilot_which_serves_on(spool: Spool) -> None:
    d = Daemon(spool.root, "slurm", slurm={**FAST, "max_pilots": 1}).start()
    try:
        timed = slow_job(options={"timeout": 3})
        spool.submit(timed)
        wait_for(lambda: status(spool, timed.task_id) == "TIMEOUT", 60, "the timeout")
        cancelled = slow_job()
        spool.submit(cancelled)
        wait_for(lambda: status(spool, cancelled.task_id) == "RUNNING", 30, "the second task")
        spool.request_cancel(cancelled.task_id)
        wait_for(lambda: status(spool, cancelled.task_id) == "CANCELLED", 30, "the cancel")
        after = quick_job()
        spool.submit(after)
        wait_for(lambda: status(spool, after.task_id) == "COMPLETED", 30, "a task after")
        # One pilot did all three: its executor was replaced, the Slurm job stayed.
        assert len(_pilots(spool)) == 1
        assert len({_slot_of(spool, j.task_id) for j in (timed, cancelled, after)}) == 1
    finally:
        d.stop()


def test_a_daemon_stopped_with_drain_lets_its_pilots_leave(spool: Spool) -> None:
    config = {**FAST, "min_pilots": 1, "on_stop": "drain"}
    d = Daemon(spool.root, "slurm", slurm=config).start()
    try:
        wait_for(lambda: [s for s in _slots(spool) if s["state"] == "idle"], 60, "a ready pilot")
    finally:
        d.stop()
    _wait_states(spool, {"COMPLETED"})  # ended by itself, not cancelled
