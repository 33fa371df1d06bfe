"""The mirror in PostgreSQL: ``mofsim_core.mirror.Mirror`` with the same rows and schema
as ``SqliteMirror``, JSONB for the JSON columns.

The SQL here is the mirror's reads and writes in PostgreSQL's dialect (``%s`` marks,
``::jsonb`` casts, text without NUL characters); the connections they run on, one per
thread and healed after an outage, are ``mofsim_core.mirror_pg_connections``'s.  Every
psycopg error leaves as ``spool.errors.DatabaseError``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import UTC, datetime
from typing import Any

from mofsim_core.mirror import PG_MIGRATIONS, schema_too_new
from mofsim_core.mirror_measurements import MEASUREMENT_COLUMNS, measurement_row
from mofsim_core.mirror_pg_connections import PgConnections
from mofsim_core.mirror_rows import (
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
from spool.states import ALL_STATES

_MEASURED = list(MEASUREMENT_COLUMNS)

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
        self._pg = PgConnections(dsn)
        try:
            self._migrate()
        except BaseException:
            self.close()
            raise

    # -- schema

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
                raise schema_too_new(current, len(PG_MIGRATIONS))
            for version in range(current + 1, len(PG_MIGRATIONS) + 1):
                for statement in PG_MIGRATIONS[version - 1]:
                    conn.execute(statement)
                conn.execute(
                    "INSERT INTO schema_version (version, applied_at) VALUES (%s, %s)",
                    [version, iso_time(datetime.now(UTC))],
                )

        self._pg.write(migrate)

    def schema_version(self) -> int:
        return int(
            self._pg.run(
                lambda c: c.execute("SELECT max(version) AS v FROM schema_version").fetchone()["v"]
            )
        )

    def ping(self) -> None:
        self._pg.run(
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

        self._pg.write(write)

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
            self._pg.write(lambda c: self._insert_logs(c, rows))

    def delete_task(self, task_id: str) -> None:
        def delete(conn: Any) -> None:
            conn.execute("DELETE FROM task_logs WHERE task_id = %s", [task_id])
            conn.execute("DELETE FROM task_measurements WHERE task_id = %s", [task_id])
            conn.execute("DELETE FROM tasks WHERE task_id = %s", [task_id])

        self._pg.write(delete)

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
        return self._pg.write(refill, retry=False)

    # -- reads

    def get_task(self, task_id: str) -> dict[str, Any] | None:
        row = self._pg.run(
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

        rows, total = self._pg.snapshot(query)
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
        rows = self._pg.run(lambda c: c.execute(sql, params).fetchall())
        return [log_from_row(r, json_decoded=True) for r in rows]

    def counts_by_status(self) -> dict[str, int]:
        """Every state, zero included, so dashboards and metrics see a fixed set."""
        counts = dict.fromkeys(ALL_STATES, 0)
        rows = self._pg.run(
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
        return duration_stats(self._pg.run(lambda c: c.execute(sql).fetchall()))

    def close(self) -> None:
        self._pg.close()
