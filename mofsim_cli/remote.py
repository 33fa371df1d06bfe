"""``RemoteBackend``: the commands' ``Backend`` through the SDK (``--server URL``).

It answers with the documents ``LocalBackend`` gives for the same task, so every
command prints the same in both modes: task records become ``views.task_view``s, a
failed task's result is the error the task recorded (read from its record, as locally),
and output files are absolute URLs on the server where locally they are paths.

The SDK's errors become the project's own (``spool.errors``, by the server's code and
type), so a server's refusal ends as the same ``error CODE: message (field: ...)`` line.
A server that cannot be reached at all is ``ServerUnreachable`` (code 10001).

Every call is a public method of the SDK; the answers are their ``.raw`` documents,
which are what the local service functions return.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from executors.registry import canonical_task_type
from mofsim_cli.backend_protocol import Submission, upload_file
from mofsim_cli.views import LIST_KEYS, failure_of, result_view_of, task_view
from mofsim_core.task_options import check_expected_duration
from spool.errors import (
    ERROR_CODES,
    EndpointNotFound,
    InternalError,
    MofsimError,
    ValidationError,
    error_from_code,
)
from spool.events import Event
from spool.job import normalize_priority, priority_name
from spool.states import TERMINAL_STATES

T = TypeVar("T")
LOG_PAGE = 1000  # the server's largest page


class ServerUnreachable(InternalError):
    """The server did not answer (connection refused, timeouts, a proxy without it),
    even after the SDK's retries."""


def _spool_class(name: str | None, code: int) -> type[MofsimError] | None:
    """The project's exception class called ``name`` that carries ``code``."""
    pending: list[type[MofsimError]] = list(MofsimError.__subclasses__())
    while pending:
        cls = pending.pop()
        if cls.__name__ == name:
            return cls if ERROR_CODES[cls.code_name].code == code else None
        pending.extend(cls.__subclasses__())
    return None


def translate(exc: Exception) -> MofsimError:
    """An SDK error as the project's error of the same code, type, message and field.
    The message is the server's ``detail`` (what went wrong with this request), not the
    code's summary."""
    code = getattr(exc, "code", None)
    message = str(getattr(exc, "detail", None) or getattr(exc, "message", None) or exc)
    field = getattr(exc, "field", None)
    if not isinstance(code, int):
        if getattr(exc, "http_status", None) == 404:
            return EndpointNotFound(f"{message}: is --server the root URL of a MOFSim server?")
        return ServerUnreachable(str(getattr(exc, "message", None) or exc))
    cls = _spool_class(getattr(exc, "error_type", None), code)
    if cls is not None:
        return cls(message, field=field)
    return error_from_code(code, message, field)


@contextlib.contextmanager
def translated() -> Iterator[None]:
    from mofsim_client import MOFSimError as SdkError

    try:
        yield
    except SdkError as exc:
        raise translate(exc) from None


def structure_ref(arg: str) -> dict[str, Any]:
    """The task's ``structure`` as ``mofsim submit`` builds it locally: ``builtin:NAME``,
    ``upload:FILE_ID``, or a file sent inline with its name and format.  The server
    checks it."""
    from mofsim_cli.submission import read_structure_file

    if arg.startswith(("builtin:", "upload:")):
        source, _, name = arg.partition(":")
        return (
            {"source": "builtin", "name": name}
            if source == "builtin"
            else {"source": "upload", "file_id": name}
        )
    path, text = read_structure_file(arg)
    ref: dict[str, Any] = {
        "source": "inline",
        "content": text,
        "name": path.stem,
        "filename": path.name,
    }
    try:
        from executors.structure_io import detect_format, format_from_filename
    except ModuleNotFoundError:
        return ref  # the server tells the format from the file name or the content
    fmt = format_from_filename(path.name) or detect_format(text)
    if fmt is not None:
        ref["format"] = fmt
    return ref


def _event(raw: dict[str, Any], event_id: Any) -> Event | None:
    """A stream event or a log item as the spool's ``Event`` (its id is the offset in
    the task's ``events.jsonl``)."""
    offset = int(event_id) if str(event_id).isdigit() else None
    if offset is None:
        return None
    return Event(offset, {k: v for k, v in raw.items() if k != "id"})


class RemoteFollower:
    """A task's events from the server's stream, until its ``end`` event."""

    def __init__(self, client: Any, task_id: str) -> None:
        self.client = client
        self.task_id = task_id
        self.state: str | None = None

    def __iter__(self) -> Iterator[Event]:
        with translated():
            for ev in self.client.stream_events(self.task_id):
                if ev.event == "end":
                    self.state = str(ev.raw.get("status") or ev.status or "") or None
                    return
                converted = _event(ev.raw, ev.id)
                if converted is not None:
                    yield converted


class RemoteBackend:
    """A MOFSim server, through ``mofsim_client.MOFSimClient``."""

    def __init__(self, server: str, api_key: str | None) -> None:
        from mofsim_client import MOFSimClient

        self.client = MOFSimClient(server, api_key=api_key or None)
        self.where = f"server {self.client.base_url}"

    def close(self) -> None:
        self.client.close()

    def _call(self, fn: Callable[..., T], *args: Any, **kw: Any) -> T:
        with translated():
            return fn(*args, **kw)

    # --- tasks -----------------------------------------------------------------------------

    def submit(self, sub: Submission) -> dict[str, Any]:
        # The checks that need nothing from the server are made here, with the same
        # messages as locally; the server checks the rest.
        task_type = canonical_task_type(sub.task_type)
        priority = priority_name(normalize_priority(sub.priority))
        if sub.timeout is not None and not (math.isfinite(sub.timeout) and sub.timeout > 0):
            raise ValidationError(
                "--timeout must be a positive number of seconds", field="options.timeout"
            )
        ref = structure_ref(sub.structure)
        options: dict[str, Any] = {}
        if sub.expected_duration is not None:
            options["expected_duration"] = check_expected_duration(sub.expected_duration)
        task = self._call(
            self.client.submit,
            task_type,
            ref,
            sub.model,
            priority=priority,
            timeout=sub.timeout,
            parameters=sub.params,
            options=options,
        )
        return task_view(task.info.raw)

    def status(self, task_id: str) -> dict[str, Any]:
        return task_view(self._call(self.client.get_task_info, task_id).raw)

    def result(self, task_id: str) -> dict[str, Any]:
        from mofsim_client import MOFSimError as SdkError
        from mofsim_client import ResultNotReadyError, TaskError

        try:
            doc = self.client.get_result(task_id).raw
        except SdkError as exc:
            if isinstance(exc, TaskError) and not isinstance(exc, ResultNotReadyError):
                # The error the task itself recorded, as the local view reads it.
                record = self.status(task_id)
                if record["status"] in TERMINAL_STATES and record["status"] != "COMPLETED":
                    raise failure_of(record) from None
            raise translate(exc) from None
        inner = doc.get("result") if isinstance(doc.get("result"), dict) else {}
        urls = inner.get("output_files") if isinstance(inner, dict) else None
        files = {
            str(k): self._absolute(str(v)) for k, v in (urls or {}).items() if isinstance(v, str)
        }
        return result_view_of(doc, files, None)

    def _absolute(self, url: str) -> str:
        return self.client.base_url + url if url.startswith("/") else url

    def events(self, task_id: str, level: str | None) -> Iterator[Event]:
        offset = 0
        while True:
            page = self._call(
                self.client.get_logs, task_id, level=level, limit=LOG_PAGE, offset=offset
            )
            for entry in page:
                ev = _event(entry.raw, entry.raw.get("id"))
                if ev is not None:
                    yield ev
            if len(page) < LOG_PAGE:
                return
            offset += len(page)

    def follow(self, task_id: str) -> RemoteFollower:
        self.status(task_id)  # an unknown task is an error before anything is shown
        return RemoteFollower(self.client, task_id)

    def cancel(self, task_id: str) -> str:
        return str(self._call(self.client.cancel_task, task_id).status)

    def list_tasks(self, state: str | None, limit: int) -> list[dict[str, Any]]:
        size = min(limit, LOG_PAGE) if limit else 100
        with translated():
            return [
                task_view(info.raw, keys=LIST_KEYS)
                for info in self.client.list_tasks(
                    status=state, page_size=size, limit=limit or None
                )
            ]

    # --- models ----------------------------------------------------------------------------

    def models(self, family: str | None) -> list[dict[str, Any]]:
        return [m.raw for m in self._call(self.client.list_models, family)]

    def model(self, key: str) -> dict[str, Any]:
        return self._call(self.client.get_model, key).raw

    def model_status(self, key: str) -> dict[str, Any]:
        return self._call(self.client.get_model_status, key).raw

    def model_action(self, key: str, action: str, slot: str | None) -> dict[str, Any]:
        if action not in ("load", "unload"):
            raise ValidationError("action must be load or unload", field="action")
        method = self.client.load_model if action == "load" else self.client.unload_model
        return self._call(method, key, slot).raw

    def upload_model(self, path: Path, fields: dict[str, Any]) -> dict[str, Any]:
        source = upload_file(path, "model")
        extra = {
            k: v
            for k, v in fields.items()
            if k not in ("name", "framework", "description", "with_d3")
        }
        info = self._call(
            self.client.upload_model,
            source,
            fields.get("name") or "",
            fields.get("framework") or "",
            description=fields.get("description"),
            with_d3=fields.get("with_d3"),
            **extra,
        )
        return info.raw

    def validate_model(self, model_id: str) -> dict[str, Any]:
        return self._call(self.client.validate_model, model_id)

    def delete_model(self, model_id: str) -> dict[str, Any]:
        return self._call(self.client.delete_model, model_id)

    # --- structures ------------------------------------------------------------------------

    def upload_structure(self, path: Path, name: str | None) -> dict[str, Any]:
        source = upload_file(path, "structure")
        return self._call(self.client.upload_structure, source, name=name).raw

    def structures(self) -> list[dict[str, Any]]:
        with translated():
            return [s.raw for s in self.client.list_structures()]

    def structure(self, file_id: str) -> dict[str, Any]:
        return self._call(self.client.get_structure, file_id).raw

    def delete_structure(self, file_id: str) -> dict[str, Any]:
        return self._call(self.client.delete_structure, file_id)

    def builtin_structures(self) -> list[dict[str, Any]]:
        return [s.raw for s in self._call(self.client.list_builtin_structures)]

    # --- system ----------------------------------------------------------------------------

    def health(self) -> dict[str, Any]:
        return self._call(self.client.health)

    def gpus(self) -> dict[str, Any]:
        return self._call(self.client.get_devices).raw

    def queue(self) -> dict[str, Any]:
        return self._call(self.client.get_queue)

    def config(self) -> dict[str, Any]:
        return self._call(self.client.get_config)

    def alerts(self, kind: str, filters: dict[str, str] | None = None) -> dict[str, Any]:
        named: dict[str, Any] = dict(filters or {})
        limit = int(named.pop("limit")) if "limit" in named else None
        return self._call(self.client.get_alerts, kind, limit, **named).raw

    # --- retention -------------------------------------------------------------------------

    def retention(self, apply: bool) -> dict[str, Any]:
        if apply:
            raise ValidationError(
                "a server applies its retention policy itself, hourly; "
                "through a server only --dry-run is possible",
                field="dry_run",
            )
        return {**self._call(self.client.get_retention_plan).raw, "applied": False}

    def keep(self, task_id: str, keep: bool) -> dict[str, Any]:
        return self._call(self.client.keep_task, task_id, keep)

    def delete_data(self, task_id: str) -> dict[str, Any]:
        return self._call(self.client.delete_task_data, task_id)
