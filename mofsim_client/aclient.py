"""``AsyncMOFSimClient``: the asyncio twin of ``MOFSimClient``, same method names.

    async with AsyncMOFSimClient("http://server:8000") as client:
        task = await client.submit_optimization("mof.cif", model="sevennet-0")
        async for log in task.stream_logs():
            print(log)
        result = await task.result()

Many tasks at once: ``await asyncio.gather(*(t.wait() for t in tasks))``; each wait
holds one event stream open, and a 429 from the server pauses every request of the
client for the ``Retry-After`` it names.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncGenerator, AsyncIterator, Iterable, Mapping
from contextlib import aclosing
from pathlib import Path
from typing import Any

import httpx

from mofsim_client import _payload as pl
from mofsim_client._bench import AsyncBenchMethods
from mofsim_client._http import Settings, decode
from mofsim_client._server import AsyncServerMethods, seg
from mofsim_client._shortcuts import AsyncSubmitShortcuts, Priority
from mofsim_client._sse import Resume
from mofsim_client._transport import AsyncTransport
from mofsim_client.errors import MOFSimError, ServerUnavailableError
from mofsim_client.models import (
    CancelResult,
    LogEntry,
    ModelInfo,
    StructureInfo,
    SystemStatus,
    TaskEvent,
    TaskInfo,
)
from mofsim_client.results import TaskResult, result_from_dict
from mofsim_client.task import AsyncTask


class AsyncMOFSimClient(AsyncSubmitShortcuts, AsyncServerMethods, AsyncBenchMethods):
    """See ``MOFSimClient`` for the arguments.  Use ``async with``, or ``await
    client.aclose()``."""

    def __init__(
        self,
        base_url: str | None = None,
        api_key: str | None = None,
        timeout: float | None = None,
        retries: int | None = None,
        *,
        settings: Settings | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        **options: Any,
    ) -> None:
        self.settings = settings or Settings.resolve(base_url, api_key, timeout, retries, **options)
        self._t = AsyncTransport(self.settings, transport)

    @property
    def base_url(self) -> str:
        return self.settings.base_url

    async def aclose(self) -> None:
        await self._t.aclose()

    close = aclose

    async def __aenter__(self) -> AsyncMOFSimClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return f"AsyncMOFSimClient({self.base_url!r})"

    async def request(
        self, method: str, path: str, *, idempotent: bool | None = None, **kwargs: Any
    ) -> Any:
        """``MOFSimClient.request``, awaited: one request to any endpoint, its envelope's
        ``data`` returned, its error raised as the ``MOFSimError`` of its code."""
        return await self._t.request(method, path, idempotent=idempotent, **kwargs)

    # --- submitting -------------------------------------------------------------------------

    async def submit(
        self,
        task_type: str,
        structure: Any,
        model: str | None = None,
        *,
        priority: Priority = None,
        timeout: float | None = None,
        parameters: Mapping[str, Any] | None = None,
        options: Mapping[str, Any] | None = None,
        task_id: str | None = None,
        structure_name: str | None = None,
        **params: Any,
    ) -> AsyncTask:
        # Reading a file or writing an Atoms object to CIF is quick, local work.
        body = pl.task_body(
            pl.normalize_task_type(task_type),
            structure,
            model,
            parameters={**(parameters or {}), **params},
            options=pl.options_of(priority, timeout, options),
            task_id=task_id,
            structure_name=structure_name,
        )
        try:
            data = await self._t.request(
                "POST", f"tasks/{body['task_type']}", json=body, idempotent=True
            )
        except MOFSimError as exc:
            if task_id is None and pl.is_duplicate_id(exc):
                return await self.get_task(body["task_id"])
            raise
        info = TaskInfo.from_dict(data)
        return AsyncTask(self, info.task_id or body["task_id"], info)

    async def submit_batch(
        self,
        tasks: Iterable[Mapping[str, Any]],
    ) -> list[AsyncTask | MOFSimError]:
        items = [pl.batch_item(t) for t in tasks]
        data = await self._t.request("POST", "tasks/batch", json={"tasks": items})
        return [self._batch_outcome(entry, items) for entry in pl.list_of(data)]

    def _batch_outcome(
        self, entry: dict[str, Any], items: list[dict[str, Any]]
    ) -> AsyncTask | MOFSimError:
        if entry.get("accepted"):
            info = TaskInfo.from_dict(entry.get("task") or {})
            return AsyncTask(self, info.task_id, info)
        return pl.batch_error(entry, items)

    # --- tasks --------------------------------------------------------------------------------

    async def get_task(self, task_id: str) -> AsyncTask:
        return AsyncTask(self, task_id, await self.get_task_info(task_id))

    async def get_task_info(self, task_id: str) -> TaskInfo:
        return TaskInfo.from_dict(await self._t.request("GET", f"tasks/{task_id}"))

    async def get_result(self, task_id: str) -> TaskResult:
        return result_from_dict(await self._t.request("GET", f"tasks/{task_id}/result"))

    async def cancel_task(self, task_id: str) -> CancelResult:
        data = await self._t.request("POST", f"tasks/{task_id}/cancel", idempotent=True)
        return CancelResult.from_dict(data)

    async def wait(self, task_id: str, timeout: float | None = None, **kw: Any) -> TaskResult:
        return await AsyncTask(self, task_id).wait(timeout, **kw)

    async def list_tasks(
        self,
        status: str | list[str] | None = None,
        task_type: str | None = None,
        model: str | None = None,
        page_size: int = 100,
        limit: int | None = None,
        order: str | None = None,
    ) -> AsyncIterator[TaskInfo]:
        """``async for info in client.list_tasks(...)``: pages fetched as you go."""
        params = pl.list_params(status, task_type, model)
        if order:
            params["order"] = order
        seen: set[str] = set()
        page = 1
        while True:
            data = await self._t.request(
                "GET", "tasks", params={**params, "page": page, "page_size": page_size}
            )
            items, pages = pl.page_of(data)
            for item in items:
                info = TaskInfo.from_dict(item)
                if info.task_id in seen:
                    continue
                seen.add(info.task_id)
                yield info
                if limit is not None and len(seen) >= limit:
                    return
            if not items or (pages is not None and page >= pages):
                return
            page += 1

    async def get_logs(
        self, task_id: str, level: str | None = None, limit: int = 100, offset: int = 0
    ) -> list[LogEntry]:
        params: dict[str, Any] = {"limit": limit, "offset": offset}
        if level:
            params["level"] = level
        data = await self._t.request("GET", f"tasks/{task_id}/logs", params=params)
        return [LogEntry.from_dict(x) for x in pl.list_of(data)]

    async def stream_logs(self, task_id: str, level: str | None = None) -> AsyncIterator[LogEntry]:
        params = {"types": "log", **({"level": level} if level else {})}
        async with aclosing(self._events(f"tasks/{task_id}/logs/stream", None, params)) as events:
            async for ev in events:
                if ev.event == "log":
                    yield ev.as_log()

    async def stream_events(
        self, task_id: str, last_event_id: str | None = None
    ) -> AsyncIterator[TaskEvent]:
        async with aclosing(self._task_events(task_id, last_event_id)) as events:
            async for ev in events:
                if ev.event != "heartbeat":
                    yield ev

    def _task_events(
        self,
        task_id: str,
        last_event_id: str | None,
    ) -> AsyncGenerator[TaskEvent, None]:
        return self._events(f"tasks/{task_id}/events", last_event_id, None)

    async def _events(
        self, path: str, last_event_id: str | None, params: dict[str, Any] | None
    ) -> AsyncGenerator[TaskEvent, None]:
        s = self.settings
        resume = Resume(last_event_id, s.retries, s.backoff, s.backoff_max)
        while True:
            try:
                async with self._t.stream(
                    path, params=params, headers=resume.headers()
                ) as response:
                    parser = resume.parser()
                    async for line in response.aiter_lines():
                        comments = parser.comments
                        sse = parser.feed(line)
                        if sse is None:
                            if parser.comments != comments:
                                yield TaskEvent(event="heartbeat")
                            continue
                        resume.seen(sse)
                        yield TaskEvent.from_sse(sse.event, sse.json(), sse.id)
                        if sse.event == "end":
                            return
            except httpx.TransportError as exc:
                why: str = f"{type(exc).__name__}: {exc}"
            else:
                why = "the server closed the stream"
            delay = resume.dropped()
            if delay is None:
                raise ServerUnavailableError(f"event stream {path} keeps dropping ({why})")
            await asyncio.sleep(delay)

    # --- models and structures ----------------------------------------------------------------

    async def list_models(self, family: str | None = None) -> list[ModelInfo]:
        params = {"family": family} if family else None
        data = await self._t.request("GET", "models", params=params)
        return [ModelInfo.from_dict(m) for m in pl.list_of(data, "models")]

    async def get_model(self, name: str) -> ModelInfo:
        return ModelInfo.from_dict(await self._t.request("GET", f"models/{seg(name)}"))

    async def upload_model(
        self,
        path: str | os.PathLike[str],
        name: str,
        framework: str,
        description: str | None = None,
        with_d3: bool | None = None,
        config: Mapping[str, Any] | None = None,
        d3_included: bool | None = None,
        **fields: Any,
    ) -> ModelInfo:
        """Upload custom weights (spec 3.4); the arguments are those of
        ``MOFSimClient.upload_model``."""
        file = Path(path).expanduser()
        fields = {**fields, "d3_included": d3_included}
        form = pl.model_upload_fields(name, framework, description, with_d3, config, fields)
        content = await asyncio.to_thread(file.read_bytes)
        data = await self._t.request(
            "POST", "models/custom", data=form, files={"file": (file.name, content)}, timeout=None
        )
        return ModelInfo.from_dict(data)

    async def validate_model(self, model_id: str) -> dict[str, Any]:
        path = f"models/custom/{seg(model_id)}/validate"
        data = await self._t.request("POST", path, timeout=None)
        return dict(data) if isinstance(data, dict) else {"result": data}

    async def upload_structure(
        self,
        path_or_content: str | bytes | os.PathLike[str],
        name: str | None = None,
        format: str | None = None,
    ) -> StructureInfo:
        files, form = pl.upload_parts(path_or_content, name, format)
        data = await self._t.request("POST", "structures", files=files, data=form)
        return StructureInfo.from_dict(data)

    async def list_structures(self, page_size: int = 100) -> AsyncIterator[StructureInfo]:
        page = 1
        while True:
            data = await self._t.request(
                "GET", "structures", params={"page": page, "page_size": page_size}
            )
            items, pages = pl.page_of(data)
            for x in items:
                yield StructureInfo.from_dict(x)
            if not items or (pages is not None and page >= pages):
                return
            page += 1

    async def list_builtin_structures(self) -> list[StructureInfo]:
        data = await self._t.request("GET", "structures/builtin")
        return [StructureInfo.from_dict(x) for x in pl.list_of(data, "structures")]

    async def download(self, url: str, dest: str | os.PathLike[str]) -> Path:
        target = Path(dest).expanduser()
        tmp = target.with_name(target.name + ".part")
        async with self._t.stream(url) as response:
            with open(tmp, "wb") as fh:
                async for chunk in response.aiter_bytes():
                    fh.write(chunk)
        tmp.replace(target)
        return target

    # --- system -----------------------------------------------------------------------------

    async def health(self) -> dict[str, Any]:
        response = await self._t.send("GET", "health")
        if response.status_code >= 400:
            decode(response)
        return pl.health_of(response.json())

    async def get_system_status(self) -> SystemStatus:
        health, gpus_data, queue = await asyncio.gather(
            self.health(),
            self._t.request("GET", "system/gpus"),
            self._t.request("GET", "system/queue"),
        )
        gpus = pl.list_of(gpus_data, "gpus", "devices")
        return SystemStatus(
            raw={"health": health, "gpus": gpus, "queue": queue},
            status=health.get("status"),
            version=health.get("version"),
            health=health,
            gpus=gpus,
            queue=queue if isinstance(queue, dict) else {"data": queue},
        )
