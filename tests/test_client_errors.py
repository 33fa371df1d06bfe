"""The SDK's error mapping, retry rules and SSE handling, against canned transports.

These are transport tests: httpx's ``MockTransport`` plays a server that answers with
canned envelopes, drops connections, rate-limits or loses a response after taking the
request.  The SDK against the real server is ``test_client.py``.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import httpx
import pytest

import mofsim_client._transport as transport_mod
from mofsim_client import (
    AsyncMOFSimClient,
    AuthenticationError,
    BulkModulusResult,
    ModelNotFoundError,
    MOFSimClient,
    MOFSimError,
    NotFoundError,
    OptimizationResult,
    QueueFullError,
    RateLimitError,
    ServerUnavailableError,
    SinglePointResult,
    TaskFailedError,
    TaskInfo,
    TaskNotFoundError,
    ValidationError,
)
from mofsim_client._http import Settings, normalize_base_url
from mofsim_client._sse import SSEParser
from mofsim_client.errors import CODE_CLASSES, class_for, error_from_response
from mofsim_client.models import ModelInfo
from mofsim_client.results import result_from_dict

Handler = Callable[[httpx.Request], httpx.Response]


def envelope(data: Any, status: int = 200) -> httpx.Response:
    return httpx.Response(
        status,
        json={
            "success": True,
            "code": status,
            "message": "OK",
            "data": data,
            "timestamp": "t",
            "request_id": "r1",
        },
    )


def failure(
    code: int,
    status: int,
    detail: str,
    field: str | None = None,
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    body = {
        "success": False,
        "code": code,
        "message": "summary",
        "error": {"type": "X", "detail": detail, "field": field},
        "timestamp": "t",
        "request_id": "req_abc",
    }
    return httpx.Response(status, json=body, headers=headers)


def client_for(handler: Handler, **kw: Any) -> MOFSimClient:
    kw.setdefault("backoff", 0.0)
    return MOFSimClient("http://mofsim.test", transport=httpx.MockTransport(handler), **kw)


@pytest.fixture
def slept(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Pauses the SDK would take, recorded instead of slept."""
    pauses: list[float] = []
    monkeypatch.setattr(transport_mod.time, "sleep", pauses.append)
    return pauses


# --- the code table -------------------------------------------------------------------------


def test_every_server_code_has_the_class_of_its_range() -> None:
    from spool.errors import ERROR_CODES

    for entry in ERROR_CODES.values():
        cls = CODE_CLASSES.get(entry.code)
        assert cls is not None, f"code {entry.code} ({entry.name}) has no SDK class"
        assert class_for(entry.code) is cls
        if entry.code // 10000 == 3 and entry.http_status == 404:
            assert issubclass(cls, NotFoundError)
        if entry.code // 10000 == 4:
            assert issubclass(cls, ValidationError)
    # A code newer than the table still lands in its family.
    assert class_for(30099) is NotFoundError and class_for(50099).__name__ == "TaskError"
    assert class_for(None, 401) is AuthenticationError


def test_task_types_and_states_are_the_servers() -> None:
    """The SDK keeps its own copies (it imports nothing of the server's): the same."""
    import mofsim_client._payload as payload
    from executors.registry import task_type_aliases, task_type_names
    from mofsim_client.models import TERMINAL_STATES
    from spool.states import TERMINAL_STATES as SERVER_TERMINAL

    assert sorted(payload.TASK_TYPES) == task_type_names()
    assert payload.TASK_TYPE_ALIASES == task_type_aliases()
    for alias, name in task_type_aliases().items():
        assert payload.normalize_task_type(alias.upper().replace("-", "_")) == name
    assert TERMINAL_STATES == {s.value for s in SERVER_TERMINAL}


def test_envelope_error_keeps_code_field_request_id_and_detail() -> None:
    exc = error_from_response(
        400,
        {
            "success": False,
            "code": 40001,
            "message": "Request validation failed",
            "error": {
                "type": "ValidationError",
                "detail": "fmax must be > 0",
                "field": "parameters.fmax",
            },
            "request_id": "req_1",
        },
    )
    assert isinstance(exc, ValidationError)
    assert (exc.code, exc.http_status, exc.field, exc.request_id) == (
        40001,
        400,
        "parameters.fmax",
        "req_1",
    )
    assert "fmax must be > 0" in str(exc) and "parameters.fmax" in str(exc)


def test_mira_shaped_and_non_json_errors() -> None:
    exc = error_from_response(
        404,
        {
            "detail": "model x not found",
            "error_code": "MODEL_NOT_FOUND",
            "field": "model_key",
            "code": 30001,
        },
    )
    assert isinstance(exc, ModelNotFoundError) and exc.field == "model_key"
    assert exc.code == 30001
    proxy = error_from_response(502, "<html>Bad Gateway</html>")
    assert type(proxy).__name__ == "ServerError" and proxy.code is None


def test_client_raises_the_mapped_error() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return failure(30003, 404, "task task_x not found")

    with client_for(handler) as client, pytest.raises(TaskNotFoundError) as info:
        client.get_task("task_x")
    assert info.value.code == 30003 and info.value.request_id == "req_abc"


# --- settings -------------------------------------------------------------------------------


def test_env_vars_and_explicit_arguments(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MOFSIM_SERVER", "gpu-box:9000/")
    monkeypatch.setenv("MOFSIM_API_KEY", "msk_env")
    s = Settings.resolve()
    assert (s.base_url, s.api_key) == ("http://gpu-box:9000", "msk_env")
    s = Settings.resolve("https://h/api/v1", "msk_arg", timeout=5, retries=0)
    assert (s.base_url, s.api_key, s.timeout, s.retries) == ("https://h", "msk_arg", 5.0, 0)
    monkeypatch.delenv("MOFSIM_SERVER")
    monkeypatch.delenv("MOFSIM_API_KEY")
    assert Settings.resolve().base_url == "http://127.0.0.1:8000"
    assert normalize_base_url("localhost:8000") == "http://localhost:8000"


def test_api_key_goes_out_as_x_api_key() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return envelope({"task_id": "task_1", "status": "QUEUED"})

    with client_for(handler, api_key="msk_abc") as client:
        client.get_task("task_1")
    assert seen[0].headers["X-API-Key"] == "msk_abc"
    assert seen[0].url.path == "/api/v1/tasks/task_1"


# --- retries --------------------------------------------------------------------------------


def test_429_waits_retry_after_then_succeeds(slept: list[float]) -> None:
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request.method)
        if len(calls) < 3:
            return failure(40005, 429, "too many requests", headers={"Retry-After": "7"})
        return envelope({"task_id": "task_1", "status": "QUEUED"}, 202)

    with client_for(handler, retries=0) as client:
        task = client.submit_single_point("builtin:CALF-20", model="emt")
    # Retried even though it is a POST and retries=0: the server never took it.
    assert task.task_id == "task_1" and calls == ["POST"] * 3
    assert [p for p in slept if p > 0] == [pytest.approx(7.0, abs=0.1)] * 2


def test_429_beyond_the_budget_raises_rate_limit_error(slept: list[float]) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return failure(40005, 429, "slow down", headers={"Retry-After": "30"})

    with (
        client_for(handler, retry_after_budget=60) as client,
        pytest.raises(RateLimitError) as info,
    ):
        client.list_models()
    assert info.value.retry_after == 30.0 and info.value.http_status == 429
    assert sum(slept) == pytest.approx(60, abs=0.1)


def test_503_queue_full_is_retried_then_raised(slept: list[float]) -> None:
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        return failure(30006, 503, "queue is full")

    with client_for(handler, retries=2) as client, pytest.raises(QueueFullError):
        client.submit_optimization("builtin:MOF-5")
    assert len(calls) == 3


def test_connection_refused_is_retried_then_reported_clearly(slept: list[float]) -> None:
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        raise httpx.ConnectError("[Errno 111] Connection refused", request=request)

    with client_for(handler, retries=3) as client, pytest.raises(ServerUnavailableError) as info:
        client.health()
    assert len(calls) == 4
    assert "http://mofsim.test" in str(info.value) and "Connection refused" in str(info.value)


def test_lost_response_of_a_batch_is_not_replayed(slept: list[float]) -> None:
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        raise httpx.ReadError("connection reset", request=request)

    with client_for(handler, retries=3) as client, pytest.raises(ServerUnavailableError) as info:
        client.submit_batch([{"task_type": "single-point", "structure": "builtin:CALF-20"}])
    assert len(calls) == 1 and "may or may not have been processed" in str(info.value)


def test_request_retries_like_every_other_call(slept: list[float]) -> None:
    calls: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(f"{request.method} {request.url.path}")
        if len(calls) % 2:
            raise httpx.ReadError("connection reset", request=request)
        return envelope({"method": request.method, "query": dict(request.url.params)})

    with client_for(handler, retries=3) as client:
        # A GET whose answer was lost is sent again; the envelope's data comes back.
        assert client.request("GET", "system/queue", params={"x": "1"}) == {
            "method": "GET",
            "query": {"x": "1"},
        }
        assert calls == ["GET /api/v1/system/queue"] * 2
        # A POST is not replayed, unless the caller says it may be.
        calls.clear()
        with pytest.raises(ServerUnavailableError) as info:
            client.request("POST", "tasks/t1/keep", json={"keep": True})
        assert calls == ["POST /api/v1/tasks/t1/keep"]
        assert "may or may not have been processed" in str(info.value)
        calls.clear()
        out = client.request("POST", "/api/v1/tasks/t1/keep", json={}, idempotent=True)
        assert out["method"] == "POST" and len(calls) == 2


def test_submission_whose_answer_was_lost_is_not_queued_twice(slept: list[float]) -> None:
    """The server took the task but the answer never arrived: the retry, carrying the
    same client-made id, is told it exists, and the client returns that task."""
    queued: dict[str, dict[str, Any]] = {}

    def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            body = json.loads(request.content)
            if body["task_id"] in queued:
                return failure(
                    40001, 400, f"task id {body['task_id']} already exists", field="task_id"
                )
            queued[body["task_id"]] = {"task_id": body["task_id"], "status": "QUEUED"}
            raise httpx.ReadError("connection reset after the request was sent", request=request)
        task_id = request.url.path.rsplit("/", 1)[-1]
        return envelope(queued[task_id])

    with client_for(handler) as client:
        task = client.submit_single_point("builtin:CALF-20", model="emt")
    assert list(queued) == [task.task_id] and task.info.status == "QUEUED"


def test_duplicate_of_a_caller_given_id_is_an_error() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return failure(40001, 400, "task id mine already exists", field="task_id")

    with client_for(handler) as client, pytest.raises(ValidationError):
        client.submit("single-point", "builtin:CALF-20", "emt", task_id="mine")


@pytest.mark.asyncio
async def test_async_429_pauses_every_request_of_the_client(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """One 429 closes the client's gate: requests in flight wait it out together."""
    real_sleep = asyncio.sleep
    pauses: list[float] = []

    async def fake_sleep(seconds: float) -> None:
        pauses.append(seconds)
        await real_sleep(0)

    monkeypatch.setattr(transport_mod.asyncio, "sleep", fake_sleep)
    hits = 0

    async def handler(request: httpx.Request) -> httpx.Response:
        nonlocal hits
        hits += 1
        if hits == 1:
            return failure(40005, 429, "slow down", headers={"Retry-After": "2"})
        return envelope({"task_id": request.url.path.rsplit("/", 1)[-1], "status": "QUEUED"})

    async with AsyncMOFSimClient(
        "http://mofsim.test", backoff=0.0, transport=httpx.MockTransport(handler)
    ) as client:
        first = await client.get_task_info("task_0")  # 429, waits 2 s, then passes
        rest = await asyncio.gather(*(client.get_task_info(f"task_{i}") for i in (1, 2)))
    assert [first.task_id, *(r.task_id for r in rest)] == ["task_0", "task_1", "task_2"]
    long_pauses = [p for p in pauses if p > 1.5]
    # The retried request waits at the gate, and so does each later one that found it
    # still closed (this test's sleeps do not let time pass).
    assert long_pauses == [pytest.approx(2.0, abs=0.2)] * 3, pauses
    assert hits == 4


# --- server-sent events ---------------------------------------------------------------------


def test_sse_parser_follows_the_standard() -> None:
    p = SSEParser()
    lines = [
        "retry: 3000",
        "",
        ": heartbeat",
        "event: log",
        "id: 10",
        'data: {"a":',
        "data: 1}",
        "",
        "data:no-space",
        "",
        "event: status",
        "",
        "id: 20",
        "data: x",
        "",
    ]
    events = [e for e in (p.feed(line) for line in lines) if e is not None]
    assert p.retry_ms == 3000 and p.comments == 1
    assert [(e.event, e.id, e.data) for e in events] == [
        ("log", "10", '{"a":\n1}'),
        ("message", "10", "no-space"),
        ("message", "20", "x"),
    ]
    assert events[0].json() == {"a": 1}
    assert p.last_event_id == "20"


class _DroppingStream(httpx.SyncByteStream, httpx.AsyncByteStream):
    """Sends ``chunks``, then breaks the connection (or ends cleanly)."""

    def __init__(self, chunks: list[bytes], drop: bool) -> None:
        self.chunks = chunks
        self.drop = drop

    def __iter__(self) -> Iterator[bytes]:
        yield from self.chunks
        if self.drop:
            raise httpx.RemoteProtocolError("peer closed connection")

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for chunk in self.chunks:
            yield chunk
        if self.drop:
            raise httpx.RemoteProtocolError("peer closed connection")


def _event(kind: str, offset: int, data: dict[str, Any]) -> bytes:
    return f"event: {kind}\nid: {offset}\ndata: {json.dumps(data)}\n\n".encode()


EVENTS = [
    _event("status", 0, {"message": "queued", "extra": {"status": "QUEUED"}}),
    _event("log", 120, {"message": "step 1", "level": "INFO"}),
    _event("progress", 200, {"message": "p", "extra": {"progress": 0.5}}),
    _event("status", 300, {"message": "done", "extra": {"status": "COMPLETED"}}),
    _event("end", 380, {"task_id": "task_1", "status": "COMPLETED"}),
]


def _sse_handler(resume_ids: list[str | None]) -> Handler:
    """First connection: two events, then the connection breaks.  Later ones: the
    events after ``Last-Event-ID``."""

    def handler(request: httpx.Request) -> httpx.Response:
        last = request.headers.get("Last-Event-ID")
        resume_ids.append(last)
        if last is None:
            stream = _DroppingStream([b": hello\n\n", *EVENTS[:2]], drop=True)
        else:
            after = [e for e in EVENTS if int(e.split(b"id: ")[1].split(b"\n")[0]) > int(last)]
            stream = _DroppingStream(after, drop=False)
        return httpx.Response(200, headers={"Content-Type": "text/event-stream"}, stream=stream)

    return handler


def test_stream_events_reconnects_with_last_event_id(slept: list[float]) -> None:
    resume_ids: list[str | None] = []
    with client_for(_sse_handler(resume_ids)) as client:
        events = list(client.stream_events("task_1"))
    assert resume_ids == [None, "120"]
    assert [e.event for e in events] == ["status", "log", "progress", "status", "end"]
    assert events[2].progress == 0.5 and events[-1].status == "COMPLETED"


@pytest.mark.asyncio
async def test_async_stream_events_reconnects_with_last_event_id() -> None:
    resume_ids: list[str | None] = []
    transport = httpx.MockTransport(_sse_handler(resume_ids))
    async with AsyncMOFSimClient("http://mofsim.test", backoff=0.0, transport=transport) as client:
        events = [e async for e in client.stream_events("task_1")]
        logs = [str(x) async for x in client.stream_logs("task_1")]
    assert resume_ids[:2] == [None, "120"]
    assert [e.id for e in events] == ["0", "120", "200", "300", "380"]
    assert len(logs) == 1 and "step 1" in logs[0]


def test_stream_that_keeps_dropping_gives_up(slept: list[float]) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            200,
            headers={"Content-Type": "text/event-stream"},
            stream=_DroppingStream([], drop=True),
        )

    with client_for(handler, retries=2) as client, pytest.raises(ServerUnavailableError):
        list(client.stream_events("task_1"))


def test_wait_falls_back_to_polling_without_an_event_stream(slept: list[float]) -> None:
    states = iter(["QUEUED", "RUNNING", "RUNNING", "COMPLETED"])
    polled: list[str] = []
    progress: list[Any] = []

    def handler(request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path.endswith("/events"):
            return failure(30008, 404, "no such endpoint")
        if path.endswith("/result"):
            if polled[-1:] != ["COMPLETED"]:
                return failure(50003, 409, "task task_1 is QUEUED; its result is not ready")
            return envelope(
                {
                    "task_id": "task_1",
                    "task_type": "single-point-energy",
                    "status": "COMPLETED",
                    "result": {"energy_eV": -1.5},
                }
            )
        status = next(states)
        polled.append(status)
        return envelope(
            {
                "task_id": "task_1",
                "status": status,
                "progress": 0.5 if status == "RUNNING" else None,
            }
        )

    with client_for(handler) as client:
        result = client.wait("task_1", timeout=30, on_progress=progress.append, poll_interval=0.01)
    assert isinstance(result, SinglePointResult) and result.energy_eV == -1.5
    assert [(e.event, e.status) for e in progress] == [
        ("status", "QUEUED"),
        ("status", "RUNNING"),
        ("status", "COMPLETED"),
    ]


def test_failed_task_raises_with_its_recorded_reason() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/events"):
            return httpx.Response(
                200,
                headers={"Content-Type": "text/event-stream"},
                content=_event("end", 9, {"status": "FAILED"}),
            )
        return failure(50001, 409, "task task_1 failed: weights unavailable (error 30005)")

    with client_for(handler) as client, pytest.raises(TaskFailedError) as info:
        client.wait("task_1")
    assert info.value.task_id == "task_1" and "weights unavailable" in str(info.value)


# --- models ---------------------------------------------------------------------------------


def test_results_are_typed_and_tolerate_unknown_keys() -> None:
    doc = {
        "task_id": "t",
        "task_type": "optimization",
        "status": "COMPLETED",
        "brand_new_key": 1,
        "result": {
            "converged": True,
            "final_energy_eV": -3.5,
            "steps": 12,
            "cell_parameters": {
                "a": 1.0,
                "b": 2.0,
                "c": 3.0,
                "alpha": 90.0,
                "beta": 90.0,
                "gamma": 90.0,
                "extra": 0,
            },
            "initial_volume_A3": 10.0,
            "final_volume_A3": 9.0,
            "output_files": {"trajectory": "/api/v1/files/x"},
            "novel": [1],
        },
    }
    r = result_from_dict(doc)
    assert isinstance(r, OptimizationResult) and r.converged and r.steps == 12
    assert r.cell_parameters is not None and r.cell_parameters.b == 2.0
    assert r.volumes == (10.0, 9.0) and r["novel"] == [1] and r.raw["brand_new_key"] == 1
    assert r.output_files == {"trajectory": "/api/v1/files/x"}
    bm = result_from_dict({"bulk_modulus_GPa": 12.5}, "bulk-modulus")
    assert isinstance(bm, BulkModulusResult) and bm.bulk_modulus_GPa == 12.5
    assert asyncio.run(_await(r)) is r  # code written for the async client also runs
    from mofsim_client import models

    assert models.OptimizationResult is OptimizationResult  # the classes' old home
    with pytest.raises(AttributeError):
        _ = models.NoSuchResult
    info = TaskInfo.from_dict(
        {
            "task_id": "t",
            "status": "FAILED",
            "future": True,
            "error": {"code": 50001, "message": "boom"},
        }
    )
    assert info.is_terminal and info.error_code == 50001 and info.error_message == "boom"
    assert ModelInfo.from_dict({"model_key": "custom:model_1"}).key == "custom:model_1"


async def _await(value: Any) -> Any:
    return await value


def test_import_needs_only_httpx() -> None:
    code = (
        "import sys, mofsim_client\n"
        "from mofsim_client._payload import structure_ref\n"
        "structure_ref('builtin:MOF-5')\n"
        "heavy = [m for m in ('torch', 'ase', 'numpy', 'aiohttp', 'spool', 'mofsimd',"
        " 'executors', 'mofsim_http') if m in sys.modules]\n"
        "print(heavy)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


def test_atoms_are_sent_as_cif_text() -> None:
    from ase.build import bulk

    from mofsim_client._payload import structure_ref

    ref = structure_ref(bulk("Cu", "fcc", a=3.6, cubic=True))
    assert ref["source"] == "inline" and ref["format"] == "cif" and ref["name"] == "Cu4"
    assert "_cell_length_a" in ref["content"]
    assert structure_ref("struct_0123456789abcdef") == {
        "source": "upload",
        "file_id": "struct_0123456789abcdef",
    }
    with pytest.raises(FileNotFoundError, match="builtin:NAME"):
        structure_ref("no/such/file.cif")
    with pytest.raises(MOFSimError):
        structure_ref(42)
