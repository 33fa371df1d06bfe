"""``mofsim structures ...``: uploaded structures and the built-in frameworks.

In local mode the uploads kept in the spool; in remote mode the server's
``/api/v1/structures`` routes.  An upload is referred to as ``upload:FILE_ID``, a
built-in framework as ``builtin:NAME``.
"""

# No ``from __future__ import annotations`` here: Typer would then evaluate every
# command's string annotations at each start, several times slower.
from collections.abc import Sequence
from pathlib import Path
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
)
from mofsim_cli.resource_common import PANEL, output_and_backend

structures_app = typer.Typer(
    help="Structures: uploads and the built-in frameworks.", no_args_is_help=True
)
FileIdArg = Annotated[
    str, typer.Argument(help="Uploaded structure id (struct_...).", show_default=False)
]


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
    out, conn = output_and_backend(as_json, output, spool, server, api_key)
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
    out, conn = output_and_backend(as_json, output, spool, server, api_key)
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
    out, conn = output_and_backend(as_json, output, spool, server, api_key)
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
    out, conn = output_and_backend(as_json, output, spool, server, api_key)
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
    out, conn = output_and_backend(as_json, output, spool, server, api_key)
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
