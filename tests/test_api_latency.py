"""The API latency rule when `mofsim serve` runs apart from the daemon: the server
publishes its P99 in the spool and the daemon's alert engine reads it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx

from mofsim_core import api_latency
from mofsim_core.alerts import read_active
from spool import Spool
from tests.daemon_helpers import Daemon, wait_for
from tests.test_server import free_port, listening

ROOT = Path(__file__).resolve().parents[1]


def test_a_published_summary_counts_until_it_is_stale(tmp_path: Path) -> None:
    assert api_latency.read_p99(tmp_path) is None
    api_latency.publish(tmp_path, 7.5, now=1000.0)
    assert api_latency.read_p99(tmp_path, now=1010.0) == 7.5
    assert api_latency.read_p99(tmp_path, now=1000.0 + api_latency.STALE_AFTER_S + 1) is None
    api_latency.publish(tmp_path, None, now=1000.0)  # no request in the window
    assert api_latency.read_p99(tmp_path, now=1001.0) is None
    api_latency.summary_path(tmp_path).write_text("{not json")
    assert api_latency.read_p99(tmp_path) is None


def test_sources_combine_to_the_worst_one() -> None:
    assert api_latency.combined(None, None) is None
    assert api_latency.combined(0.2, None) == 0.2
    assert api_latency.combined(0.2, 6.0) == 6.0


def test_latency_rule_fires_for_a_separate_server(tmp_path: Path) -> None:
    sp = Spool(tmp_path / "spool")
    rules = tmp_path / "alerts.toml"
    # Any request is slower than no time at all: the first one fires the rule.
    rules.write_text("[rules.api_latency_high]\nthreshold = 0.0\n[channels]\ninterval_s = 0.2\n")
    alerts_dir = sp.paths.state_dir / "alerts"

    def latency_alerts() -> list[dict[str, object]]:
        return [a for a in read_active(alerts_dir) if a["type"] == "api_latency_high"]

    port = free_port()
    with Daemon(sp.root, alert_rules=str(rules)):
        proc = subprocess.Popen(
            [sys.executable, "-m", "mofsim_cli", "serve", "--spool", str(sp.root), "--http",
             f"127.0.0.1:{port}"],
            env=dict(os.environ, PYTHONPATH=str(ROOT)),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            wait_for(lambda: listening(port) or proc.poll() is not None, 60, "mofsim serve")
            assert proc.poll() is None
            assert not latency_alerts()  # no request yet, nothing to judge
            resp = httpx.get(f"http://127.0.0.1:{port}/api/v1/tasks", timeout=10)
            assert resp.status_code == 200
            (alert,) = wait_for(latency_alerts, 30, "the latency alert from the daemon")
            assert alert["subject"] == "api" and alert["details"]["p99_seconds"] > 0
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(30)
