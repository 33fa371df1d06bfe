"""An executor's liveness towards its daemon: it dies with the daemon, and it beats.

The daemon takes a slot out of service when its executor's heartbeat stops
(``heartbeat_timeout_s``); the heartbeat is a ``{"type": "heartbeat"}`` line on the same
stdout channel as every other reply.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from typing import Any


def start_heartbeat(reply: Callable[..., Any], interval_s: float) -> threading.Event:
    """Beat every ``interval_s`` from a thread of its own: torch and numpy release the
    interpreter lock while they compute, so a long force call still beats, and a
    stopped process, or one wedged with the lock held, goes silent.  ``reply`` must be
    safe to call from two threads.  Set the returned event to stop."""
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(interval_s):
            try:
                reply(type="heartbeat", t=time.time())
            except (OSError, ValueError):
                return  # the daemon is gone; the executor dies with it

    threading.Thread(target=beat, name="heartbeat", daemon=True).start()
    return stop


def die_with_parent() -> None:
    """Ask the kernel for SIGKILL when the daemon that started this process dies.

    The daemon says who it is in ``MOFSIM_PARENT_PID``: if it died before the request
    took effect, the parent is already someone else and this process leaves at once."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    pr_set_pdeathsig = 1
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(pr_set_pdeathsig, int(signal.SIGKILL), 0, 0, 0) != 0:
            return
    except (OSError, AttributeError):
        return
    expected = os.environ.get("MOFSIM_PARENT_PID", "")
    if expected.isdigit() and os.getppid() != int(expected):
        os._exit(1)
