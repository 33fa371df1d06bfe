"""PNG plots for task results (E-V curves, Cv(T), MD traces), written with matplotlib's
object API and the Agg canvas: no pyplot global state, no display, safe in a worker.

Two functions cover the project's needs:

- ``plot_xy``: one axes; a main curve plus extra ``series`` (a fit curve, a second
  quantity), highlighted ``marks`` (e.g. Cv at 300 K, the fitted minimum) and vertical
  ``vlines`` (stage boundaries).
- ``plot_panels``: several quantities sharing one x axis (volume, temperature, energy
  against time), each its own panel, with the same stage boundaries on every panel.

Series, marks and vlines are plain dicts so task modules need no matplotlib types:

    series=[{"x": v_fit, "y": e_fit, "label": "Birch-Murnaghan fit", "style": "line"}]
    marks=[{"x": 300.0, "y": cv300, "label": "300 K"}]
    vlines=[{"x": 10.0, "label": "NPT"}]

``style`` is ``"line"`` (default), ``"points"``, ``"linepoints"`` or ``"dashed"``.
Every function returns the path it wrote.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

_STYLES: dict[str, dict[str, Any]] = {
    "line": {"linestyle": "-", "marker": None},
    "points": {"linestyle": "none", "marker": "o", "markersize": 4},
    "linepoints": {"linestyle": "-", "marker": "o", "markersize": 3},
    "dashed": {"linestyle": "--", "marker": None},
}


def _figure(nrows: int = 1, height: float = 4.0) -> tuple[Any, list[Any]]:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.4, height), dpi=100)
    FigureCanvasAgg(fig)
    axes = fig.subplots(nrows, 1, sharex=True, squeeze=False)[:, 0]
    return fig, list(axes)


def _draw_series(
    ax: Any,
    x: Sequence[float],
    y: Sequence[float],
    *,
    label: str | None,
    style: str = "line",
    color: str | None = None,
) -> None:
    if style not in _STYLES:
        raise ValueError(f"unknown style {style!r}; expected one of {', '.join(_STYLES)}")
    if len(x) != len(y):
        raise ValueError(f"x and y lengths differ: {len(x)} vs {len(y)}")
    kwargs = dict(_STYLES[style])
    if color is not None:
        kwargs["color"] = color
    ax.plot(list(x), [float("nan") if v is None else v for v in y], label=label, **kwargs)


def _draw_vlines(ax: Any, vlines: Sequence[Mapping[str, Any]], *, labels: bool) -> None:
    for line in vlines:
        ax.axvline(float(line["x"]), color=line.get("color", "0.5"), linestyle=":", linewidth=1)
        if labels and line.get("label"):
            ax.annotate(
                str(line["label"]),
                xy=(float(line["x"]), 1.0),
                xycoords=("data", "axes fraction"),
                xytext=(3, -12),
                textcoords="offset points",
                fontsize=8,
                color="0.3",
            )


def _draw_marks(ax: Any, marks: Sequence[Mapping[str, Any]]) -> None:
    for mark in marks:
        x, y = float(mark["x"]), float(mark["y"])
        ax.plot(
            [x],
            [y],
            marker="o",
            markersize=8,
            linestyle="none",
            color=mark.get("color", "tab:red"),
            zorder=5,
        )
        if mark.get("label"):
            ax.annotate(
                str(mark["label"]), xy=(x, y), xytext=(6, 6), textcoords="offset points", fontsize=9
            )


def _save(fig: Any, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, format="png")
    return path


def plot_xy(
    path: str | Path,
    x: Sequence[float],
    y: Sequence[float],
    *,
    xlabel: str,
    ylabel: str,
    title: str = "",
    label: str | None = None,
    style: str = "linepoints",
    series: Sequence[Mapping[str, Any]] = (),
    marks: Sequence[Mapping[str, Any]] = (),
    vlines: Sequence[Mapping[str, Any]] = (),
    logy: bool = False,
) -> Path:
    """Write a single-axes PNG of ``y`` against ``x`` plus optional extras; return ``path``.

    ``series`` items: ``{"x", "y", "label"?, "style"?, "color"?}``; ``marks`` items:
    ``{"x", "y", "label"?, "color"?}``; ``vlines`` items: ``{"x", "label"?, "color"?}``.
    A legend appears when any curve has a label.
    """
    fig, (ax,) = _figure()
    _draw_series(ax, x, y, label=label, style=style)
    for s in series:
        _draw_series(
            ax,
            s["x"],
            s["y"],
            label=s.get("label"),
            style=s.get("style", "line"),
            color=s.get("color"),
        )
    _draw_vlines(ax, vlines, labels=True)
    _draw_marks(ax, marks)
    if logy:
        ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    if label or any(s.get("label") for s in series):
        ax.legend(fontsize=9)
    ax.grid(True, alpha=0.3)
    return _save(fig, path)


def plot_panels(
    path: str | Path,
    x: Sequence[float],
    panels: Sequence[Mapping[str, Any]],
    *,
    xlabel: str,
    title: str = "",
    vlines: Sequence[Mapping[str, Any]] = (),
) -> Path:
    """Write stacked panels sharing the x axis; return ``path``.

    Each panel: ``{"y", "ylabel", "label"?, "style"?, "series"?, "marks"?}`` where
    ``series``/``marks`` are as in ``plot_xy``.  ``vlines`` (stage boundaries) are drawn
    on every panel and labelled on the top one.
    """
    if not panels:
        raise ValueError("at least one panel is needed")
    fig, axes = _figure(len(panels), height=2.2 * len(panels) + 0.8)
    for k, (ax, panel) in enumerate(zip(axes, panels, strict=True)):
        _draw_series(ax, x, panel["y"], label=panel.get("label"), style=panel.get("style", "line"))
        for s in panel.get("series", ()):
            _draw_series(
                ax,
                s["x"],
                s["y"],
                label=s.get("label"),
                style=s.get("style", "line"),
                color=s.get("color"),
            )
        _draw_vlines(ax, vlines, labels=k == 0)
        _draw_marks(ax, panel.get("marks", ()))
        ax.set_ylabel(panel["ylabel"])
        if panel.get("label") or any(s.get("label") for s in panel.get("series", ())):
            ax.legend(fontsize=8)
        ax.grid(True, alpha=0.3)
    axes[-1].set_xlabel(xlabel)
    if title:
        axes[0].set_title(title)
    return _save(fig, path)
