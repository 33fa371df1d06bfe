"""Where a request's blocking work runs.

Handlers never block the event loop: reading and writing the spool, the mirror and
structures happens in threads.  Those threads take turns on Python's interpreter lock,
so for this mostly CPU-bound work more threads bring no throughput, only contention.
Under concurrent clients, one dedicated thread gave a lower P99 for a page of the task
list than the default pool (a thread per core plus four), and no endpoint was slower on
it; ``bench/api_latency.py --request-threads default,6`` makes that comparison, and the
README records its figures.

So the short work of one request (read a task, list a page, submit one task) runs
first come, first served on a small pool of its own, ``http_request_threads`` wide.
Work that may take long (batches, uploads, previews, downloads, log days, model
operations, SSE polling, a cancel that waits for its task to stop) stays on the event
loop's default pool, where it never queues ahead of a status read.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from aiohttp import web

from spool.errors import ValidationError

T = TypeVar("T")

REQUEST_POOL_KEY = web.AppKey("request_pool", ThreadPoolExecutor)
MAX_THREADS = 64
# A single submission with a body larger than this (an inline structure of thousands of
# atoms) is parsed on the default pool: it would hold up the short requests behind it.
QUICK_BODY_LIMIT = 256 * 1024


def install(app: web.Application, threads: int) -> None:
    """Give ``app`` (and its sub-applications, through ``config_dict``) a request pool
    that lives as long as the application."""
    if not isinstance(threads, int) or not 1 <= threads <= MAX_THREADS:
        raise ValidationError(
            f"http_request_threads must be a whole number from 1 to {MAX_THREADS}, got {threads!r}",
            field="http_request_threads",
        )

    async def pool_ctx(app: web.Application) -> AsyncIterator[None]:
        pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="mofsim-request")
        app[REQUEST_POOL_KEY] = pool
        yield
        # The runner has waited for the open requests by now; nothing is left to run.
        pool.shutdown(wait=False, cancel_futures=True)

    app.cleanup_ctx.append(pool_ctx)


async def quick(request: web.Request, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
    """``asyncio.to_thread`` on the request pool: ``fn(*args, **kwargs)`` in a thread,
    with the caller's context variables."""
    pool = request.config_dict.get(REQUEST_POOL_KEY)
    call = functools.partial(contextvars.copy_context().run, fn, *args, **kwargs)
    return await asyncio.get_running_loop().run_in_executor(pool, call)


async def short_body(request: web.Request, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
    """``quick`` when the request's body is small; the default pool otherwise."""
    length = request.content_length
    if length is not None and length > QUICK_BODY_LIMIT:
        return await asyncio.to_thread(fn, *args, **kwargs)
    return await quick(request, fn, *args, **kwargs)
