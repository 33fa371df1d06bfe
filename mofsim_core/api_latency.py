"""The API's recent P99 latency, handed from a separate ``mofsim serve`` to the daemon.

The daemon evaluates every alert rule (one engine, one store, one set of channels).  When
it hosts the HTTP server it asks the server directly; when the server runs as its own
process (``mofsim serve``), the server publishes its rolling summary in
``<spool>/state/api_latency.json`` every few seconds and the daemon reads it.  A summary
older than ``STALE_AFTER_S`` is from a server that has stopped: it counts for nothing.
The file is derived data, rewritten by rename without fsync, like the slot snapshot.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

FILE_NAME = "api_latency.json"
PUBLISH_INTERVAL_S = 5.0
STALE_AFTER_S = 60.0


def summary_path(state_dir: Path) -> Path:
    return state_dir / FILE_NAME


def publish(state_dir: Path, p99_s: float | None, *, now: float | None = None) -> None:
    """Write this server's P99 (None: no request in its window).  A full disk loses
    one summary, never the server."""
    doc: dict[str, Any] = {
        "p99_s": p99_s,
        "written_at": time.time() if now is None else now,
        "pid": os.getpid(),
    }
    path = summary_path(state_dir)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(json.dumps(doc))
        os.replace(tmp, path)
    except OSError:
        tmp.unlink(missing_ok=True)


def read_p99(
    state_dir: Path, *, now: float | None = None, stale_after_s: float = STALE_AFTER_S
) -> float | None:
    """The P99 a separate server last published, unless that is older than
    ``stale_after_s`` or unreadable."""
    try:
        doc = json.loads(summary_path(state_dir).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(doc, dict):
        return None
    written, p99 = doc.get("written_at"), doc.get("p99_s")
    if not isinstance(written, int | float) or not isinstance(p99, int | float):
        return None
    if (time.time() if now is None else now) - float(written) > stale_after_s:
        return None
    return float(p99)


def combined(*values: float | None) -> float | None:
    """The worst of the sources that answered (an embedded and a separate server on one
    spool are still one API to its users: one rule, one alert)."""
    known = [v for v in values if v is not None]
    return max(known) if known else None
