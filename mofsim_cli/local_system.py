"""``mofsim system gpus / queue / alerts`` in local mode: read from the spool itself.

The answers have the shapes of ``GET /api/v1/system/gpus``, ``/system/queue`` and
``/system/alerts/{kind}``, so the same tables show them.  The sources are the same
too: the daemon's slot snapshot (``state/slots.json``), the queue directories, and the
alert engine's store (``state/alerts/``).  Without a running daemon the devices are
read directly from the configured ``slots`` setting.
"""

from __future__ import annotations

from typing import Any

from spool.errors import MofsimError
from spool.store import Spool

DEVICE_FIELDS = (
    "memory_total_mb",
    "memory_used_mb",
    "memory_free_mb",
    "utilization_percent",
    "temperature_c",
    "available",
    "error",
)
ALERT_KINDS = ("active", "history")
NO_ALERT_ENGINE = "not running on this spool"


def gpu_inventory(spool: Spool) -> dict[str, Any]:
    """Every slot with its device, loaded models and current task."""
    from mofsim_core.slot_state import daemon_status, read_snapshot

    snap = read_snapshot(spool.root)
    daemon = daemon_status(spool.root, snapshot=snap)
    if snap is not None and daemon["snapshot_current"]:
        items = []
        for s in snap["slots"]:
            dev = s.get("device_status") or {}
            items.append(
                {
                    "slot_id": s.get("slot_id"),
                    "kind": s.get("kind"),
                    "index": s.get("index"),
                    "name": s.get("name"),
                    "device": s.get("device"),
                    "state": s.get("state"),
                    **{k: dev.get(k) for k in DEVICE_FIELDS},
                    "loaded_models": s.get("loaded_models") or [],
                    "current_task": s.get("current_task"),
                    "executor": s.get("executor"),
                }
            )
        return {
            "source": "daemon",
            "daemon_running": True,
            "snapshot_age_seconds": daemon["snapshot_age_seconds"],
            "count": len(items),
            "gpus": items,
        }
    return _direct_inventory(spool, daemon["alive"])


def _direct_inventory(spool: Spool, daemon_alive: bool) -> dict[str, Any]:
    from mofsim_core.config import load_config
    from mofsim_core.devices import parse_slots
    from mofsim_core.slot_state import slot_device

    try:
        backend = parse_slots(
            load_config().slots, state_file=spool.paths.state_dir / "simulated-devices.json"
        )
    except MofsimError as exc:
        return {
            "source": "direct",
            "daemon_running": daemon_alive,
            "count": 0,
            "gpus": [],
            "error": exc.message,
        }
    try:
        status = {d.slot_id: d.to_dict() for d in backend.status()}
        items: list[dict[str, Any]] = []
        for slot in backend.slots():
            dev = status.get(slot.slot_id, {})
            items.append(
                {
                    "slot_id": slot.slot_id,
                    "kind": slot.kind,
                    "index": slot.index,
                    "name": slot.name,
                    "device": slot_device(slot.kind, slot.index),
                    "state": "no executor",
                    **{k: dev.get(k) for k in DEVICE_FIELDS},
                    "loaded_models": [],
                    "current_task": None,
                    "executor": None,
                }
            )
    finally:
        backend.close()
    return {"source": "direct", "daemon_running": daemon_alive, "count": len(items), "gpus": items}


def queue_stats(spool: Spool) -> dict[str, Any]:
    """Queued tasks per priority and the oldest one's age, tasks per state, and what
    the slots are doing."""
    from mofsim_core.queue_stats import queue_stats as stats

    return stats(spool)


def alerts(spool: Spool, kind: str, limit: int = 100) -> dict[str, Any]:
    """``active`` alerts, or the ``history`` (newest first), from the daemon's alert
    engine; empty lists, with ``engine`` saying why, while no daemon evaluates alerts
    on this spool."""
    from mofsim_core.alerts import read_active, read_history

    directory = spool.paths.state_dir / "alerts"
    if not directory.is_dir():
        return {kind: [], "total": 0, "engine": NO_ALERT_ENGINE}
    items = read_active(directory) if kind == "active" else read_history(directory, limit=limit)
    return {kind: items, "total": len(items), "engine": "running"}
