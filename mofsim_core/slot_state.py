"""A snapshot of the daemon's slots in ``<spool>/state/slots.json``, for readers.

The HTTP server never talks to executors, yet it must show which models are loaded
where, what each slot is running and how its device is doing.  The supervisor writes
this file (``SlotStateWriter.update`` after each scheduling pass): at once when an
executor's state changes, and at least every ``interval`` seconds otherwise, so its age
also tells readers whether the daemon is still turning.  Device sensors are polled at
most once per ``device_interval``: NVML calls cost milliseconds per card.

The file is derived data: written without fsync (a lost write is replaced by the next
one), renamed into place so readers see the old version or the new one, never half.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

SNAPSHOT_VERSION = 1
SNAPSHOT_NAME = "slots.json"
LOCK_NAME = "daemon.lock"


def snapshot_path(spool_root: Path | str) -> Path:
    return Path(spool_root) / "state" / SNAPSHOT_NAME


def slot_device(kind: str, index: int) -> str:
    """The device an executor computes on, as a user reads it (``cuda:N`` is the
    card's NVML index; inside the executor the card is always ``cuda:0``)."""
    return f"cuda:{index}" if kind == "nvml" else "cpu"


def executor_view(ex: Any, control_request: str | None = None) -> dict[str, Any]:
    """One slot's entry of the snapshot, from a ``mofsimd.executor_pool.Executor``."""
    proc = ex.proc
    alive = bool(ex.alive)
    task = ex.current
    if not alive:
        state = "down"
    elif getattr(ex, "offline", False):
        state = "offline"  # alive but silent: no heartbeat for heartbeat_timeout_s
    elif control_request is not None:
        state = "loading"
    elif task is not None:
        state = "busy"
    elif ex.ready:
        state = "idle"
    else:
        state = "starting"
    # A Slurm pilot (mofsimd.pilot_executor): its job id, node, Slurm state and reason.
    pilot = getattr(ex, "pilot", None)
    if isinstance(pilot, dict) and pilot.get("state") in ("PENDING", "SUBMITTED"):
        state = "pending"
    slot = ex.slot
    view = {
        "slot_id": slot.slot_id,
        "kind": slot.kind,
        "index": slot.index,
        "name": slot.name,
        "device": slot_device(slot.kind, slot.index),
        "cuda_visible": slot.cuda_visible,
        "state": state,
        "spare": bool(getattr(ex, "spare", False)),
        "executor": {
            "pid": proc.pid if proc is not None else None,
            "alive": alive,
            "ready": bool(ex.ready),
            "restarts": int(ex.restarts),
            "started_at": ex.started_at or None,
            "last_heartbeat_at": getattr(ex, "last_beat", None) or None,
        },
        "loaded_models": list(ex.loaded_models),
        # Pending Slurm pilots and older executors have no measurements.
        "loaded_memory_mb": dict(getattr(ex, "loaded_memory_mb", None) or {}),
        "current_task": None
        if task is None
        else {
            "task_id": task.task_id,
            "started_at": task.started,
            "timeout": task.timeout,
            "attempts": task.attempts,
            "cancel_requested": task.cancel_seen_at is not None,
        },
        "control_request": control_request,
    }
    if isinstance(pilot, dict):
        view["pilot"] = pilot
        # Every reader that shows a slot's name (top, system gpus) shows the pilot's job.
        where = f" on {pilot['node']}" if pilot.get("node") and state != "pending" else ""
        why = f" ({pilot['reason']})" if pilot.get("reason") else ""
        job = f"Slurm job {pilot['job_id']}" if pilot.get("job_id") else "Slurm submission"
        view["name"] = f"{job}{where}, {pilot.get('state')}{why}"
    return view


def _signature(slots: list[dict[str, Any]]) -> str:
    # Everything but timestamps that only move with time.
    return json.dumps(
        [{k: v for k, v in s.items() if k != "device_status"} for s in slots],
        sort_keys=True,
        default=str,
    )


class SlotStateWriter:
    """Keeps ``state/slots.json`` current; cheap to call after every scheduling pass."""

    def __init__(
        self,
        spool_root: Path | str,
        *,
        interval: float = 2.0,
        device_interval: float = 1.0,
        clock: Any = time.time,
    ) -> None:
        self.path = snapshot_path(spool_root)
        self.interval = max(0.1, float(interval))
        self.device_interval = float(device_interval)
        self.clock = clock
        self.started_at = clock()
        self._last_signature: str | None = None
        self._last_write = 0.0
        self._devices: dict[str, dict[str, Any]] = {}
        self._devices_at = 0.0

    def update(
        self,
        executors: Mapping[str, Any] | Iterable[Any],
        backend: Any,
        busy: Mapping[str, str] | None = None,
    ) -> bool:
        """Write the snapshot if a slot changed or the last one is ``interval`` old.
        ``busy``: slot -> model control request in flight there.  True when written."""
        now = self.clock()
        items = list(executors.values()) if isinstance(executors, Mapping) else list(executors)
        busy = busy or {}
        slots = [executor_view(ex, busy.get(ex.slot_id)) for ex in items]
        signature = _signature(slots)
        if signature == self._last_signature and now - self._last_write < self.interval:
            return False
        if now - self._devices_at >= self.device_interval or not self._devices:
            self._devices = _device_status(backend)
            self._devices_at = now
        for s in slots:
            s["device_status"] = self._devices.get(s["slot_id"])
        doc = {
            "version": SNAPSHOT_VERSION,
            "written_at": now,
            "daemon_pid": os.getpid(),
            "daemon_started_at": self.started_at,
            "device_status_at": self._devices_at,
            "slots": slots,
        }
        try:
            write_snapshot(self.path, doc)
        except OSError:
            return False  # a full disk must not stop scheduling; the next pass retries
        self._last_signature = signature
        self._last_write = now
        return True


def _device_status(backend: Any) -> dict[str, dict[str, Any]]:
    try:
        return {d.slot_id: d.to_dict() for d in backend.status()}
    except Exception as exc:  # noqa: BLE001 - a sensor fault is reported, never raised
        return {
            s.slot_id: {
                "slot_id": s.slot_id,
                "available": False,
                "error": f"{type(exc).__name__}: {exc}",
            }
            for s in backend.slots()
        }


def write_snapshot(path: Path, doc: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(doc, default=str))
    os.replace(tmp, path)


def read_snapshot(spool_root: Path | str) -> dict[str, Any] | None:
    """The last snapshot, or None when there is none (or it is unreadable)."""
    try:
        doc = json.loads(snapshot_path(spool_root).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(doc, dict) or not isinstance(doc.get("slots"), list):
        return None
    return doc


def pid_alive(pid: int | None) -> bool:
    if not pid or pid <= 0:
        return False
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    # A zombie answers signal 0 too; on Linux /proc tells it apart.
    with contextlib.suppress(OSError):
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[-1].split()[0] != "Z"
    return True


def daemon_pid(spool_root: Path | str) -> int | None:
    try:
        text = (Path(spool_root) / "state" / LOCK_NAME).read_text().strip()
        return int(text) if text else None
    except (OSError, ValueError):
        return None


def daemon_status(
    spool_root: Path | str, *, stale_after: float = 30.0, snapshot: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Is a daemon running on this spool?  ``alive``: the pid in ``state/daemon.lock``
    is a live process; ``responsive``: alive and its slot snapshot is fresher than
    ``stale_after`` seconds (the supervisor loop is turning)."""
    pid = daemon_pid(spool_root)
    alive = pid_alive(pid)
    snap = snapshot if snapshot is not None else read_snapshot(spool_root)
    age = None
    if snap is not None and isinstance(snap.get("written_at"), int | float):
        age = max(0.0, time.time() - float(snap["written_at"]))
    # A snapshot from an earlier daemon says nothing about this one.
    own = snap is not None and snap.get("daemon_pid") == pid
    responsive = alive and own and age is not None and age <= stale_after
    return {
        "alive": alive,
        "pid": pid if alive else None,
        "responsive": responsive,
        "snapshot_age_seconds": None if age is None else round(age, 3),
        "snapshot_current": bool(own and alive),
    }
