"""The ``[slurm]`` section of ``etc/mofsim.toml``: pilots on a Slurm cluster.

Used when the daemon's ``slots = "slurm"``: instead of the machine's own cards, the
daemon keeps between ``min_pilots`` and ``max_pilots`` batch jobs ("pilots"), each a
warm executor on its allocation serving the shared spool.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from spool.errors import ValidationError

ON_STOP = ("cancel", "drain", "keep")


@dataclass(frozen=True)
class SlurmSettings:
    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    # Generic resources per pilot, e.g. "gpu:1"; unset: a CPU pilot.
    gres: str | None = None
    cpus: int = 1
    memory: str | None = None  # sbatch --mem, e.g. "16G"
    time_limit: str = "04:00:00"  # sbatch --time
    min_pilots: int = 0
    max_pilots: int = 4
    # An idle pilot above min_pilots leaves after this many seconds.
    idle_s: float = 600.0
    # A pilot takes no task its time limit would cut (a task's options.expected_duration,
    # else its timeout, must fit in what is left), and leaves when less than this is left.
    leave_before_end_s: float = 120.0
    sbatch_options: tuple[str, ...] = ()
    # Sourced on the node before the pilot starts: a virtual environment's folder (its
    # bin/activate) or a shell line ("module load cuda; conda activate mofsim").
    # Unset: the daemon's own Python, which must then be reachable at the same path.
    python_env: str | None = None
    # On `mofsim daemon` stop: scancel the pilots, let them leave, or keep them for the
    # next daemon to adopt (tasks they run finish there).
    on_stop: str = "cancel"
    # How often squeue is asked; after how many seconds without a heartbeat a pilot that
    # Slurm reports ended is taken for gone.
    poll_s: float = 2.0
    heartbeat_stale_s: float = 10.0
    # An idle pilot that hears nothing from the daemon this long (the daemon is gone and
    # not back: on_stop = "keep" without a restart, a crash) leaves; 0: never.
    abandon_after_s: float = 900.0

    @property
    def ping_every_s(self) -> float:
        return max(0.5, min(30.0, self.abandon_after_s / 4))

    def __post_init__(self) -> None:
        if self.on_stop not in ON_STOP:
            raise ValidationError(
                f"slurm.on_stop must be one of {', '.join(ON_STOP)}", field="slurm.on_stop"
            )
        if not 0 <= self.min_pilots <= self.max_pilots or self.max_pilots < 1:
            raise ValidationError(
                "slurm: 0 <= min_pilots <= max_pilots and max_pilots >= 1 expected",
                field="slurm.max_pilots",
            )
        if parse_time_limit(self.time_limit) is None and self.time_limit.upper() not in (
            "UNLIMITED",
            "INFINITE",
        ):
            raise ValidationError(
                f"slurm.time_limit {self.time_limit!r}: expected Slurm's form, e.g. 04:00:00",
                field="slurm.time_limit",
            )
        if self.cpus < 1:
            raise ValidationError("slurm.cpus must be at least 1", field="slurm.cpus")

    @property
    def time_limit_s(self) -> float | None:
        """The time limit in seconds; None when unlimited or not understood."""
        return parse_time_limit(self.time_limit)

    @property
    def gpu(self) -> bool:
        return bool(self.gres) and "gpu" in str(self.gres)

    def sbatch_args(self) -> list[str]:
        args = [f"--cpus-per-task={self.cpus}", f"--time={self.time_limit}"]
        for flag, value in (
            ("--partition", self.partition),
            ("--account", self.account),
            ("--qos", self.qos),
            ("--gres", self.gres),
            ("--mem", self.memory),
        ):
            if value:
                args.append(f"{flag}={value}")
        return args + list(self.sbatch_options)

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> SlurmSettings:
        data = dict(data or {})
        kinds = {f.name: str(f.type) for f in fields(cls)}
        unknown = sorted(set(data) - set(kinds))
        if unknown:
            raise ValidationError(f"unknown [slurm] settings: {', '.join(unknown)}", field="slurm")
        values: dict[str, Any] = {}
        for name, value in data.items():
            kind = kinds[name]
            try:
                if kind == "int":
                    values[name] = int(value)
                elif kind == "float":
                    values[name] = float(value)
                elif kind == "tuple[str, ...]":
                    items = value.split() if isinstance(value, str) else list(value)
                    values[name] = tuple(str(i) for i in items)
                else:
                    values[name] = None if value in ("", None) else str(value)
            except (TypeError, ValueError) as exc:
                raise ValidationError(
                    f"slurm.{name}: {value!r} is not a valid {kind}", field=f"slurm.{name}"
                ) from exc
        return cls(**values)


def parse_time_limit(text: str) -> float | None:
    """Slurm's forms: M, M:S, H:M:S, D-H, D-H:M, D-H:M:S; UNLIMITED / INFINITE: None."""
    text = str(text).strip()
    if not text or text.upper() in ("UNLIMITED", "INFINITE"):
        return None
    days = 0
    if "-" in text:
        head, text = text.split("-", 1)
        if not head.isdigit():
            return None
        days = int(head)
        parts = text.split(":")
        units = [3600, 60, 1][: len(parts)]
    else:
        parts = text.split(":")
        units = {1: [60], 2: [60, 1], 3: [3600, 60, 1]}.get(len(parts), [])
    if not units or len(units) != len(parts) or not all(p.isdigit() for p in parts):
        return None
    return float(days * 86400 + sum(int(p) * u for p, u in zip(parts, units, strict=True)))
