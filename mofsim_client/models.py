"""Typed views of what the server answers: task records, models, structures, system
status, log lines and stream events (the results per task type are in ``results.py``).

Every model is a dataclass built by ``from_dict``, which takes the fields it knows and
ignores the rest (a newer server may send more), and keeps the whole answer in ``.raw``.
Field names follow the server's JSON keys, units included (``final_energy_eV``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# Re-exported: code may import the base from here, where it lived before.
from mofsim_client._base import M as M
from mofsim_client._base import _Model as _Model

TERMINAL_STATES = frozenset({"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT"})


# --- tasks ----------------------------------------------------------------------------------


@dataclass
class TaskInfo(_Model):
    """A task record (``GET /api/v1/tasks/{id}``)."""

    task_id: str = ""
    task_type: str | None = None
    status: str | None = None
    priority: str | None = None
    model: str | None = None
    created_at: str | None = None
    started_at: str | None = None
    completed_at: str | None = None
    progress: float | None = None
    progress_detail: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    queue_position: int | None = None
    structure_name: str | None = None
    gpu_id: int | None = None
    slot: str | None = None
    attempts: int | None = None
    parameters: dict[str, Any] | None = None
    options: dict[str, Any] | None = None
    result_url: str | None = None
    request_id: str | None = None  # the X-Request-ID of the submitting request

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL_STATES

    @property
    def error_code(self) -> int | None:
        code = (self.error or {}).get("code")
        return code if isinstance(code, int) else None

    @property
    def error_message(self) -> str | None:
        message = (self.error or {}).get("message")
        return str(message) if message is not None else None


@dataclass
class CancelResult(_Model):
    """``status``: CANCELLED, or the state the task is still in (RUNNING, ASSIGNED)
    while it gets to its next step, ``cancel_requested`` then true."""

    task_id: str = ""
    status: str | None = None
    message: str | None = None
    cancel_requested: bool | None = None


# --- resources ------------------------------------------------------------------------------


@dataclass
class ModelInfo(_Model):
    key: str = ""
    name: str | None = None
    family: str | None = None
    description: str | None = None
    aliases: list[str] | None = None
    supported_tasks: list[str] | None = None
    elements: list[str] | None = field(default=None, repr=False)
    framework: str | None = None
    d3_trained: bool | None = None
    # Custom models: tasks add D3 unless they say (with_d3); the weights include it.
    with_d3: bool | None = None
    d3_included: bool | None = None
    loaded: bool | None = None
    loaded_on: list[str] | None = None
    model_id: str | None = None  # custom models
    validated: bool | None = None  # custom models: passed validation

    def __post_init__(self) -> None:
        if not self.key:  # MIRA says model_key; custom models have an id
            raw = self.raw
            self.key = str(raw.get("model_key") or raw.get("id") or raw.get("name") or "")


@dataclass
class StructureInfo(_Model):
    file_id: str | None = None
    name: str | None = None
    format: str | None = None
    filename: str | None = None
    size_bytes: int | None = None
    created_at: str | None = None
    formula: str | None = None
    natoms: int | None = None
    elements: list[str] | None = None
    volume: float | None = None
    density: float | None = None
    cell: Any = field(default=None, repr=False)
    spacegroup: str | None = None

    @property
    def reference(self) -> str:
        """What ``submit_*(structure=...)`` takes for this structure."""
        return self.file_id if self.file_id else f"builtin:{self.name}"


@dataclass
class SystemStatus(_Model):
    """``get_system_status()``: health, devices and the queue in one object."""

    status: str | None = None
    version: str | None = None
    health: dict[str, Any] = field(default_factory=dict)
    gpus: list[dict[str, Any]] = field(default_factory=list)
    queue: dict[str, Any] = field(default_factory=dict)

    @property
    def healthy(self) -> bool:
        return str(self.status).lower() in ("healthy", "ok", "ready")


# --- streams --------------------------------------------------------------------------------


@dataclass
class LogEntry(_Model):
    """One structured log line (spec 6.3)."""

    id: int | None = None
    timestamp: str | None = None
    level: str | None = None
    logger: str | None = None
    message: str = ""
    task_id: str | None = None
    gpu_id: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    event: str | None = None

    def __str__(self) -> str:
        return f"{self.timestamp or '-'} {self.level or 'INFO':<7} {self.message}"


@dataclass
class TaskEvent(_Model):
    """One event of a task's stream: ``log``, ``status``, ``progress`` or ``end`` from
    the server; ``disconnected`` / ``reconnected`` when the client lost and regained the
    server while following a task (``error`` says why)."""

    event: str = "log"
    id: str | None = None
    task_id: str | None = None
    status: str | None = None
    progress: float | None = None
    message: str | None = None
    level: str | None = None
    timestamp: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    error: Exception | None = None

    @classmethod
    def from_sse(cls, event: str, data: Any, event_id: str | None) -> TaskEvent:
        body = data if isinstance(data, dict) else {"message": data}
        raw_extra = body.get("extra")
        extra: dict[str, Any] = raw_extra if isinstance(raw_extra, dict) else {}
        status = extra.get("status") if event == "status" else body.get("status")
        progress = extra.get("progress")
        return cls(
            raw=body,
            event=event,
            id=event_id,
            task_id=body.get("task_id"),
            status=str(status) if status is not None else None,
            progress=float(progress) if isinstance(progress, int | float) else None,
            message=body.get("message"),
            level=body.get("level"),
            timestamp=body.get("timestamp"),
            extra=extra,
        )

    def as_log(self) -> LogEntry:
        entry = LogEntry.from_dict(self.raw)
        if self.id is not None and self.id.isdigit():
            entry.id = int(self.id)
        return entry


_MOVED_TO_RESULTS = frozenset(
    {
        "TaskResult",
        "CellParameters",
        "OptimizationResult",
        "StabilityResult",
        "BulkModulusResult",
        "HeatCapacityResult",
        "InteractionEnergyResult",
        "SinglePointResult",
        "result_from_dict",
    }
)


def __getattr__(name: str) -> Any:
    # The result classes lived here before they got a module of their own; code that
    # imported them from here keeps working (imported lazily: results imports this).
    if name in _MOVED_TO_RESULTS:
        from mofsim_client import results

        return getattr(results, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
