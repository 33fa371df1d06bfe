"""``mofsim models ...``: the model catalogue, where models are loaded, custom models.

In local mode the catalogue, the uploads kept in the spool and the daemon's slot
snapshot; in remote mode the server's ``/api/v1/models`` routes.  Load and unload are
requests the daemon carries out; custom weights are uploaded, then validated before
tasks may use them.
"""

# No ``from __future__ import annotations`` here: Typer would then evaluate every
# command's string annotations at each start, several times slower.
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
from mofsim_cli.upload_config import read_config

models_app = typer.Typer(
    help="Models: the catalogue, where they are loaded, custom models.", no_args_is_help=True
)
KeyArg = Annotated[
    str, typer.Argument(help="Model key or alias, e.g. sevennet-0.", show_default=False)
]
ModelIdArg = Annotated[
    str, typer.Argument(help="Custom model id (model_...), or custom:model_...", show_default=False)
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
    out, conn = output_and_backend(as_json, output, spool, server, api_key)
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
    out, conn = output_and_backend(as_json, output, spool, server, api_key)
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
    out, conn = output_and_backend(as_json, output, spool, server, api_key)
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
    out, conn = output_and_backend(as_json, output, spool, server, api_key)
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
        bool,
        typer.Option(
            "--with-d3",
            help="Tasks on the model add D3 dispersion unless they say otherwise.",
        ),
    ] = False,
    d3_included: Annotated[
        bool,
        typer.Option(
            "--d3-included",
            help="The weights already include D3 (tasks asking for D3 need force_d3).",
        ),
    ] = False,
    config: Annotated[
        str | None,
        typer.Option(
            "--config",
            show_default=False,
            help="The loader's config: a JSON object, or a .json/.yaml file with one "
            '(e.g. {"precision": "float32"}; a pytorch model\'s interface).',
        ),
    ] = None,
    shared: Annotated[
        bool,
        typer.Option(
            "--shared", help="Every API key may see and use it (default: the uploading key)."
        ),
    ] = False,
    as_json: JsonOpt = False,
    output: OutputOpt = None,
    spool: SpoolOpt = None,
    server: ServerOpt = None,
    api_key: ApiKeyOpt = None,
) -> None:
    """Upload custom weights; validate them (models validate ID) before tasks use them."""
    out, conn = output_and_backend(as_json, output, spool, server, api_key)
    fields: dict[str, Any] = {
        "name": name,
        "framework": framework,
        "with_d3": with_d3,
        "d3_included": d3_included,
        "shared": shared,
    }
    if description is not None:
        fields["description"] = description
    if config is not None:
        fields["config"] = read_config(config)
    with conn as b:
        info = b.upload_model(file, fields)
    out.show(info, [kv_sheet(_custom_rows(info), title="Custom model uploaded")])
    out.hint(f"Validate it next: mofsim models validate {info.get('model_id')}")


def _runs_from(safe: Any) -> str:
    """Where executors will run a validated upload (see the README's Models)."""
    if isinstance(safe, dict) and safe.get("written"):
        return "its weights-only form"
    if isinstance(safe, dict) and safe.get("as_uploaded"):
        return "its file, read weights-only"
    reason = safe.get("reason") if isinstance(safe, dict) else None
    return "the sandbox" + (f" ({reason})" if reason else "")


def _custom_rows(info: dict[str, Any]) -> list[tuple[str, Any]]:
    return [
        ("Model id", info.get("model_id")),
        ("Key", info.get("model_key")),
        ("Name", info.get("name")),
        ("Framework", info.get("framework")),
        ("Adds D3 by default", info.get("with_d3")),
        ("Weights include D3", info.get("d3_included")),
        ("File", info.get("original_filename")),
        ("Size (bytes)", info.get("size_bytes")),
        ("SHA-256", info.get("sha256")),
        ("Validated", info.get("validated")),
        ("Weights-only form", info.get("weights_only")),
        ("Shared", info.get("shared")),
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
    out, conn = output_and_backend(as_json, output, spool, server, api_key)
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
        ("Runs from", _runs_from(check.get("safe_form")) if verdict.get("valid") else None),
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
    out, conn = output_and_backend(as_json, output, spool, server, api_key)
    with conn as b:
        done = b.delete_model(model_id)
    out.show(done, [Text(f"deleted {done.get('model_key')}")])
