"""The device inventory as ``GET /api/v1/system/gpus`` and ``mofsim system gpus`` show it.

Every slot with its device's memory, utilization, temperature, loaded models and current
task: from the daemon's slot snapshot while a daemon runs on the spool, else read from
the devices directly (without models or tasks, since nothing runs).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from mofsim_core.devices import DeviceBackend
from mofsim_core.slot_state import daemon_status, read_snapshot, slot_device

DEVICE_FIELDS = (
    "memory_total_mb",
    "memory_used_mb",
    "memory_free_mb",
    "utilization_percent",
    "temperature_c",
    "available",
    "error",
)


def gpu_inventory(
    spool_root: Path,
    *,
    direct: Callable[[], tuple[DeviceBackend | None, str | None]],
    stale_after: float = 30.0,
) -> dict[str, Any]:
    """The inventory; ``direct`` gives the device backend (or why there is none) and is
    called only when no daemon answers for the spool."""
    snap = read_snapshot(spool_root)
    daemon = daemon_status(spool_root, stale_after=stale_after, snapshot=snap)
    if snap is not None and daemon["snapshot_current"]:
        items = [_from_snapshot(s) for s in snap["slots"]]
        return {
            "source": "daemon",
            "daemon_running": True,
            "snapshot_age_seconds": daemon["snapshot_age_seconds"],
            "count": len(items),
            "gpus": items,
        }
    backend, error = direct()
    if backend is None:
        return {
            "source": "direct",
            "daemon_running": daemon["alive"],
            "count": 0,
            "gpus": [],
            "error": error,
        }
    items = direct_items(backend)
    return {
        "source": "direct",
        "daemon_running": daemon["alive"],
        "count": len(items),
        "gpus": items,
    }


def _from_snapshot(slot: dict[str, Any]) -> dict[str, Any]:
    dev = slot.get("device_status") or {}
    return {
        "slot_id": slot.get("slot_id"),
        "kind": slot.get("kind"),
        "index": slot.get("index"),
        "name": slot.get("name"),
        "device": slot.get("device"),
        "state": slot.get("state"),
        "spare": bool(slot.get("spare")),
        **{k: dev.get(k) for k in DEVICE_FIELDS},
        "loaded_models": slot.get("loaded_models") or [],
        "current_task": slot.get("current_task"),
        "executor": slot.get("executor"),
        "pilot": slot.get("pilot"),
    }


def direct_items(backend: DeviceBackend) -> list[dict[str, Any]]:
    """The backend's slots as inventory rows, with no executor behind them."""
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
    return items
