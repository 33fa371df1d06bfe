"""``mofsim gc``, ``mofsim keep`` and ``mofsim delete``: the retention policy (spec 8).

``gc --dry-run`` lists what the daemon's hourly housekeeping would do now (compress
old trajectories, remind about or extend retention periods that end soon) without doing
it; ``gc`` alone does it at once, on a spool here (a server applies its own policy).
``keep`` sets or clears a task's keep flag.  ``delete`` removes a finished task's
results and files, never its record or log, after a confirmation; it is audited.
All three work on a spool (default) and through a server (``--server``).
"""

# No ``from __future__ import annotations`` here: Typer would then evaluate every
# command's string annotations at each start, several times slower.
import sys
from typing import Annotated, Any

import typer
from rich.text import Text

from mofsim_cli.backend import connect
from mofsim_cli.options import (
    ApiKeyOpt,
    JsonOpt,
    OutputOpt,
    ServerOpt,
    SpoolOpt,
    TaskIdArg,
)
from mofsim_cli.output import command, make_output
from mofsim_cli.render import grid_sheet, kv_sheet
from spool.errors import ValidationError

PANEL = "Data"


def policy_rows(policy: dict[str, Any]) -> list[tuple[str, Any]]:
    return [
        ("Results kept (days)", policy.get("keep_days")),
        ("Trajectories compressed after (days)", policy.get("compress_after_days")),
        ("Reminder before the end (days)", policy.get("remind_days")),
        ("Extend instead of reminding", policy.get("auto_extend")),
    ]


def gc(
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Only show what would be done.")
    ] = False,
    as_json: JsonOpt = False,
    output: OutputOpt = None,
    spool: SpoolOpt = None,
    server: ServerOpt = None,
    api_key: ApiKeyOpt = None,
) -> None:
    """Apply the retention policy now: compress old trajectories, remind about (or
    extend) retention periods that end soon.  Nothing is ever deleted by it."""
    out = make_output(as_json, output)
    with connect(spool, server, api_key) as b:
        data = b.retention(apply=not dry_run)
    actions = data.get("actions") or []
    verb = "done" if data.get("applied") else "would be done"
    blocks: list[Any] = [
        kv_sheet(policy_rows(data.get("policy") or {}), title="Retention policy"),
        None,
    ]
    if actions:
        rows = [[a.get("task_id"), a.get("action"), a.get("detail")] for a in actions]
        blocks.append(grid_sheet(("TASK", "ACTION", "DETAIL"), rows, nowrap=(0,)))
        blocks.append(Text(f"{len(actions)} action{'s' * (len(actions) != 1)} {verb}"))
    else:
        blocks.append(Text("nothing to do"))
    out.show(data, blocks)


def keep(
    task_id: TaskIdArg,
    off: Annotated[bool, typer.Option("--off", help="Clear the flag instead.")] = False,
    as_json: JsonOpt = False,
    output: OutputOpt = None,
    spool: SpoolOpt = None,
    server: ServerOpt = None,
    api_key: ApiKeyOpt = None,
) -> None:
    """Keep a task's results beyond the retention period (no reminder, no expiry)."""
    out = make_output(as_json, output)
    with connect(spool, server, api_key) as b:
        data = b.keep(task_id, not off)
    state = "kept" if data.get("keep") else "no longer kept"
    out.show(data, [Text(f"{task_id}: {state}")])


def delete(
    task_id: TaskIdArg,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    as_json: JsonOpt = False,
    output: OutputOpt = None,
    spool: SpoolOpt = None,
    server: ServerOpt = None,
    api_key: ApiKeyOpt = None,
) -> None:
    """Delete a finished task's results and files (its record and log stay).  Audited;
    through a server it needs an admin key."""
    out = make_output(as_json, output)
    if not yes:
        if not sys.stdin.isatty():
            raise ValidationError(
                "deleting results cannot be undone: confirm with --yes", field="yes"
            )
        if not typer.confirm(
            f"Delete the results and files of {task_id}? This cannot be undone",
            default=False,
            err=True,
        ):
            raise typer.Exit(1)
    with connect(spool, server, api_key) as b:
        data = b.delete_data(task_id)
    removed = data.get("removed") or []
    out.show(data, [Text(f"{task_id}: deleted {', '.join(removed) or 'nothing'}")])


def register(app: typer.Typer) -> None:
    command(app, "gc", PANEL)(gc)
    command(app, "keep", PANEL)(keep)
    command(app, "delete", PANEL)(delete)
