"""The watcher wakes the supervisor on arrivals and cancel requests, without delay."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

from mofsimd.watcher import SpoolWatcher, _start_watchdog
from spool.layout import SpoolPaths


def test_rename_into_queue_and_cancel_marker_wake_it(tmp_path: Path) -> None:
    paths = SpoolPaths(tmp_path).ensure()
    woke = threading.Event()
    watcher = SpoolWatcher(paths, woke.set)
    watcher.start()
    try:
        # A claim (rename out of the queue) must not hold back the next arrival.
        (paths.priority_dir(2) / "a.json").write_text("{}")
        assert woke.wait(5)
        woke.clear()
        os.rename(paths.priority_dir(2) / "a.json", paths.tmp / "claimed-away.json")
        woke.clear()
        (paths.tmp / "b.json").write_text("{}")
        t0 = time.monotonic()
        os.rename(paths.tmp / "b.json", paths.priority_dir(0) / "b.json")
        assert woke.wait(5)
        assert time.monotonic() - t0 < 0.2
        woke.clear()
        (paths.cancel_dir / "task_x").write_bytes(b"")
        assert woke.wait(5)
    finally:
        watcher.stop()


def test_watchdog_fallback_also_reports_arrivals(tmp_path: Path) -> None:
    paths = SpoolPaths(tmp_path).ensure()
    woke = threading.Event()
    impl = _start_watchdog([paths.priority_dir(2)], woke.set)
    assert impl is not None
    try:
        (paths.tmp / "c.json").write_text("{}")
        os.rename(paths.tmp / "c.json", paths.priority_dir(2) / "c.json")
        assert woke.wait(5)
    finally:
        impl.stop()
