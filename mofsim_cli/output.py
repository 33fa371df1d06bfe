"""The output adapter layer (spec 10.3): one interface, three renderers.

Every command builds its data (plain dicts, from ``views``) and its blocks (sheets and
lines, from ``render``) and hands both to an ``Output``:

- ``JsonOutput`` prints the data as JSON (events as JSON lines), and errors as
  ``{"error": {...}}`` on stdout;
- ``PlainOutput`` ("table") prints the sheets as aligned plain-text columns, without
  colours or box characters, and never wraps: for ``grep``, ``awk`` and log files;
- ``RichOutput`` (the default) prints them as Rich tables, with colours on a terminal
  and a live progress bar when following a task.

Remarks for people (how to go on, "no tasks") are left out of JSON; an empty answer is
remarked on stderr.  ``command`` registers a Typer command whose errors,
whatever the renderer, end as one line (``error CODE: reason``) and exit code 1.
"""

from __future__ import annotations

import functools
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

import typer
from rich.text import Text

from mofsim_cli.follow import (
    Display,
    JsonLinesDisplay,
    PlainDisplay,
    QuietDisplay,
    make_display,
)
from mofsim_cli.render import (
    Block,
    Sheet,
    err_console,
    event_json,
    event_line,
    out_console,
    print_blocks,
    print_json,
)
from spool.errors import MofsimError, StorageError, ValidationError
from spool.events import Event

FORMATS = ("rich", "table", "json")
F = TypeVar("F", bound=Callable[..., Any])


class Output(ABC):
    """Where a command's answer goes, and in which form."""

    name = "rich"

    @abstractmethod
    def show(self, data: Any, blocks: Sequence[Block]) -> None:
        """The answer: ``data`` for JSON, ``blocks`` for people."""

    def empty(self, data: Any, message: str) -> None:
        """An empty answer: ``data`` (e.g. ``[]``) for JSON, a remark for people."""
        err_console().print(message, style="dim", markup=False)

    def hint(self, text: str, *, stderr: bool = False) -> None:
        """A remark for people only (how to go on); never part of a JSON answer.
        ``stderr``: keep it off stdout too (stdout is meant for a script to read)."""
        console = err_console() if stderr else out_console()
        console.print(text, style="dim", soft_wrap=True, markup=False)

    @abstractmethod
    def events(self, events: Iterable[Event]) -> None:
        """A task's event history, one line each."""

    @abstractmethod
    def display(self, task_id: str, *, level: str | None = None, quiet: bool = False) -> Display:
        """How to show a task followed live."""

    def error(self, exc: MofsimError) -> None:
        line = Text()
        line.append(f"error {exc.code}: ", style="bold red")
        line.append(exc.message)
        if exc.field:
            line.append(f" (field: {exc.field})", style="dim")
        err_console().print(line, soft_wrap=True)


class JsonOutput(Output):
    name = "json"

    def show(self, data: Any, blocks: Sequence[Block]) -> None:
        print_json(data)

    def empty(self, data: Any, message: str) -> None:
        print_json(data)

    def hint(self, text: str, *, stderr: bool = False) -> None:
        return None

    def events(self, events: Iterable[Event]) -> None:
        for ev in events:
            print_json(event_json(ev), compact=True)

    def display(self, task_id: str, *, level: str | None = None, quiet: bool = False) -> Display:
        return QuietDisplay() if quiet else JsonLinesDisplay(level)

    def error(self, exc: MofsimError) -> None:
        print_json(
            {
                "error": {
                    "code": exc.code,
                    "type": type(exc).__name__,
                    "message": exc.message,
                    "field": exc.field,
                }
            }
        )


class RichOutput(Output):
    name = "rich"

    def show(self, data: Any, blocks: Sequence[Block]) -> None:
        print_blocks(out_console(), blocks)

    def events(self, events: Iterable[Event]) -> None:
        console = out_console()
        for ev in events:
            console.print(event_line(ev), soft_wrap=True)

    def display(self, task_id: str, *, level: str | None = None, quiet: bool = False) -> Display:
        return make_display(out_console(), task_id, quiet=quiet, level=level)


class PlainOutput(Output):
    name = "table"

    def show(self, data: Any, blocks: Sequence[Block]) -> None:
        for block in blocks:
            if block is None:
                print()
            elif isinstance(block, Sheet):
                print("\n".join(plain_lines(block)))
            else:
                print(block.plain)
        print(end="", flush=True)

    def hint(self, text: str, *, stderr: bool = False) -> None:
        import sys

        print(text, file=sys.stderr if stderr else sys.stdout, flush=True)

    def events(self, events: Iterable[Event]) -> None:
        for ev in events:
            print(event_line(ev).plain, flush=True)

    def display(self, task_id: str, *, level: str | None = None, quiet: bool = False) -> Display:
        if quiet:
            return QuietDisplay()
        # No colours and no bar, even on a terminal; every progress line is kept.
        from rich.console import Console

        console = Console(highlight=False, no_color=True, width=10_000, soft_wrap=True)
        return PlainDisplay(console, task_id, level)


def plain_lines(sheet: Sheet) -> list[str]:
    """A sheet as aligned text: two spaces between columns, nothing folded."""
    rows = [[c.plain for c in row] for row in sheet.rows]
    lines = [sheet.title] if sheet.title else []
    if sheet.columns is not None:
        rows.insert(0, list(sheet.columns))
    if not rows:
        return lines
    ncol = max(len(r) for r in rows)
    widths = [max((len(r[i]) for r in rows if i < len(r)), default=0) for i in range(ncol)]
    for row in rows:
        cells = [
            (c.rjust(widths[i]) if i in sheet.right else c.ljust(widths[i]))
            for i, c in enumerate(row)
        ]
        lines.append("  ".join(cells).rstrip())
    return lines


def make_output(as_json: bool = False, fmt: str | None = None) -> Output:
    """``--json`` wins; else ``--output`` (rich, table or json)."""
    name = "json" if as_json else (fmt or "rich").strip().lower()
    if name == "plain":
        name = "table"
    if name not in FORMATS:
        raise ValidationError(
            f"unknown output format {fmt!r}; expected one of {', '.join(FORMATS)}", field="output"
        )
    kinds: dict[str, type[Output]] = {"json": JsonOutput, "table": PlainOutput, "rich": RichOutput}
    return kinds[name]()


def _output_for_errors(kwargs: dict[str, Any]) -> Output:
    try:
        return make_output(bool(kwargs.get("as_json")), kwargs.get("output"))
    except MofsimError:
        return RichOutput()


def command(target: typer.Typer, name: str, panel: str) -> Callable[[F], F]:
    """Register a command whose errors become one-line messages and exit code 1: the
    project's ``MofsimError``s, the server's errors (translated by ``remote``), and
    file-system errors."""

    def decorate(fn: F) -> F:
        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            try:
                return fn(*args, **kwargs)
            except MofsimError as exc:
                _output_for_errors(kwargs).error(exc)
                raise typer.Exit(1) from None
            except OSError as exc:
                where = f" ({exc.filename})" if exc.filename else ""
                _output_for_errors(kwargs).error(StorageError(f"{exc.strerror or exc}{where}"))
                raise typer.Exit(1) from None
            except KeyboardInterrupt:
                raise typer.Exit(130) from None

        target.command(name, rich_help_panel=panel)(wrapper)
        return fn

    return decorate
