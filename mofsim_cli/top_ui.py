"""The state and keys of ``mofsim top``'s screen, apart from how it is drawn.

``TopUI`` is plain state (the last ``TopState``, the selection, the mode, the log pane's
lines) and ``handle_key`` returns what the terminal loop must do (quit, cancel a task,
follow a log), so every key can be tested without a terminal.
"""

from __future__ import annotations

import time
from collections import deque

from mofsim_cli.top_data import TaskRow, TopState
from spool.events import Event

LOG_KEEP = 1000
KEYS_MAIN = "↑/↓ or j/k select   l follow log   c cancel   q quit"
KEYS_LOG = "l or Esc back   c cancel   q quit"
Action = tuple[str, str | None]  # ("quit" | "cancel" | "follow", task id)


class TopUI:
    def __init__(self, label: str, refresh: float) -> None:
        self.label = label
        self.refresh = refresh
        self.state: TopState | None = None
        self.error: str | None = None  # why the last refresh failed
        self.failing_since: float | None = None
        self.selected: str | None = None
        self.mode = "main"  # or "log"
        self.confirm: str | None = None  # task id awaiting y/n
        self.message: tuple[str, str] | None = None  # (text, style)
        self.log_task: str | None = None
        self.log_lines: deque[Event] = deque(maxlen=LOG_KEEP)
        self.live = True  # False: drawn once, nothing will retry

    # -- data in -------------------------------------------------------------------------

    def apply_state(self, state: TopState) -> None:
        before = [r.task_id for r in self.selectable()]
        self.state = state
        self.error = None
        self.failing_since = None
        ids = [r.task_id for r in self.selectable()]
        if self.selected not in ids:
            # The selected task finished or left the queue: keep the cursor's place.
            at = before.index(self.selected) if self.selected in before else 0
            self.selected = ids[min(at, len(ids) - 1)] if ids else None

    def apply_error(self, text: str, now: float | None = None) -> None:
        self.error = text
        if self.failing_since is None:
            self.failing_since = time.time() if now is None else now

    def apply_log(self, task_id: str, events: list[Event]) -> None:
        if task_id == self.log_task:
            self.log_lines.extend(events)

    def say(self, text: str, style: str = "") -> None:
        self.message = (text, style)

    # -- selection -----------------------------------------------------------------------

    def selectable(self) -> list[TaskRow]:
        """Running tasks first, then the queue in scheduling order."""
        if self.state is None:
            return []
        return [*self.state.running, *self.state.queued]

    def row(self, task_id: str | None) -> TaskRow | None:
        for r in self.selectable() + (self.state.recent if self.state else []):
            if r.task_id == task_id:
                return r
        return None

    def _move(self, step: int) -> None:
        ids = [r.task_id for r in self.selectable()]
        if not ids:
            self.selected = None
            return
        i = ids.index(self.selected) if self.selected in ids else -step
        self.selected = ids[max(0, min(len(ids) - 1, i + step))]

    # -- keys ----------------------------------------------------------------------------

    def handle_key(self, key: str) -> Action | None:
        if self.confirm is not None:
            task_id, self.confirm = self.confirm, None
            if key in ("y", "Y"):
                self.say(f"cancelling {task_id} ...", "magenta")
                return ("cancel", task_id)
            self.say(f"{task_id} not cancelled", "dim")
            return None
        if key in ("q", "Q"):
            return ("quit", None)
        if key in ("up", "k") and self.mode == "main":
            self._move(-1)
        elif key in ("down", "j") and self.mode == "main":
            self._move(1)
        elif key == "l" or (key == "esc" and self.mode == "log"):
            return self._toggle_log()
        elif key == "c":
            target = self.log_task if self.mode == "log" else self.selected
            if target is None:
                self.say("no task selected", "yellow")
            else:
                self.confirm = target
        elif key == "esc":
            self.message = None
        return None

    def _toggle_log(self) -> Action | None:
        if self.mode == "log":
            self.mode, self.log_task = "main", None
            return ("follow", None)
        if self.selected is None:
            self.say("no task selected", "yellow")
            return None
        self.mode, self.log_task = "log", self.selected
        self.log_lines.clear()
        self.message = None
        return ("follow", self.selected)
