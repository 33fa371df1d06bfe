"""The readiness datagram reaches a real unix socket, as systemd would receive it."""

from __future__ import annotations

import socket
from pathlib import Path

from mofsimd.sdnotify import notify


def test_notify_sends_lines_to_the_socket(tmp_path: Path) -> None:
    path = tmp_path / "notify.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as server:
        server.bind(str(path))
        assert notify("READY=1", "STATUS=up", env={"NOTIFY_SOCKET": str(path)})
        assert server.recv(4096).decode() == "READY=1\nSTATUS=up"


def test_outside_systemd_it_is_a_no_op(tmp_path: Path) -> None:
    assert notify("READY=1", env={}) is False
    assert notify("READY=1", env={"NOTIFY_SOCKET": str(tmp_path / "missing.sock")}) is False
