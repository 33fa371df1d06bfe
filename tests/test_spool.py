"""The spool protocol against a real temporary directory and real processes."""

from __future__ import annotations

import json
import multiprocessing as mp
import os
from pathlib import Path

import pytest

from spool import Job, Spool, transitions
from spool.errors import TaskNotFound, TaskTerminal, ValidationError
from spool.events import read_events
from spool.intake import admit
from spool.recovery import sweep


def make_job(**kw) -> Job:
    base = {"task_type": "single-point-energy", "model": "emt", "structure": "builtin:MOF-5"}
    base.update(kw)
    return Job.from_dict(base)


def test_job_roundtrip_ignores_unknown_keys_and_fills_defaults() -> None:
    job = make_job(parameters={"fmax": 0.1})
    data = job.to_dict() | {"future_field": 1}
    again = Job.from_dict(data)
    assert again == job
    assert again.schema_version == 1 and again.attempts == 0
    assert again.structure == {"source": "builtin", "name": "MOF-5"}


def test_job_accepts_mira_names_and_rejects_bad_fields() -> None:
    job = Job.from_dict({"task_type": "Single_Point", "model_key": "7net-0", "structure_id": "abc"})
    # The spool checks the form of a task type's name; which names exist is the
    # executors' registry's business (see test_supervisor).
    assert job.task_type == "single-point"
    assert job.structure == {"source": "upload", "file_id": "abc"}
    with pytest.raises(ValidationError) as e:
        make_job(options={"priority": "URGENT"})
    assert e.value.field == "options.priority"
    for bad in ("dance/../x", "", "-dash", "a" * 65, "two words"):
        with pytest.raises(ValidationError) as e:
            make_job(task_type=bad)
        assert e.value.field == "task_type"
    with pytest.raises(ValidationError):
        make_job(task_id="../../etc/passwd")


def test_submit_publishes_in_priority_dir_in_fifo_order(tmp_path: Path) -> None:
    sp = Spool(tmp_path)
    low = make_job(options={"priority": "LOW"}, created_at=1)
    crit = make_job(options={"priority": "CRITICAL"}, created_at=3)
    norm_a = make_job(created_at=2)
    norm_b = make_job(created_at=4)
    for j in (norm_b, low, crit, norm_a):
        sp.submit(j)
    order = [q.task_id for q in sp.queued()]
    assert order == [crit.task_id, norm_a.task_id, norm_b.task_id, low.task_id]
    assert not list(sp.paths.tmp.iterdir())
    rec = sp.record(low.task_id)
    assert rec["status"] == "QUEUED" and rec["priority"] == "LOW"


def _race(root: str, name: str, slot: str, barrier, out) -> None:
    sp = Spool(root)
    src = next(q for q in sp.queued() if q.name == name)
    barrier.wait()
    got = transitions.claim(sp.paths, src.path, slot, src.task_id or "")
    out.put((slot, got is not None))


def test_claim_by_rename_has_exactly_one_winner_across_processes(tmp_path: Path) -> None:
    sp = Spool(tmp_path)
    ctx = mp.get_context("fork")
    for _ in range(5):
        job = make_job()
        sp.submit(job)
        name = job.file_name
        n = 6
        barrier = ctx.Barrier(n)
        out = ctx.Queue()
        procs = [
            ctx.Process(target=_race, args=(str(tmp_path), name, f"s{i}", barrier, out))
            for i in range(n)
        ]
        for p in procs:
            p.start()
        results = [out.get(timeout=30) for _ in procs]
        for p in procs:
            p.join()
        winners = [slot for slot, won in results if won]
        assert len(winners) == 1
        assert (sp.paths.claimed_dir(winners[0]) / f"{job.task_id}.json").exists()


def test_cancel_queued_is_immediate_and_terminal_is_refused(tmp_path: Path) -> None:
    sp = Spool(tmp_path)
    job = make_job()
    sp.submit(job)
    assert sp.request_cancel(job.task_id) == "CANCELLED"
    assert sp.record(job.task_id)["status"] == "CANCELLED"
    with pytest.raises(TaskTerminal):
        sp.request_cancel(job.task_id)
    with pytest.raises(TaskNotFound):
        sp.request_cancel("task_nope")


def test_cancel_of_claimed_task_leaves_marker(tmp_path: Path) -> None:
    sp = Spool(tmp_path)
    job = make_job()
    path = sp.submit(job)
    transitions.claim(sp.paths, path, "cpu0", job.task_id)
    assert sp.record(job.task_id)["status"] == "ASSIGNED"
    sp.events(job.task_id).status("RUNNING", slot="cpu0")
    assert sp.record(job.task_id)["status"] == "RUNNING"
    assert sp.request_cancel(job.task_id) == "CANCELLING"
    assert sp.cancel_requested(job.task_id)


def test_hand_dropped_file_is_adopted_and_malformed_is_rejected(tmp_path: Path) -> None:
    sp = Spool(tmp_path)
    drop = sp.paths.priority_dir(2) / "my job.json"
    drop.write_text(
        json.dumps(
            {
                "task_type": "optimization",
                "model": "emt",
                "structure": {"source": "builtin", "name": "MOF-5"},
            }
        )
    )
    bad = sp.paths.priority_dir(1) / "broken.json"
    bad.write_text("{not json")
    wrong = sp.paths.priority_dir(3) / "wrong.json"
    wrong.write_text(json.dumps({"task_type": "tele port", "model": "emt", "structure": "x"}))
    for q in sp.queued():
        assert admit(sp, q) is None
    names = [q.name for q in sp.queued()]
    assert len(names) == 1 and names[0].endswith(".json")
    (job_q,) = sp.queued()
    job = admit(sp, job_q)
    assert job is not None and job.task_type == "optimization" and job.priority == 2
    assert (sp.paths.workspace(job.task_id) / "submitted.json").exists()
    reasons = sorted(p.name for p in sp.paths.rejected.iterdir())
    assert reasons == ["broken.json", "broken.json.reason", "wrong.json", "wrong.json.reason"]
    assert "not valid JSON" in (sp.paths.rejected / "broken.json.reason").read_text()
    assert "task_type" in (sp.paths.rejected / "wrong.json.reason").read_text()


def test_validator_applies_to_hand_written_files_only(tmp_path: Path) -> None:
    sp = Spool(tmp_path)
    canonical = make_job()
    sp.submit(canonical)
    (sp.paths.priority_dir(2) / "hand.json").write_text(
        json.dumps({"task_type": "optimization", "model": "emt", "structure": "builtin:MOF-5"})
    )

    def no_emt(job: Job) -> None:
        raise ValidationError("model emt is not allowed here", field="model")

    results = {q.name: admit(sp, q, no_emt) for q in sp.queued()}
    assert results[canonical.file_name] == canonical
    reason = (sp.paths.rejected / "hand.json.reason").read_text()
    assert reason.startswith("40001") and "model" in reason


def test_events_are_whole_lines_with_offsets_as_ids(tmp_path: Path) -> None:
    sp = Spool(tmp_path)
    job = make_job()
    sp.submit(job)
    w = sp.events(job.task_id, gpu_id=3)
    for i in range(50):
        w.emit(f"step {i}", event="progress", progress=i / 50, step=i)
    evs = list(read_events(sp.paths.events_file(job.task_id)))
    assert len(evs) == 51
    assert evs[1].data["gpu_id"] == 3
    assert set(evs[1].data) >= {
        "timestamp",
        "level",
        "logger",
        "message",
        "task_id",
        "gpu_id",
        "extra",
    }
    tail = list(read_events(sp.paths.events_file(job.task_id), evs[40].offset))
    assert tail[0].data["message"] == evs[40].data["message"] and len(tail) == 11
    with open(sp.paths.events_file(job.task_id), "ab") as fh:
        fh.write(b'{"torn": ')
    assert len(list(read_events(sp.paths.events_file(job.task_id)))) == 51


def test_recovery_requeues_orphans_and_completes_finished_ones(tmp_path: Path) -> None:
    sp = Spool(tmp_path)
    a, b, c, d = (make_job() for _ in range(4))
    for j in (a, b, c, d):
        p = sp.submit(j)
        transitions.claim(sp.paths, p, "cpu0", j.task_id)
    transitions.atomic_write_json(sp.paths, sp.paths.result_file(b.task_id), {"energy": 1.0})
    # c was mid-requeue: both queued and claimed.
    transitions.publish(sp.paths, c.with_attempts(1))
    # d has exhausted its attempts.
    claimed_d = sp.paths.claimed_dir("cpu0") / f"{d.task_id}.json"
    claimed_d.unlink()
    transitions.atomic_write(sp.paths, claimed_d, d.with_attempts(2).to_json())
    rep = sweep(sp, max_attempts=3)
    assert rep.requeued == [a.task_id]
    assert rep.completed == [b.task_id]
    assert rep.dropped_duplicates == [c.task_id]
    assert rep.failed == [d.task_id]
    assert sp.load_job(a.task_id).attempts == 1
    assert sp.record(b.task_id)["status"] == "COMPLETED"
    assert sp.record(b.task_id)["result"] == {"energy": 1.0}
    assert sp.record(c.task_id)["status"] == "QUEUED"
    assert sp.record(d.task_id)["status"] == "FAILED"
    assert "3 times" in sp.record(d.task_id)["error"]["message"]
    assert os.listdir(sp.paths.claimed_dir("cpu0")) == []


def test_atomic_write_leaves_nothing_behind_on_failure(tmp_path: Path) -> None:
    from spool.errors import StorageError

    sp = Spool(tmp_path)
    with pytest.raises(StorageError):
        transitions.atomic_write(sp.paths, tmp_path / "missing-dir" / "x.json", b"{}")
    assert list(sp.paths.tmp.iterdir()) == []


def test_a_task_id_is_taken_once(tmp_path: Path) -> None:
    import shutil

    sp = Spool(tmp_path)
    sp.submit(make_job(task_id="mine-1"))
    with pytest.raises(ValidationError, match="already exists"):
        sp.submit(make_job(task_id="mine-1"))
    with pytest.raises(ValidationError, match="already exists"):
        sp.submit(make_job(task_id="mine-1"), fresh_id=True)  # its workspace holds it
    # Finished, and its workspace gone (retention): the job file still holds the id.
    claimed = transitions.claim(sp.paths, sp.queued()[0].path, "cpu0", "mine-1")
    assert claimed is not None
    transitions.finish(sp.paths, claimed, "COMPLETED")
    shutil.rmtree(sp.paths.workspace("mine-1"))
    found = sp.locate("mine-1")
    assert found is not None and found.state == "COMPLETED"
    with pytest.raises(ValidationError, match="already exists"):
        sp.submit(make_job(task_id="mine-1"))


def _submit_same(root: str, barrier, out) -> None:
    sp = Spool(root)
    barrier.wait()
    try:
        sp.submit(make_job(task_id="shared-id"))
        out.put(True)
    except ValidationError:
        out.put(False)


def test_concurrent_submits_of_one_id_have_one_winner(tmp_path: Path) -> None:
    Spool(tmp_path)
    ctx = mp.get_context("fork")
    barrier, out = ctx.Barrier(4), ctx.Queue()
    procs = [ctx.Process(target=_submit_same, args=(str(tmp_path), barrier, out)) for _ in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(30)
    assert sorted(out.get(timeout=5) for _ in procs) == [False, False, False, True]
    assert [q.task_id for q in Spool(tmp_path).queued()] == ["shared-id"]


def test_a_failed_publish_leaves_the_id_free(tmp_path: Path) -> None:
    from spool.errors import StorageError

    sp = Spool(tmp_path)
    job = make_job(task_id="retry-me")
    queue_dir = sp.paths.priority_dir(job.priority)
    queue_dir.rmdir()
    queue_dir.write_text("not a directory")  # the rename into the queue fails
    with pytest.raises(StorageError):
        sp.submit(job, fresh_id=True)
    assert not sp.paths.workspace("retry-me").exists()
    queue_dir.unlink()
    queue_dir.mkdir()
    sp.submit(job)
    assert sp.record("retry-me")["status"] == "QUEUED"


def test_recovery_refused_by_a_full_disk_defers_the_claim(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A daemon starting on a full disk must start: the claim stays, reported deferred."""
    from spool.errors import StorageError

    sp = Spool(tmp_path)
    job = make_job()
    transitions.claim(sp.paths, sp.submit(job), "cpu0", job.task_id)

    def full(*args: object, **kwargs: object) -> Path:
        raise StorageError("cannot write: No space left on device")

    monkeypatch.setattr(transitions, "requeue", full)
    rep = sweep(sp, max_attempts=3)
    assert rep.deferred == [job.task_id] and rep.requeued == []
    assert sp.record(job.task_id)["status"] != "QUEUED"
    monkeypatch.undo()
    rep = sweep(sp, max_attempts=3)  # space is back
    assert rep.requeued == [job.task_id] and sp.record(job.task_id)["status"] == "QUEUED"


@pytest.mark.parametrize("shorthand", ["", "builtin:", "upload:"])
def test_an_empty_structure_shorthand_is_refused_at_once(shorthand: str) -> None:
    """Not accepted now and refused once written out and read back (a job adopted
    from a hand-written file would leave a task behind in rejected/)."""
    with pytest.raises(ValidationError):
        Job.from_dict({"task_type": "single-point", "model": "emt", "structure": shorthand})


def test_structure_shorthands_survive_a_round_trip() -> None:
    for shorthand in ("builtin:HKUST-1", "upload:abc", "/data/mof.cif"):
        job = Job.from_dict({"task_type": "single-point", "model": "emt", "structure": shorthand})
        assert Job.from_dict(job.to_dict()).structure == job.structure
