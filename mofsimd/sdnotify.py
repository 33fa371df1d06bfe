"""systemd's readiness protocol (``Type=notify``), without a dependency.

systemd passes a datagram socket in ``NOTIFY_SOCKET``; the daemon sends ``READY=1``
once the spool is recovered and every executor is up, ``STATUS=...`` lines as it
works, and ``STOPPING=1`` when a graceful shutdown begins.  Outside systemd the
variable is absent and every call is a no-op.
"""

from __future__ import annotations

import os
import socket


def notify(*lines: str, env: dict[str, str] | None = None) -> bool:
    """Send ``KEY=value`` lines; True when a notification socket took them."""
    address = (env if env is not None else os.environ).get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):  # abstract namespace
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(address)
            sock.sendall("\n".join(lines).encode())
    except OSError:
        return False
    return True


def ready(status: str) -> bool:
    return notify("READY=1", f"STATUS={status}", f"MAINPID={os.getpid()}")


def stopping(status: str = "shutting down") -> bool:
    return notify("STOPPING=1", f"STATUS={status}")
