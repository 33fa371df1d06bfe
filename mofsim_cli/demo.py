"""``mofsim demo``: the whole path on embedded defaults, in one command.

Starts a daemon on a fresh spool (one CPU slot), submits a SevenNet-0 optimization of a
built-in MOF through the same code as ``mofsim submit``, follows it live, prints the
result table, and stops the daemon.  SevenNet-0 ships inside the ``sevennet`` package,
so nothing is downloaded.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from rich.console import Console

from mofsim_cli.follow import Follower, follow, make_display
from mofsim_cli.render import print_result
from mofsim_cli.submission import build_job
from mofsim_cli.views import result_view

DEMO_PARAMETERS: dict[str, Any] = {
    "fmax": 0.02,
    "max_steps": 200,
    "optimizer": "BFGS",
    "relax_cell": True,
}


def run_demo(
    console: Console, *, spool: Path | None, structure: str, model: str, slots: str = "cpu:1"
) -> str | None:
    from mofsim_cli.background import BackgroundDaemon
    from spool.store import Spool

    root = spool or Path(tempfile.mkdtemp(prefix="mofsim-demo-")) / "spool"
    sp = Spool(root)
    console.print(f"[bold]mofsim demo[/]  spool: {root}")
    daemon = BackgroundDaemon(root, slots, log_file=root.parent / "daemon.log")
    console.print(f"Starting the daemon ({slots}); its log: {daemon.log}")
    daemon.start()
    try:
        console.print(
            "Daemon up.  Submitting a geometry optimization of "
            f"[bold]{structure}[/] with [bold]{model}[/] "
            f"(cell included, fmax {DEMO_PARAMETERS['fmax']} eV/A, "
            f"at most {DEMO_PARAMETERS['max_steps']} steps)."
        )
        job = build_job(
            spool_root=root,
            task_type="optimization",
            structure=structure,
            model=model,
            params=dict(DEMO_PARAMETERS),
            priority="NORMAL",
            timeout=None,
        )
        sp.submit(job)
        console.print(f"Task {job.task_id} queued; the first minute is the model loading.")
        state = follow(Follower(sp, job.task_id), make_display(console, job.task_id))
        if state == "COMPLETED":
            print_result(console, result_view(sp, job.task_id))
        else:
            record = sp.record(job.task_id)
            console.print(f"[red]Task ended {state}[/]: {record.get('error')}")
        console.print(f"\nEverything the task wrote is in {sp.paths.workspace(job.task_id)}")
        return state
    finally:
        console.print("Stopping the daemon.")
        daemon.stop()
