"""``mofsim models calibrate KEY [--slot S]``: seed the cost model of a model on a device.

Runs ``executors.calibrate`` in a process of its own, pinned to the slot's device as an
executor would be (``CUDA_VISIBLE_DEVICES``): force calls on a ladder of supercells of
a built-in MOF, each measured (peak memory, time per call), stored in the spool's cost
model under the model, the device's name and the dtype.  Local only: it measures this
machine.
"""

# No ``from __future__ import annotations`` here, as in every command module of the CLI.
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.text import Text

from mofsim_cli.models_cmd import KeyArg, models_app
from mofsim_cli.options import JsonOpt, OutputOpt, SpoolOpt
from mofsim_cli.output import command, make_output
from mofsim_cli.render import Block, grid_sheet, kv_sheet
from mofsim_cli.resource_common import PANEL
from spool.errors import TaskError, ValidationError, error_from_code


def _daemon_slots(spool: Path) -> list[Any]:
    """The slots of the spool's daemon as its last snapshot lists them: what the user
    started it with (``--slots``), which the configuration may not say.  Slurm pilots
    are left out: their devices are on another machine."""
    from mofsim_core.devices import Slot
    from mofsim_core.slot_state import read_snapshot

    out = []
    for view in (read_snapshot(spool) or {}).get("slots") or []:
        if not isinstance(view, dict) or view.get("kind") is None or "pilot" in view:
            continue
        kind, index = str(view["kind"]), int(view.get("index") or 0)
        # Snapshots written before they carried it: an NVML card by its index.
        visible = view.get("cuda_visible", str(index) if kind == "nvml" else "")
        name = str((view.get("device_status") or {}).get("name") or view.get("name"))
        out.append(Slot(str(view["slot_id"]), kind, index, name, visible))  # type: ignore[arg-type]
    return out


def _slot(slot_id: str | None, spool: Path) -> Any:
    """The slot named ``slot_id`` (the first one when None): the daemon's, or where no
    daemon ever ran on the spool, the configured ones."""
    from mofsim_core.config import load_config
    from mofsim_core.devices_factory import parse_slots

    slots = _daemon_slots(spool)
    if not slots:
        backend = parse_slots(
            load_config().slots, state_file=spool / "state" / "simulated-devices.json"
        )
        try:
            slots = backend.slots()
        finally:
            backend.close()
    if slot_id is None:
        return slots[0]
    for s in slots:
        if s.slot_id == slot_id:
            return s
    raise ValidationError(
        f"no slot {slot_id!r}; this machine's slots: {', '.join(s.slot_id for s in slots)}",
        field="slot",
    )


def _line(fit: dict[str, Any] | None, unit: str, scale: float = 1.0) -> str:
    if not fit:
        return "no fit (too few points)"
    return (
        f"{fit['intercept'] * scale:.4g} + {fit['per_atom'] * scale:.4g}/atom + "
        f"{fit['per_pair'] * scale:.4g}/pair {unit}, median error "
        f"{100 * fit['median_relative_error']:.1f} %, margin {100 * fit['margin']:.0f} %"
    )


@command(models_app, "calibrate", PANEL)
def models_calibrate(
    key: KeyArg,
    slot: Annotated[
        str | None,
        typer.Option(
            "--slot", help="Slot whose device to measure (default: the first).", show_default=False
        ),
    ] = None,
    structure: Annotated[
        str, typer.Option("--structure", help="Built-in MOF whose supercells are measured.")
    ] = "MOF-5",
    max_atoms: Annotated[
        int, typer.Option("--max-atoms", min=50, help="Largest supercell, in atoms.")
    ] = 2000,
    as_json: JsonOpt = False,
    output: OutputOpt = None,
    spool: SpoolOpt = None,
) -> None:
    """Measure a model on a ladder of supercells and store its memory and time fit."""
    from mofsim_cli.options import spool_root
    from mofsim_core.config import load_config

    out = make_output(as_json, output)
    root = spool_root(spool)
    chosen = _slot(slot, root)
    env = dict(os.environ)
    env["CUDA_VISIBLE_DEVICES"] = chosen.cuda_visible or ""
    cmd = [
        sys.executable,
        "-m",
        "executors.calibrate",
        "--spool",
        str(root),
        "--model",
        key,
        "--device",
        "cuda" if chosen.kind == "nvml" else "cpu",
        "--device-name",
        chosen.name,
        "--dtype",
        load_config().dtype,
        "--structure",
        structure,
        "--max-atoms",
        str(max_atoms),
    ]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    lines = [ln for ln in proc.stdout.splitlines() if ln.strip()]
    try:
        doc = json.loads(lines[-1])
    except (IndexError, ValueError):
        raise TaskError(
            f"calibration failed (exit {proc.returncode}): {proc.stderr.strip()[-500:]}"
        ) from None
    if "error" in doc:
        err = doc["error"]
        raise error_from_code(
            int(err.get("code", 10001)), str(err.get("message")), err.get("field")
        )
    rows = [
        [p["natoms"], p["pairs"], p["memory_mb"], round(1000 * (p["seconds_per_call"] or 0), 2)]
        for p in doc["points"]
    ]
    blocks: list[Block] = [
        kv_sheet(
            [
                ("Fit", doc["fit"]),
                ("Slot", f"{chosen.slot_id} ({chosen.name})"),
                ("Model load (s)", doc["model_load_seconds"]),
                ("Memory", _line(doc["memory_mb"], "MiB")),
                ("Time per call", _line(doc["seconds_per_call"], "ms", 1000.0)),
            ]
        ),
        grid_sheet(["atoms", "pairs", "peak MiB", "ms per call"], rows),
    ]
    if not doc["memory_mb"]:
        blocks.append(Text("too few points with measurable memory for a fit", style="yellow"))
    out.show(doc, blocks)
