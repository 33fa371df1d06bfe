"""Task-type registry: the modules of ``executors.tasks``, found rather than listed.

Every module of the ``executors.tasks`` package with a module-level ``TASK`` (an
``executors.task_types.TaskType``) is a task type.  Each such module also exports:

- ``SCHEMA``: its ``executors.params.ParamSchema`` (the API document's parameters).
- ``validate(parameters: dict) -> dict``: torch-free; normalizes the request's
  parameters (spec and MIRA names, ``"protocol": "mofsimbench"`` presets, defaults) and
  raises ``spool.errors.ValidationError`` with ``field`` set for bad values.  Called at
  submission (CLI, HTTP), at admission by the daemon, and again in the executor.
- ``run(ctx: executors.api.TaskContext) -> dict``: the physics; returns the JSON-safe
  ``result`` part of the seed's 5.3 result, including ``parameters_used``.
- optionally ``check_structure(parameters, atoms)``: checks needing both.

The table is built on first use and kept; ``reload`` rebuilds it (tests that add a
module).
"""

from __future__ import annotations

import importlib
import pkgutil
from functools import cache
from types import ModuleType
from typing import Any

from executors.task_types import TaskType
from spool.errors import ValidationError
from spool.job import task_type_token

PACKAGE = "executors.tasks"


@cache
def _table() -> tuple[dict[str, TaskType], dict[str, str], dict[str, str]]:
    """(canonical name -> spec, any name -> canonical name, canonical name -> module)."""
    package = importlib.import_module(PACKAGE)
    specs: dict[str, TaskType] = {}
    names: dict[str, str] = {}
    modules: dict[str, str] = {}
    for info in sorted(pkgutil.iter_modules(package.__path__), key=lambda m: m.name):
        module_name = f"{PACKAGE}.{info.name}"
        spec = getattr(importlib.import_module(module_name), "TASK", None)
        if not isinstance(spec, TaskType):
            continue  # a helper module, not a task type
        for name in spec.names:
            if name in names:
                raise RuntimeError(
                    f"task type name {name!r} of {module_name} is already taken by "
                    f"{modules[names[name]]}"
                )
            names[name] = spec.name
        specs[spec.name] = spec
        modules[spec.name] = module_name
    return dict(sorted(specs.items())), names, modules


def reload() -> None:
    """Forget the table; the next call finds the task modules again."""
    _table.cache_clear()


def task_types() -> dict[str, TaskType]:
    """Every task type, by canonical name, in name order."""
    return dict(_table()[0])


def task_type_names() -> list[str]:
    return list(_table()[0])


def task_type_aliases() -> dict[str, str]:
    """Alias -> canonical name, for every task type."""
    return {alias: spec.name for spec in _table()[0].values() for alias in spec.aliases}


def canonical_task_type(name: str) -> str:
    """The canonical name of the task type ``name`` names (any case, ``_`` or ``-``, an
    alias); ``ValidationError`` on field ``task_type`` when there is none."""
    if not isinstance(name, str):
        raise ValidationError("task_type must be a string", field="task_type")
    token = task_type_token(name)
    known = _table()[1]
    if token not in known:
        raise ValidationError(
            f"unknown task type {name!r}; expected one of {', '.join(task_type_names())}",
            field="task_type",
        )
    return known[token]


def task_type(name: str) -> TaskType:
    return _table()[0][canonical_task_type(name)]


def task_module(task_type: str) -> ModuleType:
    return importlib.import_module(_table()[2][canonical_task_type(task_type)])


def validate_parameters(task_type: str, parameters: dict[str, Any]) -> dict[str, Any]:
    return dict(task_module(task_type).validate(dict(parameters)))
