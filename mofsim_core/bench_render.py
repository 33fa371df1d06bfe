"""The benchmark report as Markdown and HTML with PNG parity plots.

``render_files`` writes ``report.md``, ``report.html`` and the plots into a folder (the
HTML shows the PNG files beside it); ``render_html`` returns one self-contained page
with the plots inlined, for the API.  Models sit side by side: one column per campaign
in the table, one colour per campaign in each parity plot.  matplotlib is imported
inside the functions.
"""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path
from typing import Any

UNFINISHED = ("PENDING", "QUEUED", "ASSIGNED", "RUNNING", "NOT_SUBMITTED")
PLOTS = (
    ("optimization", "volume_vs_dft", "Relaxed cell volume (Å³)", "parity_volume.png"),
    ("bulk_modulus", "pairs", "Bulk modulus B0 (GPa)", "parity_bulk_modulus.png"),
    ("heat_capacity", "pairs", "Cv at 300 K (J/(K g))", "parity_heat_capacity.png"),
)


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return str(value)


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.0f} %"


def _vs_dft(campaign: dict[str, Any]) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = campaign["optimization"].get("vs_dft_structures") or []
    return rows


def summary_rows(report: dict[str, Any]) -> list[tuple[str, list[str]]]:
    """(metric, one cell per campaign) for the side-by-side table."""
    camps = report["campaigns"]
    variants = sorted({v for c in camps for v in c["stability"]})
    rows: list[tuple[str, list[str]]] = [
        (
            "tasks completed / planned",
            [f"{c['states'].get('COMPLETED', 0)} / {c['entries']}" for c in camps],
        ),
        (
            "tasks failed / refused / not finished",
            [
                f"{c['states'].get('FAILED', 0) + c['states'].get('TIMEOUT', 0)} / "
                f"{c['states'].get('REFUSED', 0)} / "
                f"{sum(v for k, v in c['states'].items() if k in UNFINISHED)}"
                for c in camps
            ],
        ),
        ("optimization: converged", [_pct(c["optimization"]["converged_fraction"]) for c in camps]),
        (
            "optimization: volume vs DFT, MAE (%) (n)",
            [
                f"{_fmt(c['optimization']['volume_mae_percent'])} "
                f"({len(c['optimization']['volume_vs_dft'])})"
                for c in camps
            ],
        ),
        (
            "optimization: volume vs DFT, mean error (%)",
            [_fmt(c["optimization"]["volume_mean_error_percent"]) for c in camps],
        ),
        (
            "optimization: volume vs DFT, RMSE (Å³)",
            [_fmt(c["optimization"].get("volume_rmse_A3")) for c in camps],
        ),
        (
            "optimization: RMSD to the DFT structure, mean / median (Å) (n)",
            [
                f"{_fmt(c['optimization'].get('rmsd_vs_dft_mean_A'))} / "
                f"{_fmt(c['optimization'].get('rmsd_vs_dft_median_A'))} "
                f"({sum(r['rmsd_A'] is not None for r in _vs_dft(c))})"
                for c in camps
            ],
        ),
        (
            "optimization: cell lengths / angles vs DFT, MAE (% / °)",
            [
                f"{_fmt(c['optimization'].get('cell_length_mae_percent'))} / "
                f"{_fmt(c['optimization'].get('cell_angle_mae_deg'))}"
                for c in camps
            ],
        ),
        (
            "optimization: RMSD from the input, mean (Å)",
            [_fmt(c["optimization"].get("rmsd_from_input_mean_A")) for c in camps],
        ),
        (
            "bulk modulus: MAE (GPa) (n)",
            [
                f"{_fmt(c['bulk_modulus']['mae_GPa'])} ({len(c['bulk_modulus']['pairs'])})"
                for c in camps
            ],
        ),
        (
            "heat capacity: Cv(300 K) MAE (J/(K g)) (n)",
            [
                f"{_fmt(c['heat_capacity']['mae_J_per_K_g'])} ({len(c['heat_capacity']['pairs'])})"
                for c in camps
            ],
        ),
    ]
    for variant in variants:
        cells = []
        for c in camps:
            g = c["stability"].get(variant)
            cells.append(
                "–"
                if g is None
                else f"{_pct(g['stable_fraction'])} of {g['n']} (unstable by volume "
                f"{g['by_volume']}, by coordination {g['by_coordination']})"
            )
        rows.append((f"stability ({variant}): stable", cells))
    return rows


def parity_plot(
    path: Path | io.BytesIO, report: dict[str, Any], section: str, key: str, label: str
) -> bool:
    """Model against DFT for every campaign; False (nothing drawn) without pairs."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series = [(c["label"], c[section][key]) for c in report["campaigns"] if c[section][key]]
    if not series:
        return False
    fig, ax = plt.subplots(figsize=(5.0, 5.0), dpi=100)
    lo, hi = float("inf"), float("-inf")
    for name, pairs in series:
        xs, ys = [p["dft"] for p in pairs], [p["model"] for p in pairs]
        ax.scatter(xs, ys, s=18, label=name)
        lo, hi = min(lo, *xs, *ys), max(hi, *xs, *ys)
    pad = 0.05 * (hi - lo or 1.0)
    ax.plot([lo - pad, hi + pad], [lo - pad, hi + pad], color="0.5", linestyle="dashed")
    ax.set_xlabel(f"DFT: {label}")
    ax.set_ylabel(f"model: {label}")
    ax.set_title(label)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, format="png")
    plt.close(fig)
    return True


def markdown(report: dict[str, Any], plots: dict[str, str]) -> str:
    """The report in Markdown; ``plots`` maps a plot's file name to its link target."""
    camps = report["campaigns"]
    lines = ["# MOFSimBench report", ""]
    if not camps:
        return "\n".join([*lines, "No campaign found: run `mofsim bench run` first.", ""])
    lines += [
        "Metrics of the MOFSimBench paper (Kraß, Huang & Moosavi, npj Comput. Mater. 2025) "
        "against its DFT references shipped with mofsim.",
        "",
        "| metric | " + " | ".join(c["label"] for c in camps) + " |",
        "|---|" + "---|" * len(camps),
    ]
    lines += [f"| {name} | " + " | ".join(cells) + " |" for name, cells in summary_rows(report)]
    lines.append("")
    for c in camps:
        if c["overrides"]:
            lines.append(
                f"*{c['label']}* ran with protocol overrides {c['overrides']}: "
                "not the benchmark's values."
            )
    limit = report["references"]["cell_mismatch_limit"]
    lines += [
        "",
        f"Relaxed structures are compared where the input cell is within {100 * limit:.0f} % "
        "of the DFT-optimized cell's volume (the same cell).  The RMSD to the DFT-optimized "
        "structure is MOFSimBench's (Cartesian, minimum image, net translation removed, "
        "atoms paired row by row); where the rows come in another order, the atoms of "
        "each element are paired by position (marked *).",
        "",
    ]
    for section, key, label, name in PLOTS:
        if name in plots:
            lines += [f"## {label}", "", f"![{label}: model against DFT]({plots[name]})", ""]
            lines += per_structure_table(camps, section, key)
    if any(_vs_dft(c) for c in camps):
        lines += ["## Relaxed structures against the DFT-optimized ones", ""]
        lines += rmsd_table(camps)
    return "\n".join(lines)


def rmsd_table(camps: list[dict[str, Any]]) -> list[str]:
    """structure | per campaign: RMSD (A) to DFT and the volume error (%)."""
    cells: dict[str, dict[int, str]] = {}
    for k, c in enumerate(camps):
        for row in _vs_dft(c):
            mark = "*" if row.get("pairing") == "by position" else ""
            cells.setdefault(row["structure"], {})[k] = (
                f"{_fmt(row['rmsd_A'])} Å{mark}, {row['volume_error_percent']:+.1f} %"
            )
    out = [
        "| structure | " + " | ".join(f"{c['label']}: RMSD, ΔV" for c in camps) + " |",
        "|---|" + "---|" * len(camps),
    ]
    for name in sorted(cells):
        out.append(
            f"| {name} | " + " | ".join(cells[name].get(k, "–") for k in range(len(camps))) + " |"
        )
    return [*out, ""]


def per_structure_table(camps: list[dict[str, Any]], section: str, key: str) -> list[str]:
    """structure | DFT | one value per campaign (blank where it has none)."""
    values: dict[str, dict[int, float]] = {}
    dft: dict[str, float] = {}
    for k, c in enumerate(camps):
        for pair in c[section][key]:
            values.setdefault(pair["structure"], {})[k] = pair["model"]
            dft[pair["structure"]] = pair["dft"]
    out = [
        "| structure | DFT | " + " | ".join(c["label"] for c in camps) + " |",
        "|---|---|" + "---|" * len(camps),
    ]
    for name in sorted(values):
        cells = [_fmt(values[name].get(k), 4) for k in range(len(camps))]
        out.append(f"| {name} | {_fmt(dft[name], 4)} | " + " | ".join(cells) + " |")
    return [*out, ""]


def html_page(report: dict[str, Any], plots: dict[str, str]) -> str:
    camps = report["campaigns"]
    head = "".join(f"<th>{html.escape(c['label'])}</th>" for c in camps)
    body = "".join(
        "<tr><td>"
        + html.escape(name)
        + "</td>"
        + "".join(f"<td>{html.escape(cell)}</td>" for cell in cells)
        + "</tr>"
        for name, cells in (summary_rows(report) if camps else [])
    )
    figures = "".join(
        f'<h2>{html.escape(label)}</h2><img alt="{html.escape(label)}" src="{plots[name]}">'
        for _, _, label, name in PLOTS
        if name in plots
    )
    table = (
        f"<table border=1 cellpadding=4><tr><th>metric</th>{head}</tr>{body}</table>"
        if camps
        else "<p>No campaign found: run <code>mofsim bench run</code> first.</p>"
    )
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>MOFSimBench report</title>"
        "</head><body><h1>MOFSimBench report</h1>"
        f"{table}{figures}</body></html>"
    )


def render_files(report: dict[str, Any], out_dir: Path) -> dict[str, Path]:
    """report.md, report.html and the parity PNGs in ``out_dir``; their paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    for section, key, label, name in PLOTS:
        if parity_plot(out_dir / name, report, section, key, label):
            written[name] = out_dir / name
    links = {name: name for name in written}
    (out_dir / "report.md").write_text(markdown(report, links))
    (out_dir / "report.html").write_text(html_page(report, links))
    return {"markdown": out_dir / "report.md", "html": out_dir / "report.html", **written}


def render_inline(report: dict[str, Any]) -> dict[str, str]:
    """Markdown and a self-contained HTML page (PNG plots as data URLs)."""
    uris: dict[str, str] = {}
    for section, key, label, name in PLOTS:
        buf = io.BytesIO()
        if parity_plot(buf, report, section, key, label):
            uris[name] = "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()
    return {"markdown": markdown(report, uris), "html": html_page(report, uris)}
