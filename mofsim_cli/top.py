"""``mofsim top``: a live terminal view of slots, the queue, running and finished tasks
and active alerts, with keys to select a task, follow its log and cancel it.

Nothing waits on anything slow in the loop that reads keys: a ``Poller`` thread fetches
the state every ``refresh`` seconds, runs cancel requests and polls the followed log,
and hands results back through a queue; the main loop waits on stdin with ``select``
for a tenth of a second at a time, applies keys and results to the ``TopUI`` and
redraws.  A source that fails (a server gone, a spool unmounted) only sets a status
line; the poller keeps trying.  stdin is switched to cbreak mode (keys arrive one by
one, unechoed, Ctrl-C still interrupts) and restored on every way out: ``q``, Ctrl-C,
SIGTERM or an error.  Into a pipe, the view is printed once.
"""

from __future__ import annotations

import contextlib
import os
import queue
import select
import signal
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.live import Live

from mofsim_cli.render import out_console
from mofsim_cli.top_data import LogFeed, TopSource, failure_text
from mofsim_cli.top_local import LocalSource
from mofsim_cli.top_ui import Action, TopUI
from mofsim_cli.top_view import screen, snapshot
from spool.errors import ValidationError
from spool.states import TERMINAL_STATES

TICK_S = 0.1  # longest wait for a key: also how soon a fetched state is drawn
ESC_WAIT_S = 0.03  # the rest of an escape sequence arrives within this
_SEQUENCES = {"\x1b[A": "up", "\x1b[B": "down", "\x1bOA": "up", "\x1bOB": "down"}


def decode_keys(data: str) -> list[str]:
    """Key names from what the terminal sent: ``up``/``down`` for arrows, ``esc`` for a
    lone escape, the character itself otherwise; other escape sequences are dropped."""
    keys: list[str] = []
    i = 0
    while i < len(data):
        if data[i] != "\x1b":
            keys.append(data[i])
            i += 1
        elif data[i : i + 3] in _SEQUENCES:
            keys.append(_SEQUENCES[data[i : i + 3]])
            i += 3
        elif data[i + 1 : i + 2] in ("[", "O"):
            # CSI/SS3: parameter and intermediate bytes, then one final byte.
            j = i + 2
            while j < len(data) and " " <= data[j] <= "?":
                j += 1
            i = j + 1
        else:
            keys.append("esc")
            i += 1
    return keys


def read_keys(fd: int | None, timeout: float) -> list[str]:
    """Keys typed within ``timeout`` seconds (none: the wait simply passes)."""
    if fd is None:
        time.sleep(timeout)
        return []
    ready, _, _ = select.select([fd], [], [], timeout)
    if not ready:
        return []
    data = os.read(fd, 1024)
    if not data:
        return ["q"]  # the terminal went away
    while data.endswith(b"\x1b") or data[-3:-1] in (b"\x1b[", b"\x1bO"):
        more, _, _ = select.select([fd], [], [], ESC_WAIT_S)
        if not more:
            break
        data += os.read(fd, 1024)
    return decode_keys(data.decode(errors="replace"))


@contextlib.contextmanager
def cbreak(fd: int | None) -> Iterator[None]:
    """Keys one at a time without echo; the terminal's settings come back on exit."""
    if fd is None:
        yield
        return
    import termios
    import tty

    saved = termios.tcgetattr(fd)
    try:
        tty.setcbreak(fd, termios.TCSANOW)
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


@contextlib.contextmanager
def sigterm_exits() -> Iterator[None]:
    """SIGTERM unwinds like Ctrl-C, so the terminal is restored before exiting."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum: int, frame: Any) -> None:
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


class Poller(threading.Thread):
    """Fetches, cancels and follows logs off the main thread.  Puts ``("state", TopState)``,
    ``("error", text)``, ``("log", task_id, events)`` and ``("say", text, style)`` on
    ``out``."""

    def __init__(
        self, source: TopSource, refresh: float, out: queue.Queue[tuple[Any, ...]]
    ) -> None:
        super().__init__(name="mofsim-top-poller", daemon=True)
        self.source = source
        self.refresh = refresh
        self.out = out
        self.wake = threading.Event()
        self.stopped = threading.Event()
        self.requests: queue.Queue[Action] = queue.Queue()
        self.feed: tuple[str, LogFeed] | None = None
        self.follow: str | None = None

    def request(self, action: Action) -> None:
        self.requests.put(action)
        self.wake.set()

    def stop(self) -> None:
        self.stopped.set()
        self.wake.set()

    def run(self) -> None:
        while not self.stopped.is_set():
            self.wake.clear()
            self.step()
            self.wake.wait(self.refresh)

    def step(self) -> None:
        while not self.requests.empty():
            self._do(self.requests.get_nowait())
        try:
            self.out.put(("state", self.source.fetch()))
        except Exception as exc:  # noqa: BLE001 - a live view reports, it does not crash
            self.out.put(("error", failure_text(exc)))
        self._poll_log()

    def _do(self, action: Action) -> None:
        kind, task_id = action
        if kind == "follow":
            self.follow, self.feed = task_id, None
        elif kind == "cancel" and task_id is not None:
            try:
                state = self.source.cancel(task_id)
            except Exception as exc:  # noqa: BLE001
                self.out.put(("say", f"cancel {task_id} failed: {failure_text(exc)}", "red"))
            else:
                said = state if state in TERMINAL_STATES else "cancel requested"
                self.out.put(("say", f"{task_id}: {said}", "magenta"))

    def _poll_log(self) -> None:
        task_id = self.follow
        if task_id is None:
            return
        try:
            if self.feed is None or self.feed[0] != task_id:
                self.feed = (task_id, self.source.log_feed(task_id))
            events = self.feed[1].poll()
        except Exception as exc:  # noqa: BLE001
            self.out.put(("say", f"log of {task_id}: {failure_text(exc)}", "red"))
            return
        if events:
            self.out.put(("log", task_id, events))


def apply(ui: TopUI, message: tuple[Any, ...]) -> None:
    kind = message[0]
    if kind == "state":
        ui.apply_state(message[1])
    elif kind == "error":
        ui.apply_error(message[1])
    elif kind == "log":
        ui.apply_log(message[1], message[2])
    elif kind == "say":
        ui.say(message[1], message[2])


def _interactive(source: TopSource, ui: TopUI, console: Console) -> int:
    results: queue.Queue[tuple[Any, ...]] = queue.Queue()
    poller = Poller(source, ui.refresh, results)
    poller.start()
    fd = sys.stdin.fileno() if sys.stdin.isatty() else None
    try:
        with (
            sigterm_exits(),
            cbreak(fd),
            Live(
                console=console,
                screen=True,
                auto_refresh=False,
                redirect_stdout=False,
                redirect_stderr=False,
            ) as live,
        ):
            drawn_at = 0.0
            while True:
                dirty = False
                for key in read_keys(fd, TICK_S):
                    dirty = True
                    action = ui.handle_key(key)
                    if action is None:
                        continue
                    if action[0] == "quit":
                        return 0
                    poller.request(action)
                while not results.empty():
                    apply(ui, results.get_nowait())
                    dirty = True
                # Once a second regardless: ages and elapsed times move on.
                if dirty or time.monotonic() - drawn_at >= 1.0:
                    live.update(screen(ui, console.size.height), refresh=True)
                    drawn_at = time.monotonic()
    finally:
        poller.stop()
        poller.join(0.5)  # a request in flight ends with its timeout; no need to wait


def open_source(spool: Path | None, server: str | None, api_key: str | None = None) -> TopSource:
    """The remote source when a server is named, unless ``--spool`` was given on the
    command line and the server only comes from ``MOFSIM_SERVER`` (the rule of every
    ``mofsim`` command); the local source otherwise."""
    from mofsim_cli.options import from_command_line, open_spool

    server = (server or "").strip() or None
    server_flag, spool_flag = from_command_line("server"), from_command_line("spool")
    if server_flag and spool_flag:
        raise ValidationError(
            "--spool and --server exclude each other: top watches a spool here or a server",
            field="server",
        )
    if server is not None and (server_flag or not spool_flag):
        from mofsim_cli.top_remote import RemoteSource

        return RemoteSource(server, api_key)
    return LocalSource(open_spool(spool))


def run_top(
    spool: Path | None = None,
    server: str | None = None,
    api_key: str | None = None,
    refresh: float = 1.0,
) -> int:
    """The ``mofsim top`` command: live in a terminal, one snapshot into a pipe."""
    if not refresh > 0:
        raise ValidationError("--refresh must be a positive number of seconds", field="refresh")
    source = open_source(spool, server, api_key)
    ui = TopUI(source.label, refresh)
    try:
        console = Console(highlight=False)
        if console.is_terminal:
            return _interactive(source, ui, console)
        ui.live = False
        try:
            ui.apply_state(source.fetch())
        except Exception as exc:  # noqa: BLE001 - shown as the status line
            ui.apply_error(failure_text(exc))
        out_console().print(snapshot(ui))
        return 0 if ui.error is None else 1
    finally:
        source.close()
