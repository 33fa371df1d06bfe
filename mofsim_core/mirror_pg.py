"""The mirror in PostgreSQL through psycopg 3: the same interface, rows and schema as
``SqliteMirror``, with JSONB for the JSON columns.

One connection per thread, in autocommit mode: the daemon writes from its writer
thread, the HTTP server reads from its worker threads, and none of them waits for
another's connection.  Writes are short explicit transactions; a read that needs two
queries (a page and its total) runs in one REPEATABLE READ snapshot.  A connection the
server dropped (restart, network) is thrown away and the next call connects afresh, so
the mirror heals itself once the database is back.  Every psycopg error leaves as
``spool.errors.DatabaseError``.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, TypeVar

from mofsim_core.mirror_measurements import MEASUREMENT_COLUMNS, measurement_row
from mofsim_core.mirror_measurements import PG_MIGRATION as MEASUREMENT_MIGRATION
from mofsim_core.mirror_rows import (
    INDEXED_COLUMNS,
    JSON_COLUMNS,
    LOG_COLUMNS,
    LOG_JSON_COLUMNS,
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
from mofsim_core.redact import mask_url
from spool.errors import DatabaseError, ValidationError
from spool.states import ALL_STATES

T = TypeVar("T")

# Text sorts byte-wise (COLLATE "C"), as in SQLite, so both backends page identically
# whatever the database's locale.
_MIGRATION_1 = [
    """CREATE TABLE IF NOT EXISTS tasks (
        task_id text COLLATE "C" PRIMARY KEY,
        task_type text COLLATE "C", model text COLLATE "C", status text COLLATE "C",
        priority text COLLATE "C", created_at text COLLATE "C",
        started_at text COLLATE "C", completed_at text COLLATE "C", slot text,
        gpu_id integer, attempts integer NOT NULL DEFAULT 0, progress double precision,
        structure_name text, error jsonb, result jsonb, parameters jsonb, options jsonb)""",
    *(f"CREATE INDEX IF NOT EXISTS tasks_{c}_idx ON tasks ({c})" for c in INDEXED_COLUMNS),
    """CREATE TABLE IF NOT EXISTS task_logs (
        task_id text COLLATE "C" NOT NULL, seq bigint NOT NULL, timestamp text,
        level text, level_no integer, logger text, message text, gpu_id integer,
        event text, extra jsonb, PRIMARY KEY (task_id, seq))""",
]
# Append only, version N is PG_MIGRATIONS[N - 1], in step with mirror.MIGRATIONS.
_MIGRATION_2 = [
    "CREATE INDEX IF NOT EXISTS tasks_created_at_task_id_idx ON tasks (created_at, task_id)",
]
_MIGRATION_3 = [
    'ALTER TABLE tasks ADD COLUMN IF NOT EXISTS owner text COLLATE "C"',
    "CREATE INDEX IF NOT EXISTS tasks_owner_created_at_task_id_idx "
    "ON tasks (owner, created_at, task_id)",
]
PG_MIGRATIONS: list[list[str]] = [
    _MIGRATION_1,
    _MIGRATION_2,
    _MIGRATION_3,
    MEASUREMENT_MIGRATION,  # 4: task_measurements
]
_MEASURED = list(MEASUREMENT_COLUMNS)

# Defaults a DSN may override: fail fast when the server is away, notice a dead peer.
_CONNECT_DEFAULTS = {
    "connect_timeout": "5",
    "application_name": "mofsim",
    "keepalives": "1",
    "keepalives_idle": "30",
    "keepalives_interval": "10",
    "keepalives_count": "3",
}
# A JSON \u0000 escape preceded by an even number of backslashes (a real escape).
_JSON_NUL = re.compile(r"(?<!\\)((?:\\\\)*)\\u0000")


def _clean(column: str, value: Any, json_columns: Sequence[str]) -> Any:
    """PostgreSQL text and JSONB cannot hold NUL characters, which would make a write
    fail for ever; they are stored as U+FFFD instead."""
    if not isinstance(value, str):
        return value
    if column in json_columns:
        return _JSON_NUL.sub(r"\1\\ufffd", value) if "\\u0000" in value else value
    return value.replace("\x00", "\ufffd")


def _params(row: dict[str, Any], columns: Sequence[str], json_columns: Sequence[str]) -> list[Any]:
    return [_clean(c, row[c], json_columns) for c in columns]


def _upsert_sql(
    table: str, columns: Sequence[str], key: Sequence[str], json_columns: Sequence[str]
) -> str:
    marks = ["%s::jsonb" if c in json_columns else "%s" for c in columns]
    return upsert_sql(table, columns, key, marks)


class PostgresMirror:
    """The mirror in the database a libpq DSN names (``postgresql://...``)."""

    def __init__(self, dsn: str) -> None:
        import psycopg
        from psycopg.conninfo import conninfo_to_dict, make_conninfo

        self._psycopg = psycopg
        try:
            params = conninfo_to_dict(dsn)
        except psycopg.Error as exc:
            raise ValidationError(
                f"invalid database_url: {str(exc).replace(dsn, mask_url(dsn))}",
                field="database_url",
            ) from exc
        for key, value in _CONNECT_DEFAULTS.items():
            params.setdefault(key, value)
        if psycopg.pq.version() >= 120000:
            # Unacknowledged data for this long means a dead peer: a write to a server
            # that vanished without a reset fails instead of hanging the writer thread.
            params.setdefault("tcp_user_timeout", "30000")
        self._conninfo = make_conninfo("", **params)
        self.where = (
            f"{params.get('host', 'localhost')}:{params.get('port', 5432)}/"
            f"{params.get('dbname', '')}"
        )
        self._registry_lock = threading.Lock()
        self._conns: dict[int, tuple[threading.Thread, Any]] = {}
        self._closed = False
        try:
            self._migrate()
        except BaseException:
            self.close()
            raise

    # -- plumbing

    def _connect(self) -> Any:
        from psycopg.rows import dict_row

        with self._guard(f"cannot connect to the mirror database {self.where}"):
            return self._psycopg.connect(self._conninfo, autocommit=True, row_factory=dict_row)

    def _conn(self) -> tuple[Any, bool]:
        """This thread's connection, and whether it is new (not reused)."""
        me, my_ident = threading.current_thread(), threading.get_ident()
        with self._registry_lock:
            if self._closed:
                raise DatabaseError("the mirror database is closed")
            known = self._conns.get(my_ident)
            if known is not None and known[0] is me and not known[1].closed:
                return known[1], False
            # Close what dead threads left behind, including a dead thread whose ident
            # the system has handed to this one.
            for ident, (thread, conn) in list(self._conns.items()):
                if not thread.is_alive() or ident == my_ident:
                    conn.close()
                    del self._conns[ident]
        conn = self._connect()  # outside the lock: a slow connect must not stall others
        with self._registry_lock:
            if self._closed:
                conn.close()
                raise DatabaseError("the mirror database is closed")
            self._conns[my_ident] = (me, conn)
        return conn, True

    def _drop(self, conn: Any) -> None:
        with self._registry_lock:
            for ident, (_, known) in list(self._conns.items()):
                if known is conn:
                    del self._conns[ident]
        conn.close()

    @contextmanager
    def _guard(self, what: str = "mirror database error") -> Iterator[None]:
        try:
            yield
        # Only the database's own errors: an OSError from a caller's iterator (the spool
        # reader in rebuild) must keep its identity.
        except self._psycopg.Error as exc:
            text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise DatabaseError(f"{what}: {text}", detail=f"{type(exc).__name__}: {text}") from exc

    def _run(
        self, work: Callable[[Any], T], *, what: str = "mirror database error", retry: bool = True
    ) -> T:
        """``work(conn)`` on this thread's connection.  A reused connection found dead
        (the server restarted since its last use) is replaced and the work tried once
        more, when it can be replayed."""
        while True:
            conn, fresh = self._conn()
            try:
                with self._guard(what):
                    return work(conn)
            except DatabaseError as exc:
                if conn.broken or conn.closed:
                    self._drop(conn)
                    if (
                        retry
                        and not fresh
                        and isinstance(exc.__cause__, self._psycopg.OperationalError)
                    ):
                        continue
                raise

    def _write(self, work: Callable[[Any], T], *, retry: bool = True) -> T:
        def in_transaction(conn: Any) -> T:
            with conn.transaction():
                return work(conn)

        return self._run(in_transaction, retry=retry)

    def _snapshot(self, work: Callable[[Any], T]) -> T:
        """Several queries that see one state of the database."""

        def in_snapshot(conn: Any) -> T:
            conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            try:
                return work(conn)
            finally:
                if not conn.broken and conn.info.transaction_status != 0:
                    conn.execute("ROLLBACK")

        return self._run(in_snapshot)

    def _migrate(self) -> None:
        def migrate(conn: Any) -> None:
            # Two processes starting together (daemon, server) migrate one at a time;
            # the lock is per schema, so test schemas side by side do not wait.
            conn.execute(
                "SELECT pg_advisory_xact_lock(hashtext(current_schema() || "
                "'.mofsim_mirror_schema'))"
            )
            conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_version "
                "(version integer PRIMARY KEY, applied_at text)"
            )
            current = (
                conn.execute("SELECT max(version) AS v FROM schema_version").fetchone()["v"] or 0
            )
            if current > len(PG_MIGRATIONS):
                raise DatabaseError(
                    f"the mirror database has schema version {current}, newer than this "
                    f"program's {len(PG_MIGRATIONS)}; upgrade mofsim or rebuild the mirror"
                )
            for version in range(current + 1, len(PG_MIGRATIONS) + 1):
                for statement in PG_MIGRATIONS[version - 1]:
                    conn.execute(statement)
                conn.execute(
                    "INSERT INTO schema_version (version, applied_at) VALUES (%s, %s)",
                    [version, iso_time(datetime.now(UTC))],
                )

        self._write(migrate)

    def schema_version(self) -> int:
        return int(
            self._run(
                lambda c: c.execute("SELECT max(version) AS v FROM schema_version").fetchone()["v"]
            )
        )

    def ping(self) -> None:
        self._run(
            lambda c: c.execute("SELECT 1").fetchall(), what="the mirror database does not answer"
        )

    # -- writes

    def upsert_task(self, record: dict[str, Any]) -> None:
        row = task_row(record)
        columns = list(row)
        sql = _upsert_sql("tasks", columns, ("task_id",), JSON_COLUMNS)
        measured = measurement_row(record)

        def write(conn: Any) -> None:
            conn.execute(sql, _params(row, columns, JSON_COLUMNS))
            if measured is not None:
                self._insert_measurements(conn, [measured])

        self._write(write)

    def _insert_measurements(self, conn: Any, rows: list[dict[str, Any]]) -> None:
        sql = _upsert_sql("task_measurements", _MEASURED, ("task_id",), ())
        with conn.cursor() as cur:
            cur.executemany(sql, (_params(r, _MEASURED, ()) for r in rows))

    def _insert_logs(self, conn: Any, rows: Iterable[dict[str, Any]]) -> None:
        columns = list(LOG_COLUMNS)
        sql = _upsert_sql("task_logs", columns, ("task_id", "seq"), LOG_JSON_COLUMNS)
        with conn.cursor() as cur:
            cur.executemany(sql, (_params(r, columns, LOG_JSON_COLUMNS) for r in rows))

    def append_logs(self, task_id: str, events: list[dict[str, Any]]) -> None:
        """Idempotent: an event already stored under its ``seq`` is replaced, so the
        supervisor can replay a task's events after a database outage."""
        rows = [log_row(task_id, e) for e in events]
        if rows:
            self._write(lambda c: self._insert_logs(c, rows))

    def delete_task(self, task_id: str) -> None:
        def delete(conn: Any) -> None:
            conn.execute("DELETE FROM task_logs WHERE task_id = %s", [task_id])
            conn.execute("DELETE FROM task_measurements WHERE task_id = %s", [task_id])
            conn.execute("DELETE FROM tasks WHERE task_id = %s", [task_id])

        self._write(delete)

    def rebuild(
        self,
        records: Iterable[dict[str, Any]],
        logs: Callable[[str], Iterable[dict[str, Any]]] | None = None,
    ) -> int:
        """Empty the mirror and refill it, all in one transaction: a failure half-way
        (a bad record, a reader error) leaves the previous contents untouched."""
        columns = list(task_row({"task_id": "x"}, full=True))
        sql = _upsert_sql("tasks", columns, ("task_id",), JSON_COLUMNS)

        def refill(conn: Any) -> int:
            conn.execute("DELETE FROM task_logs")
            conn.execute("DELETE FROM task_measurements")
            conn.execute("DELETE FROM tasks")
            seen: list[str] = []
            measured: list[dict[str, Any]] = []

            def params() -> Iterator[list[Any]]:
                for record in records:
                    row = task_row(record, full=True)
                    seen.append(row["task_id"])
                    found = measurement_row(record)
                    if found is not None:
                        measured.append(found)
                    yield _params(row, columns, JSON_COLUMNS)

            with conn.cursor() as cur:
                cur.executemany(sql, params())
            if measured:
                self._insert_measurements(conn, measured)
            if logs is not None:
                self._insert_logs(
                    conn,
                    (log_row(task_id, e) for task_id in dict.fromkeys(seen) for e in logs(task_id)),
                )
            return int(conn.execute("SELECT count(*) AS n FROM tasks").fetchone()["n"])

        # The records may be a one-shot iterator: never replayed.
        return self._write(refill, retry=False)

    # -- reads

    def get_task(self, task_id: str) -> dict[str, Any] | None:
        row = self._run(
            lambda c: c.execute("SELECT * FROM tasks WHERE task_id = %s", [task_id]).fetchone()
        )
        return task_from_row(row, json_decoded=True) if row else None

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
        cond, params = task_filter(status, task_type, model, "%s", owner)

        def query(conn: Any) -> tuple[list[dict[str, Any]], int]:
            total = conn.execute(
                f"SELECT count(*) AS n FROM tasks WHERE {cond}", params
            ).fetchone()["n"]
            rows = conn.execute(
                f"SELECT * FROM tasks WHERE {cond} ORDER BY {sort} LIMIT %s OFFSET %s",
                [*params, limit, offset],
            ).fetchall()
            return rows, int(total)

        rows, total = self._snapshot(query)
        return [task_from_row(r, json_decoded=True) for r in rows], total

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
        sql, params = logs_query(task_id, level, since_seq, limit, offset, "%s")
        rows = self._run(lambda c: c.execute(sql, params).fetchall())
        return [log_from_row(r, json_decoded=True) for r in rows]

    def counts_by_status(self) -> dict[str, int]:
        """Every state, zero included, so dashboards and metrics see a fixed set."""
        counts = dict.fromkeys(ALL_STATES, 0)
        rows = self._run(
            lambda c: c.execute(
                "SELECT status, count(*) AS n FROM tasks GROUP BY status"
            ).fetchall()
        )
        for row in rows:
            if row["status"] is not None:
                counts[row["status"]] = int(row["n"])
        return counts

    def durations(self) -> dict[tuple[str, str], DurationStats]:
        """Run-time histograms of finished tasks per (task type, state)."""
        sql = duration_sql(
            "extract(epoch FROM (completed_at::timestamptz "
            "- started_at::timestamptz))::double precision"
        )
        return duration_stats(self._run(lambda c: c.execute(sql).fetchall()))

    def close(self) -> None:
        with self._registry_lock:
            self._closed = True
            conns, self._conns = list(self._conns.values()), {}
        for _, conn in conns:
            conn.close()
