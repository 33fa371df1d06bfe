"""``mofsim system gpus / queue / alerts`` in local mode: read from the spool itself.

The answers have the shapes of ``GET /api/v1/system/gpus``, ``/system/queue`` and
``/system/alerts/{kind}``, so the same tables show them.  The sources are the same
too: the daemon's slot snapshot (``state/slots.json``), the queue directories, and the
alert engine's store (``state/alerts/``).  Without a running daemon the devices are
read directly from the configured ``slots`` setting.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from spool.errors import MofsimError
from spool.store import Spool

if TYPE_CHECKING:
    from mofsim_core.devices import DeviceBackend


def gpu_inventory(spool: Spool) -> dict[str, Any]:
    """Every slot with its device, loaded models and current task."""
    from mofsim_core.inventory import gpu_inventory as inventory

    opened: list[DeviceBackend] = []

    def direct() -> tuple[DeviceBackend | None, str | None]:
        from mofsim_core.config import load_config
        from mofsim_core.devices_factory import parse_slots

        try:
            backend = parse_slots(
                load_config().slots, state_file=spool.paths.state_dir / "simulated-devices.json"
            )
        except MofsimError as exc:
            return None, exc.message
        opened.append(backend)
        return backend, None

    try:
        return inventory(spool.root, direct=direct)
    finally:
        for backend in opened:
            backend.close()


def queue_stats(spool: Spool) -> dict[str, Any]:
    """Queued tasks per priority and the oldest one's age, tasks per state, and what
    the slots are doing."""
    from mofsim_core.queue_stats import queue_stats as stats

    return stats(spool)


def alerts(spool: Spool, kind: str, filters: dict[str, str] | None = None) -> dict[str, Any]:
    """A page of the ``active`` alerts or of the ``history`` (newest first) of the
    daemon's alert engine, filtered (``level``, ``type``, ``since``, ``until``...):
    ``{items, pagination, engine}``; empty, with ``engine`` saying why, while no daemon
    evaluates alerts on this spool."""
    from mofsim_core.alert_listing import list_alerts

    return list_alerts(spool.paths.state_dir / "alerts", kind, filters or {})
