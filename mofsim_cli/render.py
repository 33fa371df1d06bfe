"""What the commands show, as neutral blocks: styled text lines and sheets (tables).

A ``Sheet`` is a table before it is drawn: a title, column names (none for a key-value
sheet) and rows of ``rich.text.Text`` cells.  The output adapters (``output.py``) draw
the same sheets as Rich tables or as plain aligned text, and print the underlying data
instead with ``--json``; so the tables of every output agree, and the builders below are
the one place that decides what a table holds.

Consoles are made per call, not at import: they then write to whatever ``sys.stdout`` /
``sys.stderr`` are at that moment (a test runner swaps them).  Text that comes from tasks
or users is never parsed as Rich markup.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from spool.events import Event
from spool.states import TERMINAL_STATES

STATE_STYLES = {
    "PENDING": "dim",
    "QUEUED": "yellow",
    "ASSIGNED": "cyan",
    "RUNNING": "bold blue",
    "COMPLETED": "bold green",
    "FAILED": "bold red",
    "CANCELLED": "magenta",
    "TIMEOUT": "bold red",
}
LEVEL_STYLES = {
    "DEBUG": "dim",
    "INFO": "",
    "WARNING": "yellow",
    "ERROR": "red",
    "CRITICAL": "bold red",
}

# Output going to a pipe or a file has no width; the terminal default of 80 columns
# would truncate ids and paths in tables.
PIPE_WIDTH = 200


def out_console() -> Console:
    console = Console(highlight=False)
    if not console.is_terminal and "COLUMNS" not in os.environ:
        console.width = PIPE_WIDTH
    return console


def err_console() -> Console:
    return Console(stderr=True, highlight=False)


def print_json(obj: Any, *, compact: bool = False) -> None:
    # Plain print: Rich would re-wrap long strings and break the JSON.
    text = (
        json.dumps(obj, default=str, separators=(",", ":"))
        if compact
        else json.dumps(obj, indent=2, default=str)
    )
    print(text, flush=True)


# --- text primitives ------------------------------------------------------------------------


def state_text(state: str | None) -> Text:
    state = state or "-"
    return Text(state, style=STATE_STYLES.get(state, ""))


def fmt_value(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.10g}"
    if isinstance(value, list):
        return "[" + ", ".join(fmt_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return json.dumps(value, default=str, separators=(", ", ": "))
    return str(value)


def cell(value: Any) -> Text:
    return value if isinstance(value, Text) else Text(fmt_value(value))


def progress_summary(extra: dict[str, Any]) -> str:
    """``stage nvt  step 120  E -1234.5678 eV  fmax 0.0123`` from a progress event."""
    parts = []
    if extra.get("stage"):
        parts.append(f"stage {extra['stage']}")
    if extra.get("step") is not None:
        parts.append(f"step {extra['step']}")
    energy = extra.get("energy")
    if isinstance(energy, int | float):
        parts.append(f"E {energy:.6f} eV")
    fmax = extra.get("fmax")
    if isinstance(fmax, int | float):
        parts.append(f"fmax {fmax:.4g}")
    return "  ".join(parts)


def fraction_text(fraction: Any) -> str:
    return f"{100 * fraction:5.1f}%" if isinstance(fraction, int | float) else "    ?"


def event_line(ev: Event) -> Text:
    """One event as one line: time, level, then what happened."""
    data = ev.data
    extra = data.get("extra") or {}
    level = str(data.get("level", "INFO"))
    stamp = str(data.get("timestamp", ""))
    line = Text()
    line.append(f"{stamp} ", style="dim")
    line.append(f"{level:<8} ", style=LEVEL_STYLES.get(level, ""))
    if ev.kind == "status":
        status = str(extra.get("status", ""))
        line.append(status, style=STATE_STYLES.get(status, ""))
        line.append(f"  {data.get('message', '')}")
    elif ev.kind == "progress":
        line.append(f"progress {fraction_text(extra.get('progress'))}", style="cyan")
        summary = progress_summary(extra)
        if summary:
            line.append(f"  {summary}")
        message = data.get("message")
        if message and message != "progress":
            line.append(f"  {message}")
    else:
        line.append(f"{data.get('logger', '')}: ", style="dim")
        line.append(str(data.get("message", "")))
    return line


def event_json(ev: Event) -> dict[str, Any]:
    """An event as a JSON line, with ``seq`` (its byte offset: the resume point)."""
    return {**ev.data, "seq": ev.offset}


# --- sheets ---------------------------------------------------------------------------------


@dataclass
class Sheet:
    """A table before it is drawn.  ``columns`` None: a key-value sheet (bold keys, no
    header).  ``right``: columns justified right; ``nowrap``: columns never folded."""

    rows: list[list[Text]]
    columns: list[str] | None = None
    title: str | None = None
    right: frozenset[int] = field(default_factory=frozenset)
    nowrap: frozenset[int] = field(default_factory=frozenset)


# What a command prints: sheets, lines, and None for a blank line.
Block = Sheet | Text | None


def kv_sheet(rows: Iterable[tuple[str, Any]], title: str | None = None) -> Sheet:
    return Sheet([[Text(key), cell(value)] for key, value in rows], title=title)


def grid_sheet(
    columns: Sequence[str],
    rows: Iterable[Sequence[Any]],
    *,
    title: str | None = None,
    right: Iterable[int] = (),
    nowrap: Iterable[int] = (),
) -> Sheet:
    return Sheet(
        [[cell(v) for v in row] for row in rows],
        columns=list(columns),
        title=title,
        right=frozenset(right),
        nowrap=frozenset(nowrap),
    )


def to_rich(sheet: Sheet) -> Table:
    if sheet.columns is None:
        table = Table(
            show_header=False, title=sheet.title, title_justify="left", box=None, pad_edge=False
        )
        table.add_column(style="bold")
        table.add_column(overflow="fold")
    else:
        table = Table(box=box.SIMPLE_HEAD, pad_edge=False, title=sheet.title, title_justify="left")
        for i, name in enumerate(sheet.columns):
            table.add_column(
                name, justify="right" if i in sheet.right else "left", no_wrap=i in sheet.nowrap
            )
    for row in sheet.rows:
        table.add_row(*row)
    return table


def print_blocks(console: Console, blocks: Iterable[Block]) -> None:
    for block in blocks:
        if block is None:
            console.print()
        elif isinstance(block, Sheet):
            console.print(to_rich(block))
        else:
            console.print(block, soft_wrap=True)


# --- task views as blocks -------------------------------------------------------------------


def _progress_cell(record: dict[str, Any]) -> Text:
    progress = record.get("progress")
    text = Text(fraction_text(progress).strip() if progress is not None else "-")
    summary = progress_summary(record.get("progress_detail") or {})
    if summary:
        text.append(f"  {summary}", style="dim")
    return text


def record_sheet(record: dict[str, Any]) -> Sheet:
    rows: list[tuple[str, Any]] = [
        ("Task", record["task_id"]),
        ("Status", state_text(record.get("status"))),
        ("Type", record.get("task_type")),
        ("Model", record.get("model")),
        ("Structure", record.get("structure_name")),
        ("Priority", record.get("priority")),
    ]
    if record.get("queue_position") is not None:
        rows.append(("Queue position", record["queue_position"]))
    rows += eta_rows(record)
    rows += [
        ("Created", record.get("created_at")),
        ("Started", record.get("started_at")),
        ("Completed", record.get("completed_at")),
        ("Slot", record.get("slot")),
        ("GPU", record.get("gpu_id")),
        ("Attempts", record.get("attempts")),
        ("Progress", _progress_cell(record)),
    ]
    if record.get("parameters"):
        rows.append(("Parameters", record["parameters"]))
    error = record.get("error")
    if isinstance(error, dict):
        rows.append(
            ("Error", Text(f"{error.get('code', '')} {error.get('message', '')}", style="red"))
        )
    return kv_sheet(rows)


def duration_text(seconds: Any) -> str:
    """``42 s``, ``12 min``, ``3.5 h``: an estimate's precision, no more."""
    if not isinstance(seconds, int | float) or isinstance(seconds, bool):
        return ""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def eta_rows(record: dict[str, Any]) -> list[tuple[str, Any]]:
    """Estimated start and duration of a waiting or running task, when known."""
    rows: list[tuple[str, Any]] = []
    if record.get("status") in ("PENDING", "QUEUED", "ASSIGNED") and record.get("estimated_start"):
        rows.append(("Estimated start", short_time(record["estimated_start"])))
    if record.get("estimated_duration_s") is not None and record.get("status") not in (
        "COMPLETED",
        "FAILED",
        "CANCELLED",
        "TIMEOUT",
    ):
        rows.append(("Estimated duration", duration_text(record["estimated_duration_s"])))
    return rows


def short_time(stamp: Any) -> str:
    return str(stamp or "").replace("T", " ").rstrip("Z")[:19]


def tasks_sheet(records: list[dict[str, Any]]) -> Sheet:
    rows = []
    for r in records:
        progress = r.get("progress")
        rows.append(
            [
                r["task_id"],
                r.get("task_type") or "",
                r.get("model") or "",
                r.get("structure_name") or "",
                state_text(r.get("status")),
                r.get("priority") or "",
                fraction_text(progress).strip() if progress is not None else "",
                short_time(r.get("created_at")),
            ]
        )
    return grid_sheet(
        ("TASK", "TYPE", "MODEL", "STRUCTURE", "STATUS", "PRI", "PROGRESS", "CREATED"),
        rows,
        right=(6,),
        nowrap=(0, 7),
    )


def submitted_line(view: dict[str, Any]) -> Text:
    line = Text("Submitted ")
    line.append(view["task_id"], style="bold")
    line.append(
        f"  {view['task_type']} / {view['model']} / {view['structure_name']}"
        f"  priority {view['priority']}  "
    )
    line.append_text(state_text(view["status"]))
    if view.get("queue_position") is not None:
        line.append(f"  queue position {view['queue_position']}")
    return line


def cancel_line(task_id: str, state: str) -> Text:
    line = Text()
    line.append_text(state_text(state))
    line.append(f" {task_id}")
    if state not in TERMINAL_STATES:
        line.append("  (cancel requested: the executor stops at its next step)", style="dim")
    return line


def result_blocks(view: dict[str, Any]) -> list[Block]:
    from mofsim_cli.views import scalar_rows

    header: list[tuple[str, Any]] = [
        ("Task", view["task_id"]),
        ("Status", state_text(view["status"])),
        ("Type", view["task_type"]),
        ("Model", view["model"]),
        ("Structure", view.get("structure_name")),
        ("Started", view.get("started_at")),
        ("Completed", view.get("completed_at")),
        ("Duration (s)", view.get("duration_seconds")),
        ("GPU", view.get("gpu_id")),
    ]
    blocks: list[Block] = [kv_sheet(header), None]
    rows = scalar_rows(view.get("result") or {})
    if rows:
        blocks += [kv_sheet(rows, title="Result"), None]
    metrics = view.get("metrics") or {}
    if metrics:
        blocks += [kv_sheet(scalar_rows(metrics), title="Metrics"), None]
    files = view.get("output_files") or {}
    if files:
        blocks.append(Text("Output files", style="bold"))
        for name, where in files.items():
            # Paths and URLs on their own lines, never folded, so they can be copied.
            line = Text()
            line.append(f"  {name}: ", style="dim")
            line.append(str(where))
            blocks.append(line)
    return blocks


def print_result(console: Console, view: dict[str, Any]) -> None:
    print_blocks(console, result_blocks(view))
