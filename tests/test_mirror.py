"""The mirror on real databases, every test against both backends: an SQLite file and
a throw-away schema of the local PostgreSQL server (skipped when it is not reachable).
Records, lists, logs, rebuild, threads."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from mofsim_core import mirror as mirror_mod
from mofsim_core.mirror import Mirror
from mofsim_core.mirror_sqlite import SqliteMirror
from spool.errors import DatabaseError, ValidationError
from spool.states import ALL_STATES as TASK_STATES
from tests.pg_helpers import pg_schema, raw_execute


@dataclass
class Store:
    """Where one backend keeps a mirror: opens mirrors on it, runs raw SQL in it."""

    kind: str
    opener: Callable[[], Mirror]
    execute: Callable[[str], Any]
    opened: list[Mirror] = field(default_factory=list)

    def open(self) -> Mirror:
        m = self.opener()
        self.opened.append(m)
        return m


@pytest.fixture(params=["sqlite", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    if request.param == "sqlite":
        path = tmp_path / "mirror.db"

        def sqlite_execute(sql: str) -> None:
            raw = sqlite3.connect(path)
            raw.execute(sql)
            raw.commit()
            raw.close()

        st = Store("sqlite", lambda: SqliteMirror(path), sqlite_execute)
        yield st
        for m in st.opened:
            m.close()
        return
    from mofsim_core.mirror_pg import PostgresMirror

    with pg_schema() as (schema, dsn):
        st = Store(
            "postgres",
            lambda: PostgresMirror(dsn),
            lambda sql: raw_execute(f"SET search_path TO {schema}; {sql}"),
        )
        try:
            yield st
        finally:
            for m in st.opened:
                m.close()


@pytest.fixture
def db(store: Store) -> Mirror:
    return store.open()


def record(task_id: str, **over: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "task_id": task_id,
        "task_type": "optimization",
        "model": "7net-0",
        "status": "QUEUED",
        "priority": "NORMAL",
        "created_at": "2025-12-30T10:00:00.000Z",
        "started_at": None,
        "completed_at": None,
        "slot": None,
        "gpu_id": None,
        "attempts": 0,
        "progress": None,
        "structure_name": "MOF-5",
        "error": None,
        "result": None,
        "parameters": {"fmax": 0.001},
        "options": {"priority": "NORMAL"},
        "owner": None,
    }
    base.update(over)
    return base


def events(*levels: str, start: int = 1) -> list[dict[str, Any]]:
    return [
        {
            "timestamp": f"2025-12-30T10:00:0{i % 10}.000Z",
            "level": lv,
            "logger": "task.optimization",
            "message": f"event {start + i}",
            "task_id": "x",
            "gpu_id": 0,
            "extra": {"step": start + i},
            "seq": start + i,
            "event": "log",
        }
        for i, lv in enumerate(levels)
    ]


# --- opening -------------------------------------------------------------------------------


def test_open_creates_schema_and_reopening_keeps_data(store: Store) -> None:
    m = store.open()
    assert m.schema_version() == len(mirror_mod.MIGRATIONS)
    m.upsert_task(record("t1"))
    m.close()
    again = store.open()  # reopening applies nothing twice and keeps the data
    assert again.schema_version() == len(mirror_mod.MIGRATIONS)
    assert again.get_task("t1") is not None


def test_sqlite_file_in_wal_mode_with_indexes(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "dir" / "mirror.db"
    SqliteMirror(path).close()
    raw = sqlite3.connect(path)
    assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    tables = {r[0] for r in raw.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"schema_version", "tasks", "task_logs"} <= tables
    indexed = {
        r[0] for r in raw.execute("SELECT sql FROM sqlite_master WHERE type='index'") if r[0]
    }
    for column in ("status", "task_type", "model", "created_at"):
        assert any(f"[{column}]" in sql or f'"{column}"' in sql for sql in indexed), column
    raw.close()


def test_newer_schema_is_refused(store: Store) -> None:
    store.open().close()
    store.execute("INSERT INTO schema_version (version, applied_at) VALUES (99, 'later')")
    with pytest.raises(DatabaseError, match="newer"):
        store.open()


def test_unopenable_sqlite_database_raises_database_error(tmp_path: Path) -> None:
    with pytest.raises(DatabaseError):
        SqliteMirror(tmp_path)  # a directory
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"this is not a database file at all" * 100)
    with pytest.raises(DatabaseError):
        SqliteMirror(junk)


def test_closed_mirror_raises_database_error(store: Store) -> None:
    m = store.open()
    m.ping()
    m.close()
    for call in (lambda: m.get_task("t1"), lambda: m.upsert_task(record("t1")), m.ping):
        with pytest.raises(DatabaseError):
            call()


def test_locked_sqlite_database_is_a_database_error_and_recovers(tmp_path: Path) -> None:
    path = tmp_path / "m.db"
    m = SqliteMirror(path, busy_timeout_s=0.05)
    m.upsert_task(record("t1"))
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another writer holds the lock
    try:
        with pytest.raises(DatabaseError):
            m.upsert_task(record("t2"))
        assert m.get_task("t1") is not None  # WAL: reads go on meanwhile
    finally:
        other.execute("ROLLBACK")
        other.close()
    m.upsert_task(record("t2"))
    assert m.list_tasks()[1] == 2
    m.close()


# --- tasks -----------------------------------------------------------------------------------


def test_upsert_round_trip_and_partial_update(db: Mirror) -> None:
    db.upsert_task(record("t1", unknown_key="ignored", parameters={"fmax": 0.001, "n": [1, 2]}))
    got = db.get_task("t1")
    assert got is not None
    assert got == {**record("t1", parameters={"fmax": 0.001, "n": [1, 2]})}
    assert "unknown_key" not in got

    # A transition sends only what changed; the rest stays.
    db.upsert_task(
        {
            "task_id": "t1",
            "status": "running",
            "slot": "gpu0",
            "gpu_id": 0,
            "started_at": "2025-12-30T10:00:05.000Z",
            "progress": 0.25,
        }
    )
    got = db.get_task("t1")
    assert got is not None
    assert got["status"] == "RUNNING" and got["slot"] == "gpu0" and got["gpu_id"] == 0
    assert got["progress"] == 0.25 and got["model"] == "7net-0"
    assert got["parameters"] == {"fmax": 0.001, "n": [1, 2]}

    db.upsert_task(
        {
            "task_id": "t1",
            "status": "FAILED",
            "error": {"code": 50006, "message": "diverged"},
            "attempts": 2,
        }
    )
    got = db.get_task("t1")
    assert got is not None
    assert got["error"] == {"code": 50006, "message": "diverged"} and got["attempts"] == 2
    db.upsert_task({"task_id": "t1", "error": None, "result": {"energy": -1.5}})
    got = db.get_task("t1")
    assert got is not None and got["error"] is None and got["result"] == {"energy": -1.5}
    assert db.get_task("missing") is None


def test_values_are_normalized(db: Mirror) -> None:
    db.upsert_task(
        {
            "task_id": "t2",
            "created_at": 1767088800123,
            "priority": 0,
            "completed_at": datetime(2025, 12, 30, 10, 5, tzinfo=UTC),
            "result": {"bad": float("nan")},
        }
    )
    got = db.get_task("t2")
    assert got is not None
    assert got["created_at"] == "2025-12-30T10:00:00.123Z"
    assert got["completed_at"] == "2025-12-30T10:05:00.000Z"
    assert got["priority"] == "CRITICAL"
    assert got["result"] == {"bad": None}  # JSON-safe, not the invalid token NaN
    assert got["parameters"] == {} and got["options"] == {} and got["attempts"] == 0


@pytest.mark.parametrize(
    "bad, field",
    [
        ({"status": "QUEUED"}, "task_id"),
        ({"task_id": "", "status": "QUEUED"}, "task_id"),
        ({"task_id": "t", "status": "DONE"}, "status"),
        ({"task_id": "t", "progress": "half"}, "progress"),
        ({"task_id": "t", "created_at": [2025]}, "created_at"),
    ],
)
def test_invalid_records(db: Mirror, bad: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError) as info:
        db.upsert_task(bad)
    assert info.value.field == field
    assert db.list_tasks()[1] == 0


def _fill(db: Mirror) -> None:
    for i in range(12):
        db.upsert_task(
            record(
                f"t{i:02d}",
                created_at=f"2025-12-30T10:00:{i:02d}.000Z",
                status=TASK_STATES[i % 4],
                model="7net-0" if i % 3 else "mace-mp",
                task_type="single-point-energy" if i % 2 else "optimization",
                priority=("LOW", "CRITICAL", "NORMAL")[i % 3],
            )
        )


def test_list_filter_and_paginate(db: Mirror) -> None:
    _fill(db)
    items, total = db.list_tasks()
    assert total == 12 and [t["task_id"] for t in items][:3] == ["t11", "t10", "t09"]

    items, total = db.list_tasks(limit=5, offset=10)
    assert total == 12 and [t["task_id"] for t in items] == ["t01", "t00"]
    items, total = db.list_tasks(limit=0)
    assert items == [] and total == 12

    pages = [db.list_tasks(limit=5, offset=o, order="created_at asc")[0] for o in (0, 5, 10)]
    ids = [t["task_id"] for page in pages for t in page]
    assert ids == [f"t{i:02d}" for i in range(12)]

    items, total = db.list_tasks(status="running")
    assert total == 3 and {t["status"] for t in items} == {"RUNNING"}
    _, total = db.list_tasks(status=["PENDING", "queued"])
    assert total == 6
    _, total = db.list_tasks(status=[])
    assert total == 0
    _, total = db.list_tasks(model="mace-mp")
    assert total == 4
    items, total = db.list_tasks(task_type="single-point", model="7net-0")
    assert total == 4 and all(t["task_type"] == "single-point-energy" for t in items)
    _, total = db.list_tasks(status="RUNNING", task_type="single-point-energy", model="7net-0")
    assert total == 2


def test_list_orders(db: Mirror) -> None:
    _fill(db)
    items, _ = db.list_tasks(order="priority asc", limit=12)
    assert [t["priority"] for t in items] == ["CRITICAL"] * 4 + ["NORMAL"] * 4 + ["LOW"] * 4
    items, _ = db.list_tasks(order="-created_at", limit=1)
    assert items[0]["task_id"] == "t11"
    db.upsert_task({"task_id": "t05", "started_at": "2025-12-30T11:00:00.000Z"})
    items, _ = db.list_tasks(order="started_at desc", limit=2)
    assert items[0]["task_id"] == "t05" and items[1]["started_at"] is None  # NULLs last


@pytest.mark.parametrize(
    "kwargs, field",
    [
        ({"order": "created_at; DROP TABLE tasks"}, "order"),
        ({"order": "parameters"}, "order"),
        ({"order": "created_at sideways"}, "order"),
        ({"limit": -1}, "limit"),
        ({"offset": -5}, "offset"),
        ({"status": "DONE"}, "status"),
    ],
)
def test_list_rejects_bad_arguments(db: Mirror, kwargs: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError) as info:
        db.list_tasks(**kwargs)
    assert info.value.field == field


def test_counts_by_status_and_delete(db: Mirror) -> None:
    assert db.counts_by_status() == dict.fromkeys(TASK_STATES, 0)
    _fill(db)
    counts = db.counts_by_status()
    assert set(counts) == set(TASK_STATES)
    assert counts["PENDING"] == counts["QUEUED"] == counts["ASSIGNED"] == 3
    assert counts["COMPLETED"] == 0 and sum(counts.values()) == 12

    db.append_logs("t03", events("INFO", "INFO"))
    db.append_logs("t04", events("INFO"))
    db.delete_task("t03")
    assert db.get_task("t03") is None and db.task_logs("t03") == []
    assert len(db.task_logs("t04")) == 1
    assert sum(db.counts_by_status().values()) == 11
    db.delete_task("never-existed")


def test_duration_histograms_of_finished_tasks(db: Mirror) -> None:
    from mofsim_core.mirror_rows import DURATION_BUCKETS

    assert db.durations() == {}
    start = 1_700_000_000_000
    for n, (state, seconds) in enumerate(
        [("COMPLETED", 0.5), ("COMPLETED", 45.0), ("COMPLETED", 90_000.0), ("FAILED", 2.0)]
    ):
        db.upsert_task(
            {
                "task_id": f"d{n}",
                "task_type": "optimization",
                "status": state,
                "started_at": start,
                "completed_at": start + int(seconds * 1000),
            }
        )
    db.upsert_task(
        {
            "task_id": "never-ran",
            "task_type": "optimization",
            "status": "CANCELLED",
            "completed_at": start,
        }
    )
    db.upsert_task(
        {
            "task_id": "running",
            "task_type": "optimization",
            "status": "RUNNING",
            "started_at": start,
        }
    )
    stats = db.durations()
    assert set(stats) == {("optimization", "COMPLETED"), ("optimization", "FAILED")}
    done = stats[("optimization", "COMPLETED")]
    assert done.count == 3 and done.total_s == pytest.approx(90_045.5, abs=0.01)
    expected = [sum(1 for s in (0.5, 45.0, 90_000.0) if s <= b) for b in DURATION_BUCKETS]
    assert list(done.buckets) == expected  # cumulative; 90 000 s lies past the last bound
    assert stats[("optimization", "FAILED")].buckets[0] == 0
    assert stats[("optimization", "FAILED")].buckets[1] == 1


# --- logs ------------------------------------------------------------------------------------


def test_logs_append_filter_and_page(db: Mirror) -> None:
    db.upsert_task(record("t1"))
    db.append_logs("t1", events("DEBUG", "INFO", "WARNING", "ERROR", "INFO", "CRITICAL"))
    db.append_logs("t2", events("ERROR"))
    logs = db.task_logs("t1")
    assert [e["seq"] for e in logs] == [1, 2, 3, 4, 5, 6]
    first = logs[0]
    assert first == {
        "timestamp": "2025-12-30T10:00:00.000Z",
        "level": "DEBUG",
        "logger": "task.optimization",
        "message": "event 1",
        "task_id": "t1",
        "gpu_id": 0,
        "extra": {"step": 1},
        "seq": 1,
        "event": "log",
    }
    assert [e["level"] for e in db.task_logs("t1", level="warning")] == [
        "WARNING",
        "ERROR",
        "CRITICAL",
    ]
    assert [e["seq"] for e in db.task_logs("t1", level="INFO", limit=2, offset=1)] == [3, 4]
    assert [e["seq"] for e in db.task_logs("t1", since_seq=4)] == [5, 6]
    assert db.task_logs("t1", since_seq=6) == []
    assert [e["task_id"] for e in db.task_logs("t2")] == ["t2"]


def test_logs_replay_is_idempotent(db: Mirror) -> None:
    db.append_logs("t1", events("INFO", "INFO", "INFO"))
    db.append_logs("t1", events("INFO", "INFO", "INFO", "WARNING", start=2))  # overlaps 2-3
    assert [e["seq"] for e in db.task_logs("t1")] == [1, 2, 3, 4, 5]
    db.append_logs("t1", [])
    assert len(db.task_logs("t1")) == 5


def test_logs_minimal_events_and_errors(db: Mirror) -> None:
    db.append_logs("t1", [{"seq": 7, "message": "progress", "event": "progress"}])
    (e,) = db.task_logs("t1")
    assert e["level"] == "INFO" and e["extra"] == {} and e["event"] == "progress"
    with pytest.raises(ValidationError) as info:
        db.append_logs("t1", [{"message": "no seq"}])
    assert info.value.field == "seq"
    with pytest.raises(ValidationError) as info:
        db.task_logs("t1", level="LOUD")
    assert info.value.field == "level"


# --- rebuild ---------------------------------------------------------------------------------


def test_rebuild_replaces_everything(db: Mirror) -> None:
    _fill(db)
    db.append_logs("t00", events("INFO"))
    spool_logs = {"a": events("INFO", "ERROR"), "b": []}
    fresh = [
        record("a", status="COMPLETED", result={"e": -1.0}),
        record("b", status="QUEUED"),
        record("a", status="COMPLETED", result={"e": -2.0}),
    ]  # later copy wins
    n = db.rebuild(iter(fresh), lambda task_id: spool_logs.get(task_id, []))
    assert n == 2
    items, total = db.list_tasks()
    assert total == 2 and {t["task_id"] for t in items} == {"a", "b"}
    a = db.get_task("a")
    assert a is not None and a["result"] == {"e": -2.0}
    assert [e["seq"] for e in db.task_logs("a")] == [1, 2]
    assert db.task_logs("t00") == []
    assert db.rebuild([]) == 0 and db.list_tasks()[1] == 0


def test_failed_rebuild_leaves_mirror_untouched(db: Mirror) -> None:
    _fill(db)
    db.append_logs("t00", events("INFO"))

    def broken_spool() -> Iterator[dict[str, Any]]:
        yield record("new1")
        raise OSError("spool unreadable")

    with pytest.raises(OSError):
        db.rebuild(broken_spool())
    with pytest.raises(ValidationError):
        db.rebuild([record("new1"), {"no": "id"}])

    def broken_logs(task_id: str) -> list[dict[str, Any]]:
        raise RuntimeError("events.jsonl vanished")

    with pytest.raises(RuntimeError):
        db.rebuild([record("new1")], broken_logs)
    assert db.list_tasks()[1] == 12 and db.get_task("new1") is None
    assert len(db.task_logs("t00")) == 1


# --- threads ---------------------------------------------------------------------------------


def test_reader_threads_see_consistent_snapshots(store: Store) -> None:
    """The supervisor writes while the HTTP side reads, from this mirror object and from a
    second one on the same file (the server in its own process)."""
    writer = store.open()
    other = store.open()
    done = threading.Event()
    problems: list[str] = []
    reads = [0, 0]

    def read(m: Mirror, slot: int) -> None:
        try:
            while not done.is_set() or reads[slot] == 0:
                items, total = m.list_tasks(limit=1000)
                # Page and total come from one snapshot, so they always agree.
                if len(items) != total:
                    problems.append(f"{len(items)} items but total {total}")
                counts = m.counts_by_status()
                if sum(counts.values()) < total:
                    problems.append("counts went backwards")
                for t in items[:3]:
                    m.task_logs(t["task_id"])
                reads[slot] += 1
        except Exception as exc:  # reported below; a thread's exception is otherwise lost
            problems.append(repr(exc))

    readers = [
        threading.Thread(target=read, args=(writer, 0)),
        threading.Thread(target=read, args=(other, 1)),
    ]
    for t in readers:
        t.start()
    try:
        for i in range(200):
            writer.upsert_task(
                record(f"t{i:03d}", created_at=f"2025-12-30T10:{i // 60:02d}:{i % 60:02d}.000Z")
            )
            writer.append_logs(f"t{i:03d}", events("INFO"))
            if i % 10 == 0:
                writer.upsert_task({"task_id": f"t{i:03d}", "status": "RUNNING"})
    finally:
        done.set()
        for t in readers:
            t.join(timeout=60)
    assert problems == []
    assert reads[0] > 0 and reads[1] > 0
    assert other.list_tasks()[1] == 200
    assert other.counts_by_status()["RUNNING"] == 20


def test_each_thread_gets_its_own_connection(db: Mirror) -> None:
    db.upsert_task(record("t1"))
    seen: list[Any] = []

    def work() -> None:
        seen.append(db.get_task("t1"))
        db.upsert_task({"task_id": "t1", "progress": 0.5})

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(seen) == 4 and all(s is not None for s in seen)
    got = db.get_task("t1")
    assert got is not None and got["progress"] == 0.5


# --- owners ----------------------------------------------------------------------------------


def test_lists_narrow_to_one_owner(db: Mirror) -> None:
    db.upsert_task(record("a1", owner="key_a", created_at="2025-12-30T10:00:01.000Z"))
    db.upsert_task(record("b1", owner="key_b", created_at="2025-12-30T10:00:02.000Z"))
    db.upsert_task(record("a2", owner="key_a", created_at="2025-12-30T10:00:03.000Z"))
    db.upsert_task(record("n1"))
    items, total = db.list_tasks(owner="key_a")
    assert total == 2 and [t["task_id"] for t in items] == ["a2", "a1"]
    assert db.list_tasks(owner="key_a", status="RUNNING") == ([], 0)
    assert db.list_tasks()[1] == 4 and db.list_tasks(owner="nobody")[1] == 0
    assert db.get_task("b1")["owner"] == "key_b"  # type: ignore[index]
    db.upsert_task({"task_id": "b1", "status": "RUNNING"})  # a partial update keeps it
    assert db.get_task("b1")["owner"] == "key_b"  # type: ignore[index]


def test_a_mirror_of_schema_2_gains_the_owner_column(store: Store) -> None:
    store.open().close()
    index = (
        "idx_tasks_owner_created_at_task_id"
        if store.kind == "sqlite"
        else "tasks_owner_created_at_task_id_idx"
    )
    store.execute(f"DROP INDEX {index}")
    store.execute("ALTER TABLE tasks DROP COLUMN owner")
    store.execute("DELETE FROM schema_version WHERE version >= 3")
    m = store.open()
    assert m.schema_version() == len(mirror_mod.MIGRATIONS) == 4
    m.upsert_task(record("t1", owner="key_a"))
    assert m.list_tasks(owner="key_a")[1] == 1


def test_rebuild_keeps_the_owners(db: Mirror) -> None:
    db.rebuild([record("a1", owner="key_a"), record("b1", owner="key_b"), record("n1")])
    assert [t["task_id"] for t in db.list_tasks(owner="key_a")[0]] == ["a1"]
    assert db.get_task("n1")["owner"] is None  # type: ignore[index]


@pytest.mark.parametrize(
    "order, ok",
    [
        ("created_at desc", True),
        ("-created_at", True),
        ("  Priority   ASC ", True),
        ("created_at created_at", False),
        ("-created_at desc", False),
        ("created_at desc desc", False),
        ("", False),
    ],
)
def test_the_mirror_and_the_spool_read_order_alike(
    db: Mirror, tmp_path: Path, order: str, ok: bool
) -> None:
    from mofsim_core.task_records import list_from_spool
    from spool import Spool

    spool = Spool(tmp_path / "spool")
    for list_ in (
        lambda: db.list_tasks(order=order),
        lambda: list_from_spool(spool, None, None, None, 20, 0, order),
    ):
        if ok:
            list_()
        else:
            with pytest.raises(ValidationError):
                list_()
