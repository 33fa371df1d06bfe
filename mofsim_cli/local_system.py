"""``mofsim system gpus / queue / alerts`` in local mode: read from the spool itself.

The answers have the shapes of ``GET /api/v1/system/gpus``, ``/system/queue`` and
``/system/alerts/{kind}``, so the same tables show them.  The sources are the same
too: the daemon's slot snapshot (``state/slots.json``), the queue directories, and the
alert engine's store (``state/alerts/``).  Without a running daemon the devices are
read directly from the configured ``slots`` setting.
"""

from __future__ import annotations

import os
import time
from typing import Any

from spool.errors import MofsimError
from spool.events import iso_from_ms
from spool.job import PRIORITIES
from spool.layout import CANONICAL_NAME, TERMINAL_DIRS
from spool.store import Spool

DEVICE_FIELDS = ("memory_total_mb", "memory_used_mb", "memory_free_mb",
                 "utilization_percent", "temperature_c", "available", "error")
ALERT_KINDS = ("active", "history")
NO_ALERT_ENGINE = "not running on this spool"


def gpu_inventory(spool: Spool) -> dict[str, Any]:
    """Every slot with its device, loaded models and current task."""
    from mofsimd.slot_state import daemon_status, read_snapshot

    snap = read_snapshot(spool.root)
    daemon = daemon_status(spool.root, snapshot=snap)
    if snap is not None and daemon["snapshot_current"]:
        items = []
        for s in snap["slots"]:
            dev = s.get("device_status") or {}
            items.append({
                "slot_id": s.get("slot_id"), "kind": s.get("kind"), "index": s.get("index"),
                "name": s.get("name"), "device": s.get("device"), "state": s.get("state"),
                **{k: dev.get(k) for k in DEVICE_FIELDS},
                "loaded_models": s.get("loaded_models") or [],
                "current_task": s.get("current_task"), "executor": s.get("executor"),
            })
        return {"source": "daemon", "daemon_running": True,
                "snapshot_age_seconds": daemon["snapshot_age_seconds"],
                "count": len(items), "gpus": items}
    return _direct_inventory(spool, daemon["alive"])


def _direct_inventory(spool: Spool, daemon_alive: bool) -> dict[str, Any]:
    from mofsimd.config import load_config
    from mofsimd.devices import parse_slots
    from mofsimd.slot_state import slot_device

    try:
        backend = parse_slots(load_config().slots,
                              state_file=spool.paths.state_dir / "simulated-devices.json")
    except MofsimError as exc:
        return {"source": "direct", "daemon_running": daemon_alive, "count": 0, "gpus": [],
                "error": exc.message}
    try:
        status = {d.slot_id: d.to_dict() for d in backend.status()}
        items: list[dict[str, Any]] = []
        for slot in backend.slots():
            dev = status.get(slot.slot_id, {})
            items.append({
                "slot_id": slot.slot_id, "kind": slot.kind, "index": slot.index,
                "name": slot.name, "device": slot_device(slot.kind, slot.index),
                "state": "no executor", **{k: dev.get(k) for k in DEVICE_FIELDS},
                "loaded_models": [], "current_task": None, "executor": None,
            })
    finally:
        backend.close()
    return {"source": "direct", "daemon_running": daemon_alive, "count": len(items),
            "gpus": items}


def _count(folder: Any) -> int:
    try:
        return sum(1 for n in os.listdir(folder) if n.endswith(".json")
                   and not n.startswith("."))
    except FileNotFoundError:
        return 0


def queue_stats(spool: Spool) -> dict[str, Any]:
    """Queued tasks per priority and the oldest one's age, tasks per state, and what
    the slots are doing."""
    from mofsimd.slot_state import daemon_status, read_snapshot

    names = {v: k for k, v in PRIORITIES.items()}
    by_priority = dict.fromkeys(PRIORITIES, 0)
    oldest_ms: int | None = None
    for q in spool.queued():
        by_priority[names[q.priority]] += 1
        m = CANONICAL_NAME.match(q.name)
        if m:
            created = int(m.group(1))
            oldest_ms = created if oldest_ms is None else min(oldest_ms, created)
    # Claimed tasks are one per slot at most: their records are cheap to read.
    claimed_states: dict[str, int] = {"ASSIGNED": 0, "RUNNING": 0}
    claimed = 0
    for slot in _listdir(spool.paths.claimed):
        for name in _listdir(spool.paths.claimed / slot):
            if not name.endswith(".json") or name.startswith("."):
                continue
            claimed += 1
            try:
                state = spool.record(name[:-len(".json")])["status"]
            except MofsimError:
                continue  # finished meanwhile
            if state in claimed_states:
                claimed_states[state] += 1
    by_state: dict[str, int | None] = {"PENDING": 0, **claimed_states,
                                       "QUEUED": sum(by_priority.values())}
    for state, dirname in TERMINAL_DIRS.items():
        by_state[state] = _count(spool.root / dirname)
    snap = read_snapshot(spool.root)
    daemon = daemon_status(spool.root, snapshot=snap)
    slots = snap["slots"] if snap is not None and daemon["snapshot_current"] else []
    states = [s.get("state") for s in slots]
    running = [{"task_id": s["current_task"]["task_id"], "slot_id": s.get("slot_id"),
                "started_at": iso_from_ms(float(s["current_task"]["started_at"]) * 1000)}
               for s in slots if s.get("current_task")]
    return {
        "queued": {"total": by_state["QUEUED"], "by_priority": by_priority,
                   "oldest_queued_at": iso_from_ms(oldest_ms),
                   "oldest_age_seconds": None if oldest_ms is None
                   else round(time.time() - oldest_ms / 1000, 3)},
        "claimed": claimed,
        "by_state": by_state, "counts_source": "spool",
        "running": running,
        "slots": {"total": len(slots), "busy": states.count("busy"),
                  "idle": states.count("idle"), "loading": states.count("loading"),
                  "down": states.count("down") + states.count("starting")},
        "daemon_running": daemon["alive"],
    }


def alerts(spool: Spool, kind: str, limit: int = 100) -> dict[str, Any]:
    """``active`` alerts, or the ``history`` (newest first), from the daemon's alert
    engine; empty lists, with ``engine`` saying why, while no daemon evaluates alerts
    on this spool."""
    from mofsimd.alerts import read_active, read_history

    directory = spool.paths.state_dir / "alerts"
    if not directory.is_dir():
        return {kind: [], "total": 0, "engine": NO_ALERT_ENGINE}
    items = read_active(directory) if kind == "active" else read_history(directory,
                                                                          limit=limit)
    return {kind: items, "total": len(items), "engine": "running"}


def _listdir(folder: Any) -> list[str]:
    try:
        return sorted(os.listdir(folder))
    except FileNotFoundError:
        return []
