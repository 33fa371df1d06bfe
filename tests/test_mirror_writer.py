"""The mirror writer on a real spool: coalescing, logs, and what happens when the
database fails (a write, the whole server, or the very first open)."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mofsim_core.mirror import Mirror
from mofsim_core.mirror_sqlite import SqliteMirror
from mofsimd.mirror_writer import MirrorWriter
from spool import Job, Spool, transitions
from spool.errors import DatabaseError
from spool.events import read_events
from tests.pg_helpers import TcpProxy, pg_schema


def new_job(**kw: Any) -> Job:
    return Job.from_dict(
        {"task_type": "single-point-energy", "model": "emt", "structure": "builtin:CALF-20", **kw}
    )


def queue_task(sp: Spool) -> Job:
    job = new_job()
    sp.submit(job)
    return job


def run_task(sp: Spool, job: Job, state: str = "COMPLETED", steps: int = 3) -> None:
    """What the supervisor does to a queued task, on the spool: claim, events, finish."""
    (queued,) = [q for q in sp.queued() if q.task_id == job.task_id]
    claimed = transitions.claim(sp.paths, queued.path, "cpu0", job.task_id)
    assert claimed is not None
    events = sp.events(job.task_id)
    events.status("ASSIGNED", "assigned to cpu0", slot="cpu0")
    events.status("RUNNING", "running")
    for i in range(steps):
        events.emit(f"step {i}", event="progress", progress=(i + 1) / steps)
    transitions.finish(sp.paths, claimed, state)
    events.status(state, f"Task {state.lower()}")


def n_events(sp: Spool, task_id: str) -> int:
    return sum(1 for _ in read_events(sp.paths.events_file(task_id)))


def assert_mirrored(sp: Spool, mirror: Mirror, task_ids: list[str]) -> None:
    """Every task in the mirror in its spool state, with every log line."""
    for tid in task_ids:
        row = mirror.get_task(tid)
        assert row is not None, tid
        assert row["status"] == sp.record(tid)["status"]
        assert len(mirror.task_logs(tid, limit=1000)) == n_events(sp, tid)


class Counting:
    """A real mirror that counts the writes reaching it."""

    def __init__(self, inner: SqliteMirror) -> None:
        self.inner = inner
        self.upserts: list[str] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def upsert_task(self, record: dict[str, Any]) -> None:
        self.upserts.append(record["task_id"])
        self.inner.upsert_task(record)


@pytest.fixture
def sp(tmp_path: Path) -> Spool:
    return Spool(tmp_path / "spool")


@pytest.fixture
def sqlite_mirror(tmp_path: Path) -> Iterator[SqliteMirror]:
    m = SqliteMirror(tmp_path / "mirror.db")
    yield m
    m.close()


def test_writes_coalesce_and_carry_logs(sp: Spool, sqlite_mirror: SqliteMirror) -> None:
    counting = Counting(sqlite_mirror)
    writer = MirrorWriter(sp, counting)  # type: ignore[arg-type]
    job = queue_task(sp)
    run_task(sp, job)
    for _ in range(5):  # queued before the thread starts: one batch
        writer.submit(job.task_id)
    writer.submit(job.task_id, with_logs=True)
    writer.start()
    assert writer.flush()
    writer.stop()
    assert counting.upserts == [job.task_id]
    assert_mirrored(sp, sqlite_mirror, [job.task_id])
    assert writer.caught_up and not writer.down and writer.failures == 0


def test_a_failing_row_stays_pending_while_others_are_written(
    sp: Spool, sqlite_mirror: SqliteMirror, tmp_path: Path
) -> None:
    bad, good = queue_task(sp), queue_task(sp)
    raw = sqlite3.connect(tmp_path / "mirror.db")
    raw.execute(
        f"CREATE TRIGGER refuse BEFORE INSERT ON tasks WHEN NEW.task_id = "
        f"'{bad.task_id}' BEGIN SELECT RAISE(ABORT, 'refused'); END"
    )
    raw.commit()
    downs: list[str] = []
    writer = MirrorWriter(sp, sqlite_mirror, backoff_s=60, on_mirror_down=downs.append)
    writer.start()
    try:
        writer.submit(bad.task_id)
        writer.submit(good.task_id)
        assert not writer.flush()
        assert set(writer.pending()) == {bad.task_id}
        assert sqlite_mirror.get_task(good.task_id) is not None
        assert not writer.down and downs == []  # the database answers: not an outage
        raw.execute("DROP TRIGGER refuse")
        raw.commit()
        writer.retry_now()
        assert writer.wait_caught_up(10)
        assert sqlite_mirror.get_task(bad.task_id) is not None
    finally:
        writer.stop()
        raw.close()


def test_unopenable_mirror_is_retried_and_pending_ids_survive_a_stop(
    sp: Spool, tmp_path: Path
) -> None:
    path = tmp_path / "db"
    path.mkdir()  # a directory: SQLite cannot open it
    pending_file = sp.paths.state_dir / "mirror_pending.json"
    events: list[str] = []
    writer = MirrorWriter(
        sp,
        opener=lambda: SqliteMirror(path),
        pending_file=pending_file,
        backoff_s=60,
        on_mirror_down=lambda r: events.append("down"),
        on_mirror_up=lambda: events.append("up"),
    )
    writer.start()
    jobs = [queue_task(sp) for _ in range(3)]
    run_task(sp, jobs[0])
    for job in jobs:
        writer.submit(job.task_id, with_logs=True)
    assert not writer.flush()
    assert writer.down and writer.mirror is None and events == ["down"]
    writer.stop()
    assert pending_file.exists()

    # The next daemon starts with the database back and writes what was left.
    path.rmdir()
    again = MirrorWriter(sp, opener=lambda: SqliteMirror(path), pending_file=pending_file)
    assert not pending_file.exists()
    again.start()
    try:
        assert again.wait_caught_up(10)
        assert again.mirror is not None
        assert_mirrored(sp, again.mirror, [j.task_id for j in jobs])
    finally:
        again.stop()
        if again.mirror is not None:
            again.mirror.close()
    assert not pending_file.exists()


def test_recovers_after_the_mirror_could_not_be_opened(sp: Spool, tmp_path: Path) -> None:
    path = tmp_path / "db"
    path.mkdir()
    events: list[str] = []

    def broken_hook(reason: str) -> None:
        events.append("down")
        raise RuntimeError("alert channel broken")  # must not stop the writer

    writer = MirrorWriter(
        sp,
        opener=lambda: SqliteMirror(path),
        backoff_s=60,
        on_mirror_down=broken_hook,
        on_mirror_up=lambda: events.append("up"),
    )
    writer.start()
    try:
        job = queue_task(sp)
        writer.submit(job.task_id)
        assert not writer.flush() and writer.down
        path.rmdir()
        writer.retry_now()
        assert writer.wait_caught_up(10)
        assert events == ["down", "up"] and not writer.down
        assert writer.mirror is not None and writer.mirror.get_task(job.task_id) is not None
    finally:
        writer.stop()
        if writer.mirror is not None:
            writer.mirror.close()


def test_a_lost_database_is_caught_up_when_it_returns(sp: Spool) -> None:
    """A real PostgreSQL behind a forwarder that is cut and restored: the spool moves on
    during the outage, and every task and log line reaches the mirror afterwards."""
    from mofsim_core.mirror_pg import PostgresMirror

    with pg_schema() as (schema, dsn):
        proxy = TcpProxy()
        through_proxy = PostgresMirror(proxy.url(schema))
        direct = PostgresMirror(dsn)
        events: list[str] = []
        writer = MirrorWriter(
            sp,
            through_proxy,
            backoff_s=0.05,
            backoff_max_s=0.5,
            on_mirror_down=lambda r: events.append("down"),
            on_mirror_up=lambda: events.append("up"),
        )
        writer.start()
        try:
            before = queue_task(sp)
            run_task(sp, before)
            writer.submit(before.task_id, with_logs=True)
            assert writer.flush()

            proxy.cut()
            during = [queue_task(sp) for _ in range(4)]
            for job in during:
                writer.submit(job.task_id)
            for job in during[:3]:
                run_task(sp, job, "FAILED" if job is during[2] else "COMPLETED")
                writer.submit(job.task_id, with_logs=True)
            assert not writer.flush()
            assert writer.down and events == ["down"]
            assert {sp.record(j.task_id)["status"] for j in during} == {
                "COMPLETED",
                "FAILED",
                "QUEUED",
            }
            assert set(writer.pending()) == {j.task_id for j in during}
            with pytest.raises(DatabaseError):
                through_proxy.get_task(before.task_id)

            proxy.restore()
            assert writer.wait_caught_up(30)
            assert events == ["down", "up"]
            assert_mirrored(sp, direct, [before.task_id] + [j.task_id for j in during[:3]])
            row = direct.get_task(during[3].task_id)
            assert row is not None and row["status"] == "QUEUED"
        finally:
            writer.stop()
            through_proxy.close()
            direct.close()
            proxy.close()
