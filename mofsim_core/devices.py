"""Device inventory: the slots the supervisor drives and how each device is doing.

Every backend answers the same small protocol: the slots it offers, and one status per
slot. ``status()`` never raises for a single misbehaving device: a lost card is reported
as unavailable with the error text, so the scheduler can route around it.

The backends: NVIDIA cards through NVML (``devices_nvml``), CPU slots on a machine
without GPUs (``devices_cpu``), simulated cards whose faults can be injected at will
(``devices_simulated``), and no local slot at all (``NoLocalSlots``, below); which one
a slots setting means is decided in ``devices_factory``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal, Protocol

from spool.errors import ValidationError

SlotKind = Literal["nvml", "cpu", "simulate"]
MAX_SLOTS = 256
BYTES_PER_MB = 1024 * 1024


@dataclass(frozen=True)
class Slot:
    slot_id: str  # "gpu0", "cpu0", "sim0"
    kind: SlotKind
    index: int
    name: str
    # Value for CUDA_VISIBLE_DEVICES in the executor; "" hides every GPU from torch.
    cuda_visible: str | None


@dataclass
class DeviceStatus:
    slot_id: str
    name: str
    memory_total_mb: int | None
    memory_used_mb: int | None
    memory_free_mb: int | None
    utilization_percent: float | None
    temperature_c: float | None
    available: bool
    error: str | None = None

    @classmethod
    def unavailable(cls, slot: Slot, error: str) -> DeviceStatus:
        """A card that cannot be read or used: nothing measured, the reason kept."""
        return cls(slot.slot_id, slot.name, None, None, None, None, None, False, error)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class DeviceBackend(Protocol):
    def slots(self) -> list[Slot]: ...

    def status(self) -> list[DeviceStatus]: ...

    def close(self) -> None: ...


def check_slot_count(n: int) -> None:
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= MAX_SLOTS:
        raise ValidationError(f"slot count must be 1..{MAX_SLOTS}, got {n!r}", field="slots")


class NoLocalSlots:
    """``slots = "slurm"``: this machine computes nothing; pilots on a Slurm cluster do
    (``mofsimd.slurm_pool``), and they come and go while the daemon runs."""

    def slots(self) -> list[Slot]:
        return []

    def status(self) -> list[DeviceStatus]:
        return []

    def close(self) -> None:
        pass
