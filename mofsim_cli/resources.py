"""``mofsim models ...``, ``mofsim structures ...``, ``mofsim system ...``.

The same commands in local mode (the spool: the catalogue, uploads kept in the spool,
the daemon's slot snapshot, its queue and alert store) and in remote mode (the server's
``/api/v1/models``, ``/structures`` and ``/system`` routes).  ``system health`` and
``system config`` describe the HTTP server and need ``--server``.  Each command prints
through the output layer: the document as the API answers it with ``--json``, tables
otherwise.
"""

# No ``from __future__ import annotations`` here: Typer would then evaluate every
# command's string annotations at each start, several times slower.
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.text import Text

from mofsim_cli.backend import connect
from mofsim_cli.options import ApiKeyOpt, JsonOpt, OutputOpt, ServerOpt, SpoolOpt
from mofsim_cli.output import Output, command, make_output
from mofsim_cli.render import (
    Block,
    fmt_value,
    grid_sheet,
    kv_sheet,
    short_time,
    state_text,
)
from spool.errors import ValidationError

models_app = typer.Typer(
    help="Models: the catalogue, where they are loaded, custom models.", no_args_is_help=True
)
structures_app = typer.Typer(
    help="Structures: uploads and the built-in frameworks.", no_args_is_help=True
)
system_app = typer.Typer(
    help="The service: health, devices, queue, configuration, alerts.", no_args_is_help=True
)

PANEL = "Resources"
KeyArg = Annotated[
    str, typer.Argument(help="Model key or alias, e.g. sevennet-0.", show_default=False)
]
ModelIdArg = Annotated[
    str, typer.Argument(help="Custom model id (model_...), or custom:model_...", show_default=False)
]
FileIdArg = Annotated[
    str, typer.Argument(help="Uploaded structure id (struct_...).", show_default=False)
]
SlotOpt = Annotated[
    str | None,
    typer.Option(
        "--slot",
        help="Slot such as gpu0 or cpu1 (default: any idle slot to load, every "
        "slot holding it to unload).",
        show_default=False,
    ),
]


def _run(
    as_json: bool, output: str | None, spool: Path | None, server: str | None, api_key: str | None
) -> tuple[Output, Any]:
    return make_output(as_json, output), connect(spool, server, api_key)


# --- models -------------------------------------------------------------------------------


def _loaded_on(entry: dict[str, Any]) -> str:
    return ", ".join(entry.get("loaded_on") or [])


def models_sheet(entries: list[dict[str, Any]]) -> Block:
    rows = [
        [
            m.get("key"),
            m.get("family") or "",
            m.get("name") or "",
            "yes" if m.get("d3_trained") else "",
            _loaded_on(m),
            "" if m.get("validated") is None else fmt_value(m.get("validated")),
            m.get("description") or "",
        ]
        for m in entries
    ]
    return grid_sheet(
        ("KEY", "FAMILY", "NAME", "D3", "LOADED ON", "VALIDATED", "DESCRIPTION"), rows, nowrap=(0,)
    )


def model_blocks(m: dict[str, Any]) -> list[Block]:
    elements = m.get("elements") or []
    rows: list[tuple[str, Any]] = [
        ("Key", m.get("key")),
        ("Name", m.get("name")),
        ("Family", m.get("family")),
        ("Framework", m.get("framework")),
        ("Aliases", ", ".join(m.get("aliases") or [])),
        ("Description", m.get("description")),
        ("Weights", m.get("source")),
        ("Default dtype", m.get("default_dtype")),
        ("Trained with D3", m.get("d3_trained")),
        ("Installed", m.get("installed")),
        ("Loaded on", _loaded_on(m) or "-"),
        ("Elements", f"{len(elements)}: {' '.join(elements)}" if elements else "-"),
        ("Tasks", ", ".join(m.get("supported_tasks") or [])),
        ("References", m.get("references")),
    ]
    if m.get("model_id"):
        rows += [("Model id", m["model_id"]), ("Validated", m.get("validated"))]
    return [kv_sheet(rows)]


@command(models_app, "list", PANEL)
def models_list(
    family: Annotated[
        str | None,
        typer.Option(
            "--family",
            "-f",
            help="A family as `mofsim models list` names them, or custom.",
            show_default=False,
        ),
    ] = None,
    as_json: JsonOpt = False,
    output: OutputOpt = None,
    spool: SpoolOpt = None,
    server: ServerOpt = None,
    api_key: ApiKeyOpt = None,
) -> None:
    """List models: built-in and custom, and where each is loaded."""
    out, conn = _run(as_json, output, spool, server, api_key)
    with conn as b:
        entries = b.models(family)
    out.show(entries, [models_sheet(entries)])


@command(models_app, "show", PANEL)
def models_show(
    key: KeyArg,
    as_json: JsonOpt = False,
    output: OutputOpt = None,
    spool: SpoolOpt = None,
    server: ServerOpt = None,
    api_key: ApiKeyOpt = None,
) -> None:
    """A model in full: elements, task types, D3, weights, loaded slots."""
    out, conn = _run(as_json, output, spool, server, api_key)
    with conn as b:
        detail = b.model(key)
    out.show(detail, model_blocks(detail))


def model_status_blocks(st: dict[str, Any]) -> list[Block]:
    slots = ", ".join(f"{s.get('slot_id')} ({s.get('device')})" for s in st.get("slots") or [])
    blocks: list[Block] = [
        kv_sheet(
            [
                ("Model", st.get("model_key")),
                ("Loaded", st.get("loaded")),
                ("Slots", slots or "-"),
                ("Daemon running", st.get("daemon_running")),
            ]
        )
    ]
    requests = st.get("requests") or []
    if requests:
        blocks += [
            None,
            grid_sheet(
                ("REQUEST", "ACTION", "SLOT", "STATUS", "CREATED", "DETAIL"),
                [
                    [
                        r.get("request_id"),
                        r.get("action"),
                        r.get("slot") or r.get("running_on") or "",
                        r.get("status"),
                        short_time(r.get("created_at")),
                        r.get("error") or r.get("message") or "",
                    ]
                    for r in requests
                ],
                title="Recent load/unload requests",
            ),
        ]
    return blocks


@command(models_app, "status", PANEL)
def models_status(
    key: KeyArg,
    as_json: JsonOpt = False,
    output: OutputOpt = None,
    spool: SpoolOpt = None,
    server: ServerOpt = None,
    api_key: ApiKeyOpt = None,
) -> None:
    """Where a model is loaded, and its recent load/unload requests."""
    out, conn = _run(as_json, output, spool, server, api_key)
    with conn as b:
        st = b.model_status(key)
    out.show(st, model_status_blocks(st))


def _action(
    action: str,
    key: str,
    slot: str | None,
    as_json: bool,
    output: str | None,
    spool: Path | None,
    server: str | None,
    api_key: str | None,
) -> None:
    out, conn = _run(as_json, output, spool, server, api_key)
    with conn as b:
        req = b.model_action(key, action, slot)
    where = f" on {req['slot']}" if req.get("slot") else ""
    out.show(
        req,
        [Text(f"{action} of {req.get('model_key')}{where} requested ({req.get('request_id')})")],
    )
    out.hint(f"The daemon carries it out; see: mofsim models status {req.get('model_key')}")


@command(models_app, "load", PANEL)
def models_load(
    key: KeyArg,
    slot: SlotOpt = None,
    as_json: JsonOpt = False,
    output: OutputOpt = None,
    spool: SpoolOpt = None,
    server: ServerOpt = None,
    api_key: ApiKeyOpt = None,
) -> None:
    """Ask the daemon to load a model onto a slot (admin key in remote mode)."""
    _action("load", key, slot, as_json, output, spool, server, api_key)


@command(models_app, "unload", PANEL)
def models_unload(
    key: KeyArg,
    slot: SlotOpt = None,
    as_json: JsonOpt = False,
    output: OutputOpt = None,
    spool: SpoolOpt = None,
    server: ServerOpt = None,
    api_key: ApiKeyOpt = None,
) -> None:
    """Ask the daemon to unload a model (admin key in remote mode)."""
    _action("unload", key, slot, as_json, output, spool, server, api_key)


@command(models_app, "upload", PANEL)
def models_upload(
    file: Annotated[
        Path,
        typer.Argument(
            help="The weights file; the server says which families and file types it takes.",
            show_default=False,
        ),
    ],
    name: Annotated[str, typer.Option("--name", help="A name for the model.", show_default=False)],
    framework: Annotated[
        str,
        typer.Option(
            "--framework", help="The family the weights are for, e.g. mace.", show_default=False
        ),
    ],
    description: Annotated[
        str | None, typer.Option("--description", show_default=False, help="What the model is.")
    ] = None,
    with_d3: Annotated[
        bool, typer.Option("--with-d3", help="The weights already include D3 dispersion.")
    ] = False,
    as_json: JsonOpt = False,
    output: OutputOpt = None,
    spool: SpoolOpt = None,
    server: ServerOpt = None,
    api_key: ApiKeyOpt = None,
) -> None:
    """Upload custom weights; validate them (models validate ID) before tasks use them."""
    out, conn = _run(as_json, output, spool, server, api_key)
    fields: dict[str, Any] = {"name": name, "framework": framework, "with_d3": with_d3}
    if description is not None:
        fields["description"] = description
    with conn as b:
        info = b.upload_model(file, fields)
    out.show(info, [kv_sheet(_custom_rows(info), title="Custom model uploaded")])
    out.hint(f"Validate it next: mofsim models validate {info.get('model_id')}")


def _custom_rows(info: dict[str, Any]) -> list[tuple[str, Any]]:
    return [
        ("Model id", info.get("model_id")),
        ("Key", info.get("model_key")),
        ("Name", info.get("name")),
        ("Framework", info.get("framework")),
        ("With D3", info.get("with_d3")),
        ("File", info.get("original_filename")),
        ("Size (bytes)", info.get("size_bytes")),
        ("SHA-256", info.get("sha256")),
        ("Validated", info.get("validated")),
    ]


@command(models_app, "validate", PANEL)
def models_validate(
    model_id: ModelIdArg,
    as_json: JsonOpt = False,
    output: OutputOpt = None,
    spool: SpoolOpt = None,
    server: ServerOpt = None,
    api_key: ApiKeyOpt = None,
) -> None:
    """Load a custom model and compute one single point, in a separate process."""
    out, conn = _run(as_json, output, spool, server, api_key)
    with conn as b:
        verdict = b.validate_model(model_id)
    check = verdict.get("validation") or {}
    error = check.get("error") if isinstance(check.get("error"), dict) else None
    rows: list[tuple[str, Any]] = [
        ("Model", verdict.get("model_key")),
        (
            "Valid",
            Text("yes", style="bold green")
            if verdict.get("valid")
            else Text("no", style="bold red"),
        ),
        ("Device", check.get("device")),
        ("Tested on", check.get("tested_formula")),
        ("Energy (eV)", check.get("energy_eV")),
        ("Elements", " ".join(check.get("model_elements") or []) or None),
        ("Seconds", check.get("wall_seconds")),
    ]
    if error:
        rows.append(
            ("Error", Text(f"{error.get('code', '')} {error.get('message', '')}", style="red"))
        )
    out.show(verdict, [kv_sheet(rows)])


@command(models_app, "delete", PANEL)
def models_delete(
    model_id: ModelIdArg,
    as_json: JsonOpt = False,
    output: OutputOpt = None,
    spool: SpoolOpt = None,
    server: ServerOpt = None,
    api_key: ApiKeyOpt = None,
) -> None:
    """Delete a custom model (slots holding it are asked to unload it)."""
    out, conn = _run(as_json, output, spool, server, api_key)
    with conn as b:
        done = b.delete_model(model_id)
    out.show(done, [Text(f"deleted {done.get('model_key')}")])


# --- structures ---------------------------------------------------------------------------


def structures_sheet(items: Sequence[dict[str, Any]]) -> Block:
    rows = [
        [
            s.get("file_id"),
            s.get("name") or "",
            s.get("formula") or "",
            fmt_value(s.get("natoms")),
            s.get("format") or "",
            short_time(s.get("created_at")),
        ]
        for s in items
    ]
    return grid_sheet(
        ("FILE_ID", "NAME", "FORMULA", "ATOMS", "FORMAT", "CREATED"),
        rows,
        right=(3,),
        nowrap=(0, 5),
    )


def structure_blocks(s: dict[str, Any]) -> list[Block]:
    cell = s.get("cell")
    rows: list[tuple[str, Any]] = [
        ("File id", s.get("file_id")),
        ("Name", s.get("name")),
        ("Formula", s.get("formula")),
        ("Atoms", s.get("natoms")),
        ("Elements", " ".join(s.get("elements") or []) or None),
        ("Format", s.get("format")),
        ("File", s.get("filename")),
        ("Size (bytes)", s.get("size_bytes")),
        ("Volume (A^3)", s.get("volume")),
        ("Density (g/cm^3)", s.get("density")),
        ("Space group", s.get("spacegroup")),
        ("Cell a b c alpha beta gamma", _cellpar(cell)),
        ("Created", s.get("created_at")),
    ]
    return [kv_sheet(rows)]


def _cellpar(cell: Any) -> str | None:
    if isinstance(cell, dict):
        cell = [cell.get(k) for k in ("a", "b", "c", "alpha", "beta", "gamma")]
    if isinstance(cell, list) and len(cell) == 6 and all(isinstance(x, int | float) for x in cell):
        return " ".join(f"{x:.4f}" for x in cell)
    return None if cell is None else fmt_value(cell)


@command(structures_app, "upload", PANEL)
def structures_upload(
    file: Annotated[
        Path, typer.Argument(help="CIF, XYZ/extended XYZ or POSCAR file.", show_default=False)
    ],
    name: Annotated[
        str | None, typer.Option("--name", help="A name (default: the file's).", show_default=False)
    ] = None,
    as_json: JsonOpt = False,
    output: OutputOpt = None,
    spool: SpoolOpt = None,
    server: ServerOpt = None,
    api_key: ApiKeyOpt = None,
) -> None:
    """Upload a structure once, then submit many tasks on it as upload:FILE_ID."""
    out, conn = _run(as_json, output, spool, server, api_key)
    with conn as b:
        info = b.upload_structure(file, name)
    out.show(info, structure_blocks(info))
    out.hint(f"Use it as: mofsim submit TASK_TYPE upload:{info.get('file_id')} -m MODEL")


@command(structures_app, "list", PANEL)
def structures_list(
    as_json: JsonOpt = False,
    output: OutputOpt = None,
    spool: SpoolOpt = None,
    server: ServerOpt = None,
    api_key: ApiKeyOpt = None,
) -> None:
    """List uploaded structures, newest first."""
    out, conn = _run(as_json, output, spool, server, api_key)
    with conn as b:
        items = b.structures()
    if items:
        out.show(items, [structures_sheet(items)])
    else:
        out.empty(items, "no uploaded structures (upload one with: mofsim structures upload)")


@command(structures_app, "show", PANEL)
def structures_show(
    file_id: FileIdArg,
    as_json: JsonOpt = False,
    output: OutputOpt = None,
    spool: SpoolOpt = None,
    server: ServerOpt = None,
    api_key: ApiKeyOpt = None,
) -> None:
    """An uploaded structure: formula, atoms, cell, volume, density, space group."""
    out, conn = _run(as_json, output, spool, server, api_key)
    with conn as b:
        info = b.structure(file_id)
    out.show(info, structure_blocks(info))


@command(structures_app, "delete", PANEL)
def structures_delete(
    file_id: FileIdArg,
    as_json: JsonOpt = False,
    output: OutputOpt = None,
    spool: SpoolOpt = None,
    server: ServerOpt = None,
    api_key: ApiKeyOpt = None,
) -> None:
    """Delete an upload and the tasks that use it (running ones are cancelled)."""
    out, conn = _run(as_json, output, spool, server, api_key)
    with conn as b:
        done = b.delete_structure(file_id)
    line = Text(f"deleted {done.get('file_id')} and {done.get('deleted_tasks', 0)} task(s)")
    cancelling = done.get("cancelled_running_task_ids") or []
    if cancelling:
        line.append(f"; cancelling {len(cancelling)} running task(s)", style="dim")
    out.show(done, [line])


@command(structures_app, "builtin", PANEL)
def structures_builtin(
    as_json: JsonOpt = False,
    output: OutputOpt = None,
    spool: SpoolOpt = None,
    server: ServerOpt = None,
    api_key: ApiKeyOpt = None,
) -> None:
    """The built-in frameworks, used as builtin:NAME."""
    out, conn = _run(as_json, output, spool, server, api_key)
    with conn as b:
        items = b.builtin_structures()
    rows = [
        [
            f"builtin:{s.get('name')}",
            s.get("formula") or "",
            fmt_value(s.get("natoms")),
            s.get("spacegroup") or "",
            s.get("description") or "",
        ]
        for s in items
    ]
    out.show(
        items,
        [
            grid_sheet(
                ("STRUCTURE", "FORMULA", "ATOMS", "SPACE GROUP", "DESCRIPTION"),
                rows,
                right=(2,),
                nowrap=(0,),
            )
        ],
    )


# --- system -------------------------------------------------------------------------------


@command(system_app, "health", PANEL)
def system_health(
    as_json: JsonOpt = False,
    output: OutputOpt = None,
    spool: SpoolOpt = None,
    server: ServerOpt = None,
    api_key: ApiKeyOpt = None,
) -> None:
    """The server's health: healthy, degraded (no daemon) or unhealthy (remote only)."""
    out, conn = _run(as_json, output, spool, server, api_key)
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
                g.get("state") or "",
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
    if inv.get("error"):
        blocks.append(Text(str(inv["error"]), style="red"))
    return blocks


@command(system_app, "gpus", PANEL)
def system_gpus(
    as_json: JsonOpt = False,
    output: OutputOpt = None,
    spool: SpoolOpt = None,
    server: ServerOpt = None,
    api_key: ApiKeyOpt = None,
) -> None:
    """Slots and their devices: utilization, memory, temperature, models, current task."""
    out, conn = _run(as_json, output, spool, server, api_key)
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
    out, conn = _run(as_json, output, spool, server, api_key)
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

    out, conn = _run(as_json, output, spool, server, api_key)
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
    out, conn = _run(as_json, output, spool, server, api_key)
    with conn as b:
        data = b.alerts(kind)
    items = data.get(kind) or []
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


def register(app: typer.Typer) -> None:
    app.add_typer(models_app, name="models", rich_help_panel=PANEL)
    app.add_typer(structures_app, name="structures", rich_help_panel=PANEL)
    app.add_typer(system_app, name="system", rich_help_panel=PANEL)
