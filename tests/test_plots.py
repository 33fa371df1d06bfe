"""PNG writers: files are real PNGs; bad inputs fail loudly; importing is cheap."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from executors.plots import plot_panels, plot_xy

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def png_size(path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def test_plot_xy_ev_curve_with_fit_and_mark(tmp_path):
    v = np.linspace(96, 104, 11)
    e = 0.01 * (v - 100) ** 2
    vf = np.linspace(96, 104, 100)
    path = plot_xy(
        tmp_path / "sub" / "ev.png",
        v,
        e,
        xlabel="V (A^3)",
        ylabel="E (eV)",
        title="E-V",
        label="points",
        style="points",
        series=[{"x": vf, "y": 0.01 * (vf - 100) ** 2, "label": "BM fit"}],
        marks=[{"x": 100.0, "y": 0.0, "label": "V0"}],
    )
    assert path == tmp_path / "sub" / "ev.png"
    assert png_size(path) == (640, 400)


def test_plot_xy_accepts_none_gaps_and_log_scale(tmp_path):
    t = [0.0, 10.0, 20.0, 300.0]
    cv = [None, 1.0, 2.0, 3.0]  # phonopy gives no Cv at 0 K
    path = plot_xy(
        tmp_path / "cv.png",
        t,
        cv,
        xlabel="T (K)",
        ylabel="Cv",
        logy=True,
        marks=[{"x": 300.0, "y": 3.0, "label": "300 K", "color": "tab:green"}],
        vlines=[{"x": 300.0}],
    )
    png_size(path)


def test_plot_panels_md_traces(tmp_path):
    t = np.arange(50) * 0.1
    path = plot_panels(
        tmp_path / "md.png",
        t,
        [
            {"y": 1000 + t, "ylabel": "V (A^3)"},
            {
                "y": 300 + np.sin(t),
                "ylabel": "T (K)",
                "label": "T",
                "series": [
                    {"x": t, "y": np.full_like(t, 300.0), "label": "target", "style": "dashed"}
                ],
            },
            {"y": -100 - t, "ylabel": "E (eV)", "marks": [{"x": 4.9, "y": -104.9}]},
        ],
        xlabel="t (ps)",
        title="stability",
        vlines=[{"x": 1.0, "label": "NVT"}, {"x": 3.0, "label": "NPT"}],
    )
    width, height = png_size(path)
    assert width == 640 and height > 600  # three stacked panels


@pytest.mark.parametrize("kwargs", [{"style": "wiggly"}, {"y": [1.0, 2.0]}])
def test_bad_inputs_raise(tmp_path, kwargs):
    args = {"x": [0.0, 1.0, 2.0], "y": [0.0, 1.0, 4.0], **kwargs}
    with pytest.raises(ValueError):
        plot_xy(tmp_path / "bad.png", args.pop("x"), args.pop("y"), xlabel="x", ylabel="y", **args)
    assert not (tmp_path / "bad.png").exists()


def test_plot_panels_needs_a_panel(tmp_path):
    with pytest.raises(ValueError):
        plot_panels(tmp_path / "none.png", [1.0], [], xlabel="x")


def test_import_does_not_pull_matplotlib():
    code = "import sys, executors.plots; assert 'matplotlib' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
