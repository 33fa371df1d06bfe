"""How ``mofsim top``'s screen is drawn: ``screen`` fits a ``TopUI`` into exactly the
terminal's size; ``snapshot`` draws it once for a pipe.
"""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

from rich import box
from rich.console import Group, RenderableType
from rich.layout import Layout
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from mofsim_cli.render import LEVEL_STYLES, event_line, progress_summary, state_text
from mofsim_cli.top_data import PRIORITY_NAMES, TaskRow, TopState
from mofsim_cli.top_ui import KEYS_LOG, KEYS_MAIN, TopUI


def _clock(iso: str | None) -> str:
    if not iso:
        return "-"
    try:
        return datetime.fromisoformat(iso.replace("Z", "+00:00")).astimezone().strftime("%H:%M:%S")
    except ValueError:
        return iso


def _elapsed(iso: str | None, now: float) -> str:
    if not iso:
        return ""
    try:
        start = datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return ""
    s = max(0, int(now - start))
    return f"{s // 3600}h{s // 60 % 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


def bar(fraction: float | None, width: int = 14) -> Text:
    """``━━━━━━────── 42%``; an unknown fraction draws an empty bar and ``?``."""
    out = Text()
    frac = min(1.0, max(0.0, fraction)) if isinstance(fraction, int | float) else None
    filled = round((frac or 0.0) * width)
    out.append("━" * filled, style="green")
    out.append("─" * (width - filled), style="dim")
    out.append(f" {100 * frac:3.0f}%" if frac is not None else "    ?")
    return out


def _num(value: Any, fmt: str, unit: str = "") -> str:
    return f"{value:{fmt}}{unit}" if isinstance(value, int | float) else "-"


# Short columns that must stay readable when the terminal is narrow; long free text
# (device names, details) gives way first.
_MIN_WIDTH = {
    "SLOT": 5,
    "STATE": 9,
    "UTIL": 4,
    "TEMP": 4,
    "MEMORY": 15,
    "PRI": 6,
    "MODEL": 10,
    "MODELS": 10,
    "TASK": 21,
}
_MAX_WIDTH = {"DEVICE": 24}


def _table(*columns: str) -> Table:
    table = Table(box=None, pad_edge=False, expand=True, header_style="bold")
    for name in columns:
        table.add_column(
            name,
            no_wrap=True,
            overflow="ellipsis",
            min_width=_MIN_WIDTH.get(name),
            max_width=_MAX_WIDTH.get(name),
        )
    return table


def header(ui: TopUI, now: float) -> Text:
    s = ui.state
    line = Text(no_wrap=True, overflow="ellipsis")
    line.append("mofsim top", style="bold")
    line.append(f"  {ui.label}", style="cyan")
    if s is not None:
        line.append("  ·  ")
        line.append(s.daemon, style="green" if s.daemon_ok else "yellow")
        line.append(
            f"  ·  updated {datetime.fromtimestamp(s.fetched_at):%H:%M:%S}",
            style="red" if ui.error else "dim",
        )
        if ui.error is not None:
            line.append(f" ({now - s.fetched_at:.0f} s ago)", style="red")
    line.append("\n")
    if ui.error is not None:
        retry = f" (retrying every {ui.refresh:g} s)" if ui.live else ""
        line.append(f"✗ no update{retry}: ", style="bold red")
        line.append(ui.error, style="red")
    elif s is None:
        line.append("loading ...", style="dim")
    return line


def slots_panel(state: TopState, now: float) -> Panel:
    table = _table(
        "SLOT", "DEVICE", "STATE", "UTIL", "MEMORY", "TEMP", "MODELS", "TASK", "PROGRESS"
    )
    for s in state.slots:
        task = s.task
        memory = (
            f"{_num(s.memory_used_mb, '.0f')}/{_num(s.memory_total_mb, '.0f')} MiB"
            if s.memory_total_mb
            else "-"
        )
        state_cell = Text(
            s.state or "-",
            style={
                "busy": "bold blue",
                "idle": "green",
                "down": "bold red",
                "offline": "bold red",
            }.get(s.state or "", ""),
        )
        if not s.available:
            state_cell = Text(f"unavailable: {s.error or 'device lost'}", style="bold red")
        task_cell = Text(s.task_id or "-")
        if task is not None:
            task_cell.append(
                f" {task.task_type or ''} {_elapsed(task.started_at, now)}", style="dim"
            )
        table.add_row(
            s.slot_id,
            f"{s.name or '-'} ({s.device or '-'})",
            state_cell,
            _num(s.utilization, ".0f", "%"),
            memory,
            _num(s.temperature_c, ".0f", "°C"),
            ", ".join(s.loaded_models) or "-",
            task_cell,
            bar(task.progress) if task else Text(""),
        )
    body: RenderableType = (
        table
        if state.slots
        else Text("no slots reported (the daemon writes them while it runs)", style="dim")
    )
    return Panel(body, title="Slots", title_align="left", box=box.ROUNDED)


def _task_cells(r: TaskRow, marker: str) -> list[RenderableType]:
    if r.status in ("RUNNING", "ASSIGNED"):
        where: RenderableType = bar(r.progress)
        note = progress_summary(r.detail)
        if r.cancel_requested:
            note = "cancel requested  " + note
        if r.estimated_end:
            note = f"ETA {_clock(r.estimated_end)}  " + note
    else:
        where = Text(f"#{r.queue_position}" if r.queue_position else "")
        note = f"starts ~{_clock(r.estimated_start)}" if r.estimated_start else ""
    return [
        marker,
        r.task_id,
        state_text(r.status),
        r.priority or "-",
        r.task_type or "-",
        r.model or "-",
        r.structure or "-",
        r.slot or "-",
        where,
        Text(note, style="dim"),
    ]


def tasks_panel(ui: TopUI, rows_shown: int) -> Panel:
    s = ui.state
    assert s is not None
    table = _table(
        " ",
        "TASK",
        "STATE",
        "PRI",
        "TYPE",
        "MODEL",
        "STRUCTURE",
        "SLOT",
        "PROGRESS / POS",
        "DETAIL",
    )
    rows = ui.selectable()
    ids = [r.task_id for r in rows]
    at = ids.index(ui.selected) if ui.selected in ids else 0
    first = max(0, min(at - rows_shown // 2, len(rows) - rows_shown))
    for r in rows[first : first + max(rows_shown, 0)]:
        chosen = r.task_id == ui.selected
        table.add_row(*_task_cells(r, "›" if chosen else " "), style="reverse" if chosen else None)
    counts = "  ".join(f"{p} {s.queue_counts.get(p, 0)}" for p in PRIORITY_NAMES)
    title = f"Tasks: {len(s.running)} running, {s.queued_total} queued  ({counts})"
    more = len(rows) - len(rows[first : first + rows_shown])
    subtitle = f"{more} more" if more > 0 else None
    body: RenderableType = table if rows else Text("no running or queued tasks", style="dim")
    return Panel(
        body,
        title=title,
        title_align="left",
        subtitle=subtitle,
        subtitle_align="right",
        box=box.ROUNDED,
    )


def recent_panel(state: TopState, rows_shown: int) -> Panel:
    table = _table("TASK", "STATE", "TYPE", "MODEL", "STRUCTURE", "FINISHED", "ERROR")
    for r in state.recent[:rows_shown]:
        table.add_row(
            r.task_id,
            state_text(r.status),
            r.task_type or "-",
            r.model or "-",
            r.structure or "-",
            _clock(r.completed_at),
            Text(r.error or "", style="red"),
        )
    body: RenderableType = table if state.recent else Text("nothing finished yet", style="dim")
    return Panel(body, title="Recently finished", title_align="left", box=box.ROUNDED)


def alerts_panel(state: TopState, rows_shown: int) -> Panel:
    lines = Text()
    for a in state.alerts[:rows_shown]:
        if lines:
            lines.append("\n")
        level = str(a.get("level") or "INFO")
        lines.append(f"{level:<8}", style=LEVEL_STYLES.get(level, "") or "bold")
        lines.append(f" {a.get('type', '')}  ", style="bold")
        lines.append(str(a.get("message") or ""))
        lines.append(f"  since {_clock(a.get('timestamp'))}", style="dim")
    if not state.alerts:
        lines = Text("no active alerts", style="dim")
    lines.no_wrap, lines.overflow = True, "ellipsis"
    return Panel(lines, title=f"Alerts ({len(state.alerts)})", title_align="left", box=box.ROUNDED)


def log_panel(ui: TopUI, rows_shown: int) -> Panel:
    row = ui.row(ui.log_task)
    title = Text(f"Log of {ui.log_task}")
    if row is not None:
        title.append("  ")
        title.append_text(state_text(row.status))
        if row.status in ("RUNNING", "ASSIGNED"):
            title.append("  ")
            title.append_text(bar(row.progress))
    lines = list(ui.log_lines)[-rows_shown:] if rows_shown > 0 else []
    body = Text()
    for i, ev in enumerate(lines):
        if i:
            body.append("\n")
        body.append_text(event_line(ev))
    if not lines:
        body = Text("waiting for log lines ...", style="dim")
    body.no_wrap, body.overflow = True, "ellipsis"
    return Panel(body, title=title, title_align="left", box=box.ROUNDED)


def footer(ui: TopUI) -> Text:
    line = Text()
    if ui.confirm is not None:
        row = ui.row(ui.confirm)
        what = f" ({row.status}, {row.task_type} / {row.model})" if row else ""
        line.append(f"Cancel task {ui.confirm}{what}? [y/n]", style="bold yellow")
    elif ui.message is not None:
        line.append(ui.message[0], style=ui.message[1])
    line.append("\n")
    line.append(KEYS_LOG if ui.mode == "log" else KEYS_MAIN, style="dim")
    return line


def screen(ui: TopUI, height: int, now: float | None = None) -> Layout:
    """The whole view, fitted to ``height`` lines: the task list (or the log pane)
    takes whatever the fixed panels leave."""
    now = time.time() if now is None else now
    layout = Layout()
    s = ui.state
    top = Layout(header(ui, now), size=2)
    bottom = Layout(footer(ui), size=2)
    if s is None:
        layout.split_column(top, Layout(Text("")), bottom)
        return layout
    if ui.mode == "log":
        rest = max(3, height - 4)
        layout.split_column(top, Layout(log_panel(ui, rest - 2)), bottom)
        return layout
    n_alerts = min(len(s.alerts), 4)
    slots_height, alerts_height = max(len(s.slots), 1) + 3, max(n_alerts, 1) + 2
    # Finished tasks get up to five rows, but not at the cost of the task list's
    # first three.
    spare = height - 4 - slots_height - alerts_height - 3 - 6
    n_recent = min(len(s.recent), 5, max(0, spare))
    recent_height = n_recent + 3 if n_recent else 3
    tasks_height = max(4, height - 4 - slots_height - alerts_height - recent_height)
    layout.split_column(
        top,
        Layout(slots_panel(s, now), size=slots_height),
        Layout(tasks_panel(ui, tasks_height - 3), size=tasks_height),
        Layout(recent_panel(s, n_recent), size=recent_height),
        Layout(alerts_panel(s, n_alerts), size=alerts_height),
        bottom,
    )
    return layout


def snapshot(ui: TopUI, now: float | None = None) -> Group:
    """Every panel once, at its natural height: ``mofsim top`` into a pipe."""
    now = time.time() if now is None else now
    s = ui.state
    parts: list[RenderableType] = [header(ui, now)]
    if s is not None:
        parts += [
            slots_panel(s, now),
            tasks_panel(ui, len(ui.selectable())),
            recent_panel(s, len(s.recent)),
            alerts_panel(s, len(s.alerts)),
        ]
    return Group(*parts)
