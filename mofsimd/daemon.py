"""The daemon's entry point: the supervisor until SIGTERM, with the API it may host.

Whoever starts the daemon builds the HTTP server and hands it in, so this package never
imports a face.
"""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path
from typing import Protocol

from loguru import logger

from mofsim_core.config import Config
from mofsim_core.devices import DeviceBackend
from mofsim_core.logs import setup_logging
from mofsimd import sdnotify
from mofsimd.supervisor import Supervisor
from spool.errors import MofsimError


class EmbeddedServer(Protocol):
    """What the daemon needs of an HTTP server it hosts in its own event loop.

    Whoever starts the daemon builds the server and hands it in, so the supervisor never
    imports a face."""

    def check(self) -> None: ...

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    def settle(self) -> None: ...

    def api_p99(self) -> float | None: ...


def run_daemon(
    config: Config,
    *,
    backend: DeviceBackend | None = None,
    ready_file: Path | None = None,
    http: EmbeddedServer | None = None,
) -> int:
    """Blocking entry point: runs until SIGTERM/SIGINT, then shuts down gracefully.

    With ``http`` the API is served from the same event loop once the supervisor is
    ready, and stops after it (requests keep being answered during the grace period for
    running tasks)."""
    if http is not None:
        http.check()  # refuse an unsafe bind before claiming anything

    async def main() -> int:
        sup = Supervisor(
            config, backend=backend, api_p99=http.api_p99 if http is not None else None
        )
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, sup.request_stop)
        runner = asyncio.create_task(sup.run())
        ready = asyncio.create_task(sup.ready.wait())
        await asyncio.wait({runner, ready}, return_when=asyncio.FIRST_COMPLETED)
        ready.cancel()
        code = 0
        try:
            if sup.ready.is_set() and http is not None:
                try:
                    await http.start()
                except MofsimError as exc:
                    logger.error("{}; stopping", exc.message)
                    sup.request_stop()
                    code = 1
            if sup.ready.is_set() and code == 0:
                if http is not None:
                    http.settle()
                sdnotify.ready(f"{len(sup.executors)} slots up on {sup.spool.root}")
                if ready_file is not None:
                    ready_file.write_text(str(time.time()))
            await runner
        finally:
            if http is not None:
                await http.stop()
        return code

    setup_logging(config)
    return asyncio.run(main())
