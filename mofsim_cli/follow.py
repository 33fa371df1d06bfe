"""Following a task live, and the displays that show it.

Locally, ``Follower`` re-reads the task's ``events.jsonl`` from the last offset until
the task is terminal; remotely the same ``Event``s come from the server's event stream
(``remote.RemoteFollower``).  Either is an ``EventSource`` for ``follow``.

A task is over when its job file sits in a terminal directory *and* its terminal status
event has been read.  The two are written one after the other by different code paths;
if the event never comes (a process killed between the two), a grace period ends the
wait.  Polling a file every 0.2 s is cheap and needs nothing from the daemon.

Displays: a Rich progress bar (terminal), plain lines (pipes, files), JSON lines, or
nothing (``submit --wait --json`` prints only the result).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any, Protocol

from rich.console import Console
from rich.progress import (
    BarColumn,
    Progress,
    SpinnerColumn,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.text import Text

from mofsim_cli.render import event_json, event_line, print_json, progress_summary, state_text
from spool.errors import TaskNotFound
from spool.events import LEVEL_RANK, Event, read_events
from spool.states import TERMINAL_STATES
from spool.store import Spool

POLL_S = 0.2
GRACE_S = 2.0


def _sleep(seconds: float) -> None:
    # Looked up when a Follower is made, so tests can replace the wait between polls.
    time.sleep(seconds)


class Follower:
    """Iterates over a task's events as they are written; ``state`` holds the terminal
    state once iteration ends."""

    def __init__(
        self,
        spool: Spool,
        task_id: str,
        *,
        poll_s: float = POLL_S,
        grace_s: float = GRACE_S,
        sleep: Callable[[float], None] | None = None,
        clock: Callable[[], float] | None = None,
    ) -> None:
        if spool.locate(task_id) is None:
            raise TaskNotFound(f"task {task_id} not found")
        self.spool = spool
        self.task_id = task_id
        self.path = spool.paths.events_file(task_id)
        self.poll_s = poll_s
        self.grace_s = grace_s
        self.sleep = sleep or _sleep
        self.clock = clock or time.monotonic
        self.state: str | None = None
        self._last = -1  # offset of the last event yielded

    def _new_events(self) -> list[Event]:
        # Offsets are line starts: re-read from the last one and skip it.
        start = max(self._last, 0)
        fresh = [ev for ev in read_events(self.path, start) if ev.offset > self._last]
        if fresh:
            self._last = fresh[-1].offset
        return fresh

    def __iter__(self) -> Iterator[Event]:
        saw_terminal_event = False
        terminal_since: float | None = None
        while True:
            for ev in self._new_events():
                if (
                    ev.kind == "status"
                    and (ev.data.get("extra") or {}).get("status") in TERMINAL_STATES
                ):
                    saw_terminal_event = True
                yield ev
            loc = self.spool.locate(self.task_id)
            if loc is None:
                raise TaskNotFound(f"task {self.task_id} disappeared from the spool")
            if loc.state in TERMINAL_STATES:
                now = self.clock()
                terminal_since = now if terminal_since is None else terminal_since
                if saw_terminal_event or now - terminal_since >= self.grace_s:
                    # One last read: anything appended since the state check.
                    yield from self._new_events()
                    self.state = loc.state
                    return
            else:
                terminal_since = None
            self.sleep(self.poll_s)


class EventSource(Protocol):
    """Events of one task until it ends; ``state`` is its terminal state afterwards
    (None while unfinished, e.g. when interrupted)."""

    state: str | None

    def __iter__(self) -> Iterator[Event]: ...


class Display(Protocol):
    def event(self, ev: Event) -> None: ...

    def close(self, state: str | None) -> None: ...


def _visible(ev: Event, level: str | None) -> bool:
    floor = LEVEL_RANK.get(level, 0) if level else 0
    return LEVEL_RANK.get(str(ev.data.get("level", "INFO")), 1) >= floor


def final_line(task_id: str, state: str | None) -> Text:
    if state is None:  # interrupted: the task itself is not affected
        return Text(f"Stopped following {task_id}; the task goes on.", style="dim")
    return Text(f"Task {task_id} ") + state_text(state)


class QuietDisplay:
    def event(self, ev: Event) -> None:
        return None

    def close(self, state: str | None) -> None:
        return None


class JsonLinesDisplay:
    def __init__(self, level: str | None = None) -> None:
        self.level = level

    def event(self, ev: Event) -> None:
        if _visible(ev, self.level):
            print_json(event_json(ev), compact=True)

    def close(self, state: str | None) -> None:
        return None


class PlainDisplay:
    """One line per event; progress lines only when the whole percentage or the stage
    changes, so a long run piped to a file stays readable."""

    def __init__(
        self, console: Console, task_id: str, level: str | None = None, all_progress: bool = False
    ) -> None:
        self.console = console
        self.task_id = task_id
        self.level = level
        self.all_progress = all_progress
        self._last_key: tuple[Any, ...] | None = None

    def event(self, ev: Event) -> None:
        if not _visible(ev, self.level):
            return
        if ev.kind == "progress" and not self.all_progress:
            extra = ev.data.get("extra") or {}
            frac = extra.get("progress")
            key = (int(100 * frac) if isinstance(frac, int | float) else None, extra.get("stage"))
            if key == self._last_key:
                return
            self._last_key = key
        self.console.print(event_line(ev), soft_wrap=True)

    def close(self, state: str | None) -> None:
        self.console.print(final_line(self.task_id, state), soft_wrap=True)


class BarDisplay:
    """A Rich progress bar fed by progress events; other events print above it."""

    def __init__(self, console: Console, task_id: str, level: str | None = None) -> None:
        self.console = console
        self.task_id = task_id
        self.level = level
        self.progress = Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            BarColumn(),
            TaskProgressColumn(),
            TimeElapsedColumn(),
            console=console,
            transient=False,
        )
        self.bar = self.progress.add_task(f"{task_id} waiting", total=1.0)
        self.progress.start()

    def event(self, ev: Event) -> None:
        extra = ev.data.get("extra") or {}
        if ev.kind == "progress":
            frac = extra.get("progress")
            summary = progress_summary(extra) or str(ev.data.get("message", ""))
            if isinstance(frac, int | float):
                self.progress.update(self.bar, completed=float(frac), description=summary)
            else:
                self.progress.update(self.bar, description=summary)
            return
        if ev.kind == "status":
            status = str(extra.get("status", ""))
            if status == "QUEUED":
                self.progress.reset(self.bar, total=1.0, description=f"{self.task_id} queued")
            elif status == "RUNNING":
                self.progress.update(self.bar, description=f"running on {extra.get('slot')}")
        if _visible(ev, self.level):
            self.progress.console.print(event_line(ev), soft_wrap=True)

    def close(self, state: str | None) -> None:
        if state == "COMPLETED":
            self.progress.update(self.bar, completed=1.0, description="done")
        self.progress.stop()
        self.console.print(final_line(self.task_id, state), soft_wrap=True)


def make_display(
    console: Console,
    task_id: str,
    *,
    as_json: bool = False,
    quiet: bool = False,
    level: str | None = None,
) -> Display:
    if quiet:
        return QuietDisplay()
    if as_json:
        return JsonLinesDisplay(level)
    if console.is_terminal:
        return BarDisplay(console, task_id, level)
    return PlainDisplay(console, task_id, level)


def follow(follower: EventSource, display: Display) -> str | None:
    """Feed every event to the display until the task ends; returns its state."""
    try:
        for ev in follower:
            display.event(ev)
    finally:
        display.close(follower.state)
    return follower.state
