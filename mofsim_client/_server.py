"""The clients' methods for managing the server: a task's log pages and retention, model
loading and custom model removal, structure detail and removal, devices, queue,
configuration, alerts, system logs and the retention plan.

Each method is one request through the client's public ``request`` (so it gets the
same API key, retries and error mapping as every other call) and a typed view of the
answer.  ``ServerMethods`` is mixed into ``MOFSimClient``, ``AsyncServerMethods`` into
``AsyncMOFSimClient``; both build their requests with the same helpers below.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncGenerator, AsyncIterator, Generator, Iterator
from contextlib import aclosing, closing
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from mofsim_client.errors import ValidationError
from mofsim_client.models import LogEntry, StructureInfo, TaskEvent
from mofsim_client.server_models import (
    ALERT_KINDS,
    AlertList,
    Devices,
    LogPage,
    ModelRequest,
    ModelStatus,
    RetentionPlan,
)


def seg(value: str) -> str:
    """A model key, model id or file id as one path segment (``custom:ID`` keeps its
    colon)."""
    return quote(str(value), safe=":")


def as_dict(data: Any) -> dict[str, Any]:
    return dict(data) if isinstance(data, dict) else {"result": data}


def log_params(
    level: str | None, limit: int, offset: int, since: str | int | None
) -> dict[str, Any]:
    params: dict[str, Any] = {"limit": limit, "offset": offset}
    if level:
        params["level"] = level.upper()
    if since is not None:
        params["since"] = str(since)
    return params


def alert_params(
    kind: str, limit: int | None, offset: int | None = None, **filters: Any
) -> tuple[str, dict[str, Any]]:
    """The path and query of an alert list: ``level``, ``type`` (a name or a list of
    them), ``subject``, ``since``/``until`` (datetimes or RFC 3339 strings), ``resolved``;
    ``limit``/``offset`` page it."""
    if kind not in ALERT_KINDS:
        raise ValidationError(f"kind must be one of {', '.join(ALERT_KINDS)}", field="kind")
    params: dict[str, Any] = {}
    if limit is not None:
        params["limit"] = limit
    if offset:
        params.setdefault("limit", 100 if kind == "history" else 1000)
        params["skip"] = offset
    for name, value in filters.items():
        if value is None:
            continue
        if isinstance(value, bool):
            value = "true" if value else "false"
        elif isinstance(value, dt.datetime):
            aware = value if value.tzinfo else value.replace(tzinfo=dt.UTC)
            value = aware.isoformat().replace("+00:00", "Z")
        elif isinstance(value, (list, tuple, set)):
            value = ",".join(str(v) for v in value)
        params[name] = value
    return f"system/alerts/{kind}", params


def system_log_params(
    date: dt.date | str | None, kind: str, level: str | None, offset: int, limit: int
) -> dict[str, Any]:
    params: dict[str, Any] = {"kind": kind, "offset": offset, "limit": limit}
    if date is not None:
        params["date"] = date.isoformat() if isinstance(date, dt.date) else str(date)
    if level:
        params["level"] = level.upper()
    return params


def stream_params(level: str | None, tail: int) -> dict[str, Any]:
    params: dict[str, Any] = {"tail": tail} if tail else {}
    if level:
        params["level"] = level.upper()
    return params


class ServerMethods:
    """Mixed into ``MOFSimClient``."""

    if TYPE_CHECKING:

        def request(
            self, method: str, path: str, *, idempotent: bool | None = None, **kwargs: Any
        ) -> Any: ...

        def _events(
            self,
            path: str,
            last_event_id: str | None,
            params: dict[str, Any] | None,
            deadline: float | None = None,
        ) -> Generator[TaskEvent, None, None]: ...

    # --- tasks --------------------------------------------------------------------------------

    def get_log_page(
        self,
        task_id: str,
        level: str | None = None,
        limit: int = 100,
        offset: int = 0,
        since: str | int | None = None,
    ) -> LogPage:
        """A page of a task's events (log lines, status changes, progress), oldest first,
        with the ``total`` that match.  ``since`` (an event id or an ISO-8601 time)
        keeps only later events: pass the last page's ``last_id`` to read what is new."""
        params = log_params(level, limit, offset, since)
        return LogPage.of(self.request("GET", f"tasks/{seg(task_id)}/logs", params=params))

    def keep_task(self, task_id: str, keep: bool = True) -> dict[str, Any]:
        """Set (or, with ``keep=False``, clear) a task's keep flag: a kept task is never
        expired by the server's retention policy.  Returns ``{task_id, keep}``."""
        data = self.request(
            "POST", f"tasks/{seg(task_id)}/keep", json={"keep": keep}, idempotent=True
        )
        return as_dict(data)

    def delete_task_data(self, task_id: str) -> dict[str, Any]:
        """Delete a finished task's results and files (admin key); its record and log
        stay.  Returns ``{task_id, removed}``."""
        return as_dict(self.request("DELETE", f"tasks/{seg(task_id)}"))

    # --- models and structures ----------------------------------------------------------------

    def get_model_status(self, key: str) -> ModelStatus:
        return ModelStatus.from_dict(self.request("GET", f"models/{seg(key)}/status"))

    def load_model(self, key: str, slot: str | None = None) -> ModelRequest:
        """Ask the server's daemon to load a model (admin key) on ``slot`` (``gpu0``,
        ``cpu1``...) or any idle one.  Follow the outcome with ``get_model_status``."""
        body = {"slot": slot} if slot else {}
        return ModelRequest.from_dict(self.request("POST", f"models/{seg(key)}/load", json=body))

    def unload_model(self, key: str, slot: str | None = None) -> ModelRequest:
        """Ask the daemon to unload a model (admin key) from ``slot``, or from every slot
        holding it."""
        body = {"slot": slot} if slot else {}
        data = self.request("POST", f"models/{seg(key)}/unload", json=body)
        return ModelRequest.from_dict(data)

    def delete_model(self, model_id: str) -> dict[str, Any]:
        """Delete a custom model (admin key); slots holding it are asked to unload it."""
        return as_dict(self.request("DELETE", f"models/custom/{seg(model_id)}"))

    def get_structure(self, file_id: str) -> StructureInfo:
        """An uploaded structure: formula, atom count, cell, volume, density, elements."""
        return StructureInfo.from_dict(self.request("GET", f"structures/{seg(file_id)}"))

    def delete_structure(self, file_id: str) -> dict[str, Any]:
        """Delete an uploaded structure and the tasks that use it (queued ones are
        cancelled).  Returns ``{file_id, deleted, deleted_tasks, deleted_task_ids,
        cancelled_running_task_ids}``."""
        return as_dict(self.request("DELETE", f"structures/{seg(file_id)}"))

    # --- system -------------------------------------------------------------------------------

    def get_devices(self) -> Devices:
        return Devices.from_dict(self.request("GET", "system/gpus"))

    def get_queue(self) -> dict[str, Any]:
        """Queue statistics: ``queued`` (``total``, ``by_priority``, oldest age),
        ``by_state``, ``running``, ``slots`` and ``daemon_running``."""
        return as_dict(self.request("GET", "system/queue"))

    def get_config(self) -> dict[str, Any]:
        """The server's running configuration (admin key), secrets masked: ``config``
        and the limits derived from it, ``effective``."""
        return as_dict(self.request("GET", "system/config"))

    def get_alerts(
        self,
        kind: str = "active",
        limit: int | None = None,
        *,
        offset: int | None = None,
        level: str | list[str] | None = None,
        type: str | list[str] | None = None,
        subject: str | None = None,
        since: dt.datetime | str | None = None,
        until: dt.datetime | str | None = None,
        resolved: bool | None = None,
    ) -> AlertList:
        """The alert engine's ``active`` alerts, its ``history`` (newest first, a page of
        ``limit``, 100 by default, from ``offset``) or its ``rules``, filtered by
        ``level``, rule ``type``, ``subject``, time (``since``/``until``: when an entry
        fired, or resolved for a resolution) and, in the history, ``resolved``.
        ``.total`` counts every match."""
        path, params = alert_params(
            kind,
            limit,
            offset,
            level=level,
            type=type,
            subject=subject,
            since=since,
            until=until,
            resolved=resolved,
        )
        return AlertList.of(kind, self.request("GET", path, params=params))

    def get_system_logs(
        self,
        date: dt.date | str | None = None,
        kind: str = "system",
        level: str | None = None,
        offset: int = 0,
        limit: int = 1000,
    ) -> LogPage:
        """A page of one day (UTC, default today) of the server's ``system``, ``access``
        or ``audit`` log (admin key), archived days included.  ``level`` is a minimum."""
        params = system_log_params(date, kind, level, offset, limit)
        return LogPage.of(self.request("GET", "system/logs", params=params))

    def stream_system_logs(self, level: str | None = None, tail: int = 0) -> Iterator[LogEntry]:
        """The system log as it is written (admin key), starting with its last ``tail``
        lines; it goes on until you stop iterating."""
        path, params = "system/logs/stream", stream_params(level, tail)
        with closing(self._events(path, None, params)) as events:
            for ev in events:
                if ev.event == "log":
                    yield ev.as_log()

    def get_retention_plan(self) -> RetentionPlan:
        """What the server's retention policy would do now (admin key; a dry run: the
        server applies the policy itself, hourly)."""
        return RetentionPlan.from_dict(self.request("GET", "system/retention"))


class AsyncServerMethods:
    """Mixed into ``AsyncMOFSimClient``; see ``MOFSimClient`` for each method."""

    if TYPE_CHECKING:

        async def request(
            self, method: str, path: str, *, idempotent: bool | None = None, **kwargs: Any
        ) -> Any: ...

        def _events(
            self, path: str, last_event_id: str | None, params: dict[str, Any] | None
        ) -> AsyncGenerator[TaskEvent, None]: ...

    async def get_log_page(
        self,
        task_id: str,
        level: str | None = None,
        limit: int = 100,
        offset: int = 0,
        since: str | int | None = None,
    ) -> LogPage:
        params = log_params(level, limit, offset, since)
        return LogPage.of(await self.request("GET", f"tasks/{seg(task_id)}/logs", params=params))

    async def keep_task(self, task_id: str, keep: bool = True) -> dict[str, Any]:
        path = f"tasks/{seg(task_id)}/keep"
        return as_dict(await self.request("POST", path, json={"keep": keep}, idempotent=True))

    async def delete_task_data(self, task_id: str) -> dict[str, Any]:
        return as_dict(await self.request("DELETE", f"tasks/{seg(task_id)}"))

    async def get_model_status(self, key: str) -> ModelStatus:
        return ModelStatus.from_dict(await self.request("GET", f"models/{seg(key)}/status"))

    async def load_model(self, key: str, slot: str | None = None) -> ModelRequest:
        body = {"slot": slot} if slot else {}
        data = await self.request("POST", f"models/{seg(key)}/load", json=body)
        return ModelRequest.from_dict(data)

    async def unload_model(self, key: str, slot: str | None = None) -> ModelRequest:
        body = {"slot": slot} if slot else {}
        data = await self.request("POST", f"models/{seg(key)}/unload", json=body)
        return ModelRequest.from_dict(data)

    async def delete_model(self, model_id: str) -> dict[str, Any]:
        path = f"models/custom/{seg(model_id)}"
        return as_dict(await self.request("DELETE", path))

    async def get_structure(self, file_id: str) -> StructureInfo:
        return StructureInfo.from_dict(await self.request("GET", f"structures/{seg(file_id)}"))

    async def delete_structure(self, file_id: str) -> dict[str, Any]:
        path = f"structures/{seg(file_id)}"
        return as_dict(await self.request("DELETE", path))

    async def get_devices(self) -> Devices:
        return Devices.from_dict(await self.request("GET", "system/gpus"))

    async def get_queue(self) -> dict[str, Any]:
        return as_dict(await self.request("GET", "system/queue"))

    async def get_config(self) -> dict[str, Any]:
        return as_dict(await self.request("GET", "system/config"))

    async def get_alerts(
        self,
        kind: str = "active",
        limit: int | None = None,
        *,
        offset: int | None = None,
        level: str | list[str] | None = None,
        type: str | list[str] | None = None,
        subject: str | None = None,
        since: dt.datetime | str | None = None,
        until: dt.datetime | str | None = None,
        resolved: bool | None = None,
    ) -> AlertList:
        path, params = alert_params(
            kind,
            limit,
            offset,
            level=level,
            type=type,
            subject=subject,
            since=since,
            until=until,
            resolved=resolved,
        )
        return AlertList.of(kind, await self.request("GET", path, params=params))

    async def get_system_logs(
        self,
        date: dt.date | str | None = None,
        kind: str = "system",
        level: str | None = None,
        offset: int = 0,
        limit: int = 1000,
    ) -> LogPage:
        params = system_log_params(date, kind, level, offset, limit)
        return LogPage.of(await self.request("GET", "system/logs", params=params))

    async def stream_system_logs(
        self, level: str | None = None, tail: int = 0
    ) -> AsyncIterator[LogEntry]:
        path, params = "system/logs/stream", stream_params(level, tail)
        async with aclosing(self._events(path, None, params)) as events:
            async for ev in events:
                if ev.event == "log":
                    yield ev.as_log()

    async def get_retention_plan(self) -> RetentionPlan:
        return RetentionPlan.from_dict(await self.request("GET", "system/retention"))
