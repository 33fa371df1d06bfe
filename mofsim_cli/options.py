"""Option types shared by the commands, and how they turn into a spool or a server.

Every task and resource command works on a spool (local mode, the default) or a server
(remote mode, through the SDK):

- ``--spool DIR`` (or ``MOFSIM_SPOOL``); without either, the daemon's configuration
  decides (``MOFSIM_CONFIG`` file, then the built-in default), so the CLI and the daemon
  it talks to agree on where the spool is;
- ``--server URL`` (or ``MOFSIM_SERVER``) with ``--api-key KEY`` (or
  ``MOFSIM_API_KEY``).  A flag on the command line beats an environment variable: with
  ``MOFSIM_SERVER`` set, ``--spool DIR`` still means that spool.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from spool.errors import ValidationError
from spool.events import LEVELS
from spool.states import TaskState
from spool.store import Spool

SpoolOpt = Annotated[
    Path | None,
    typer.Option(
        "--spool",
        envvar="MOFSIM_SPOOL",
        show_default=False,
        help="Spool directory (default: the one the daemon configuration names).",
        rich_help_panel="Where",
    ),
]
ServerOpt = Annotated[
    str | None,
    typer.Option(
        "--server",
        envvar="MOFSIM_SERVER",
        metavar="URL",
        show_default=False,
        help="Work through this MOFSim server (remote mode), e.g. http://host:8000.",
        rich_help_panel="Where",
    ),
]
ApiKeyOpt = Annotated[
    str | None,
    typer.Option(
        "--api-key",
        envvar="MOFSIM_API_KEY",
        metavar="KEY",
        show_default=False,
        show_envvar=True,
        help="API key for --server (sent as X-API-Key).",
        rich_help_panel="Where",
    ),
]
JsonOpt = Annotated[
    bool, typer.Option("--json", help="Print machine-readable JSON instead of tables.")
]
OutputOpt = Annotated[
    str | None,
    typer.Option(
        "--output",
        "-o",
        envvar="MOFSIM_OUTPUT",
        metavar="FORMAT",
        show_default=False,
        help="rich (default: tables, colours, live bars), table (plain aligned text) or "
        "json (same as --json).",
    ),
]
TaskIdArg = Annotated[str, typer.Argument(help="Task id, e.g. task_0123456789abcdef.")]


def from_command_line(name: str) -> bool:
    """Whether the option ``name`` of the running command was given as a flag (not taken
    from the environment or its default)."""
    import importlib

    try:  # Typer >= 0.2x carries its own copy of click
        module = importlib.import_module("typer._click.globals")
    except ImportError:
        module = importlib.import_module("click")
    ctx = module.get_current_context(silent=True)
    if ctx is None:
        return False
    source = ctx.get_parameter_source(name)
    return getattr(source, "name", None) == "COMMANDLINE"


def spool_root(value: Path | None) -> Path:
    if value is not None:
        return value.expanduser().resolve()
    from mofsim_core.config import load_config

    return load_config().spool_path


def open_spool(value: Path | None, *, create: bool = False) -> Spool:
    """The spool to read (``create=False``: a mistyped path is an error, not an empty
    spool that silently answers "no tasks") or to write."""
    root = spool_root(value)
    if not create and not root.is_dir():
        raise ValidationError(
            f"spool directory {root} does not exist; start the daemon or pass --spool",
            field="spool",
        )
    return Spool(root, create=create)


def normalize_state(value: str | None) -> str | None:
    if value is None:
        return None
    state = TaskState.parse(value)
    if state is None:
        raise ValidationError(
            f"unknown state {value!r}; expected one of {', '.join(TaskState)}", field="state"
        )
    return state.value


def normalize_level(value: str | None) -> str | None:
    if value is None:
        return None
    level = value.strip().upper()
    if level == "WARN":
        level = "WARNING"
    if level not in LEVELS:
        raise ValidationError(
            f"unknown log level {value!r}; expected one of {', '.join(LEVELS)}", field="level"
        )
    return level
