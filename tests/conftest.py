"""Shared fixtures: the benchmark's structures (beside the project, never in it) and a live
daemon with its HTTP server."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

# Tiny 3x3 BLAS calls (cell filters) crawl when OpenBLAS threads fight over 2 cores.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import pytest

from tests.daemon_helpers import Daemon, LiveServer

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data" / "mofsimbench"


@pytest.fixture(scope="session")
def mofsimbench_dir() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"benchmark structures not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(scope="module")
def live_options() -> dict[str, Any]:
    """The daemon's ``slots`` and the server's settings for ``live_server``; a module
    that needs others overrides this fixture."""
    return {"slots": "cpu:2", "http_rate_limit": 0}


@pytest.fixture(scope="module")
def live_server(
    tmp_path_factory: pytest.TempPathFactory, live_options: dict[str, Any]
) -> Iterator[LiveServer]:
    """A real daemon and the HTTP API on one fresh spool, shared by the module's tests."""
    options = dict(live_options)
    slots = str(options.pop("slots", "cpu:2"))
    root = tmp_path_factory.mktemp("live") / "spool"
    with Daemon(root, slots):
        server = LiveServer(root, **options).start()
        try:
            yield server
        finally:
            server.close()


@pytest.fixture(scope="module")
def live_spool(live_server: LiveServer) -> Path:
    """The spool that ``live_server``'s daemon works on."""
    return live_server.spool_root
