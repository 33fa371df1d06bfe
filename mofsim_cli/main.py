"""The ``mofsim`` command: thin Typer commands over a spool (local mode, the default)
or a server (``--server URL``, remote mode, through the SDK).

Each command parses its arguments, asks its ``backend.Backend`` and hands the answer to
the output layer (``output.py``: Rich tables, plain tables or JSON), so a command prints
the same in both modes.  Every error ends as one line on stderr, ``error CODE: reason``,
exit code 1 (with ``--json``: ``{"error": {...}}`` on stdout), never a traceback.
Heavy packages (torch, ase, aiohttp) are imported only by the commands that need them,
so ``mofsim --help`` is quick.  The models / structures / system groups live in
``resources.py``.
"""

# No ``from __future__ import annotations`` here: Typer would then evaluate every
# command's string annotations at each start, several times slower.
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.text import Text

from mofsim_cli import housekeeping, resources
from mofsim_cli.backend import connect
from mofsim_cli.backend_protocol import Submission
from mofsim_cli.follow import follow
from mofsim_cli.options import (
    ApiKeyOpt,
    JsonOpt,
    OutputOpt,
    ServerOpt,
    SpoolOpt,
    TaskIdArg,
    from_command_line,
    normalize_level,
    normalize_state,
    open_spool,
)
from mofsim_cli.output import command, make_output
from mofsim_cli.render import (
    cancel_line,
    grid_sheet,
    kv_sheet,
    out_console,
    record_sheet,
    result_blocks,
    submitted_line,
    tasks_sheet,
)
from spool.errors import ValidationError

app = typer.Typer(
    name="mofsim",
    help="MOF simulations with machine-learning interatomic potentials: submit, follow "
    "and inspect tasks, run the daemon.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
mirror_app = typer.Typer(help="The database mirror of the spool.", no_args_is_help=True)
app.add_typer(mirror_app, name="mirror", rich_help_panel="Data")
keys_app = typer.Typer(
    help="API keys of the HTTP server (stored hashed in the spool).", no_args_is_help=True
)
app.add_typer(keys_app, name="keys", rich_help_panel="Server")
resources.register(app)
housekeeping.register(app)
ConfigOpt = Annotated[
    Path | None,
    typer.Option(
        "--config", help="TOML configuration file (default: MOFSIM_CONFIG).", show_default=False
    ),
]


def _show_version(value: bool) -> None:
    if value:
        from mofsim_core.version import package_version

        print(f"mofsim {package_version()}")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_show_version, is_eager=True, help="Show the version and exit."
        ),
    ] = False,
) -> None:
    """MOF simulations with machine-learning interatomic potentials."""


# -- daemon ----------------------------------------------------------------------------


def _check_http(value: str) -> str:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValidationError(f"--http must be HOST:PORT, got {value!r}", field="http")
    return value


@command(app, "daemon", "Daemon")
def daemon(
    spool: Annotated[
        Path | None,
        typer.Option(
            "--spool",
            show_default=False,
            help="Spool directory (default: config file, then MOFSIM_SPOOL, then built-in).",
        ),
    ] = None,
    slots: Annotated[
        str | None,
        typer.Option(
            "--slots",
            help="auto | cpu:N | simulate:N | GPU indices such as 0,1,3.",
            show_default=False,
        ),
    ] = None,
    http: Annotated[
        str | None, typer.Option("--http", metavar="HOST:PORT", help="Serve the HTTP API here.")
    ] = None,
    no_http: Annotated[bool, typer.Option("--no-http", help="Do not serve HTTP.")] = False,
    config: Annotated[
        Path | None,
        typer.Option("--config", help="TOML configuration file (default: MOFSIM_CONFIG)."),
    ] = None,
    log_level: Annotated[
        str | None,
        typer.Option("--log-level", show_default=False, help="DEBUG, INFO, WARNING, ..."),
    ] = None,
) -> None:
    """Run the supervisor in the foreground until SIGTERM or Ctrl-C."""
    from mofsim_core.config import load_config

    if http and no_http:
        raise ValidationError("--http and --no-http exclude each other", field="http")
    overrides: dict[str, Any] = {
        "spool": str(spool.expanduser()) if spool else None,
        "slots": slots,
        "http": _check_http(http) if http else ("off" if no_http else None),
        "log_level": normalize_level(log_level),
    }
    cfg = load_config(config, overrides)
    from mofsim_cli import launch

    raise typer.Exit(launch.run_daemon(cfg))


@command(app, "demo", "Daemon")
def demo(
    spool: Annotated[
        Path | None,
        typer.Option(
            "--spool", show_default=False, help="Spool to use (default: a new temporary one)."
        ),
    ] = None,
    structure: Annotated[str, typer.Option("--structure", help="Structure to relax.")] = (
        "builtin:MOF-5"
    ),
    model: Annotated[str, typer.Option("--model", "-m", help="Model key.")] = "sevennet-0",
) -> None:
    """Start a daemon, relax a built-in MOF with SevenNet-0 live, show the result, stop."""
    from mofsim_cli.demo import run_demo

    state = run_demo(
        out_console(), spool=spool.expanduser() if spool else None, structure=structure, model=model
    )
    raise typer.Exit(0 if state == "COMPLETED" else 1)


# -- server ----------------------------------------------------------------------------


def _server_config(config: Path | None, spool: Path | None, http: str | None = None) -> Any:
    from mofsim_core.config import load_config

    return load_config(
        config,
        {
            "spool": str(spool.expanduser()) if spool else None,
            "http": _check_http(http) if http else None,
        },
    )


@command(app, "serve", "Server")
def serve(
    spool: SpoolOpt = None,
    http: Annotated[
        str | None,
        typer.Option(
            "--http",
            metavar="HOST:PORT",
            show_default=False,
            help="Where to listen (default: the configuration's http, else 127.0.0.1:8000).",
        ),
    ] = None,
    config: ConfigOpt = None,
) -> None:
    """Serve the HTTP API alone on a spool; a daemon on the same spool runs the tasks."""
    from dataclasses import replace

    from mofsim_cli import launch

    cfg = _server_config(config, spool, http)
    raise typer.Exit(launch.serve(replace(cfg, http=cfg.http or launch.DEFAULT_BIND)))


def _key_store(config: Path | None, spool: Path | None) -> Any:
    from mofsim_core.api_keys import KeyStore
    from spool.store import Spool

    cfg = _server_config(config, spool)
    return KeyStore(cfg.api_keys_path, Spool(cfg.spool_path, create=True).paths)


@command(keys_app, "create", "Server")
def keys_create(
    admin: Annotated[
        bool, typer.Option("--admin", help="May manage keys and models and read system logs.")
    ] = False,
    name: Annotated[
        str | None,
        typer.Option("--name", help="A label, e.g. who or what uses the key.", show_default=False),
    ] = None,
    as_json: JsonOpt = False,
    output: OutputOpt = None,
    spool: SpoolOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Create an API key and print it (the only time it is shown)."""
    out = make_output(as_json, output)
    entry, token = _key_store(config, spool).create(name, admin)
    # The key alone on stdout, so that KEY=$(mofsim keys create) works.
    out.show({**entry, "key": token}, [Text(token)])
    out.hint(
        f"key {entry['id']}{' (admin)' if admin else ''} created; store it now, it "
        "cannot be shown again. Send it as X-API-Key: KEY or Authorization: Bearer "
        "KEY.",
        stderr=True,
    )


@command(keys_app, "list", "Server")
def keys_list(
    as_json: JsonOpt = False,
    output: OutputOpt = None,
    spool: SpoolOpt = None,
    config: ConfigOpt = None,
) -> None:
    """List API keys (never their secrets)."""
    out = make_output(as_json, output)
    entries = _key_store(config, spool).entries()
    if not entries:
        out.empty(entries, "no API keys (create one with: mofsim keys create --admin)")
        return
    out.show(
        entries,
        [
            grid_sheet(
                ("ID", "NAME", "ADMIN", "CREATED", "REVOKED"),
                [
                    [
                        e["id"],
                        e["name"] or "",
                        "yes" if e["admin"] else "",
                        e["created_at"] or "",
                        e["revoked_at"] or "",
                    ]
                    for e in entries
                ],
                nowrap=(0,),
            )
        ],
    )


@command(keys_app, "revoke", "Server")
def keys_revoke(
    key_id: Annotated[str, typer.Argument(help="The key's id (see mofsim keys list).")],
    as_json: JsonOpt = False,
    output: OutputOpt = None,
    spool: SpoolOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Revoke an API key: requests carrying it are refused from now on."""
    entry = _key_store(config, spool).revoke(key_id)
    make_output(as_json, output).show(entry, [Text(f"revoked {entry['id']}")])


# -- tasks -----------------------------------------------------------------------------


def _where_flags(spool: Path | None, server: str | None) -> str:
    """The flags a follow-up command needs to reach the same place."""
    if from_command_line("server") and server:
        return f" --server {server}"
    if from_command_line("spool") and spool is not None:
        return f" --spool {spool}"
    return ""


@command(app, "submit", "Tasks")
def submit(
    task_type: Annotated[
        str,
        typer.Argument(
            help="optimization, stability, bulk-modulus, heat-capacity, interaction-energy, "
            "single-point-energy.",
            show_default=False,
        ),
    ],
    structure: Annotated[
        str,
        typer.Argument(
            help="A CIF/XYZ/POSCAR file, builtin:NAME or upload:FILE_ID.", show_default=False
        ),
    ],
    model: Annotated[
        str, typer.Option("--model", "-m", help="Model key, e.g. sevennet-0.", show_default=False)
    ],
    param: Annotated[
        list[str] | None,
        typer.Option(
            "--param",
            "-p",
            metavar="KEY=VALUE",
            help="Task parameter; VALUE is JSON when it parses as JSON, else text. Repeatable.",
            show_default=False,
        ),
    ] = None,
    priority: Annotated[
        str, typer.Option("--priority", help="CRITICAL, HIGH, NORMAL or LOW (or 0-3).")
    ] = "NORMAL",
    timeout: Annotated[
        float | None,
        typer.Option("--timeout", help="Seconds the task may run.", show_default=False),
    ] = None,
    wait: Annotated[
        bool, typer.Option("--wait", help="Follow the task to its end and print the result.")
    ] = False,
    as_json: JsonOpt = False,
    output: OutputOpt = None,
    spool: SpoolOpt = None,
    server: ServerOpt = None,
    api_key: ApiKeyOpt = None,
) -> None:
    """Validate and queue a task."""
    from mofsim_cli.submission import parse_params

    out = make_output(as_json, output)
    sub = Submission(
        task_type=task_type,
        structure=structure,
        model=model,
        params=parse_params(param),
        priority=priority,
        timeout=timeout,
    )
    with connect(spool, server, api_key) as b:
        view = b.submit(sub)
        task_id = view["task_id"]
        if not wait:
            out.show(view, [submitted_line(view)])
            out.hint(f"Follow it with: mofsim logs {task_id} --follow{_where_flags(spool, server)}")
            return
        if out.name != "json":  # with --json, only the result document is printed
            out.show(view, [submitted_line(view)])
        follow(b.follow(task_id), out.display(task_id, quiet=out.name == "json"))
        result_doc = b.result(task_id)
    out.show(result_doc, result_blocks(result_doc))


@command(app, "status", "Tasks")
def status(
    task_id: TaskIdArg,
    as_json: JsonOpt = False,
    output: OutputOpt = None,
    spool: SpoolOpt = None,
    server: ServerOpt = None,
    api_key: ApiKeyOpt = None,
) -> None:
    """Show a task's state, timing and progress."""
    out = make_output(as_json, output)
    with connect(spool, server, api_key) as b:
        view = b.status(task_id)
    out.show(view, [record_sheet(view)])


@command(app, "result", "Tasks")
def result(
    task_id: TaskIdArg,
    as_json: JsonOpt = False,
    output: OutputOpt = None,
    spool: SpoolOpt = None,
    server: ServerOpt = None,
    api_key: ApiKeyOpt = None,
) -> None:
    """Show the result of a completed task (or the error it ended with)."""
    out = make_output(as_json, output)
    with connect(spool, server, api_key) as b:
        view = b.result(task_id)
    out.show(view, result_blocks(view))


@command(app, "logs", "Tasks")
def logs(
    task_id: TaskIdArg,
    follow_: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep streaming until the task ends.")
    ] = False,
    level: Annotated[
        str | None,
        typer.Option(
            "--level",
            "-l",
            help="Minimum level: DEBUG, INFO, WARNING, ERROR, CRITICAL.",
            show_default=False,
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="JSON lines.")] = False,
    output: OutputOpt = None,
    spool: SpoolOpt = None,
    server: ServerOpt = None,
    api_key: ApiKeyOpt = None,
) -> None:
    """Print a task's events (logs, state changes, progress)."""
    out = make_output(as_json, output)
    floor = normalize_level(level)
    with connect(spool, server, api_key) as b:
        if follow_:
            follow(b.follow(task_id), out.display(task_id, level=floor))
        else:
            out.events(b.events(task_id, floor))


@command(app, "cancel", "Tasks")
def cancel(
    task_id: TaskIdArg,
    as_json: JsonOpt = False,
    output: OutputOpt = None,
    spool: SpoolOpt = None,
    server: ServerOpt = None,
    api_key: ApiKeyOpt = None,
) -> None:
    """Cancel a task: at once when queued, at its next step when running."""
    out = make_output(as_json, output)
    with connect(spool, server, api_key) as b:
        state = b.cancel(task_id)
    out.show({"task_id": task_id, "status": state}, [cancel_line(task_id, state)])


@command(app, "list", "Tasks")
def list_tasks(
    state: Annotated[
        str | None,
        typer.Option(
            "--state",
            "-s",
            help="Only tasks in this state (QUEUED, RUNNING, COMPLETED, ...).",
            show_default=False,
        ),
    ] = None,
    limit: Annotated[
        int, typer.Option("--limit", "-n", min=0, help="At most this many (0: all).")
    ] = 50,
    as_json: JsonOpt = False,
    output: OutputOpt = None,
    spool: SpoolOpt = None,
    server: ServerOpt = None,
    api_key: ApiKeyOpt = None,
) -> None:
    """List tasks, newest first."""
    out = make_output(as_json, output)
    wanted = normalize_state(state)
    with connect(spool, server, api_key) as b:
        records = b.list_tasks(wanted, limit)
    if records:
        out.show(records, [tasks_sheet(records)])
    else:
        out.empty(records, "no tasks")


@command(app, "top", "Tasks")
def top(
    refresh: Annotated[
        float, typer.Option("--refresh", min=0.1, help="Seconds between refreshes.")
    ] = 1.0,
    spool: SpoolOpt = None,
    server: ServerOpt = None,
    api_key: ApiKeyOpt = None,
) -> None:
    """Live view of slots, queue, running and finished tasks, alerts; select, follow a
    log, cancel (q quits)."""
    from mofsim_cli.top import run_top

    raise typer.Exit(run_top(spool, server, api_key, refresh))


# -- data ------------------------------------------------------------------------------


def _rebuild_mirror(sp: Any, config: Any = None) -> dict[str, Any]:
    """Refill the mirror from the spool: every task record and its events (``seq`` is
    the event's byte offset, as the daemon's mirror writer stores it).  The mirror is
    the one the daemon's configuration names (``database_url`` from ``MOFSIM_CONFIG`` or
    ``MOFSIM_DATABASE_URL``; SQLite in ``state/`` when unset) unless ``config`` (a
    Config or a URL) is given."""
    from collections import Counter

    from mofsim_core.mirror_factory import mirror_location, open_mirror
    from spool.events import read_events

    if config is None:
        from mofsim_core.config import load_config

        config = load_config()
    location = mirror_location(config, sp.paths)  # refuses a bad URL before any work
    records = list(sp.records())
    n_logs = 0

    def events_of(task_id: str) -> list[dict[str, Any]]:
        nonlocal n_logs
        events = [dict(ev.data, seq=ev.offset) for ev in read_events(sp.paths.events_file(task_id))]
        n_logs += len(events)
        return events

    mirror = open_mirror(config, sp.paths)
    try:
        n_tasks = mirror.rebuild(records, events_of)
    finally:
        mirror.close()
    return {
        "database": location,
        "tasks": n_tasks,
        "logs": n_logs,
        "by_status": dict(Counter(r["status"] for r in records)),
    }


@command(mirror_app, "rebuild", "Data")
def mirror_rebuild(
    as_json: JsonOpt = False, output: OutputOpt = None, spool: SpoolOpt = None
) -> None:
    """Rebuild the SQLite mirror from the spool (tasks and their logs)."""
    out = make_output(as_json, output)
    counts = _rebuild_mirror(open_spool(spool))
    rows: list[tuple[str, Any]] = [
        ("Database", counts["database"]),
        ("Tasks", counts["tasks"]),
        ("Log lines", counts["logs"]),
    ]
    rows += [(f"  {state}", n) for state, n in counts["by_status"].items() if n]
    out.show(counts, [kv_sheet(rows, title="Mirror rebuilt")])
