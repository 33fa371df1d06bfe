"""PostgreSQL for tests: the local server, one throw-away schema per test, and a TCP
forwarder that can cut the connection to the server and restore it (an outage that
leaves the shared server itself running)."""

from __future__ import annotations

import functools
import os
import socket
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

# CI's local server: trust authentication, database "test".
PG_URL = os.environ.get("MOFSIM_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")


@functools.cache
def pg_unavailable() -> str | None:
    """Why PostgreSQL tests cannot run here, or None when the server answers."""
    try:
        import psycopg
    except ImportError:
        return "psycopg is not installed"
    try:
        with psycopg.connect(PG_URL, connect_timeout=3) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as exc:
        return f"PostgreSQL not reachable at {PG_URL}: {str(exc).strip().splitlines()[0]}"
    return None


def require_pg() -> None:
    reason = pg_unavailable()
    if reason:
        pytest.skip(reason)


def with_schema(url: str, schema: str) -> str:
    """The URL with every session's search_path set to ``schema``."""
    sep = "&" if "?" in url else "?"
    return f"{url}{sep}options=-csearch_path%3D{schema}"


def raw_execute(sql: str, params: list[Any] | None = None, url: str = PG_URL) -> list[Any]:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        cur = conn.execute(sql, params)
        return cur.fetchall() if cur.description else []


@contextmanager
def pg_schema() -> Iterator[tuple[str, str]]:
    """A fresh schema (dropped afterwards) and a DSN whose sessions live in it; skips
    the test when the server is not reachable."""
    require_pg()
    schema = f"t_{uuid.uuid4().hex[:16]}"
    raw_execute(f"CREATE SCHEMA {schema}")
    try:
        yield schema, with_schema(PG_URL, schema)
    finally:
        raw_execute(f"DROP SCHEMA {schema} CASCADE")


def pg_target() -> tuple[str, int]:
    from psycopg.conninfo import conninfo_to_dict

    params = conninfo_to_dict(PG_URL)
    return str(params.get("host") or "127.0.0.1"), int(params.get("port") or 5432)


class TcpProxy:
    """Forwards a loopback port to the PostgreSQL server.  ``cut()`` closes the port and
    every connection through it (clients see the server vanish: refused connections,
    dropped sessions); ``restore()`` listens on the same port again."""

    def __init__(self, target: tuple[str, int] | None = None) -> None:
        self.target = target or pg_target()
        self._lock = threading.Lock()
        self._socks: set[socket.socket] = set()
        self._listener: socket.socket | None = None
        self.port = 0
        self.restore()

    def url(self, schema: str | None = None) -> str:
        from psycopg.conninfo import conninfo_to_dict

        params = conninfo_to_dict(PG_URL)
        user = f"{params['user']}@" if params.get("user") else ""
        url = f"postgresql://{user}127.0.0.1:{self.port}/{params.get('dbname', '')}"
        return with_schema(url, schema) if schema else url

    def restore(self) -> None:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(16)
        self.port = listener.getsockname()[1]
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def cut(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            listener.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept()
            listener.close()
        with self._lock:
            socks, self._socks = list(self._socks), set()
        for s in socks:
            _close(s)

    close = cut

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=5)
                upstream.settimeout(None)
            except OSError:
                _close(client)
                continue
            with self._lock:
                if self._listener is not listener:  # cut meanwhile
                    _close(client)
                    _close(upstream)
                    return
                self._socks |= {client, upstream}
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        with self._lock:
            self._socks -= {src, dst}
        _close(src)
        _close(dst)


def _close(s: socket.socket) -> None:
    try:
        s.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    s.close()
