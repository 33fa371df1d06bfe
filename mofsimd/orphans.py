"""Claims nobody in this daemon is running: resolved by the recovery sweep's rules.

A claim lands here when an executor of an earlier daemon still holds its lock (found by
the sweep at start, or answered ``BUSY`` by an executor), or when nothing in this daemon
accounts for it any more: no executor runs it and no transition of it waits for disk
space (a bug cut its handling short).  Each turn of the loop looks at them again; once
nobody holds a claim's lock it is resolved as after a crash: completed when its result
exists, ended as ``error.json`` says, otherwise requeued with one more attempt.  Until
then its slot takes no other task, so two processes never share one slot's device.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from loguru import logger

from spool import claim_lock
from spool.errors import StorageError
from spool.recovery import SweepReport, recover_claim
from spool.store import Spool


class OrphanClaims:
    def __init__(self, spool: Spool, max_attempts: int) -> None:
        self.spool = spool
        self.max_attempts = max_attempts
        self.paths: set[Path] = set()

    def __bool__(self) -> bool:
        return bool(self.paths)

    def add(self, claimed: Path) -> None:
        self.paths.add(claimed)

    def slots(self) -> set[str]:
        """Slots that must not take a task while an orphan's claim sits in them."""
        return {p.parent.name for p in self.paths}

    def adopt_strays(self, busy: Iterable[Path], waiting: set[str]) -> None:
        """Every claim on disk that no executor runs (``busy``) and no pending transition
        will move (``waiting``: task ids) becomes an orphan."""
        known = set(busy) | self.paths
        root = self.spool.paths.claimed
        for slot in _listdir(root):
            for name in _listdir(root / slot):
                path = root / slot / name
                if name.endswith(".json") and path not in known and name[:-5] not in waiting:
                    logger.warning("claim {} has no owner in this daemon; recovering it", name)
                    self.paths.add(path)

    def resolve(self) -> list[str]:
        """Recover the claims nobody holds any more; returns their task ids."""
        done = []
        for path in list(self.paths):
            if path.exists() and claim_lock.held(path):
                continue
            if path.exists():
                report = SweepReport()
                try:
                    recover_claim(self.spool, path, self.max_attempts, report)
                except StorageError:
                    continue  # the disk is full: this claim waits for the next turn
                logger.info("orphaned claim {} resolved: {}", path.name, vars(report))
                done.append(path.name[: -len(".json")])
            self.paths.discard(path)
        return done


def _listdir(d: Path) -> list[str]:
    try:
        return sorted(os.listdir(d))
    except (FileNotFoundError, NotADirectoryError):
        return []
