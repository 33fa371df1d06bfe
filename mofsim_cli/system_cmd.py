"""``mofsim system ...``: health, devices, queue, configuration and alerts of the service.

``gpus``, ``queue`` and ``alerts`` read the daemon's slot snapshot, its queue and alert
store in local mode, the server's ``/api/v1/system`` routes in remote mode.  ``health``
and ``config`` describe the HTTP server and need ``--server``.
"""

# No ``from __future__ import annotations`` here: Typer would then evaluate every
# command's string annotations at each start, several times slower.
from typing import Annotated, Any

import typer
from rich.text import Text

from mofsim_cli.options import ApiKeyOpt, JsonOpt, OutputOpt, ServerOpt, SpoolOpt
from mofsim_cli.output import command
from mofsim_cli.render import (
    Block,
    fmt_value,
    grid_sheet,
    kv_sheet,
    short_time,
    state_text,
)
from mofsim_cli.resource_common import PANEL, output_and_backend
from spool.errors import ValidationError

system_app = typer.Typer(
    help="The service: health, devices, queue, configuration, alerts.", no_args_is_help=True
)


@command(system_app, "health", PANEL)
def system_health(
    as_json: JsonOpt = False,
    output: OutputOpt = None,
    spool: SpoolOpt = None,
    server: ServerOpt = None,
    api_key: ApiKeyOpt = None,
) -> None:
    """The server's health: healthy, degraded (no daemon) or unhealthy (remote only)."""
    out, conn = output_and_backend(as_json, output, spool, server, api_key)
    with conn as b:
        h = b.health()
    daemon = h.get("daemon") or {}
    disk = h.get("spool") or {}
    status = str(h.get("status"))
    out.show(
        h,
        [
            kv_sheet(
                [
                    (
                        "Status",
                        Text(
                            status,
                            style={"healthy": "bold green", "degraded": "yellow"}.get(
                                status, "bold red"
                            ),
                        ),
                    ),
                    ("Version", h.get("version")),
                    ("Started", h.get("started_at")),
                    ("Uptime (s)", h.get("uptime_seconds")),
                    (
                        "Daemon",
                        "running"
                        if daemon.get("responsive")
                        else ("not responding" if daemon.get("alive") else "not running"),
                    ),
                    ("Spool writable", disk.get("writable")),
                    ("Disk free (GB)", disk.get("free_gb")),
                    ("Mirror", h.get("mirror")),
                ]
            )
        ],
    )


def _mb(used: Any, total: Any) -> str:
    if isinstance(used, int | float) and isinstance(total, int | float):
        return f"{used:.0f}/{total:.0f}"
    return "-"


def gpus_blocks(inv: dict[str, Any]) -> list[Block]:
    rows = []
    for g in inv.get("gpus") or []:
        task = g.get("current_task") or {}
        rows.append(
            [
                g.get("slot_id"),
                g.get("device") or "",
                g.get("name") or "",
                (g.get("state") or "") + (" (spare)" if g.get("spare") else ""),
                fmt_value(g.get("utilization_percent")),
                _mb(g.get("memory_used_mb"), g.get("memory_total_mb")),
                fmt_value(g.get("temperature_c")),
                ", ".join(g.get("loaded_models") or []),
                task.get("task_id") or "",
            ]
        )
    source = (
        "daemon snapshot"
        if inv.get("source") == "daemon"
        else (
            "configured slots, no daemon running"
            if not inv.get("daemon_running")
            else "configured slots"
        )
    )
    blocks: list[Block] = [
        grid_sheet(
            ("SLOT", "DEVICE", "NAME", "STATE", "UTIL %", "MEM MB", "TEMP C", "MODELS", "TASK"),
            rows,
            right=(4, 5, 6),
            nowrap=(0, 8),
            title=f"Slots ({source})",
        )
    ]
    pilots = [(g.get("slot_id"), g["pilot"]) for g in inv.get("gpus") or [] if g.get("pilot")]
    if pilots:
        blocks.append(pilots_sheet(pilots))
    if inv.get("error"):
        blocks.append(Text(str(inv["error"]), style="red"))
    return blocks


def pilots_sheet(pilots: list[tuple[Any, dict[str, Any]]]) -> Block:
    """Slurm pilots (slots = "slurm"): where each runs, or why Slurm has not started it."""
    rows = [
        [
            slot,
            p.get("job_id") or "",
            p.get("node") or "",
            p.get("state") or "",
            p.get("reason") or "",
            p.get("devices") or "",
            fmt_value(p.get("time_left_s")),
            fmt_value(p.get("heartbeat_age_s")),
        ]
        for slot, p in pilots
    ]
    return grid_sheet(
        ("SLOT", "JOB", "NODE", "SLURM STATE", "REASON", "DEVICES", "LEFT S", "HEARTBEAT S"),
        rows,
        right=(6, 7),
        nowrap=(0, 1),
        title="Slurm pilots",
    )


@command(system_app, "gpus", PANEL)
def system_gpus(
    as_json: JsonOpt = False,
    output: OutputOpt = None,
    spool: SpoolOpt = None,
    server: ServerOpt = None,
    api_key: ApiKeyOpt = None,
) -> None:
    """Slots and their devices: utilization, memory, temperature, models, current task."""
    out, conn = output_and_backend(as_json, output, spool, server, api_key)
    with conn as b:
        inv = b.gpus()
    out.show(inv, gpus_blocks(inv))


def queue_blocks(q: dict[str, Any]) -> list[Block]:
    queued = q.get("queued") or {}
    slots = q.get("slots") or {}
    rows: list[tuple[str, Any]] = [("Queued", queued.get("total"))]
    rows += [(f"  {name}", n) for name, n in (queued.get("by_priority") or {}).items()]
    rows += [
        ("Oldest queued", queued.get("oldest_queued_at")),
        (
            "Slots busy/idle/total",
            f"{slots.get('busy', 0)}/{slots.get('idle', 0)}/{slots.get('total', 0)}",
        ),
        ("Daemon running", q.get("daemon_running")),
    ]
    blocks: list[Block] = [kv_sheet(rows), None]
    by_state = q.get("by_state") or {}
    blocks.append(
        grid_sheet(
            ("STATE", "TASKS"),
            [[state_text(s), fmt_value(n)] for s, n in by_state.items()],
            right=(1,),
            title="Tasks by state",
        )
    )
    running = q.get("running") or []
    if running:
        blocks += [
            None,
            grid_sheet(
                ("TASK", "SLOT", "STARTED"),
                [
                    [r.get("task_id"), r.get("slot_id"), short_time(r.get("started_at"))]
                    for r in running
                ],
                title="Running",
                nowrap=(0,),
            ),
        ]
    return blocks


@command(system_app, "queue", PANEL)
def system_queue(
    as_json: JsonOpt = False,
    output: OutputOpt = None,
    spool: SpoolOpt = None,
    server: ServerOpt = None,
    api_key: ApiKeyOpt = None,
) -> None:
    """Queued tasks per priority, tasks per state, what the slots are doing."""
    out, conn = output_and_backend(as_json, output, spool, server, api_key)
    with conn as b:
        q = b.queue()
    out.show(q, queue_blocks(q))


@command(system_app, "config", PANEL)
def system_config(
    as_json: JsonOpt = False,
    output: OutputOpt = None,
    spool: SpoolOpt = None,
    server: ServerOpt = None,
    api_key: ApiKeyOpt = None,
) -> None:
    """The server's running configuration, secrets masked (admin key; remote only)."""
    from mofsim_cli.views import scalar_rows

    out, conn = output_and_backend(as_json, output, spool, server, api_key)
    with conn as b:
        cfg = b.config()
    out.show(
        cfg,
        [
            kv_sheet(scalar_rows(cfg.get("config") or {}), title="Configuration"),
            None,
            kv_sheet(scalar_rows(cfg.get("effective") or {}), title="Effective limits"),
        ],
    )


@command(system_app, "alerts", PANEL)
def system_alerts(
    active: Annotated[bool, typer.Option("--active", help="Alerts firing now (default).")] = False,
    history: Annotated[bool, typer.Option("--history", help="Past alerts, newest first.")] = False,
    level: Annotated[
        str | None, typer.Option("--level", help="CRITICAL, WARNING or INFO (or a list).")
    ] = None,
    rule: Annotated[
        str | None, typer.Option("--type", help="A rule type, e.g. gpu_memory_low (or a list).")
    ] = None,
    since: Annotated[
        str | None, typer.Option("--since", help="From this time (2025-12-30T10:00:00Z).")
    ] = None,
    until: Annotated[str | None, typer.Option("--until", help="Up to this time.")] = None,
    limit: Annotated[
        int | None, typer.Option("--limit", min=1, max=1000, help="At most this many.")
    ] = None,
    as_json: JsonOpt = False,
    output: OutputOpt = None,
    spool: SpoolOpt = None,
    server: ServerOpt = None,
    api_key: ApiKeyOpt = None,
) -> None:
    """Alerts of the daemon's alert engine: active ones, or the history."""
    if active and history:
        raise ValidationError("--active and --history exclude each other", field="history")
    kind = "history" if history else "active"
    given = {"level": level, "type": rule, "since": since, "until": until, "limit": limit}
    filters = {name: str(value) for name, value in given.items() if value is not None}
    out, conn = output_and_backend(as_json, output, spool, server, api_key)
    with conn as b:
        data = b.alerts(kind, filters)
    items = data.get("items") or []
    if not items:
        engine = data.get("engine")
        why = "" if engine in (None, "running") else f" (alert engine {engine})"
        out.empty(data, f"no {'active alerts' if kind == 'active' else 'alert history'}{why}")
        return
    rows = [
        [
            short_time(a.get("timestamp")),
            a.get("level") or "",
            a.get("type") or "",
            a.get("subject") or "",
            "resolved " + short_time(a.get("resolved_at")) if a.get("resolved") else "firing",
            a.get("message") or "",
        ]
        for a in items
    ]
    out.show(
        data,
        [grid_sheet(("TIME", "LEVEL", "TYPE", "SUBJECT", "STATE", "MESSAGE"), rows, nowrap=(0,))],
    )
