"""The contract between the executor shell and the task functions.

A task function is pure physics behind a thin shell: it receives a ``TaskContext``
(input atoms, a ready calculator, normalized parameters, a workspace directory and an
observer) and returns a JSON-safe result dict (plain floats, ints, strings, lists,
dicts; never numpy scalars).  Output files are written into ``ctx.workspace`` and
listed in the result under ``output_files`` as paths relative to the workspace.

Nothing here imports torch or ase at module import time.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from ase import Atoms
    from ase.calculators.calculator import Calculator


class Observer(Protocol):
    """Where a running task reports.  Implementations write events.jsonl lines."""

    def log(self, message: str, level: str = "INFO", **extra: Any) -> None: ...

    def progress(self, fraction: float | None, message: str = "", **metrics: Any) -> None:
        """``fraction`` in [0, 1] (None when unknown); metrics such as step, energy, fmax."""

    def check_cancel(self) -> None:
        """Raise ``spool.errors.TaskCancelled`` if a cancel was requested.
        Called at every optimizer/MD step boundary."""


class NullObserver:
    """For direct use of task functions from Python and in tests."""

    def __init__(self) -> None:
        self.logs: list[tuple[str, str, dict[str, Any]]] = []
        self.progress_events: list[tuple[float | None, str, dict[str, Any]]] = []

    def log(self, message: str, level: str = "INFO", **extra: Any) -> None:
        self.logs.append((level, message, extra))

    def progress(self, fraction: float | None, message: str = "", **metrics: Any) -> None:
        self.progress_events.append((fraction, message, metrics))

    def check_cancel(self) -> None:
        return None


@dataclass
class TaskContext:
    task_id: str
    task_type: str
    atoms: Atoms
    structure_name: str
    parameters: dict[str, Any]
    model_key: str
    calculator: Calculator
    workspace: Path
    observer: Observer = field(default_factory=NullObserver)
    device: str = "cpu"
    extra: dict[str, Any] = field(default_factory=dict)


def json_safe(value: Any) -> Any:
    """Turn numpy scalars/arrays and tuples into plain JSON types; NaN/inf to None."""
    try:
        import numpy as np
    except ImportError:  # pragma: no cover - numpy comes with ase
        np = None  # type: ignore[assignment]
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    if np is not None:
        if isinstance(value, np.ndarray):
            return json_safe(value.tolist())
        if isinstance(value, np.bool_):
            return bool(value)
        if isinstance(value, np.integer):
            return int(value)
        if isinstance(value, np.floating):
            value = float(value)
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Path):
        return str(value)
    return value
