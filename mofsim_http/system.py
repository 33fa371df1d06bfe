"""Health, readiness, device inventory, queue statistics, configuration.

Everything is read from the spool, the mirror and the daemon's slot snapshot
(``mofsim_core.slot_state``); a server running without a daemon reads its devices
directly.  The alert lists are in ``alerts_api``.
"""

from __future__ import annotations

import json
import os
import shutil
import time
import uuid
from typing import Any

from aiohttp import web

from mofsim_core.config import Config
from mofsim_core.inventory import gpu_inventory as inventory
from mofsim_core.owners import hide_foreign_tasks
from mofsim_core.queue_stats import queue_stats as spool_queue_stats
from mofsim_core.slot_state import daemon_status
from mofsim_core.version import package_version
from mofsim_http import alerts_api
from mofsim_http.app import (
    API_PREFIX,
    CONFIG_KEY,
    MIRROR_KEY,
    SPOOL_KEY,
    STARTED_KEY,
    config_upload_limit,
)
from mofsim_http.auth import caller_of
from mofsim_http.describe import describe
from mofsim_http.envelope import is_mira, ok, request_id_of
from spool.errors import MofsimError
from spool.events import iso_from_ms, iso_now
from spool.store import Spool

DIRECT_BACKEND_KEY = web.AppKey("direct_device_backend", dict)


def _stale_after(config: Config) -> float:
    return max(30.0, 5 * float(config.rescan_interval_s))


def spool_writable(spool: Spool) -> tuple[bool, str | None]:
    """Create and remove a file in the spool's tmp/: what every submission does."""
    probe = spool.paths.tmp / f".probe-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        return False, exc.strerror or str(exc)
    return True, None


def health_info(app: web.Application) -> dict[str, Any]:
    """Overall state: ``healthy`` (spool writable, daemon running and turning),
    ``degraded`` (no daemon: tasks queue but do not run), ``unhealthy`` (spool not
    writable)."""
    spool, config = app[SPOOL_KEY], app[CONFIG_KEY]
    writable, why = spool_writable(spool)
    daemon = daemon_status(spool.root, stale_after=_stale_after(config))
    try:
        usage = shutil.disk_usage(spool.root)
        disk: dict[str, Any] = {
            "free_gb": round(usage.free / 1e9, 2),
            "total_gb": round(usage.total / 1e9, 2),
        }
    except OSError:
        disk = {"free_gb": None, "total_gb": None}
    status = (
        "healthy"
        if writable and daemon["responsive"]
        else ("degraded" if writable else "unhealthy")
    )
    started = app[STARTED_KEY]
    return {
        "status": status,
        "version": package_version(),
        "started_at": iso_from_ms(started * 1000),
        "uptime_seconds": round(time.time() - started, 3),
        "daemon": daemon,
        "spool": {"writable": writable, "error": why, **disk},
        "mirror": app[MIRROR_KEY] is not None,
    }


def readiness(app: web.Application) -> dict[str, Any]:
    """Ready to take work: the spool is writable and a daemon is running on it."""
    spool, config = app[SPOOL_KEY], app[CONFIG_KEY]
    writable, why = spool_writable(spool)
    daemon = daemon_status(spool.root, stale_after=_stale_after(config))
    checks = {
        "spool_writable": writable,
        "daemon_running": daemon["alive"],
        "daemon_responsive": daemon["responsive"],
    }
    ready = writable and daemon["responsive"]
    return {
        "status": "ready" if ready else "not ready",
        "ready": ready,
        "checks": checks,
        "spool_error": why,
    }


def _direct_backend(app: web.Application) -> Any:
    """The device backend of a server running without a daemon, made once."""
    holder = app[DIRECT_BACKEND_KEY]
    if "backend" not in holder:
        from mofsim_core.devices_factory import parse_slots

        try:
            holder["backend"] = parse_slots(
                app[CONFIG_KEY].slots,
                state_file=app[SPOOL_KEY].paths.state_dir / "simulated-devices.json",
            )
            holder["error"] = None
        except MofsimError as exc:
            holder["backend"], holder["error"] = None, exc.message
    return holder["backend"]


async def _close_direct_backend(app: web.Application) -> None:
    backend = app[DIRECT_BACKEND_KEY].get("backend")
    if backend is not None:
        backend.close()


def gpu_inventory(app: web.Application) -> dict[str, Any]:
    """Every slot with its device's memory, utilization, temperature, loaded models and
    current task: from the daemon's snapshot, or read directly without a daemon."""

    def direct() -> tuple[Any, str | None]:
        return _direct_backend(app), app[DIRECT_BACKEND_KEY].get("error")

    return inventory(app[SPOOL_KEY].root, direct=direct, stale_after=_stale_after(app[CONFIG_KEY]))


def queue_stats(app: web.Application) -> dict[str, Any]:
    """Queued tasks per priority and the oldest one's age (from the spool), tasks per
    state (the spool for queued and finished ones, the mirror for the rest when there is
    one), and what each slot is doing (from the snapshot)."""
    counts = None
    mirror = app[MIRROR_KEY]
    if mirror is not None:
        try:
            counts = mirror.counts_by_status()
        except MofsimError:
            counts = None  # the database is down: the claimed records answer instead
    return spool_queue_stats(app[SPOOL_KEY], counts)


def system_config(app: web.Application) -> dict[str, Any]:
    """The running configuration, secrets masked, and the limits derived from it."""
    config = app[CONFIG_KEY]
    data = config.masked()
    from mofsim_http.models_api import model_upload_limit, validation_timeout

    return {
        "config": data,
        "effective": {
            "spool": str(config.spool_path),
            "max_upload_bytes": config_upload_limit(config),
            "max_model_upload_bytes": model_upload_limit(config),
            "model_validation_timeout_s": validation_timeout(config),
        },
    }


# --- handlers --------------------------------------------------------------------------------


def _health_response(request: web.Request, data: dict[str, Any]) -> web.Response:
    code = 503 if data["status"] == "unhealthy" else 200
    if is_mira(request):
        return ok(request, data, status=code)
    # The envelope plus MIRA's top-level status and version, for clients of either seed.
    body = {
        "success": code == 200,
        "code": code,
        "message": data["status"],
        "data": data,
        "timestamp": iso_now(),
        "request_id": request_id_of(request),
        "status": data["status"],
        "version": data["version"],
    }
    return web.Response(text=json.dumps(body), status=code, content_type="application/json")


@describe(
    summary="Service health", tags=["system"], public=True, responses={503: "spool not writable"}
)
async def health(request: web.Request) -> web.Response:
    """``healthy``, ``degraded`` (no daemon running) or ``unhealthy``; version, uptime,
    daemon liveness, free disk space."""
    return _health_response(request, health_info(request.app))


@describe(summary="Liveness probe", tags=["system"], public=True)
async def healthz(request: web.Request) -> web.Response:
    """The server answers: 200."""
    return web.json_response({"status": "ok"})


@describe(summary="Readiness probe", tags=["system"], public=True, responses={503: "not ready"})
async def readyz(request: web.Request) -> web.Response:
    """200 when the spool is writable and a daemon is running on it, else 503."""
    data = readiness(request.app)
    return web.json_response(data, status=200 if data["ready"] else 503)


@describe(summary="Devices (GPUs or CPU slots)", tags=["system"])
async def gpus(request: web.Request) -> web.Response:
    """Per slot: device name, memory, utilization, temperature, loaded models, current
    task (a user key sees the ids of its own tasks only)."""
    import asyncio

    data = await asyncio.to_thread(gpu_inventory, request.app)
    spool = request.app[SPOOL_KEY]
    return ok(request, await asyncio.to_thread(hide_foreign_tasks, spool, caller_of(request), data))


@describe(summary="Queue statistics", tags=["system"])
async def queue(request: web.Request) -> web.Response:
    """Queued per priority, oldest queued age, tasks per state, slot occupancy, running
    tasks (a user key sees the ids of its own tasks only)."""
    import asyncio

    data = await asyncio.to_thread(queue_stats, request.app)
    spool = request.app[SPOOL_KEY]
    return ok(request, await asyncio.to_thread(hide_foreign_tasks, spool, caller_of(request), data))


@describe(summary="Running configuration", tags=["system"], admin=True)
async def config(request: web.Request) -> web.Response:
    """Secrets (database passwords, tokens, keys) are masked."""
    return ok(request, system_config(request.app))


def setup(app: web.Application) -> None:
    app[DIRECT_BACKEND_KEY] = {}
    app.on_cleanup.append(_close_direct_backend)
    r = app.router
    r.add_get("/health", health)
    r.add_get(API_PREFIX + "/health", health)
    r.add_get("/healthz", healthz)
    r.add_get("/readyz", readyz)
    r.add_get(API_PREFIX + "/system/gpus", gpus)
    r.add_get(API_PREFIX + "/system/queue", queue)
    r.add_get(API_PREFIX + "/system/config", config)
    # The alert lists are routes of the system too; their own module reads the store.
    alerts_api.setup(app)
