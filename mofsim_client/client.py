"""``MOFSimClient``: the blocking client.

    from mofsim_client import MOFSimClient

    client = MOFSimClient("http://server:8000", api_key="...")   # or MOFSIM_SERVER / _API_KEY
    task = client.submit_optimization("mof.cif", model="sevennet-0", fmax=0.05)
    result = task.wait(timeout=3600, on_progress=print)
    print(result.final_energy_eV, result.converged)

``AsyncMOFSimClient`` (``aclient.py``) has the same methods, awaited.
"""

from __future__ import annotations

import os
import time
from collections.abc import Generator, Iterable, Iterator, Mapping
from contextlib import closing
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

from mofsim_client import _payload as pl
from mofsim_client._bench import BenchMethods
from mofsim_client._http import Settings, decode
from mofsim_client._server import ServerMethods, seg
from mofsim_client._shortcuts import Priority, SubmitShortcuts
from mofsim_client._sse import Resume
from mofsim_client._transport import SyncTransport
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
from mofsim_client.task import Task

if TYPE_CHECKING:
    from mofsim_client.aclient import AsyncMOFSimClient


class MOFSimClient(SubmitShortcuts, ServerMethods, BenchMethods):
    """A client of one MOFSim server.

    ``base_url`` defaults to ``MOFSIM_SERVER`` (else http://127.0.0.1:8000),
    ``api_key`` to ``MOFSIM_API_KEY`` (sent as ``X-API-Key``); ``timeout`` is per
    request in seconds; ``retries`` is how often an idempotent request is retried after
    a connection failure or a proxy error (429/503 answers are waited out as the server's
    ``Retry-After`` says).  Further ``Settings`` fields may be given by name:
    ``backoff``, ``backoff_max``, ``retry_after_budget``, ``stream_read_timeout``,
    ``verify``, ``headers``.  Use it as a context manager, or call ``close()``."""

    def __init__(
        self,
        base_url: str | None = None,
        api_key: str | None = None,
        timeout: float | None = None,
        retries: int | None = None,
        *,
        settings: Settings | None = None,
        transport: httpx.BaseTransport | None = None,
        **options: Any,
    ) -> None:
        self.settings = settings or Settings.resolve(base_url, api_key, timeout, retries, **options)
        self._t = SyncTransport(self.settings, transport)

    @property
    def base_url(self) -> str:
        return self.settings.base_url

    def async_twin(self) -> AsyncMOFSimClient:
        """An async client with the same settings (server, key, retries), to close after
        use; what ``async for`` over a sync task's log runs on."""
        from mofsim_client.aclient import AsyncMOFSimClient

        return AsyncMOFSimClient(settings=self.settings)

    def close(self) -> None:
        self._t.close()

    def __enter__(self) -> MOFSimClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"MOFSimClient({self.base_url!r})"

    def request(
        self, method: str, path: str, *, idempotent: bool | None = None, **kwargs: Any
    ) -> Any:
        """One request to any endpoint, for what has no method of its own.

        ``path`` is relative to ``/api/v1`` (``"system/queue"``) or absolute
        (``"/health"``); ``kwargs`` are those of httpx's ``Client.request``
        (``params``, ``json``, ``data``, ``files``, ``content``, ``headers``,
        ``timeout``).  Returns the ``data`` of the answer's envelope (the decoded body
        when it has none).  An error answer raises the ``MOFSimError`` subclass of its
        code, as every other method does, and the request is retried as they are:
        GET, HEAD and OPTIONS after a lost connection or a proxy error, any method when
        the connection could not be opened or the server answered 429/503.
        ``idempotent=True`` retries another method like a GET (a request the server
        can safely receive twice), ``False`` never retries it after it went out."""
        return self._t.request(method, path, idempotent=idempotent, **kwargs)

    # --- submitting -------------------------------------------------------------------------

    def submit(
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
    ) -> Task:
        """Submit one task of any type (``model`` defaults to sevennet-0, which needs
        no download).  Keyword arguments not named here are the task's parameters
        (``fmax=0.01``, ``max_steps=500``); ``options`` takes the rest of spec 5.2's
        options (``notify_url``...).

        ``structure``: a CIF/XYZ/POSCAR file path (its text is sent with the task, so
        nothing stays stored on the server), an ASE ``Atoms`` (sent as CIF), an uploaded
        structure's id (``struct_...``, from ``upload_structure``: upload once, submit
        many), ``builtin:NAME``, or the text of a structure file."""
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
            data = self._t.request("POST", f"tasks/{body['task_type']}", json=body, idempotent=True)
        except MOFSimError as exc:
            if task_id is None and pl.is_duplicate_id(exc):
                # Our own id, so an earlier attempt of this call got through.
                return self.get_task(body["task_id"])
            raise
        info = TaskInfo.from_dict(data)
        return Task(self, info.task_id or body["task_id"], info)

    def submit_batch(self, tasks: Iterable[Mapping[str, Any]]) -> list[Task | MOFSimError]:
        """Submit up to 1000 tasks in one request.  Each dict has ``task_type``,
        ``structure``, optional ``model``, ``parameters``, ``priority``...  Returns, in
        the same order, a ``Task`` per accepted item and the error of each rejected one."""
        items = [pl.batch_item(t) for t in tasks]
        data = self._t.request("POST", "tasks/batch", json={"tasks": items})
        return [self._batch_outcome(entry, items) for entry in pl.list_of(data)]

    def _batch_outcome(
        self, entry: dict[str, Any], items: list[dict[str, Any]]
    ) -> Task | MOFSimError:
        if entry.get("accepted"):
            info = TaskInfo.from_dict(entry.get("task") or {})
            return Task(self, info.task_id, info)
        return pl.batch_error(entry, items)

    # --- tasks --------------------------------------------------------------------------------

    def get_task(self, task_id: str) -> Task:
        return Task(self, task_id, self.get_task_info(task_id))

    def get_task_info(self, task_id: str) -> TaskInfo:
        return TaskInfo.from_dict(self._t.request("GET", f"tasks/{task_id}"))

    def get_result(self, task_id: str) -> TaskResult:
        return result_from_dict(self._t.request("GET", f"tasks/{task_id}/result"))

    def cancel_task(self, task_id: str) -> CancelResult:
        data = self._t.request("POST", f"tasks/{task_id}/cancel", idempotent=True)
        return CancelResult.from_dict(data)

    def wait(self, task_id: str, timeout: float | None = None, **kw: Any) -> TaskResult:
        return Task(self, task_id).wait(timeout, **kw)

    def list_tasks(
        self,
        status: str | list[str] | None = None,
        task_type: str | None = None,
        model: str | None = None,
        page_size: int = 100,
        limit: int | None = None,
        order: str | None = None,
    ) -> Iterator[TaskInfo]:
        """Every matching task, newest first, fetched a page at a time as you iterate.
        ``order`` sorts otherwise: a field (``created_at``, ``started_at``,
        ``completed_at``, ``priority``...) and ``asc`` or ``desc``, such as
        ``"completed_at desc"``."""
        params = pl.list_params(status, task_type, model)
        if order:
            params["order"] = order
        seen: set[str] = set()
        page = 1
        while True:
            data = self._t.request(
                "GET", "tasks", params={**params, "page": page, "page_size": page_size}
            )
            items, pages = pl.page_of(data)
            for item in items:
                info = TaskInfo.from_dict(item)
                if info.task_id in seen:
                    continue  # shifted onto this page by a newer task
                seen.add(info.task_id)
                yield info
                if limit is not None and len(seen) >= limit:
                    return
            if not items or (pages is not None and page >= pages):
                return
            page += 1

    def get_logs(
        self, task_id: str, level: str | None = None, limit: int = 100, offset: int = 0
    ) -> list[LogEntry]:
        params: dict[str, Any] = {"limit": limit, "offset": offset}
        if level:
            params["level"] = level
        data = self._t.request("GET", f"tasks/{task_id}/logs", params=params)
        return [LogEntry.from_dict(x) for x in pl.list_of(data)]

    def stream_logs(self, task_id: str, level: str | None = None) -> Iterator[LogEntry]:
        """The task's log lines as they are written, from its first; ends with the task."""
        params = {"types": "log", **({"level": level} if level else {})}
        with closing(self._events(f"tasks/{task_id}/logs/stream", None, params)) as events:
            for ev in events:
                if ev.event == "log":
                    yield ev.as_log()

    def stream_events(self, task_id: str, last_event_id: str | None = None) -> Iterator[TaskEvent]:
        """Every ``log``/``status``/``progress`` event, then ``end``.  A dropped connection
        is reopened where it broke off (``Last-Event-ID``)."""
        with closing(self._task_events(task_id, last_event_id)) as events:
            for ev in events:
                if ev.event != "heartbeat":
                    yield ev

    def _task_events(
        self, task_id: str, last_event_id: str | None, deadline: float | None = None
    ) -> Generator[TaskEvent, None, None]:
        return self._events(f"tasks/{task_id}/events", last_event_id, None, deadline)

    def _events(
        self,
        path: str,
        last_event_id: str | None,
        params: dict[str, Any] | None,
        deadline: float | None = None,
    ) -> Generator[TaskEvent, None, None]:
        """An SSE stream followed across reconnects until its ``end`` event.  Comments
        come out as ``heartbeat`` events (the wait checks its deadline on them)."""
        s = self.settings
        resume = Resume(last_event_id, s.retries, s.backoff, s.backoff_max)
        while True:
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                return
            read = (
                s.stream_read_timeout
                if left is None
                else min(s.stream_read_timeout, max(0.5, left))
            )
            try:
                with self._t.stream(
                    path, params=params, headers=resume.headers(), read_timeout=read
                ) as response:
                    parser = resume.parser()
                    for line in response.iter_lines():
                        comments = parser.comments
                        sse = parser.feed(line)
                        if sse is None:
                            if parser.comments != comments:
                                yield TaskEvent(event="heartbeat")
                            continue
                        resume.seen(sse)
                        event = TaskEvent.from_sse(sse.event, sse.json(), sse.id)
                        yield event
                        if sse.event == "end":
                            return
            except httpx.TransportError as exc:
                why: str = f"{type(exc).__name__}: {exc}"
            else:
                why = "the server closed the stream"
            delay = resume.dropped()
            if delay is None:
                raise ServerUnavailableError(f"event stream {path} keeps dropping ({why})")
            time.sleep(delay)

    # --- models and structures ----------------------------------------------------------------

    def list_models(self, family: str | None = None) -> list[ModelInfo]:
        """Every model the server knows (built-in and custom), or one ``family``'s."""
        params = {"family": family} if family else None
        data = self._t.request("GET", "models", params=params)
        return [ModelInfo.from_dict(m) for m in pl.list_of(data, "models")]

    def get_model(self, name: str) -> ModelInfo:
        return ModelInfo.from_dict(self._t.request("GET", f"models/{seg(name)}"))

    def upload_model(
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
        """Upload custom weights (spec 3.4), to validate with ``validate_model``.
        ``with_d3``: its tasks add D3 unless they say otherwise; ``d3_included``: the
        weights include D3 (a task asking for D3 then needs ``force_d3``); ``config``:
        what the loader reads, and for ``framework="pytorch"`` (a TorchScript archive)
        its interface (``inputs``, ``outputs``, ``units``...; see the docs)."""
        file = Path(path).expanduser()
        fields = {**fields, "d3_included": d3_included}
        form = pl.model_upload_fields(name, framework, description, with_d3, config, fields)
        with open(file, "rb") as fh:
            data = self._t.request(
                "POST", "models/custom", data=form, files={"file": (file.name, fh)}, timeout=None
            )
        return ModelInfo.from_dict(data)

    def validate_model(self, model_id: str) -> dict[str, Any]:
        data = self._t.request("POST", f"models/custom/{seg(model_id)}/validate", timeout=None)
        return dict(data) if isinstance(data, dict) else {"result": data}

    def upload_structure(
        self,
        path_or_content: str | bytes | os.PathLike[str],
        name: str | None = None,
        format: str | None = None,
    ) -> StructureInfo:
        """Upload a CIF/XYZ/POSCAR file (a path) or its text; the returned
        ``.file_id`` is what ``submit_*(structure=...)`` takes."""
        files, form = pl.upload_parts(path_or_content, name, format)
        return StructureInfo.from_dict(
            self._t.request("POST", "structures", files=files, data=form)
        )

    def list_structures(self, page_size: int = 100) -> Iterator[StructureInfo]:
        page = 1
        while True:
            data = self._t.request(
                "GET", "structures", params={"page": page, "page_size": page_size}
            )
            items, pages = pl.page_of(data)
            yield from (StructureInfo.from_dict(x) for x in items)
            if not items or (pages is not None and page >= pages):
                return
            page += 1

    def list_builtin_structures(self) -> list[StructureInfo]:
        data = self._t.request("GET", "structures/builtin")
        return [StructureInfo.from_dict(x) for x in pl.list_of(data, "structures")]

    def download(self, url: str, dest: str | os.PathLike[str]) -> Path:
        """Save an output file (a URL from ``result.output_files``) to ``dest``."""
        target = Path(dest).expanduser()
        tmp = target.with_name(target.name + ".part")
        with self._t.stream(url) as response, open(tmp, "wb") as fh:
            for chunk in response.iter_bytes():
                fh.write(chunk)
        tmp.replace(target)
        return target

    # --- system -----------------------------------------------------------------------------

    def health(self) -> dict[str, Any]:
        response = self._t.send("GET", "health")
        if response.status_code >= 400:
            decode(response)  # raises the mapped error
        return pl.health_of(response.json())

    def get_system_status(self) -> SystemStatus:
        health = self.health()
        gpus = pl.list_of(self._t.request("GET", "system/gpus"), "gpus", "devices")
        queue = self._t.request("GET", "system/queue")
        return SystemStatus(
            raw={"health": health, "gpus": gpus, "queue": queue},
            status=health.get("status"),
            version=health.get("version"),
            health=health,
            gpus=gpus,
            queue=queue if isinstance(queue, dict) else {"data": queue},
        )
