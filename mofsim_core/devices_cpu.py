"""CPU slots: the device backend for a machine without GPUs.

Memory comes from psutil when it is installed, else from /proc/meminfo; load is the
one-minute load average over the cores this process may use.
"""

from __future__ import annotations

import os
from pathlib import Path

from mofsim_core.devices import BYTES_PER_MB, DeviceStatus, Slot, check_slot_count


def parse_meminfo(text: str) -> tuple[int, int]:
    """(total, available) in MB from the text of /proc/meminfo."""
    kb: dict[str, int] = {}
    for line in text.splitlines():
        key, _, rest = line.partition(":")
        fields = rest.split()
        if fields and fields[0].isdigit():
            kb[key.strip()] = int(fields[0])
    if "MemTotal" not in kb:
        raise ValueError("no MemTotal line in meminfo")
    available = kb.get("MemAvailable")
    if available is None:  # kernels before 3.14
        available = kb.get("MemFree", 0) + kb.get("Buffers", 0) + kb.get("Cached", 0)
    return kb["MemTotal"] // 1024, available // 1024


def _system_memory() -> tuple[int, int]:
    try:
        import psutil
    except ImportError:
        return parse_meminfo(Path("/proc/meminfo").read_text())
    vm = psutil.virtual_memory()
    return int(vm.total) // BYTES_PER_MB, int(vm.available) // BYTES_PER_MB


def _cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "CPU"


class CpuBackend:
    """N executor slots sharing this machine's cores and memory.

    Every slot reports the whole machine's memory and load: the slots share them, and
    the memory guard needs the real free memory, not an invented per-slot share.
    """

    def __init__(self, n: int = 1):
        check_slot_count(n)
        name = _cpu_name()
        self._slots = [Slot(f"cpu{i}", "cpu", i, name, "") for i in range(n)]

    def slots(self) -> list[Slot]:
        return list(self._slots)

    def status(self) -> list[DeviceStatus]:
        try:
            total, free = _system_memory()
            mem: tuple[int | None, int | None, int | None] = (total, total - free, free)
            error = None
        except (OSError, ValueError) as exc:
            mem, error = (None, None, None), f"memory unknown: {exc}"
        try:
            load = os.getloadavg()[0]
            util: float | None = round(min(100.0, 100.0 * load / _cpu_count()), 1)
        except OSError:
            util = None
        return [
            DeviceStatus(
                s.slot_id,
                s.name,
                *mem,
                utilization_percent=util,
                temperature_c=None,
                available=True,
                error=error,
            )
            for s in self._slots
        ]

    def close(self) -> None:
        pass
