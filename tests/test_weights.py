"""Foundation weights that are not cached: the download probe and the offline verdict."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest

from executors.models import resolve_model
from executors.weights import ensure_downloadable, probe_url, unavailable
from spool.errors import ModelUnavailable

PROXY_VARS = ["http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"]


@pytest.fixture()
def no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in PROXY_VARS:
        monkeypatch.delenv(var, raising=False)


def test_probe_reports_unreachable_hosts_quickly(no_proxy: None) -> None:
    start = time.perf_counter()
    reason = probe_url("https://weights.mofsim-test.invalid/model.bin", timeout=2.0)
    assert reason is not None and "mofsim-test.invalid" in reason
    assert time.perf_counter() - start < 4.0
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        assert probe_url(f"http://127.0.0.1:{server.getsockname()[1]}/x", 2.0) is None


def test_offline_mode_never_probes(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    def no_network(*args: object, **kwargs: object) -> None:
        raise AssertionError("offline mode touched the network")

    monkeypatch.setattr(socket, "create_connection", no_network)
    monkeypatch.setenv("MOFSIM_OFFLINE", "yes")
    with pytest.raises(ModelUnavailable) as info:
        ensure_downloadable(resolve_model("mace-mp"), "https://example.org/w.model", tmp_path)
    message = info.value.message
    assert "mace-mp" in message and "MOFSIM_OFFLINE" in message and str(tmp_path) in message
    assert info.value.code == 30005


def test_a_reachable_host_passes(no_proxy: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MOFSIM_OFFLINE", raising=False)
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        url = f"http://127.0.0.1:{server.getsockname()[1]}/w.model"
        ensure_downloadable(resolve_model("mace-mp"), url, Path("/nowhere"))


def test_a_load_failure_names_its_cause_and_the_place() -> None:
    try:
        raise OSError("disk full")
    except OSError as exc:
        err = unavailable(resolve_model("orb-v2"), exc, Path("/cache/orb.ckpt"))
    assert err.code == 30005 and err.field == "model"
    assert "orb-v2" in err.message and "OSError: disk full" in err.message
    assert "/cache/orb.ckpt" in err.message
