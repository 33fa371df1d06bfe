"""``mofsim bench run / status / report``: MOFSimBench campaigns on the spool.

``run`` submits (or continues) a campaign of ``protocol: mofsimbench`` tasks for one
model over a suite of the benchmark's structures; the daemon runs them on whatever
slots it has.  ``status`` shows how far each campaign is.  ``report`` writes the
paper's metrics against the DFT references, one column per campaign, as Markdown and
HTML with PNG parity plots.  All three work on a spool (the campaign files live in
``SPOOL/bench``) or through a server (``--server``): ``run`` then reads the CIFs here
and sends them with the request, and the tasks are the API key's.
"""

# No ``from __future__ import annotations`` here: Typer reads the annotations.
import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from mofsim_cli.options import (
    ApiKeyOpt,
    JsonOpt,
    ServerOpt,
    SpoolOpt,
    from_command_line,
    open_spool,
)
from mofsim_cli.output import command
from spool.errors import ValidationError

if TYPE_CHECKING:
    from mofsim_client import MOFSimClient
    from mofsim_core.bench_suites import StructureSource
    from spool.store import Spool

PANEL = "Benchmark"
bench_app = typer.Typer(
    help="MOFSimBench campaigns: run a model over the benchmark, report against DFT.",
    no_args_is_help=True,
)


def _overrides(items: list[str]) -> dict[str, dict[str, Any]]:
    """``TASK.KEY=VALUE`` items into {task type: {key: value}} (values read as JSON)."""
    out: dict[str, dict[str, Any]] = {}
    for item in items:
        head, sep, raw = item.partition("=")
        task, dot, key = head.partition(".")
        if not sep or not dot or not task or not key:
            raise ValidationError(
                f"--set takes TASK.KEY=VALUE (e.g. stability.npt_steps=100), got {item!r}",
                field="set",
            )
        try:
            value: Any = json.loads(raw)
        except ValueError:
            value = raw
        out.setdefault(task, {})[key] = value
    return out


@command(bench_app, "run", PANEL)
def bench_run(
    model: Annotated[str, typer.Option("--model", "-m", help="Model key, e.g. sevennet-0.")],
    suite: Annotated[str, typer.Option("--suite", help="quick, main or full.")] = "quick",
    with_d3: Annotated[
        bool, typer.Option("--with-d3", help="Add DFT-D3(BJ) dispersion, as the paper did.")
    ] = False,
    data: Annotated[
        Path | None,
        typer.Option(
            "--data",
            envvar="MOFSIM_BENCH_DATA",
            help="The benchmark's structure folder (holding main_set/, hcmof/, copper/).",
        ),
    ] = None,
    overrides: Annotated[
        list[str] | None,
        typer.Option(
            "--set",
            metavar="TASK.KEY=VALUE",
            help="Override a protocol value for one task type (recorded in the campaign).",
        ),
    ] = None,
    retry_failed: Annotated[
        bool, typer.Option("--retry-failed", help="Submit failed or refused entries again.")
    ] = False,
    as_json: JsonOpt = False,
    spool: SpoolOpt = None,
    server: ServerOpt = None,
    api_key: ApiKeyOpt = None,
) -> None:
    """Submit the campaign, or continue it: entries that have a task keep it."""
    from mofsim_core.bench_suites import StructureSource

    if data is None:
        raise ValidationError(
            "give the benchmark's structure folder with --data (or MOFSIM_BENCH_DATA)",
            field="data",
        )
    source = StructureSource.folder(data.expanduser().resolve())
    settings = {
        "model": model,
        "suite": suite,
        "with_d3": with_d3,
        "overrides": _overrides(overrides or []),
        "retry_failed": retry_failed,
    }
    if server is not None and not from_command_line("spool"):
        row = _remote_run(server, api_key, settings, source, quiet=as_json)
    else:
        row = _local_run(open_spool(spool, create=True), settings, source, quiet=as_json)
    if as_json:
        typer.echo(json.dumps(row))
        return
    typer.echo(
        f"campaign {row['campaign_id']}: {len(row['submitted'])} task(s) submitted now, "
        f"{row['entries']} entries"
    )
    typer.echo("  " + ", ".join(f"{k} {v}" for k, v in sorted(row["states"].items())))


def _local_run(
    sp: "Spool", settings: dict[str, Any], source: "StructureSource", *, quiet: bool
) -> dict[str, Any]:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from mofsim_cli.render import err_console
    from mofsim_core.bench_campaign import run_campaign
    from mofsim_core.bench_service import campaign_row
    from mofsim_core.bench_suites import plan

    total = len(plan(settings["suite"], source))
    submitted: list[str] = []
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn())
    with Progress(*columns, console=err_console(), disable=quiet, transient=True) as bar:
        task = bar.add_task("submitting", total=total)

        def done(key: str, rec: dict[str, Any]) -> None:
            if rec.get("task_id"):
                submitted.append(key)
            bar.update(task, advance=1, description=key)

        campaign = run_campaign(sp, source=source, on_submit=done, **settings)
        bar.update(task, completed=total)
    return {**campaign_row(sp, campaign), "submitted": submitted}


def _remote_run(
    server: str,
    api_key: str | None,
    settings: dict[str, Any],
    source: "StructureSource",
    *,
    quiet: bool,
) -> dict[str, Any]:
    """Only the suite's CIFs travel, with one request; the server submits the tasks."""
    from contextlib import nullcontext

    from mofsim_cli.render import err_console
    from mofsim_core.bench_suites import suite_paths

    files = {p: source.read(p) for p in suite_paths(settings["suite"], source)}
    status = f"submitting the {settings['suite']} suite ({len(files)} structures) to {server}"
    with (
        _server(server, api_key) as client,
        nullcontext() if quiet else err_console().status(status),
    ):
        return client.start_bench_campaign(structures=files, **settings)


@contextmanager
def _server(server: str, api_key: str | None) -> Iterator["MOFSimClient"]:
    """The SDK's client, its errors turned into the CLI's."""
    from mofsim_cli.remote import translated
    from mofsim_client import MOFSimClient

    with translated(), MOFSimClient(server, api_key=api_key) as client:
        yield client


@command(bench_app, "status", PANEL)
def bench_status(
    as_json: JsonOpt = False,
    spool: SpoolOpt = None,
    server: ServerOpt = None,
    api_key: ApiKeyOpt = None,
) -> None:
    """Every campaign and its entries by state (through a server: the key's own)."""
    if server is not None and not from_command_line("spool"):
        with _server(server, api_key) as client:
            rows = client.list_bench_campaigns()
    else:
        from mofsim_core.bench_service import campaign_rows

        rows = campaign_rows(open_spool(spool))
    if as_json:
        typer.echo(json.dumps(rows))
        return
    if not rows:
        typer.echo("no campaign yet: start one with mofsim bench run")
    for row in rows:
        states = ", ".join(f"{k} {v}" for k, v in sorted(row["states"].items()))
        typer.echo(f"{row['campaign_id']}: {row['entries']} entries: {states}")


@command(bench_app, "report", PANEL)
def bench_report(
    campaigns: Annotated[
        list[str] | None,
        typer.Option("--campaign", help="A campaign id (repeat it); default: every campaign."),
    ] = None,
    out: Annotated[
        Path, typer.Option("--out", help="Folder for report.md, report.html and the plots.")
    ] = Path("mofsim-bench-report"),
    as_json: JsonOpt = False,
    spool: SpoolOpt = None,
    server: ServerOpt = None,
    api_key: ApiKeyOpt = None,
) -> None:
    """The paper's metrics against DFT, models side by side (Markdown, HTML, PNG)."""
    from mofsim_core.bench_render import render_files
    from mofsim_core.bench_report import compare

    if server is not None and not from_command_line("spool"):
        _remote_report(server, api_key, campaigns or [], out, as_json)
        return
    sp = open_spool(spool)
    report = compare(sp, campaigns or None)
    written = render_files(report, out)
    if as_json:
        typer.echo(json.dumps({**report, "files": {k: str(v) for k, v in written.items()}}))
        return
    typer.echo(written["markdown"].read_text())
    typer.echo(f"written: {', '.join(str(p) for p in written.values())}")


def _remote_report(
    server: str, api_key: str | None, campaigns: list[str], out: Path, as_json: bool
) -> None:
    """The server's report: report.md and report.html (plots inlined) in ``out``."""
    with _server(server, api_key) as client:
        data = client.get_bench_report(campaigns)
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.md").write_text(data["markdown"])
    (out / "report.html").write_text(data["html"])
    if as_json:
        typer.echo(json.dumps(data["report"]))
        return
    typer.echo(f"written: {out / 'report.md'}, {out / 'report.html'}")


def register(app: typer.Typer) -> None:
    app.add_typer(bench_app, name="bench", rich_help_panel=PANEL)
