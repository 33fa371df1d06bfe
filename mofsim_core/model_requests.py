"""Model load/unload requests as spool files: where they live, and the writer's side.

Whoever asks for a load or an unload (HTTP server, CLI, scripts) drops a request file
into ``<spool>/control/models/`` (``<created_ms>-<request_id>.json``, atomic) and reads
the outcome back from ``control/models/results/<request_id>.json``, which the daemon
(``mofsim_core.control``) writes once it has carried the request out.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from pathlib import Path
from typing import Any

from spool.errors import ValidationError
from spool.events import iso_from_ms
from spool.layout import SpoolPaths, is_safe_token
from spool.transitions import atomic_write

ACTIONS = ("load", "unload")
_REQUEST_ID_PREFIX = "mreq_"


def requests_dir(paths: SpoolPaths) -> Path:
    d = paths.root / "control" / "models"
    d.mkdir(parents=True, exist_ok=True)
    return d


def results_dir(paths: SpoolPaths) -> Path:
    d = requests_dir(paths) / "results"
    d.mkdir(parents=True, exist_ok=True)
    return d


def model_control_dirs(paths: SpoolPaths) -> list[Path]:
    """Directories whose arrivals must wake the supervisor (created if missing)."""
    return [requests_dir(paths)]


def submit_request(
    paths: SpoolPaths,
    action: str,
    model: str,
    *,
    slot: str | None = None,
    with_d3: bool | None = None,
) -> dict[str, Any]:
    """Publish a request; returns it with ``status: pending``.  ``with_d3`` None loads
    the model as a task that says nothing of D3 would run it."""
    if action not in ACTIONS:
        raise ValidationError(f"action must be one of {', '.join(ACTIONS)}", field="action")
    if not isinstance(model, str) or not model.strip():
        raise ValidationError("model is required", field="model")
    if slot is not None and (not isinstance(slot, str) or not is_safe_token(slot)):
        raise ValidationError(f"invalid slot {slot!r}", field="slot")
    created_ms = int(time.time() * 1000)
    doc: dict[str, Any] = {
        "request_id": _REQUEST_ID_PREFIX + uuid.uuid4().hex[:16],
        "action": action,
        "model": model,
        "slot": slot,
        "with_d3": None if with_d3 is None else bool(with_d3),
        "created_at": iso_from_ms(created_ms),
    }
    name = f"{created_ms:013d}-{doc['request_id']}.json"
    atomic_write(paths, requests_dir(paths) / name, json.dumps(doc))
    return {**doc, "status": "pending"}


def read_request(paths: SpoolPaths, request_id: str) -> dict[str, Any] | None:
    """The outcome of a request, or the request itself with ``status: pending`` while
    the daemon has not finished it; None when unknown."""
    if not is_safe_token(request_id):
        return None
    done = read_json(results_dir(paths) / f"{request_id}.json")
    if isinstance(done, dict):
        return done
    suffix = f"-{request_id}.json"
    for name in list_json(requests_dir(paths)):
        if name.endswith(suffix):
            pending = read_json(requests_dir(paths) / name)
            if isinstance(pending, dict):
                return {**pending, "status": "pending"}
    return None


def list_requests(
    paths: SpoolPaths, model: str | None = None, limit: int = 20
) -> list[dict[str, Any]]:
    """Pending requests, then finished ones, newest first; optionally of one model
    (compared by the key the daemon resolved, or as written)."""
    out: list[dict[str, Any]] = []
    for name in reversed(list_json(requests_dir(paths))):
        if name.endswith(".json") and not name.startswith("."):
            doc = read_json(requests_dir(paths) / name)
            if isinstance(doc, dict):
                out.append({**doc, "status": "pending"})
    rdir = results_dir(paths)
    done = []
    for name in list_json(rdir):
        doc = read_json(rdir / name)
        if isinstance(doc, dict):
            done.append(doc)
    done.sort(key=lambda d: str(d.get("finished_at") or ""), reverse=True)
    out.extend(done)
    if model is not None:
        out = [d for d in out if model in (d.get("model"), d.get("model_key"))]
    return out[:limit]


def read_json(path: Path) -> Any:
    """The parsed file, or None when it is missing or not JSON."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def list_json(d: Path) -> list[str]:
    """The names of the ``.json`` files in ``d``, sorted; none when it is missing."""
    try:
        return sorted(n for n in os.listdir(d) if n.endswith(".json"))
    except FileNotFoundError:
        return []
