"""Where the faces are put together: the daemon with its embedded API, the API alone.

The supervisor and the HTTP server do not know each other; the CLI, which starts them,
builds the server and hands it to the daemon."""

from __future__ import annotations

from pathlib import Path

from mofsim_core.config import DEFAULT_BIND, Config

__all__ = ["DEFAULT_BIND", "run_daemon", "serve"]


def run_daemon(config: Config, *, ready_file: Path | None = None) -> int:
    """The supervisor, serving the API from its own event loop when ``config.http``."""
    from mofsimd.daemon import run_daemon as supervise

    http = None
    if config.http:
        from mofsim_http.server import HttpServer

        http = HttpServer(config)
    return supervise(config, ready_file=ready_file, http=http)


def serve(config: Config, *, ready_file: Path | None = None) -> int:
    """The API alone on a spool; a daemon on the same spool runs the tasks."""
    from mofsim_http.server import serve as serve_http

    return serve_http(config, ready_file=ready_file)
