"""The daemon as a user meets it: a real process, real executors, a real spool."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest

from spool import Spool
from spool.events import read_events
from tests.daemon_helpers import (
    Daemon,
    quick_job,
    slow_job,
    status,
    status_events,
    wait_for,
)

TERMINAL = ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT")


# A job of a few seconds: bounded steps, never converging.
def bounded_job(steps: int = 250):
    return slow_job(
        parameters={
            "fmax": 1e-30,
            "max_steps": steps,
            "optimizer": "FIRE",
            "trajectory_interval": 1_000_000,
        }
    )


def done(sp: Spool, task_id: str) -> bool:
    return status(sp, task_id) in TERMINAL


def test_submitted_and_hand_dropped_jobs_run_malformed_is_rejected(tmp_path: Path) -> None:
    sp = Spool(tmp_path / "spool")
    with Daemon(sp.root):
        job = quick_job()
        sp.submit(job)
        (sp.paths.priority_dir(2) / "broken.json").write_text('{"task_type": ')
        (sp.paths.priority_dir(2) / "teleport.json").write_text(
            json.dumps({"task_type": "teleport", "model": "emt", "structure": job.structure})
        )
        hand = sp.paths.tmp / "by-hand.json"
        # An alias, as people write it: adopted under the task type's canonical name.
        hand.write_text(
            json.dumps({"task_type": "Single_Point", "model": "emt", "structure": job.structure})
        )
        os.rename(hand, sp.paths.priority_dir(2) / "by-hand.json")
        wait_for(lambda: done(sp, job.task_id), what="submitted job")
        wait_for(lambda: (sp.paths.rejected / "broken.json.reason").exists(), what="reject")
        wait_for(lambda: (sp.paths.rejected / "teleport.json.reason").exists(), what="reject")
        adopted = wait_for(
            lambda: [r for r in sp.records() if r["task_id"] != job.task_id],
            what="hand-dropped job adopted",
        )
        hand_id = adopted[0]["task_id"]
        wait_for(lambda: done(sp, hand_id), what="hand-dropped job")
        unknown = quick_job(model="no-such-model")
        sp.submit(unknown)
        wait_for(lambda: done(sp, unknown.task_id), what="unknown model")
        zr_on_emt = quick_job(structure="builtin:UiO-66")  # EMT knows no Zr
        sp.submit(zr_on_emt)
        wait_for(lambda: done(sp, zr_on_emt.task_id), what="unsupported element")
    rec = sp.record(job.task_id)
    assert rec["status"] == "COMPLETED"
    assert rec["result"]["result"]["energy_eV"] == pytest.approx(
        sp.record(hand_id)["result"]["result"]["energy_eV"]
    )
    assert rec["started_at"] and rec["completed_at"]
    assert sp.record(hand_id)["status"] == "COMPLETED"
    assert sp.record(hand_id)["task_type"] == "single-point-energy"
    reason = (sp.paths.rejected / "teleport.json.reason").read_text()
    assert reason.startswith("40001") and "unknown task type 'teleport'" in reason
    assert "(field: task_type)" in reason
    assert "not valid JSON" in (sp.paths.rejected / "broken.json.reason").read_text()
    bad = sp.record(unknown.task_id)
    assert bad["status"] == "FAILED" and bad["error"]["code"] == 30001
    assert "no-such-model" in bad["error"]["message"]
    zr = sp.record(zr_on_emt.task_id)
    assert zr["status"] == "FAILED" and zr["error"]["code"] == 40002
    assert "Zr" in zr["error"]["message"]


def test_critical_runs_before_queued_low_tasks(tmp_path: Path) -> None:
    sp = Spool(tmp_path / "spool")
    with Daemon(sp.root):
        blocker = slow_job()
        sp.submit(blocker)
        wait_for(lambda: status(sp, blocker.task_id) == "RUNNING", what="blocker running")
        lows = [quick_job(options={"priority": "LOW"}) for _ in range(10)]
        for j in lows:
            sp.submit(j)
        crit = quick_job(options={"priority": "CRITICAL"})
        sp.submit(crit)
        sp.request_cancel(blocker.task_id)
        wait_for(lambda: all(done(sp, j.task_id) for j in [crit, *lows]), 120, "all tasks")
    assert status(sp, blocker.task_id) == "CANCELLED"

    def assigned_at(task_id: str) -> str:
        return next(
            e.data["timestamp"]
            for e in read_events(sp.paths.events_file(task_id))
            if e.kind == "status" and e.data["extra"]["status"] == "ASSIGNED"
        )

    order = sorted([crit, *lows], key=lambda j: assigned_at(j.task_id))
    assert order[0].task_id == crit.task_id
    assert [j.task_id for j in order[1:]] == [j.task_id for j in lows]  # FIFO within LOW


def test_cancel_running_and_timeout_end_in_their_states(tmp_path: Path) -> None:
    sp = Spool(tmp_path / "spool")
    with Daemon(sp.root, slots="cpu:2"):
        to_cancel = slow_job()
        to_time_out = slow_job(options={"timeout": 2})
        sp.submit(to_cancel)
        sp.submit(to_time_out)
        wait_for(lambda: status(sp, to_cancel.task_id) == "RUNNING", what="running")
        assert sp.request_cancel(to_cancel.task_id) == "CANCELLING"
        wait_for(lambda: done(sp, to_cancel.task_id), 20, "cancel")
        wait_for(lambda: done(sp, to_time_out.task_id), 30, "timeout")
        after = quick_job()
        sp.submit(after)
        wait_for(lambda: done(sp, after.task_id), 60, "slot back after the kill")
    assert status(sp, to_cancel.task_id) == "CANCELLED"
    timed = sp.record(to_time_out.task_id)
    assert timed["status"] == "TIMEOUT" and timed["error"]["code"] == 50002
    assert status(sp, after.task_id) == "COMPLETED"
    assert not sp.paths.cancel_marker(to_cancel.task_id).exists()


def test_kill9_mid_run_then_restart_completes_exactly_once(tmp_path: Path) -> None:
    sp = Spool(tmp_path / "spool")
    # Long enough that a heavily loaded machine cannot finish it before the kill.
    job = bounded_job(500)
    sp.submit(job)
    d = Daemon(sp.root).start()
    wait_for(
        lambda: any(e.kind == "progress" for e in read_events(sp.paths.events_file(job.task_id))),
        60,
        "progress",
    )
    d.kill9()
    assert status(sp, job.task_id) == "RUNNING"  # what the spool says of an orphan
    with Daemon(sp.root):
        wait_for(lambda: done(sp, job.task_id), 120, "completion after restart")
    rec = sp.record(job.task_id)
    assert rec["status"] == "COMPLETED" and rec["attempts"] == 1
    assert status_events(sp, job.task_id).count("COMPLETED") == 1
    assert rec["result"]["result"]["steps"] == 500


def test_crashed_executor_is_restarted_and_its_task_retried(tmp_path: Path) -> None:
    sp = Spool(tmp_path / "spool")
    job = bounded_job()
    sp.submit(job)
    with Daemon(sp.root):
        running = wait_for(
            lambda: [
                e
                for e in read_events(sp.paths.events_file(job.task_id))
                if e.kind == "status" and e.data["extra"]["status"] == "RUNNING"
            ],
            60,
            "running",
        )
        os.kill(running[0].data["extra"]["pid"], signal.SIGKILL)
        wait_for(lambda: done(sp, job.task_id), 120, "retry")
        other = quick_job()
        sp.submit(other)
        wait_for(lambda: done(sp, other.task_id), 60, "other")
    rec = sp.record(job.task_id)
    assert rec["status"] == "COMPLETED" and rec["attempts"] == 1
    assert status_events(sp, job.task_id).count("RUNNING") == 2
    assert status(sp, other.task_id) == "COMPLETED"


def test_sigterm_requeues_running_task_without_counting_an_attempt(tmp_path: Path) -> None:
    sp = Spool(tmp_path / "spool")
    job = slow_job()
    sp.submit(job)
    d = Daemon(sp.root, shutdown_grace_s=0.5).start()
    wait_for(lambda: status(sp, job.task_id) == "RUNNING", 60, "running")
    assert d.stop() == 0
    rec = sp.record(job.task_id)
    assert rec["status"] == "QUEUED" and rec["attempts"] == 0
    assert list(sp.paths.claimed.rglob("*.json")) == []


def test_model_affinity_sends_jobs_to_the_slot_holding_their_model(tmp_path: Path) -> None:
    sp = Spool(tmp_path / "spool")
    with Daemon(sp.root, slots="simulate:2"):
        slots = {}
        for model in ("emt", "lj", "emt", "lj", "emt"):
            j = quick_job(model=model)
            sp.submit(j)
            wait_for(lambda j=j: done(sp, j.task_id), 60, model)
            rec = sp.record(j.task_id)
            assert rec["status"] == "COMPLETED", rec["error"]
            slots.setdefault(model, set()).add(rec["slot"])
    assert len(slots["emt"]) == 1 and len(slots["lj"]) == 1
    assert slots["emt"] != slots["lj"]


def test_second_daemon_on_same_spool_refuses(tmp_path: Path) -> None:
    sp = Spool(tmp_path / "spool")
    with Daemon(sp.root):
        second = Daemon(sp.root)
        with pytest.raises(AssertionError, match="another mofsim daemon"):
            second.start()


def test_a_spare_card_stands_in_only_while_a_compute_card_is_lost(tmp_path: Path) -> None:
    from mofsim_core.devices_simulated import SimulatedBackend

    sp = Spool(tmp_path / "spool")
    with Daemon(sp.root, slots="simulate:2", spare_slots="1"):
        first = [quick_job() for _ in range(3)]
        for job in first:
            sp.submit(job)
        for job in first:
            wait_for(lambda job=job: done(sp, job.task_id), what="task on the compute card")
        assert {sp.record(j.task_id)["slot"] for j in first} == {"sim0"}

        cards = SimulatedBackend(2, state_file=sp.paths.state_dir / "simulated-devices.json")
        cards.lose(0)
        standing_in = quick_job()
        sp.submit(standing_in)
        wait_for(lambda: done(sp, standing_in.task_id), what="task on the spare card")
        assert sp.record(standing_in.task_id)["slot"] == "sim1"

        cards.restore(0)
        wait_for(
            lambda: (
                json.loads((sp.paths.state_dir / "slots.json").read_text())["slots"][0]["state"]
                == "idle"
            ),
            what="the compute card back",
        )
        back = quick_job()
        sp.submit(back)
        wait_for(lambda: done(sp, back.task_id), what="task after the card is back")
        assert sp.record(back.task_id)["slot"] == "sim0"
    snapshot = json.loads((sp.paths.state_dir / "slots.json").read_text())
    assert [s["spare"] for s in snapshot["slots"]] == [False, True]
