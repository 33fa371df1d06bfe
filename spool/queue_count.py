"""How many job files wait in the queue, counted without listing it on every submit.

Listing a priority folder of ten thousand names takes milliseconds; a submission is
meant to take a few.  A folder's count is kept with the folder's identity and change
time and listed again only when that changes, or when the count is older than
``max_age_s``: a change time can miss a second change within the file system's clock
tick, so a count is never trusted for long.  The result bounds the queue softly: two
submitters racing near the limit may both get in.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

from spool.layout import SpoolPaths


class QueueCounter:
    def __init__(self, paths: SpoolPaths, max_age_s: float = 1.0) -> None:
        self.paths = paths
        self.max_age_s = max_age_s
        self._counts: dict[Path, tuple[tuple[int, int], float, int]] = {}
        self._lock = threading.Lock()

    def count(self) -> int:
        """Job files in every priority folder of ``incoming/``."""
        return sum(self._folder(d) for _, d in self.paths.priority_dirs())

    def _folder(self, folder: Path) -> int:
        try:
            st = os.stat(folder)
        except OSError:
            return 0  # missing or unusable: publishing there says what is wrong
        stamp = (st.st_ino, st.st_mtime_ns)
        now = time.monotonic()
        with self._lock:
            known = self._counts.get(folder)
        if known is not None and known[0] == stamp and now - known[1] < self.max_age_s:
            return known[2]
        try:
            names = os.listdir(folder)
        except OSError:
            return 0
        n = sum(1 for name in names if name.endswith(".json") and not name.startswith("."))
        with self._lock:
            self._counts[folder] = (stamp, now, n)
        return n

    def published(self, folder: Path) -> None:
        """A job file this process has just added to ``folder``: its count follows
        without listing it again (a batch of a thousand would otherwise list it a
        thousand times).  The count's age is kept, so it is still listed within
        ``max_age_s``, which corrects any change made meanwhile by someone else."""
        with self._lock:
            known = self._counts.get(folder)
        if known is None:
            return
        try:
            st = os.stat(folder)
        except OSError:
            return
        with self._lock:
            self._counts[folder] = ((st.st_ino, st.st_mtime_ns), known[1], known[2] + 1)
