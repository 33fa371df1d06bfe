"""The ``mofsim`` command: thin Typer commands over a spool (local mode, the default)
or a server (``--server URL``, remote mode, through the SDK).

Each command parses its arguments, asks its ``backend.Backend`` and hands the answer to
the output layer (``output.py``: Rich tables, plain tables or JSON), so a command prints
the same in both modes.  Every error ends as one line on stderr, ``error CODE: reason``,
exit code 1 (with ``--json``: ``{"error": {...}}`` on stdout), never a traceback.
Heavy packages (torch, ase, aiohttp) are imported only by the commands that need them,
so ``mofsim --help`` is quick.  This module holds the task commands; the daemon, server,
keys and mirror commands live in ``service_cmd.py``, the retention commands in
``housekeeping.py``, the models / structures / system groups in ``resources.py``.
"""

# No ``from __future__ import annotations`` here: Typer would then evaluate every
# command's string annotations at each start, several times slower.
from pathlib import Path
from typing import Annotated

import typer

from mofsim_cli import bench_cmd, housekeeping, resources, service_cmd
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
)
from mofsim_cli.output import command, make_output
from mofsim_cli.render import (
    cancel_line,
    record_sheet,
    result_blocks,
    submitted_line,
    tasks_sheet,
)
from spool.states import TERMINAL_STATES

app = typer.Typer(
    name="mofsim",
    help="MOF simulations with machine-learning interatomic potentials: submit, follow "
    "and inspect tasks, run the daemon.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
# Typer lists commands, then groups, each in the order registered; that order gives the
# help its panels: Data, Daemon, Server, Tasks, Resources.
housekeeping.register(app)
service_cmd.register(app)
resources.register(app)
bench_cmd.register(app)


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
            help="The task type, e.g. optimization or single-point-energy (an unknown one "
            "is answered with the list the server knows).",
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
    expected_duration: Annotated[
        float | None,
        typer.Option(
            "--expected-duration",
            help="Seconds the task is expected to run (a Slurm pilot takes it only with"
            " that much time left; the timeout otherwise).",
            show_default=False,
        ),
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
        expected_duration=expected_duration,
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
    pending = state not in TERMINAL_STATES
    out.show(
        {"task_id": task_id, "status": state, "cancel_requested": pending},
        [cancel_line(task_id, state)],
    )


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
