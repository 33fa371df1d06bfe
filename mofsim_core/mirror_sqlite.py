"""The mirror in one SQLite file through sqlite-utils: ``mofsim_core.mirror.Mirror``
embedded, the default when no ``database_url`` is configured.

One connection per thread, WAL mode: the daemon writes from its writer thread, the HTTP
server reads from its worker threads (or another process), and a reader is never blocked
by a writer.  The schema it migrates to is ``mofsim_core.mirror.MIGRATIONS``; every
sqlite3 error leaves as ``spool.errors.DatabaseError``.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from mofsim_core.mirror import MIGRATIONS, schema_too_new
from mofsim_core.mirror_measurements import MEASUREMENT_COLUMNS, measurement_row
from mofsim_core.mirror_rows import (
    DurationStats,
    duration_sql,
    duration_stats,
    iso_time,
    log_from_row,
    log_row,
    logs_query,
    order_clause,
    page,
    task_filter,
    task_from_row,
    task_row,
    upsert_sql,
)
from spool.errors import DatabaseError
from spool.states import ALL_STATES


def _measurement_sql() -> str:
    columns = list(MEASUREMENT_COLUMNS)
    return upsert_sql("task_measurements", columns, ("task_id",), ["?"] * len(columns))


class SqliteMirror:
    """The mirror in one SQLite file, WAL mode, one connection per thread.

    Writers in this process take a lock and ``BEGIN IMMEDIATE``, so a writer never
    fails half-way on a lock upgrade; readers in other threads or processes are never
    blocked by it (WAL).
    """

    def __init__(self, path: str | Path, *, busy_timeout_s: float = 30.0):
        self.path = Path(path)
        self.busy_timeout_s = busy_timeout_s
        self._registry_lock = threading.Lock()
        self._write_lock = threading.RLock()
        self._conns: dict[int, tuple[threading.Thread, Any]] = {}
        self._closed = False
        what = f"cannot open the mirror database {self.path}"
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise DatabaseError(f"{what}: {exc}") from exc
        try:
            with self._guard(what):
                self._db().enable_wal()
                self._migrate()
        except BaseException:
            self.close()
            raise

    # -- plumbing

    @contextmanager
    def _guard(self, what: str = "mirror database error") -> Iterator[None]:
        try:
            yield
        # Only the database's own errors: an OSError from a caller's iterator (the spool
        # reader in rebuild) must keep its identity.
        except sqlite3.Error as exc:
            raise DatabaseError(f"{what}: {exc}", detail=f"{type(exc).__name__}: {exc}") from exc

    def _db(self) -> Any:
        import sqlite_utils

        me, my_ident = threading.current_thread(), threading.get_ident()
        with self._registry_lock:
            if self._closed:
                raise DatabaseError("the mirror database is closed")
            known = self._conns.get(my_ident)
            if known is not None and known[0] is me:
                return known[1]
            # Threads come and go (request handlers): close what dead ones left behind,
            # including a dead thread whose ident the system has handed to this one.
            for ident, (thread, db) in list(self._conns.items()):
                if not thread.is_alive() or ident == my_ident:
                    db.close()
                    del self._conns[ident]
            conn = sqlite3.connect(
                str(self.path), timeout=self.busy_timeout_s, check_same_thread=False
            )
            conn.execute("PRAGMA synchronous=NORMAL")  # rebuildable data: WAL durability suffices
            db = sqlite_utils.Database(conn, execute_plugins=False)
            self._conns[my_ident] = (me, db)
            return db

    @contextmanager
    def _writing(self) -> Iterator[Any]:
        with self._guard(), self._write_lock:
            db = self._db()
            db.conn.execute("BEGIN IMMEDIATE")
            try:
                yield db
                db.conn.execute("COMMIT")
            except BaseException:
                # Never leave the connection inside a transaction, or every later
                # write on this thread would fail too.
                if db.conn.in_transaction:
                    try:
                        db.conn.execute("ROLLBACK")
                    except sqlite3.Error:
                        pass
                raise

    @contextmanager
    def _reading(self) -> Iterator[Any]:
        """One snapshot for several queries (a page and its total agree)."""
        with self._guard():
            db = self._db()
            db.conn.execute("BEGIN")
            try:
                yield db
            finally:
                if db.conn.in_transaction:
                    db.conn.execute("COMMIT")

    def _migrate(self) -> None:
        with self._writing() as db:
            db.table("schema_version").create(
                {"version": int, "applied_at": str}, pk="version", if_not_exists=True
            )
            current = next(db.query("SELECT max(version) AS v FROM schema_version"))["v"] or 0
            if current > len(MIGRATIONS):
                raise schema_too_new(current, len(MIGRATIONS))
            for version in range(current + 1, len(MIGRATIONS) + 1):
                MIGRATIONS[version - 1](db)
                db.table("schema_version").insert(
                    {"version": version, "applied_at": iso_time(datetime.now(UTC))}
                )

    def schema_version(self) -> int:
        with self._reading() as db:
            return int(next(db.query("SELECT max(version) AS v FROM schema_version"))["v"])

    def ping(self) -> None:
        with self._guard("the mirror database does not answer"):
            self._db().execute("SELECT 1").fetchall()

    # -- writes

    def upsert_task(self, record: dict[str, Any]) -> None:
        row = task_row(record)
        # Plain SQL: sqlite_utils' upsert re-reads the table's schema on every call, a
        # cost paid by every API submission.
        sql = upsert_sql("tasks", list(row), ("task_id",), ["?"] * len(row))
        measured = measurement_row(record)
        with self._writing() as db:
            db.conn.execute(sql, list(row.values()))
            if measured is not None:
                db.conn.execute(_measurement_sql(), list(measured.values()))

    def append_logs(self, task_id: str, events: list[dict[str, Any]]) -> None:
        """Idempotent: an event already stored under its ``seq`` is replaced, so the
        supervisor can replay a task's events after a database outage."""
        rows = [log_row(task_id, e) for e in events]
        if not rows:
            return
        with self._writing() as db:
            db.table("task_logs").upsert_all(rows, pk=("task_id", "seq"))

    def delete_task(self, task_id: str) -> None:
        with self._writing() as db:
            db.execute("DELETE FROM task_logs WHERE task_id = ?", [task_id])
            db.execute("DELETE FROM task_measurements WHERE task_id = ?", [task_id])
            db.execute("DELETE FROM tasks WHERE task_id = ?", [task_id])

    def rebuild(
        self,
        records: Iterable[dict[str, Any]],
        logs: Callable[[str], Iterable[dict[str, Any]]] | None = None,
    ) -> int:
        """Empty the mirror and refill it, all in one transaction: a failure half-way
        (a bad record, a reader error) leaves the previous contents untouched."""
        with self._writing() as db:
            db.execute("DELETE FROM task_logs")
            db.execute("DELETE FROM task_measurements")
            db.execute("DELETE FROM tasks")
            seen: list[str] = []
            measured: list[dict[str, Any]] = []

            def rows() -> Iterator[dict[str, Any]]:
                for record in records:
                    row = task_row(record, full=True)
                    seen.append(row["task_id"])
                    found = measurement_row(record)
                    if found is not None:
                        measured.append(found)
                    yield row

            db.table("tasks").upsert_all(rows(), pk="task_id")
            if measured:
                db.table("task_measurements").upsert_all(measured, pk="task_id")
            if logs is not None:
                db.table("task_logs").upsert_all(
                    (log_row(task_id, e) for task_id in dict.fromkeys(seen) for e in logs(task_id)),
                    pk=("task_id", "seq"),
                )
            return int(next(db.query("SELECT count(*) AS n FROM tasks"))["n"])

    # -- reads

    def get_task(self, task_id: str) -> dict[str, Any] | None:
        with self._reading() as db:
            rows = list(db.query("SELECT * FROM tasks WHERE task_id = ?", [task_id]))
        return task_from_row(rows[0]) if rows else None

    def list_tasks(
        self,
        status: str | Sequence[str] | None = None,
        task_type: str | None = None,
        model: str | None = None,
        limit: int = 50,
        offset: int = 0,
        order: str = "created_at desc",
        owner: str | None = None,
    ) -> tuple[list[dict[str, Any]], int]:
        """A page of tasks, newest first by default, and the total matching count.
        ``status`` may be one state or several (any case); ``owner`` one key's tasks."""
        limit, offset = page(limit, offset)
        sort = order_clause(order)
        cond, params = task_filter(status, task_type, model, "?", owner)
        with self._reading() as db:
            total = next(db.query(f"SELECT count(*) AS n FROM tasks WHERE {cond}", params))["n"]
            rows = list(
                db.query(
                    f"SELECT * FROM tasks WHERE {cond} ORDER BY {sort} LIMIT ? OFFSET ?",
                    [*params, limit, offset],
                )
            )
        return [task_from_row(r) for r in rows], int(total)

    def task_logs(
        self,
        task_id: str,
        level: str | None = None,
        limit: int = 100,
        offset: int = 0,
        since_seq: int | None = None,
    ) -> list[dict[str, Any]]:
        """A task's log events in ``seq`` order.  ``level`` is a minimum (``WARNING``
        also returns ERROR and CRITICAL); ``since_seq`` keeps events after that seq."""
        sql, params = logs_query(task_id, level, since_seq, limit, offset, "?")
        with self._reading() as db:
            rows = list(db.query(sql, params))
        return [log_from_row(r) for r in rows]

    def counts_by_status(self) -> dict[str, int]:
        """Every state, zero included, so dashboards and metrics see a fixed set."""
        counts = dict.fromkeys(ALL_STATES, 0)
        with self._reading() as db:
            for row in db.query("SELECT status, count(*) AS n FROM tasks GROUP BY status"):
                if row["status"] is not None:
                    counts[row["status"]] = int(row["n"])
        return counts

    def durations(self) -> dict[tuple[str, str], DurationStats]:
        """Run-time histograms of finished tasks per (task type, state)."""
        sql = duration_sql("(julianday(completed_at) - julianday(started_at)) * 86400.0")
        with self._reading() as db:
            return duration_stats(list(db.query(sql)))

    def close(self) -> None:
        with self._registry_lock:
            self._closed = True
            conns, self._conns = list(self._conns.values()), {}
        for _, db in conns:
            db.close()
