"""``mofsim daemon``, ``demo``, ``serve``, ``keys ...`` and ``mirror ...``: running the
service and looking after what it keeps beside the tasks.

``daemon`` runs the supervisor in the foreground (with the HTTP API unless told not
to), ``demo`` starts one on a spool of its own for a live relaxation, ``serve`` runs the
HTTP API alone beside a daemon.  ``keys`` manages the server's API keys (stored hashed in
the spool) and ``mirror rebuild`` refills the database mirror from the spool.  These
commands work on a spool here, never through ``--server``; the processes themselves are
started by ``launch.py``.
"""

# No ``from __future__ import annotations`` here: Typer would then evaluate every
# command's string annotations at each start, several times slower.
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.text import Text

from mofsim_cli.options import JsonOpt, OutputOpt, SpoolOpt, normalize_level, open_spool
from mofsim_cli.output import command, make_output
from mofsim_cli.render import grid_sheet, kv_sheet, out_console
from spool.errors import ValidationError

mirror_app = typer.Typer(help="The database mirror of the spool.", no_args_is_help=True)
keys_app = typer.Typer(
    help="API keys of the HTTP server (stored hashed in the spool).", no_args_is_help=True
)
ConfigOpt = Annotated[
    Path | None,
    typer.Option(
        "--config", help="TOML configuration file (default: MOFSIM_CONFIG).", show_default=False
    ),
]


# -- daemon ----------------------------------------------------------------------------


def _check_http(value: str) -> str:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValidationError(f"--http must be HOST:PORT, got {value!r}", field="http")
    return value


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
            help="auto | cpu:N | simulate:N | slurm | GPU indices such as 0,1,3.",
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


def _key_store(config: Path | None, spool: Path | None) -> tuple[Any, str]:
    """The server's key store, and the name its audit records give this user."""
    from mofsim_cli.backend import cli_actor
    from mofsim_core.api_keys import KeyStore
    from spool.store import Spool

    cfg = _server_config(config, spool)
    store = KeyStore(cfg.api_keys_path, Spool(cfg.spool_path, create=True).paths)
    return store, cli_actor(cfg.spool_path, cfg)


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
    store, actor = _key_store(config, spool)
    entry, token = store.create(name, admin, actor=actor)
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
    entries = _key_store(config, spool)[0].entries()
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
    store, actor = _key_store(config, spool)
    entry = store.revoke(key_id, actor=actor)
    make_output(as_json, output).show(entry, [Text(f"revoked {entry['id']}")])


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


def register(app: typer.Typer) -> None:
    """Add the daemon, server and data commands to the ``mofsim`` command."""
    command(app, "daemon", "Daemon")(daemon)
    command(app, "demo", "Daemon")(demo)
    command(app, "serve", "Server")(serve)
    app.add_typer(mirror_app, name="mirror", rich_help_panel="Data")
    app.add_typer(keys_app, name="keys", rich_help_panel="Server")
