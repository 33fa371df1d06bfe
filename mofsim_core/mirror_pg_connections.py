"""PostgreSQL connections for the mirror through psycopg 3: one per thread, in autocommit
mode, healed after the server drops them.

The daemon writes from its writer thread, the HTTP server reads from its worker
threads, and none of them waits for another's connection.  Writes are short explicit
transactions; a read that needs two queries (a page and its total) runs in one
REPEATABLE READ snapshot.  A connection the server dropped (restart, network) is thrown
away and the next call connects afresh, so the mirror heals itself once the database is
back.  Every psycopg error leaves as ``spool.errors.DatabaseError``.  What the mirror
reads and writes over these connections is ``mofsim_core.mirror_pg``'s business.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from mofsim_core.redact import mask_url
from spool.errors import DatabaseError, ValidationError

T = TypeVar("T")

# Defaults a DSN may override: fail fast when the server is away, notice a dead peer.
CONNECT_DEFAULTS = {
    "connect_timeout": "5",
    "application_name": "mofsim",
    "keepalives": "1",
    "keepalives_idle": "30",
    "keepalives_interval": "10",
    "keepalives_count": "3",
}


class PgConnections:
    """This process's connections to the database a libpq DSN names (``postgresql://...``).
    Raises ValidationError (field ``database_url``) for a DSN libpq cannot parse."""

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
        for key, value in CONNECT_DEFAULTS.items():
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

    def run(
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

    def write(self, work: Callable[[Any], T], *, retry: bool = True) -> T:
        """``work(conn)`` in one transaction: all of it or none."""

        def in_transaction(conn: Any) -> T:
            with conn.transaction():
                return work(conn)

        return self.run(in_transaction, retry=retry)

    def snapshot(self, work: Callable[[Any], T]) -> T:
        """Several queries that see one state of the database."""

        def in_snapshot(conn: Any) -> T:
            conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            try:
                return work(conn)
            finally:
                if not conn.broken and conn.info.transaction_status != 0:
                    conn.execute("ROLLBACK")

        return self.run(in_snapshot)

    def close(self) -> None:
        with self._registry_lock:
            self._closed = True
            conns, self._conns = list(self._conns.values()), {}
        for _, conn in conns:
            conn.close()
