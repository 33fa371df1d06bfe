"""Task-type registry: task type -> module holding ``validate`` and ``run``.

Each task module exports two functions:

- ``validate(parameters: dict) -> dict``: torch-free; normalizes the request's
  parameters (spec and MIRA names, ``"protocol": "mofsimbench"`` presets, defaults) and
  raises ``spool.errors.ValidationError`` with ``field`` set for bad values.  Called at
  submission (CLI, HTTP) and again in the executor.
- ``run(ctx: executors.api.TaskContext) -> dict``: the physics; returns the JSON-safe
  ``result`` part of the seed's 5.3 result, including ``parameters_used``.

Modules are imported on first use so that importing this registry stays cheap.
"""

from __future__ import annotations

import importlib
import importlib.util
from types import ModuleType
from typing import Any

from spool.errors import ValidationError
from spool.job import normalize_task_type

TASK_MODULES: dict[str, str] = {
    "single-point-energy": "executors.tasks.single_point",
    "optimization": "executors.tasks.optimization",
    "stability": "executors.tasks.stability",
    "bulk-modulus": "executors.tasks.bulk_modulus",
    "heat-capacity": "executors.tasks.heat_capacity",
    "interaction-energy": "executors.tasks.interaction_energy",
}


def available_task_types() -> list[str]:
    """Task types whose module is present in this installation."""
    out = []
    for name, module in TASK_MODULES.items():
        if importlib.util.find_spec(module) is not None:
            out.append(name)
    return out


def task_module(task_type: str) -> ModuleType:
    task_type = normalize_task_type(task_type)
    module = TASK_MODULES[task_type]
    if importlib.util.find_spec(module) is None:
        raise ValidationError(
            f"task type {task_type!r} is not available in this build", field="task_type"
        )
    return importlib.import_module(module)


def validate_parameters(task_type: str, parameters: dict[str, Any]) -> dict[str, Any]:
    return dict(task_module(task_type).validate(dict(parameters)))
