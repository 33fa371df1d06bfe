"""The aiohttp application: ``create_app(config)``.

The server only reads and writes the spool and the mirror; it never talks to executors.
Route modules register themselves on both prefixes through ``ROUTE_MODULES``; each has
``setup(app)``.  Middlewares give every request an id, turn every error into the
dialect's error shape (no traceback ever leaves the server) and write a JSON access log.
"""

from __future__ import annotations

import asyncio
import importlib
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import NoReturn

from aiohttp import web
from loguru import logger

from mofsim_core.api_keys import KeyStore
from mofsim_core.config import Config
from mofsim_core.mirror import Mirror
from mofsim_core.output_files import API_PREFIX as API_PREFIX  # the routes take it from here
from mofsim_core.request_ids import accept_request_id, bind_request_id, unbind_request_id
from mofsim_http.envelope import (
    API_KEY_ID,
    REQUEST_ID,
    error_response,
    http_error_to_mofsim,
)
from spool.errors import InternalError, MofsimError
from spool.store import Spool

CONFIG_KEY = web.AppKey("config", Config)
SPOOL_KEY = web.AppKey("spool", Spool)
MIRROR_KEY: web.AppKey[Mirror | None] = web.AppKey("mirror")  # None when unavailable
STARTED_KEY = web.AppKey("started_at", float)
# Closed on shutdown: every SSE stream waits on it so that none outlives the server.
SHUTDOWN_KEY = web.AppKey("shutdown", asyncio.Event)

MIRA_API_PREFIX = "/mira/api/v1"

# Each module exposes ``setup(app: web.Application) -> None``.  Modules absent from this
# build are skipped, so the list names only what exists.
ROUTE_MODULES: list[str] = [
    "mofsim_http.docs",
    "mofsim_http.tasks",
    "mofsim_http.retention_api",
    "mofsim_http.keys",
    "mofsim_http.mira",
    "mofsim_http.structures",
    "mofsim_http.models_api",
    "mofsim_http.files",
    "mofsim_http.system",
    "mofsim_http.system_logs",
    "mofsim_http.metrics",
    "mofsim_http.bench",
]

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def request_context(request: web.Request, handler: Handler) -> web.StreamResponse:
    rid = accept_request_id(request.headers.get("X-Request-ID"))
    request[REQUEST_ID] = rid
    # The core functions this request calls (in the request pool's threads too) see it.
    bound = bind_request_id(rid)
    t0 = time.perf_counter()
    status = 500
    try:
        response = await handler(request)
        status = response.status
    except MofsimError as exc:
        response = error_response(request, exc, headers=getattr(exc, "headers", None))
        status = response.status
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        # A 405 names the methods that are allowed (RFC 9110): keep aiohttp's Allow.
        allow = exc.headers.get("Allow")
        headers = {"Allow": allow} if allow is not None else None
        response = error_response(request, http_error_to_mofsim(exc), headers=headers)
        status = response.status
    except asyncio.CancelledError:
        # The request ended before its answer (the client left, or the server stops):
        # not a server error; 499 as proxies log it.
        status = 499
        raise
    except Exception:  # noqa: BLE001 - the client gets a code, the log gets the trace
        logger.exception("unhandled error in {} {} ({})", request.method, request.path, rid)
        response = error_response(request, InternalError("internal server error"))
        status = 500
    finally:
        elapsed = (time.perf_counter() - t0) * 1000
        _access_log(request, rid, status, elapsed)
        unbind_request_id(bound)
    if not response.prepared:
        response.headers["X-Request-ID"] = rid
    return response


# (monotonic time, seconds) of recent requests: the alert rule on API P99 reads these.
RECENT_LATENCIES: deque[tuple[float, float]] = deque(maxlen=5000)


def api_p99(window_s: float = 300.0) -> float | None:
    """P99 latency in seconds of the requests of the last ``window_s`` (None if none)."""
    cutoff = time.monotonic() - window_s
    values = sorted(v for t, v in list(RECENT_LATENCIES) if t >= cutoff)
    if not values:
        return None
    return values[min(len(values) - 1, int(0.99 * len(values)))]


def _access_log(request: web.Request, rid: str, status: int, elapsed_ms: float) -> None:
    RECENT_LATENCIES.append((time.monotonic(), elapsed_ms / 1000))
    logger.bind(
        kind="access",
        logger="access",
        method=request.method,
        path=request.path,
        status=status,
        duration_ms=round(elapsed_ms, 2),
        request_id=rid,
        remote=request.remote,
        api_key=request.get(API_KEY_ID),
    ).info(f"{request.method} {request.path} {status} {elapsed_ms:.1f} ms")


async def _lifecycle(app: web.Application) -> AsyncIterator[None]:
    app[SHUTDOWN_KEY] = asyncio.Event()
    yield
    app[SHUTDOWN_KEY].set()


async def _signal_shutdown(app: web.Application) -> None:
    """on_shutdown runs before the runner waits for open requests: SSE streams see it
    and end, instead of holding the shutdown until its timeout."""
    event = app.get(SHUTDOWN_KEY)
    if event is not None:
        event.set()


def create_app(
    config: Config, *, spool: Spool | None = None, mirror: Mirror | None = None
) -> web.Application:
    from mofsim_http import auth, request_pool

    app = web.Application(
        middlewares=[request_context, auth.auth_middleware],
        client_max_size=config_upload_limit(config),
    )
    app[CONFIG_KEY] = config
    app[SPOOL_KEY] = spool or Spool(config.spool_path, limits=config.limits)
    own_mirror = mirror is None
    app[MIRROR_KEY] = mirror if mirror is not None else _open_mirror(config, app[SPOOL_KEY])
    app[STARTED_KEY] = time.time()
    app.cleanup_ctx.append(_lifecycle)
    app.on_shutdown.append(_signal_shutdown)
    if own_mirror and app[MIRROR_KEY] is not None:
        app.on_cleanup.append(_close_mirror)
    host = config.http.rpartition(":")[0] if config.http else "127.0.0.1"
    auth.install(
        app,
        KeyStore(config.api_keys_path, app[SPOOL_KEY].paths),
        rate=config.http_rate_limit,
        burst=config.http_rate_burst,
        bound_loopback=auth.is_loopback_host(host),
        upload_limit=config_upload_limit(config),
    )
    request_pool.install(app, config.http_request_threads)
    for name in ROUTE_MODULES:
        importlib.import_module(name).setup(app)
    _close_shadowed_methods(app)
    return app


def _close_shadowed_methods(app: web.Application) -> None:
    """A fixed path that a templated one also matches (``/tasks/batch`` and
    ``/tasks/{task_id}``) answers only its own methods: any other is a 405 naming them,
    not the templated route's handler reading ``batch`` as an id the document never
    offers there."""
    resources = list(app.router.resources())
    templated = [r for r in resources if isinstance(r, web.DynamicResource)]
    for fixed in resources:
        if not isinstance(fixed, web.PlainResource):
            continue
        if not any(t._match(fixed.canonical) is not None for t in templated):
            continue
        allowed = {route.method for route in fixed}

        async def not_allowed(request: web.Request, allowed: set[str] = allowed) -> NoReturn:
            raise web.HTTPMethodNotAllowed(request.method, allowed)

        fixed.add_route("*", not_allowed)


def config_upload_limit(config: Config) -> int:
    return int(float(config.max_upload_mb) * 1024 * 1024)


async def _close_mirror(app: web.Application) -> None:
    mirror = app[MIRROR_KEY]
    if mirror is not None:
        mirror.close()


def _open_mirror(config: Config, spool: Spool) -> Mirror | None:
    """The same mirror the daemon writes: SQLite in the spool, or PostgreSQL when
    ``database_url`` is set.  None when it cannot be opened: lists then come from
    the spool itself."""
    try:
        from mofsim_core.mirror_factory import open_mirror

        return open_mirror(config, spool.paths)
    except (MofsimError, ImportError) as exc:
        logger.warning("mirror unavailable; lists are read from the spool: {}", exc)
        return None
