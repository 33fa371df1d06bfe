"""What a structure must satisfy before a given task with a given model runs on it.

One rule set for every entry point: ``mofsim submit``, the HTTP API, and the executor
itself (hand-written job files reach it without any other check).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from executors.structure_io import validate_atoms

if TYPE_CHECKING:
    from ase import Atoms

    from executors.models import ModelSpec


def allowed_elements(spec: ModelSpec | None) -> set[str] | None:
    if spec is None or not spec.elements or "all" in spec.elements:
        return None
    return set(spec.elements)


def check_for_task(
    atoms: Atoms, task_type: str, spec: ModelSpec | None, params: dict[str, Any] | None = None
) -> None:
    """Raise ``InvalidStructure`` (field ``structure``) when ``atoms`` cannot be run, or
    the task's own ``check_structure`` error (e.g. a guest index out of range) when
    its validated ``params`` do not fit this structure."""
    from executors.registry import task_module
    from executors.registry import task_type as task_type_spec

    validate_atoms(
        atoms,
        require_periodic=task_type_spec(task_type).periodic,
        allowed_elements=allowed_elements(spec),
    )
    if params is not None:
        check = getattr(task_module(task_type), "check_structure", None)
        if check is not None:
            check(params, atoms)
