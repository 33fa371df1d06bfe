"""The lock an executor holds on a claim for as long as it runs the task.

A claim (``claimed/<slot>/<task_id>.json``) says a task was handed to a slot; it does
not say whether anything is still running it.  The executor that runs it holds an
exclusive ``flock`` on ``claimed/<slot>/<task_id>.lock``; the kernel drops the lock when
that process dies, however it dies.  The recovery sweep therefore requeues a claim only
when nobody holds its lock: a daemon restarted while an orphaned executor still works
on a task leaves the task to it instead of running it a second time.

Lock files are not job files (they do not end in ``.json``): every reader of the claim
directories already ignores them.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path


def lock_path(claimed: Path) -> Path:
    return claimed.with_suffix(".lock")


class ClaimLock:
    """Held by the executor around one run.  ``acquire`` never blocks: it answers False
    when another process holds the lock (that process is running the task)."""

    def __init__(self, claimed: Path) -> None:
        self.path = lock_path(claimed)
        self._fd: int | None = None

    def acquire(self) -> bool:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        return True

    def release(self) -> None:
        """Remove the file, then drop the lock: a later checker finds no file, or a file
        nobody holds; either way the run is over."""
        if self._fd is None:
            return
        with contextlib.suppress(OSError):
            self.path.unlink()
        os.close(self._fd)
        self._fd = None


def held(claimed: Path) -> bool:
    """True while a live process holds the claim's lock."""
    try:
        fd = os.open(lock_path(claimed), os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # closing drops the lock we may just have taken
    return False


def discard(claimed: Path) -> None:
    """Remove a claim's lock file once the claim is resolved (its holder is gone)."""
    with contextlib.suppress(OSError):
        lock_path(claimed).unlink()
