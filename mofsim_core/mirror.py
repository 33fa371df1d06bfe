"""What a database mirror of the spool is: the interface every backend answers, and the
schema every backend holds, version by version, in each backend's own terms.

The spool stays the source of truth; the mirror is a rebuildable index of it (tasks and
their logs, queryable by the API), written by the supervisor as transitions happen and
read by the HTTP server (often from another thread or process).  ``Mirror`` is the
interface; ``mofsim_core.mirror_sqlite.SqliteMirror`` the embedded implementation over
sqlite-utils, ``mofsim_core.mirror_pg.PostgresMirror`` its PostgreSQL twin, and
``mofsim_core.mirror_factory.open_mirror`` picks one from the configuration.  Converting
records to rows and back is done by the pure functions of ``mofsim_core.mirror_rows``,
shared by both backends; each backend is only an I/O shell.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any, Protocol

from mofsim_core.mirror_measurements import PG_MIGRATION as MEASUREMENT_PG_MIGRATION
from mofsim_core.mirror_measurements import sqlite_migration
from mofsim_core.mirror_rows import INDEXED_COLUMNS, LOG_COLUMNS, TASK_COLUMNS, DurationStats
from spool.errors import DatabaseError


class Mirror(Protocol):
    """Every method raises ``spool.errors.DatabaseError`` when the database fails and
    ``ValidationError`` (with its field) for bad arguments or records."""

    def upsert_task(self, record: dict[str, Any]) -> None: ...

    def append_logs(self, task_id: str, events: list[dict[str, Any]]) -> None: ...

    def get_task(self, task_id: str) -> dict[str, Any] | None: ...

    def list_tasks(
        self,
        status: str | Sequence[str] | None = None,
        task_type: str | None = None,
        model: str | None = None,
        limit: int = 50,
        offset: int = 0,
        order: str = "created_at desc",
        owner: str | None = None,
    ) -> tuple[list[dict[str, Any]], int]: ...

    def task_logs(
        self,
        task_id: str,
        level: str | None = None,
        limit: int = 100,
        offset: int = 0,
        since_seq: int | None = None,
    ) -> list[dict[str, Any]]: ...

    def counts_by_status(self) -> dict[str, int]: ...

    def durations(self) -> dict[tuple[str, str], DurationStats]: ...

    def delete_task(self, task_id: str) -> None: ...

    def rebuild(
        self,
        records: Iterable[dict[str, Any]],
        logs: Callable[[str], Iterable[dict[str, Any]]] | None = None,
    ) -> int: ...

    def schema_version(self) -> int: ...

    def ping(self) -> None:
        """A round trip to the database: returns, or raises DatabaseError."""
        ...

    def close(self) -> None: ...


# --- the schema, in SQLite's terms (sqlite-utils) ----------------------------------


def _migration_1(db: Any) -> None:
    """Tasks and their logs."""
    tasks = db.table("tasks")
    tasks.create(TASK_COLUMNS, pk="task_id", defaults={"attempts": 0}, if_not_exists=True)
    for column in INDEXED_COLUMNS:
        tasks.create_index([column], if_not_exists=True)
    db.table("task_logs").create(LOG_COLUMNS, pk=("task_id", "seq"), if_not_exists=True)


def _migration_2(db: Any) -> None:
    """The default list order (newest first, task_id to break ties) as one index."""
    db.table("tasks").create_index(["created_at", "task_id"], if_not_exists=True)


def _migration_3(db: Any) -> None:
    """Each task's owner (the API key that submitted it), and the index a user's list
    walks (newest first).  Migration 1 builds from the current column table, so a new
    database has the column already."""
    tasks = db.table("tasks")
    if "owner" not in tasks.columns_dict:
        tasks.add_column("owner", str)
    tasks.create_index(["owner", "created_at", "task_id"], if_not_exists=True)


# Append only: version N is MIGRATIONS[N - 1]; a shipped migration is never edited.
# PG_MIGRATIONS below holds the same versions in PostgreSQL's terms.
MIGRATIONS: list[Callable[[Any], None]] = [
    _migration_1,
    _migration_2,
    _migration_3,
    sqlite_migration,  # 4: task_measurements
]


# --- the same schema, in PostgreSQL's terms -------------------------------------------

# Text sorts byte-wise (COLLATE "C"), as in SQLite, so both backends page identically
# whatever the database's locale.
_PG_MIGRATION_1 = [
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
_PG_MIGRATION_2 = [
    "CREATE INDEX IF NOT EXISTS tasks_created_at_task_id_idx ON tasks (created_at, task_id)",
]
_PG_MIGRATION_3 = [
    'ALTER TABLE tasks ADD COLUMN IF NOT EXISTS owner text COLLATE "C"',
    "CREATE INDEX IF NOT EXISTS tasks_owner_created_at_task_id_idx "
    "ON tasks (owner, created_at, task_id)",
]
# Append only, version N is PG_MIGRATIONS[N - 1], in step with MIGRATIONS.
PG_MIGRATIONS: list[list[str]] = [
    _PG_MIGRATION_1,
    _PG_MIGRATION_2,
    _PG_MIGRATION_3,
    MEASUREMENT_PG_MIGRATION,  # 4: task_measurements
]


def schema_too_new(current: int, known: int) -> DatabaseError:
    """The error of a database migrated by a newer program (``current`` > ``known``)."""
    return DatabaseError(
        f"the mirror database has schema version {current}, newer than this "
        f"program's {known}; upgrade mofsim or rebuild the mirror"
    )
