"""What a submission may ask for at most: atoms, steps, run time, queue length.

A request beyond these is refused when it is submitted (40001 naming the field, or
30006 when the queue is full) rather than accepted and left to exhaust a device, a disk
or the scheduler.  The values come from the daemon's configuration (``max_atoms``,
``max_steps``, ``max_timeout_s``, ``max_queued``, and where webhooks may go); the
defaults admit every structure and protocol of the MOFSimBench set with room to spare.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from spool.errors import ValidationError

DEFAULT_MAX_ATOMS = 20_000
DEFAULT_MAX_STEPS = 10_000_000
DEFAULT_MAX_TIMEOUT_S = 30 * 86400.0
DEFAULT_MAX_QUEUED = 10_000


@dataclass(frozen=True)
class Limits:
    # Atoms the calculation handles at once: the structure times any supercell the task
    # builds from it (heat capacity's phonopy supercell).
    max_atoms: int = DEFAULT_MAX_ATOMS
    # Any one step count of a task (optimizer steps, MD steps of one stage).
    max_steps: int = DEFAULT_MAX_STEPS
    max_timeout_s: float = DEFAULT_MAX_TIMEOUT_S
    # Job files waiting in the queue, all priorities together.
    max_queued: int = DEFAULT_MAX_QUEUED
    # Where a webhook may go (checked by mofsim_core.webhook_targets): internal
    # addresses only when allowed, all of them or those in the listed networks.
    webhook_allow_private: bool = False
    webhook_allowed_networks: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for name in ("max_atoms", "max_steps", "max_queued"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValidationError(f"config {name}: must be a whole number >= 1", field=name)
        t = self.max_timeout_s
        if (
            isinstance(t, bool)
            or not isinstance(t, int | float)
            or not (math.isfinite(t) and t > 0)
        ):
            raise ValidationError(
                "config max_timeout_s: must be a positive number of seconds", field="max_timeout_s"
            )

    def check_timeout(self, value: float | None, field: str = "options.timeout") -> None:
        if value is not None and value > self.max_timeout_s:
            raise ValidationError(
                f"timeout {value:g} s is over this server's limit of {self.max_timeout_s:g} s",
                field=field,
            )

    def check_steps(self, params: Mapping[str, Any], prefix: str = "parameters") -> None:
        """Every step count in validated ``params`` (keys ``steps`` or ``*_steps``, in
        nested stages too) is at most ``max_steps``."""
        for where, value in step_counts(params, prefix):
            if value > self.max_steps:
                raise ValidationError(
                    f"{where.rsplit('.', 1)[-1]} = {value:g} is over this server's limit of "
                    f"{self.max_steps} steps",
                    field=where,
                )

    def check_atoms(self, natoms: int, multiplier: int = 1, field: str = "structure") -> None:
        """``natoms`` times the copies the task makes of the structure; ``field`` names
        the parameter that makes them (the structure itself is named when it alone is
        over the limit)."""
        total = natoms * multiplier
        if total <= self.max_atoms:
            return
        if natoms > self.max_atoms or multiplier <= 1:
            made, field = f"{natoms}", "structure"
        else:
            made = f"{natoms} x {multiplier} = {total}"
        raise ValidationError(
            f"the calculation would hold {made} atoms; this server's limit is {self.max_atoms}",
            field=field,
        )


def step_counts(value: Any, where: str) -> Iterator[tuple[str, float]]:
    """``(field, count)`` of every number under a key named ``steps`` or ``*_steps``."""
    if isinstance(value, Mapping):
        for key, item in value.items():
            path = f"{where}.{key}"
            name = str(key)
            counted = name == "steps" or name.endswith("_steps")
            if counted and isinstance(item, int | float) and not isinstance(item, bool):
                yield path, item
            else:
                yield from step_counts(item, path)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from step_counts(item, f"{where}[{i}]")
