"""Where things live in a spool directory.  Pure path arithmetic, no I/O beyond mkdir."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from spool.job import PRIORITY_DIRS
from spool.states import TERMINAL_DIRS

# <created_ms 13 digits>-<task_id>.json
# Both are matched whole (``fullmatch``): ``$`` would let a trailing newline through.
CANONICAL_NAME = re.compile(r"(\d{13})-([A-Za-z0-9][A-Za-z0-9_.-]{0,127})\.json")
SAFE_TOKEN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")


def is_safe_token(value: str) -> bool:
    """Ids used as file names: no separators, no leading dot, bounded length."""
    return bool(SAFE_TOKEN.fullmatch(value)) and ".." not in value


@dataclass(frozen=True)
class SpoolPaths:
    root: Path

    @property
    def tmp(self) -> Path:
        return self.root / "tmp"

    @property
    def incoming(self) -> Path:
        return self.root / "incoming"

    def priority_dir(self, level: int) -> Path:
        return self.incoming / PRIORITY_DIRS[level]

    def priority_dirs(self) -> list[tuple[int, Path]]:
        return [(level, self.incoming / name) for level, name in sorted(PRIORITY_DIRS.items())]

    @property
    def claimed(self) -> Path:
        return self.root / "claimed"

    def claimed_dir(self, slot: str) -> Path:
        return self.claimed / slot

    def terminal_dir(self, state: str) -> Path:
        return self.root / TERMINAL_DIRS[state]

    @property
    def rejected(self) -> Path:
        return self.root / "rejected"

    @property
    def cancel_dir(self) -> Path:
        return self.root / "control" / "cancel"

    def cancel_marker(self, task_id: str) -> Path:
        return self.cancel_dir / task_id

    @property
    def tasks(self) -> Path:
        return self.root / "tasks"

    def workspace(self, task_id: str) -> Path:
        return self.tasks / task_id

    def events_file(self, task_id: str) -> Path:
        return self.workspace(task_id) / "events.jsonl"

    def result_file(self, task_id: str) -> Path:
        return self.workspace(task_id) / "result.json"

    def error_file(self, task_id: str) -> Path:
        return self.workspace(task_id) / "error.json"

    @property
    def structures(self) -> Path:
        return self.root / "structures"

    @property
    def models(self) -> Path:
        return self.root / "models"

    @property
    def state_dir(self) -> Path:
        """Daemon-private state: mirror database, pid file, simulated-device state."""
        return self.root / "state"

    def all_dirs(self) -> list[Path]:
        dirs = [
            self.tmp,
            self.incoming,
            self.claimed,
            self.rejected,
            self.cancel_dir,
            self.tasks,
            self.structures,
            self.models,
            self.state_dir,
        ]
        dirs += [p for _, p in self.priority_dirs()]
        dirs += [self.terminal_dir(s) for s in TERMINAL_DIRS]
        return dirs

    def ensure(self) -> SpoolPaths:
        for d in self.all_dirs():
            d.mkdir(parents=True, exist_ok=True)
        return self
