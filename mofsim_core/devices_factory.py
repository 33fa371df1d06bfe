"""Which device backend a slots setting (``--slots``, ``slots =``) means.

Case and spaces do not matter. A setting that names no backend, or names GPUs that
do not exist, is a ValidationError on the field ``slots``; ``auto`` is the one setting
that falls back (to one CPU slot) instead of failing.
"""

from __future__ import annotations

import re
from pathlib import Path

from mofsim_core.devices import DeviceBackend, NoLocalSlots
from mofsim_core.devices_cpu import CpuBackend
from mofsim_core.devices_nvml import NvmlBackend
from mofsim_core.devices_simulated import SimulatedBackend
from spool.errors import DeviceUnavailable, ValidationError

_COUNTED = re.compile(r"^(cpu|simulate|sim):(\d+)$")
_INDICES = re.compile(r"^\d+(,\d+)*$")


def parse_slots(spec: str, *, state_file: Path | None = None) -> DeviceBackend:
    """Build the backend named by a slots setting.

    ``auto`` (every NVIDIA card, else one CPU slot), ``gpu`` (every NVIDIA card, an
    error without one), ``cpu`` / ``cpu:N``, ``simulate:N`` (optionally steered through
    ``state_file``), NVML indices such as ``0,1,3``, or ``slurm`` (no local slot).
    """
    text = spec.strip().lower().replace(" ", "") if isinstance(spec, str) else ""
    if text == "auto":
        try:
            backend = NvmlBackend()
        except DeviceUnavailable:
            return CpuBackend(1)
        if backend.slots():
            return backend
        backend.close()
        return CpuBackend(1)
    if text == "gpu":
        backend = NvmlBackend()
        if not backend.slots():
            backend.close()
            raise DeviceUnavailable("no NVIDIA GPU found")
        return backend
    if text == "cpu":
        return CpuBackend(1)
    if text == "slurm":
        return NoLocalSlots()
    counted = _COUNTED.match(text)
    if counted:
        n = int(counted.group(2))
        if counted.group(1) == "cpu":
            return CpuBackend(n)
        return SimulatedBackend(n, state_file=state_file)
    if _INDICES.match(text):
        indices = [int(x) for x in text.split(",")]
        if len(set(indices)) != len(indices):
            raise ValidationError(f"GPU index repeated in {spec!r}", field="slots")
        return NvmlBackend(indices)
    raise ValidationError(
        f"invalid slots {spec!r}: expected auto, gpu, cpu:N, simulate:N, slurm"
        " or GPU indices like 0,1",
        field="slots",
    )


def spare_slot_ids(spec: str, slot_ids: list[str]) -> frozenset[str]:
    """The spare slots a ``spare_slots`` setting names, as slot ids: ``gpu7`` or a device
    index ``7``, comma separated.  A name that is no slot, or leaving no slot to
    compute, is a ValidationError on the field ``spare_slots``."""
    text = spec.strip().lower().replace(" ", "") if isinstance(spec, str) else ""
    if not text:
        return frozenset()
    spare = set()
    for name in text.split(","):
        sid = name
        if name.isdigit():  # a device index: an NVML card, or a simulated one
            sid = next((s for s in (f"gpu{name}", f"sim{name}") if s in slot_ids), name)
        if sid not in slot_ids:
            raise ValidationError(
                f"spare slot {name!r} is not one of the slots {', '.join(slot_ids)}",
                field="spare_slots",
            )
        spare.add(sid)
    if len(spare) >= len(slot_ids):
        raise ValidationError("spare_slots leaves no slot to compute", field="spare_slots")
    return frozenset(spare)
