"""Wake the supervisor when something lands in ``incoming/`` or ``control/cancel/``.

On Linux the watch is a bare inotify descriptor, read by a thread: a job file renamed
into the queue wakes the supervisor within a millisecond.  watchdog's inotify observer
is not used there because it holds every IN_MOVED_FROM for half a second (to pair
moves) and its queue is FIFO, so each claim (a rename *out of* ``incoming/``) delayed
the next arrival by up to 0.5 s.  Elsewhere watchdog's native observer is used.  The
supervisor's periodic rescan remains the fallback where no notification ever arrives
(network filesystems).
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import select
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from loguru import logger

from mofsim_core.model_requests import model_control_dirs
from spool.layout import SpoolPaths

IN_CLOSE_WRITE = 0x00000008
IN_MOVED_TO = 0x00000080
IN_CREATE = 0x00000100
_MASK = IN_CLOSE_WRITE | IN_MOVED_TO | IN_CREATE


class InotifyWatch:
    """Calls ``on_change`` whenever a file is created, written or moved into ``dirs``."""

    def __init__(self, dirs: list[Path], on_change: Callable[[], None]) -> None:
        libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
        self._fd = libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        if self._fd < 0:
            raise OSError(ctypes.get_errno(), "inotify_init1 failed")
        for d in dirs:
            if libc.inotify_add_watch(self._fd, os.fsencode(d), _MASK) < 0:
                err = ctypes.get_errno()
                os.close(self._fd)
                raise OSError(err, f"inotify_add_watch({d}) failed: {os.strerror(err)}")
        self._stop_r, self._stop_w = os.pipe()
        self._on_change = on_change
        self._thread = threading.Thread(target=self._run, name="spool-inotify", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        while True:
            ready, _, _ = select.select([self._fd, self._stop_r], [], [])
            if self._stop_r in ready:
                return
            try:
                while os.read(self._fd, 65536):
                    pass  # the content is irrelevant: the supervisor rescans the queue
            except BlockingIOError:
                pass
            self._on_change()

    def stop(self) -> None:
        os.write(self._stop_w, b"x")
        self._thread.join(timeout=5)
        for fd in (self._fd, self._stop_r, self._stop_w):
            with contextlib.suppress(OSError):
                os.close(fd)


class SpoolWatcher:
    def __init__(self, paths: SpoolPaths, on_change: Callable[[], None]) -> None:
        self.paths = paths
        self.on_change = on_change
        self._impl: Any = None

    def _dirs(self) -> list[Path]:
        return (
            [d for _, d in self.paths.priority_dirs()]
            + [self.paths.cancel_dir]
            + model_control_dirs(self.paths)
        )

    def start(self) -> None:
        if sys.platform.startswith("linux"):
            try:
                self._impl = InotifyWatch(self._dirs(), self.on_change)
                self._impl.start()
                return
            except OSError as exc:  # e.g. the inotify watch limit is reached
                logger.warning("inotify unavailable ({}); trying watchdog", exc)
        self._impl = _start_watchdog(self._dirs(), self.on_change)

    def stop(self) -> None:
        if self._impl is not None:
            self._impl.stop()
            self._impl = None


def _start_watchdog(dirs: list[Path], on_change: Callable[[], None]) -> Any:
    try:
        from watchdog.events import FileSystemEvent, FileSystemEventHandler
        from watchdog.observers import Observer
    except ImportError:
        logger.warning("watchdog not installed: relying on the periodic rescan")
        return None

    class Handler(FileSystemEventHandler):
        def on_any_event(self, event: FileSystemEvent) -> None:
            on_change()

    observer = Observer()
    for d in dirs:
        observer.schedule(Handler(), str(d), recursive=False)
    observer.daemon = True
    try:
        observer.start()
    except OSError as exc:
        logger.warning("file watching unavailable ({}): relying on the rescan", exc)
        return None

    class Stopper:
        def stop(self) -> None:
            observer.stop()
            observer.join(timeout=5)

    return Stopper()
