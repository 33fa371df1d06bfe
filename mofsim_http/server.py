"""Running the HTTP API: inside the daemon's event loop, or alone (``mofsim serve``).

Either way the server only reads and writes the spool and the mirror; alone, it needs a
daemon on the same spool for tasks to run.  Before listening anywhere but loopback it
checks that at least one API key exists, and refuses otherwise.
"""

from __future__ import annotations

import asyncio
import gc
import importlib
import signal
from pathlib import Path

from aiohttp import web
from loguru import logger

from mofsim_core.api_keys import KeyStore
from mofsim_core.config import DEFAULT_BIND, Config
from mofsim_core.mirror import Mirror
from mofsim_core.slot_state import daemon_status
from mofsim_http.auth import check_bind
from spool.errors import ValidationError
from spool.store import Spool

# Open requests get this long to finish on shutdown (SSE streams end at once).
SHUTDOWN_TIMEOUT_S = 5.0
# What submissions import on first use: structure parsing in every accepted format, the
# checks, the overlap search.
REQUEST_PATH_MODULES = (
    "ase.io",
    "ase.io.extxyz",
    "ase.io.cif",
    "ase.io.vasp",
    "scipy.spatial",
    "executors.structure_io",
    "executors.structure_checks",
    "executors.close_pairs",
)


def parse_bind(value: str | None) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:8000`` for IPv6) into its parts."""
    text = (value or DEFAULT_BIND).strip()
    host, sep, port = text.rpartition(":")
    host = host.strip()
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValidationError(
            f"http must be HOST:PORT (e.g. {DEFAULT_BIND}), got {text!r}", field="http"
        )
    return host, int(port)


def settle_heap() -> None:
    """Import what requests will need, then exempt every object alive now from the
    cyclic garbage collector.

    Importing here spares the first submission the import of ASE and its friends.  A
    full collection walks every tracked object, and with ASE, NumPy and SciPy loaded
    those are many: it comes rarely, but every request in flight waits it out (the
    README gives the latency benchmark's figures).  Modules, classes and the application
    live as long as the process anyway; frozen, they are skipped, and collections walk
    only what requests create.  Called once by the process entry points, after the
    server is up."""
    for name in REQUEST_PATH_MODULES:
        importlib.import_module(name)
    gc.collect()
    gc.freeze()


class HttpServer:
    """The application on an ``AppRunner``/``TCPSite`` in the current event loop."""

    def __init__(
        self, config: Config, *, spool: Spool | None = None, mirror: Mirror | None = None
    ) -> None:
        self.config = config
        self.host, self.port = parse_bind(config.http)
        self.spool = spool or Spool(config.spool_path, limits=config.limits)
        self.mirror = mirror
        self.runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def check(self) -> None:
        """Refuse settings that must not serve: call before starting anything else."""
        if not self.config.max_upload_mb > 0:
            raise ValidationError("max_upload_mb must be positive", field="max_upload_mb")
        check_bind(self.host, KeyStore(self.config.api_keys_path, self.spool.paths))

    async def start(self) -> None:
        from mofsim_http.app import create_app

        self.check()
        app = create_app(self.config, spool=self.spool, mirror=self.mirror)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=SHUTDOWN_TIMEOUT_S)
        await runner.setup()
        site = web.TCPSite(runner, self.host, self.port, reuse_address=True)
        try:
            await site.start()
        except OSError as exc:
            await runner.cleanup()
            raise ValidationError(
                f"cannot listen on {self.host}:{self.port}: {exc.strerror or exc}", field="http"
            ) from exc
        self.runner = runner
        logger.info("HTTP API on {} (docs at {}/docs)", self.url, self.url)

    def settle(self) -> None:
        settle_heap()

    def api_p99(self) -> float | None:
        from mofsim_http.app import api_p99

        return api_p99()

    async def stop(self) -> None:
        if self.runner is not None:
            runner, self.runner = self.runner, None
            await runner.cleanup()
            logger.info("HTTP API stopped")


def serve(config: Config, *, ready_file: Path | None = None) -> int:
    """Blocking: serve the API on ``config.http`` until SIGTERM or Ctrl-C."""
    from mofsim_core.logs import setup_logging

    setup_logging(config)
    server = HttpServer(config)
    server.check()

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await server.start()
        settle_heap()
        if not daemon_status(server.spool.root)["alive"]:
            logger.warning(
                "no daemon is running on spool {}: tasks are queued but will not "
                "run until one starts (mofsim daemon)",
                server.spool.root,
            )
        if ready_file is not None:
            ready_file.write_text(server.url)
        publisher = asyncio.create_task(_publish_latency(server))
        try:
            await stop.wait()
        finally:
            publisher.cancel()
            await server.stop()

    asyncio.run(main())
    return 0


async def _publish_latency(server: HttpServer) -> None:
    """A server on its own hands its P99 to the daemon's alert rules through the spool
    (``mofsim_core.api_latency``); inside the daemon it is asked directly instead."""
    from mofsim_core import api_latency

    while True:
        api_latency.publish(server.spool.paths.state_dir, server.api_p99())
        await asyncio.sleep(api_latency.PUBLISH_INTERVAL_S)
