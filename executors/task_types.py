"""What a task module says about itself: its name and everything keyed by it.

Every module of ``executors.tasks`` that defines a module-level ``TASK = TaskType(...)``
is a task type; ``executors.registry`` finds them, and the routes, the models' supported
tasks, the OpenAPI enums, the metrics' labels and job validation all read that one
table.  Adding a task type is adding such a module (and its tests).

A task module must stay cheap to import: the registry imports every one of them to read
``TASK``, so heavy packages (ase, torch, phonopy) are imported inside functions.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from spool.job import task_type_token


@dataclass(frozen=True)
class TaskType:
    """``name``: the canonical name (the route, the job files' ``task_type``);
    ``aliases``: other names accepted for it wherever a task type is named (routes
    included); ``summary``: one line for listings and the API document;
    ``periodic``: the task needs a full periodic cell; ``mira_result_aliases``: the
    MIRA guide's key -> ours in this task's result; ``key_metrics``: the few result
    keys a MIRA summary shows (MIRA names where it has them); ``mira_capabilities``:
    the words of the guide's ``supported_tasks`` (energy, forces, stress,
    optimization, md) a model that runs this task type offers."""

    name: str
    summary: str
    aliases: tuple[str, ...] = ()
    periodic: bool = False
    mira_result_aliases: Mapping[str, str] = field(default_factory=dict)
    key_metrics: tuple[str, ...] = ()
    mira_capabilities: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for name in (self.name, *self.aliases):
            if task_type_token(name) != name:
                raise ValueError(
                    f"task type name {name!r} is not in canonical form "
                    "(lowercase letters, digits and single hyphens)"
                )
        # Frozen all the way down: the table is shared by every caller.
        object.__setattr__(
            self, "mira_result_aliases", MappingProxyType(dict(self.mira_result_aliases))
        )

    @property
    def names(self) -> tuple[str, ...]:
        """Every name this task type answers to, the canonical one first."""
        return (self.name, *self.aliases)
