"""Shared fixtures: the benchmark's structures live beside the project, never in it."""

from __future__ import annotations

import os
from pathlib import Path

# Tiny 3x3 BLAS calls (cell filters) crawl when OpenBLAS threads fight over 2 cores.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data" / "mofsimbench"


@pytest.fixture(scope="session")
def mofsimbench_dir() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"benchmark structures not found at {SHARED_DATA}")
    return SHARED_DATA
