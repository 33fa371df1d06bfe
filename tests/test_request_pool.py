"""The request pool: short work of a request on its own few threads, long work elsewhere.

Through a real server on a loopback port: small applications with the pool installed,
and the full API application for the configuration knob.
"""

from __future__ import annotations

import asyncio
import contextvars
import threading
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from mofsim_core.config import Config, load_config
from mofsim_http import request_pool
from mofsim_http.app import create_app
from spool.errors import ValidationError

WHO: contextvars.ContextVar[str] = contextvars.ContextVar("who", default="nobody")
STARTED = web.AppKey("long_started", threading.Event)
RELEASE = web.AppKey("release", threading.Event)


def _thread() -> str:
    return threading.current_thread().name


def _pool_app(threads: int) -> web.Application:
    app = web.Application()
    request_pool.install(app, threads)
    long_started = threading.Event()
    release = threading.Event()

    async def quick_name(request: web.Request) -> web.Response:
        return web.Response(text=await request_pool.quick(request, _thread))

    async def body_name(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(text=await request_pool.short_body(request, _thread))

    async def context(request: web.Request) -> web.Response:
        WHO.set(request.query["who"])
        return web.Response(text=await request_pool.quick(request, WHO.get))

    def hold() -> str:
        long_started.set()
        release.wait(30)
        return "released"

    async def long(request: web.Request) -> web.Response:
        # Long work (a batch, an upload) runs on the default pool.
        return web.Response(text=await asyncio.to_thread(hold))

    app.router.add_get("/quick", quick_name)
    app.router.add_post("/body", body_name)
    app.router.add_get("/context", context)
    app.router.add_get("/long", long)
    app[STARTED] = long_started
    app[RELEASE] = release
    return app


@pytest_asyncio.fixture
async def client() -> AsyncIterator[TestClient]:
    async with TestClient(TestServer(_pool_app(2))) as c:
        yield c


@pytest.mark.asyncio
async def test_short_work_runs_on_the_request_threads(client: TestClient) -> None:
    names = {await (await client.get("/quick")).text() for _ in range(20)}
    assert names and all(n.startswith("mofsim-request") for n in names)
    assert len(names) <= 2


@pytest.mark.asyncio
async def test_a_large_body_is_parsed_off_the_request_threads(client: TestClient) -> None:
    small = await (await client.post("/body", data=b"x" * 1000)).text()
    large = await (
        await client.post("/body", data=b"x" * (request_pool.QUICK_BODY_LIMIT + 1))
    ).text()
    assert small.startswith("mofsim-request")
    assert not large.startswith("mofsim-request")


@pytest.mark.asyncio
async def test_context_variables_travel_with_the_call(client: TestClient) -> None:
    assert await (await client.get("/context", params={"who": "alice"})).text() == "alice"


@pytest.mark.asyncio
async def test_long_work_never_queues_ahead_of_short_work(client: TestClient) -> None:
    assert client.app is not None
    started = client.app[STARTED]
    release = client.app[RELEASE]
    waiting = asyncio.ensure_future(client.get("/long"))
    try:
        assert await asyncio.to_thread(started.wait, 10)
        # The long request still holds its thread; short ones are answered meanwhile.
        for _ in range(5):
            resp = await client.get("/quick")
            assert resp.status == 200
        assert not waiting.done()
    finally:
        release.set()
    assert await (await waiting).text() == "released"


@pytest.mark.asyncio
async def test_one_thread_serves_requests_in_turn() -> None:
    async with TestClient(TestServer(_pool_app(1))) as c:
        answers = await asyncio.gather(*(c.get("/quick") for _ in range(8)))
        names = {await r.text() for r in answers}
    assert len(names) == 1 and next(iter(names)).startswith("mofsim-request")


@pytest.mark.asyncio
async def test_the_pool_is_shut_down_with_the_application() -> None:
    app = _pool_app(2)
    async with TestClient(TestServer(app)) as c:
        await c.get("/quick")
        pool = app[request_pool.REQUEST_POOL_KEY]
    with pytest.raises(RuntimeError):
        pool.submit(_thread)


@pytest.mark.parametrize("threads", [0, -1, request_pool.MAX_THREADS + 1])
def test_a_bad_thread_count_is_refused_by_name(tmp_path: Path, threads: int) -> None:
    config = Config(spool=str(tmp_path / "spool"), http_request_threads=threads)
    with pytest.raises(ValidationError) as err:
        create_app(config)
    assert err.value.field == "http_request_threads"
    assert err.value.code == 40001


def test_the_thread_count_comes_from_the_configuration(tmp_path: Path) -> None:
    path = tmp_path / "mofsim.toml"
    path.write_text("[daemon]\nhttp_request_threads = 3\n")
    assert load_config(path, env={}).http_request_threads == 3
    assert load_config(None, {"http_request_threads": "1"}, env={}).http_request_threads == 1


@pytest.mark.asyncio
async def test_the_api_answers_through_a_one_thread_pool(tmp_path: Path) -> None:
    config = Config(spool=str(tmp_path / "spool"), http_rate_limit=0, http_request_threads=1)
    async with TestClient(TestServer(create_app(config))) as c:
        resp = await c.get("/api/v1/tasks/not-a-task")
        assert resp.status == 404
        assert (await resp.json())["code"] == 30003
        resp = await c.get("/api/v1/tasks")
        assert resp.status == 200
