"""The SDK documentation builds without a single warning, and the examples it shows run.

The build is ``python -m sphinx -W --keep-going -b html docs OUT`` in a subprocess, as CI
runs it.  The examples run as scripts against a real daemon serving the HTTP API on a
loopback port (EMT copper, so all of them finish in seconds), with only what a user
would have: the script, the SDK and a server URL.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import mofsim_client
from tests.daemon_helpers import Daemon

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
PAGES = (
    "index",
    "quickstart",
    "sync_client",
    "async_client",
    "tasks_and_results",
    "errors",
    "configuration",
    "examples",
    "api",
)
PLOTS = ("eos.png", "heat_capacity.png", "stability_volume.png", "optimization_energy.png")
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_docs_build_without_warnings(tmp_path: Path) -> None:
    out = tmp_path / "html"
    proc = subprocess.run(
        [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-b", "html", "docs", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr
    assert "WARNING" not in proc.stderr and "ERROR" not in proc.stderr, proc.stderr
    for page in PAGES:
        assert (out / f"{page}.html").stat().st_size > 0, page

    # Every public name of the SDK has an entry in the API reference.
    api = (out / "api.html").read_text()
    missing = [
        name
        for name in mofsim_client.__all__
        if not re.search(rf'id="mofsim_client\.(?:[\w.]+\.)?{re.escape(name)}"', api)
    ]
    assert not missing, f"not in the API reference: {missing}"
    assert "Submit one task of any type" in api  # docstrings made it, not only names

    # The pages include the example scripts themselves, so what they show is what the
    # tests below run.
    sources = "".join(p.read_text() for p in (ROOT / "docs").glob("*.rst"))
    for script in sorted(EXAMPLES.glob("*.py")):
        assert f".. literalinclude:: ../examples/{script.name}" in sources, script.name
    assert "copper_cif" in (out / "examples.html").read_text()


# --- the examples against a live server ------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def server_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    root = tmp_path_factory.mktemp("docs-examples") / "spool"
    address = f"127.0.0.1:{free_port()}"
    with Daemon(root, "cpu:2", http=address):
        yield f"http://{address}"


def run_example(name: str, *args: str, cwd: Path, server: str | None = None) -> str:
    """Run ``examples/<name>`` as a user would; its stdout.  ``server`` goes through the
    environment (``MOFSIM_SERVER``) when not given as a flag."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MOFSIM_")}
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    if server is not None:
        env["MOFSIM_SERVER"] = server
    proc = subprocess.run(
        [sys.executable, str(EXAMPLES / name), *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert proc.returncode == 0, f"{name} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}"
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc.stdout


def test_quickstart_relaxes_copper(server_url: str, tmp_path: Path) -> None:
    out = run_example("quickstart.py", cwd=tmp_path, server=server_url)
    assert "healthy" in out and "status: COMPLETED" in out, out
    assert "converged: True" in out, out
    # EMT's copper: a = 3.59 A, from the stretched 3.7 A cell.
    a = float(re.search(r"cell: a=([\d.]+)", out).group(1))  # type: ignore[union-attr]
    assert a == pytest.approx(3.59, abs=0.01)


def test_async_many_awaits_every_task(server_url: str, tmp_path: Path) -> None:
    out = run_example("async_many.py", "--server", server_url, "--count", "8", cwd=tmp_path)
    assert "8 completed, 0 failed" in out, out
    rows = re.findall(r"^task_\w+\s+([\d.]+)\s+(-?[\d.]+)\s+(-?[\d.]+)$", out, re.M)
    assert len(rows) == 8 and len({a for a, _, _ in rows}) == 8, out
    best = float(re.search(r"lowest energy at a = ([\d.]+)", out).group(1))  # type: ignore[union-attr]
    assert 3.53 < best < 3.65  # the scan's point nearest EMT's 3.59 A


def test_all_task_types_runs_six_tasks_and_draws_four_plots(
    server_url: str, tmp_path: Path
) -> None:
    plots = tmp_path / "plots"
    out = run_example(
        "all_task_types.py", "--server", server_url, "--out", str(plots), cwd=tmp_path
    )
    assert "6 completed, 0 failed" in out, out
    table = {
        m.group(1): m.group(2)
        for m in re.finditer(r"^([a-z-]+)\s+(COMPLETED|FAILED|CANCELLED|TIMEOUT)\s", out, re.M)
    }
    assert table == {
        kind: "COMPLETED"
        for kind in (
            "single-point-energy",
            "optimization",
            "stability",
            "bulk-modulus",
            "heat-capacity",
            "interaction-energy",
        )
    }, out
    b0 = float(re.search(r"B0 = ([\d.]+) GPa", out).group(1))  # type: ignore[union-attr]
    assert 110.0 < b0 < 160.0  # EMT copper: about 134 GPa
    for name in PLOTS:
        data = (plots / name).read_bytes()
        assert data.startswith(PNG_MAGIC) and len(data) > 5000, (name, len(data))
    # ASE is installed here, so the optimization plot has every step from the trajectory.
    assert re.search(r"optimization energies: \d+ points from the trajectory", out), out
