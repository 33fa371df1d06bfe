"""The states a task passes through: the one list every layer and dialect derives from.

``TaskState`` members are ``str``, so they compare equal to, hash like and serialize
as the uppercase names the job files, the mirror and the spec's API carry.  A task in
a terminal state has a directory of its own in the spool (``TERMINAL_DIRS``); the
others live in ``incoming/`` and ``claimed/``.  The MIRA guide knows only four
statuses (``TaskState.mira``); its dialect shows the state itself in lowercase beside
(``TaskState.mira_detail``).
"""

from __future__ import annotations

from enum import StrEnum


class TaskState(StrEnum):
    PENDING = "PENDING"
    QUEUED = "QUEUED"
    ASSIGNED = "ASSIGNED"
    RUNNING = "RUNNING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"
    TIMEOUT = "TIMEOUT"

    @property
    def directory(self) -> str | None:
        """The spool directory a task in this state lives in, for terminal states."""
        return TERMINAL_DIRS.get(self)

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL_DIRS

    @property
    def mira(self) -> str:
        """The MIRA guide's status: pending, running, completed or failed.  Its clients
        poll until completed or failed, so every end that is not a success is failed."""
        return MIRA_STATUS[self]

    @property
    def mira_detail(self) -> str:
        """The state itself in the MIRA dialect's lowercase (queued, cancelled, ...)."""
        return self.value.lower()

    @classmethod
    def parse(cls, text: str) -> TaskState | None:
        """The state named ``text`` in either dialect's spelling (or a synonym people
        type, like ``done``), or None."""
        name = text.strip()
        synonym = STATE_SYNONYMS.get(name.lower())
        if synonym is not None:
            return synonym
        try:
            return cls(name.upper())
        except ValueError:
            return None


MIRA_STATUSES = ("pending", "running", "completed", "failed")
MIRA_STATUS: dict[str, str] = {
    TaskState.PENDING: "pending",
    TaskState.QUEUED: "pending",
    TaskState.ASSIGNED: "pending",
    TaskState.RUNNING: "running",
    TaskState.COMPLETED: "completed",
    TaskState.FAILED: "failed",
    TaskState.CANCELLED: "failed",
    TaskState.TIMEOUT: "failed",
}


def states_of_mira_status(status: str) -> list[TaskState]:
    """The states one of the MIRA guide's statuses covers (``failed``: failed,
    cancelled and timed out)."""
    return [TaskState(s) for s, m in MIRA_STATUS.items() if m == status]


# Named after what the task came to, not after the state: "done/", not "completed/".
# Typed by ``str``: callers look states up by the plain strings records carry.
TERMINAL_DIRS: dict[str, str] = {
    TaskState.COMPLETED: "done",
    TaskState.FAILED: "failed",
    TaskState.CANCELLED: "cancelled",
    TaskState.TIMEOUT: "timeout",
}

# Words people use for a state, accepted wherever a state is typed into a filter.
STATE_SYNONYMS: dict[str, TaskState] = {
    "canceled": TaskState.CANCELLED,
    "done": TaskState.COMPLETED,
    "finished": TaskState.COMPLETED,
}
TERMINAL_STATES: frozenset[str] = frozenset(TERMINAL_DIRS)
# For membership tests on plain strings (``"QUEUED" in ALL_STATES``), which Python 3.11's
# ``in TaskState`` refuses.
ALL_STATES: tuple[str, ...] = tuple(TaskState)
