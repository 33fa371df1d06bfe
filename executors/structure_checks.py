"""What a structure must satisfy before a given task with a given model runs on it.

One rule set for every entry point: ``mofsim submit``, the HTTP API, and the executor
itself (hand-written job files reach it without any other check).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from executors.structure_io import validate_atoms
from spool.limits import Limits

if TYPE_CHECKING:
    from ase import Atoms

    from executors.models import ModelSpec


def allowed_elements(spec: ModelSpec | None) -> set[str] | None:
    if spec is None or not spec.elements or "all" in spec.elements:
        return None
    return set(spec.elements)


def check_for_task(
    atoms: Atoms,
    task_type: str,
    spec: ModelSpec | None,
    params: dict[str, Any] | None = None,
    limits: Limits | None = None,
) -> None:
    """Raise ``InvalidStructure`` (field ``structure``) when ``atoms`` cannot be run, or
    the task's own ``check_structure`` error (e.g. a guest index out of range) when
    its validated ``params`` do not fit this structure, or a ValidationError when the
    calculation would hold more than ``limits.max_atoms`` atoms."""
    from executors.registry import task_module
    from executors.registry import task_type as task_type_spec

    validate_atoms(
        atoms,
        require_periodic=task_type_spec(task_type).periodic,
        allowed_elements=allowed_elements(spec),
    )
    if params is not None:
        module = task_module(task_type)
        check = getattr(module, "check_structure", None)
        if check is not None:
            check(params, atoms)
        # A task that builds bigger cells from the structure says by how much, and
        # which parameter does it (heat capacity's phonopy supercell).
        multiplier, field = 1, "structure"
        cells = getattr(module, "cell_multiplier", None)
        if cells is not None:
            multiplier, named = cells(params)
            field = f"parameters.{named}" if multiplier > 1 else field
        (limits or Limits()).check_atoms(len(atoms), multiplier, field)
