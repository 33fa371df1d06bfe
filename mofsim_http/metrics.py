"""``/metrics``: Prometheus text of what is really counted.

One ``CollectorRegistry`` per application (never the process-global one, so several
apps in one process do not collide).  At scrape time a collector reads: tasks per state
and type (the mirror; finished and queued states from the spool when there is none),
queue depth per priority and the oldest queued age (the spool), and per slot the
device's memory, utilization and temperature, its loaded models, whether it is busy
and its executor's restarts (the daemon's slot snapshot).  A middleware counts HTTP
requests by route template, method and status, and times them (SSE streams are counted,
not timed: their duration is the client's choice).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4, generate_latest
from prometheus_client.process_collector import ProcessCollector

from executors.registry import task_type_names
from mofsim_core.mirror import Mirror
from mofsim_core.mirror_rows import DURATION_BUCKETS
from mofsim_core.queue_stats import count_jobs, listdir, queued_by_priority
from mofsim_core.slot_state import daemon_status, read_snapshot
from mofsim_core.webhooks import read_totals
from mofsim_http.app import MIRROR_KEY, SPOOL_KEY, STARTED_KEY, request_context
from mofsim_http.describe import describe
from mofsim_http.openapi import returns
from spool.errors import MofsimError
from spool.states import TERMINAL_DIRS
from spool.store import Spool

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_MB = 1024 * 1024

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class HttpMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter(
            "mofsim_http_requests",
            "HTTP requests answered",
            ["method", "route", "status"],
            registry=registry,
        )
        self.latency = Histogram(
            "mofsim_http_request_duration_seconds",
            "Time to answer an HTTP request",
            ["method", "route"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )


@dataclass
class MetricsState:
    registry: CollectorRegistry
    http: HttpMetrics


METRICS_KEY = web.AppKey("metrics", MetricsState)


def route_label(request: web.Request) -> str:
    """The route template (``/api/v1/tasks/{task_id}``), never the raw path: labels
    stay few whatever clients send."""
    info = request.match_info
    resource = info.route.resource if info is not None and info.route is not None else None
    return resource.canonical if resource is not None else "unmatched"


def make_middleware(http: HttpMetrics) -> Any:
    @web.middleware
    async def count_requests(request: web.Request, handler: Handler) -> web.StreamResponse:
        t0 = time.perf_counter()
        status = 500
        streamed = False
        try:
            response = await handler(request)
            status = response.status
            streamed = response.content_type == "text/event-stream"
            return response
        except MofsimError as exc:
            status = exc.http_status
            raise
        except web.HTTPException as exc:
            status = exc.status
            raise
        finally:
            route = route_label(request)
            http.requests.labels(request.method, route, str(status)).inc()
            if not streamed:
                http.latency.labels(request.method, route).observe(time.perf_counter() - t0)

    return count_requests


class SpoolCollector:
    """Reads the spool, the mirror and the slot snapshot on every scrape."""

    def __init__(self, app: web.Application) -> None:
        self.app = app

    def describe(self) -> list[Metric]:
        return []  # computed at scrape time; nothing to check at registration

    def collect(self) -> Iterator[Metric]:
        spool = self.app[SPOOL_KEY]
        yield from self._tasks(spool, self.app[MIRROR_KEY])
        yield from self._durations(self.app[MIRROR_KEY])
        yield from self._webhooks(spool)
        yield from self._queue(spool)
        yield from self._slots(spool)
        up = GaugeMetricFamily("mofsim_server_uptime_seconds", "Seconds since the server started")
        up.add_metric([], time.time() - self.app[STARTED_KEY])
        yield up

    def _durations(self, mirror: Mirror | None) -> Iterator[Metric]:
        """Run times of finished tasks, from the mirror (nothing without one)."""
        if mirror is None:
            return
        try:
            stats = mirror.durations()
        except MofsimError:
            return
        h = HistogramMetricFamily(
            "mofsim_task_duration_seconds",
            "Run time of finished tasks, from start to end",
            labels=["task_type", "state"],
        )
        for (task_type, state), st in sorted(stats.items()):
            buckets = [
                (repr(le), float(n)) for le, n in zip(DURATION_BUCKETS, st.buckets, strict=True)
            ]
            buckets.append(("+Inf", float(st.count)))
            h.add_metric([task_type, state], buckets, st.total_s)
        yield h

    def _webhooks(self, spool: Spool) -> Iterator[Metric]:
        c = CounterMetricFamily(
            "mofsim_webhook_deliveries",
            "Webhook delivery attempts by event and outcome (delivered, retrying, failed)",
            labels=["event", "outcome"],
        )
        for event, counts in sorted(read_totals(spool.paths.state_dir / "webhooks").items()):
            for outcome, n in sorted(counts.items()):
                c.add_metric([event, outcome], float(n))
        yield c

    def _tasks(self, spool: Spool, mirror: Mirror | None) -> Iterator[Metric]:
        g = GaugeMetricFamily(
            "mofsim_tasks", "Tasks by state and type", labels=["state", "task_type"]
        )
        counted = False
        if mirror is not None:
            try:
                for state, n in mirror.counts_by_status().items():
                    if not n:
                        continue
                    for task_type in task_type_names():
                        _, total = mirror.list_tasks(status=state, task_type=task_type, limit=0)
                        if total:
                            g.add_metric([state, task_type], total)
                counted = True
            except MofsimError:
                counted = False
        if counted:
            yield g
        # Without a mirror the type needs every job file read: states only, from the spool.
        s = GaugeMetricFamily(
            "mofsim_spool_tasks", "Job files per spool state directory", labels=["state"]
        )
        s.add_metric(["QUEUED"], len(spool.queued()))
        claimed = spool.paths.claimed
        s.add_metric(["CLAIMED"], sum(count_jobs(claimed / d) for d in listdir(claimed)))
        for state, dirname in TERMINAL_DIRS.items():
            s.add_metric([state], count_jobs(spool.root / dirname))
        yield s

    def _queue(self, spool: Any) -> Iterator[Metric]:
        depth = GaugeMetricFamily(
            "mofsim_queue_depth", "Queued tasks per priority", labels=["priority"]
        )
        counts, oldest = queued_by_priority(spool)
        for name, n in counts.items():
            depth.add_metric([name], n)
        yield depth
        age = GaugeMetricFamily(
            "mofsim_queue_oldest_age_seconds",
            "Age of the oldest queued task (0 when the queue is empty)",
        )
        age.add_metric([], 0.0 if oldest is None else max(0.0, time.time() - oldest / 1000))
        yield age

    def _slots(self, spool: Any) -> Iterator[Metric]:
        snap = read_snapshot(spool.root)
        daemon = daemon_status(spool.root, snapshot=snap)
        up = GaugeMetricFamily("mofsim_daemon_up", "1 when a daemon runs on the spool")
        up.add_metric([], 1.0 if daemon["alive"] else 0.0)
        yield up
        if snap is None or not daemon["snapshot_current"]:
            return
        snap_age = GaugeMetricFamily(
            "mofsim_slot_snapshot_age_seconds", "Age of the daemon's slot snapshot"
        )
        snap_age.add_metric([], float(daemon["snapshot_age_seconds"] or 0.0))
        yield snap_age
        gauges = {
            "memory_used": GaugeMetricFamily(
                "mofsim_device_memory_used_bytes", "Device memory in use", labels=["slot"]
            ),
            "memory_total": GaugeMetricFamily(
                "mofsim_device_memory_total_bytes", "Device memory", labels=["slot"]
            ),
            "util": GaugeMetricFamily(
                "mofsim_device_utilization_ratio", "Device utilization (0-1)", labels=["slot"]
            ),
            "temp": GaugeMetricFamily(
                "mofsim_device_temperature_celsius", "Device temperature", labels=["slot"]
            ),
            "available": GaugeMetricFamily(
                "mofsim_device_available", "1 when the device answers", labels=["slot"]
            ),
            "busy": GaugeMetricFamily(
                "mofsim_slot_busy", "1 while the slot runs a task", labels=["slot"]
            ),
            "loaded": GaugeMetricFamily(
                "mofsim_model_loaded", "1 for each model loaded on a slot", labels=["slot", "model"]
            ),
        }
        pilots = GaugeMetricFamily(
            "mofsim_slurm_pilot",
            "1 for each Slurm pilot (slots = slurm), with its job, node, state and reason",
            labels=["slot", "job_id", "node", "state", "reason"],
        )
        restarts = CounterMetricFamily(
            "mofsim_executor_restarts",
            "Executor restarts since the daemon started",
            labels=["slot"],
        )
        for s in snap.get("slots", []):
            slot = str(s.get("slot_id"))
            dev = s.get("device_status") or {}
            _maybe(gauges["memory_used"], slot, dev.get("memory_used_mb"), _MB)
            _maybe(gauges["memory_total"], slot, dev.get("memory_total_mb"), _MB)
            _maybe(gauges["util"], slot, dev.get("utilization_percent"), 0.01)
            _maybe(gauges["temp"], slot, dev.get("temperature_c"), 1.0)
            if "available" in dev:
                gauges["available"].add_metric([slot], 1.0 if dev["available"] else 0.0)
            gauges["busy"].add_metric([slot], 1.0 if s.get("current_task") else 0.0)
            for model in s.get("loaded_models") or []:
                gauges["loaded"].add_metric([slot, str(model)], 1.0)
            executor = s.get("executor") or {}
            if isinstance(executor.get("restarts"), int):
                restarts.add_metric([slot], float(executor["restarts"]))
            pilot = s.get("pilot")
            if isinstance(pilot, dict):
                labels = [pilot.get(k) for k in ("job_id", "node", "state", "reason")]
                pilots.add_metric([slot, *(str(v or "") for v in labels)], 1.0)
        yield from gauges.values()
        yield restarts
        yield pilots


def _maybe(g: GaugeMetricFamily, slot: str, value: Any, scale: float) -> None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        g.add_metric([slot], float(value) * scale)


@describe(summary="Prometheus metrics", tags=["system"], public=True)
@returns(media_type="text/plain")
async def metrics(request: web.Request) -> web.Response:
    """Prometheus text format 0.0.4."""
    registry = request.app[METRICS_KEY].registry
    body = await asyncio.to_thread(generate_latest, registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_PLAIN_0_0_4})


def setup(app: web.Application) -> None:
    """Registers ``/metrics`` and the request-counting middleware (inside the
    request-context middleware, so it sees handler errors as exceptions and records
    the status the client gets)."""
    registry = CollectorRegistry(auto_describe=False)
    http = HttpMetrics(registry)
    registry.register(SpoolCollector(app))
    ProcessCollector(registry=registry)
    app[METRICS_KEY] = MetricsState(registry, http)
    # Right inside the request-context middleware: requests refused by the ones after
    # it (authentication, rate limits) are counted too.
    position = next((i + 1 for i, m in enumerate(app.middlewares) if m is request_context), 0)
    app.middlewares.insert(position, make_middleware(http))
    app.router.add_get("/metrics", metrics)
