"""NVIDIA cards through NVML: the device backend for a GPU machine.

pynvml is optional (a CPU-only install lacks it); without it the backend cannot be
built and says why, which lets ``auto`` fall back to CPU slots.
"""

from __future__ import annotations

import warnings
from types import ModuleType
from typing import Any, cast

from mofsim_core.devices import BYTES_PER_MB, DeviceStatus, Slot
from spool.errors import DeviceUnavailable, ValidationError


def _load_nvml() -> ModuleType | None:
    """The pynvml module, or None when the package is not installed."""
    try:
        with warnings.catch_warnings():
            # The 'pynvml' distribution warns that it is deprecated in favour of
            # nvidia-ml-py; both provide the same module, so the warning is noise.
            warnings.simplefilter("ignore", FutureWarning)
            import pynvml
    except ImportError:
        return None
    return cast(ModuleType, pynvml)  # the package ships no type information


def _text(value: Any) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


class NvmlBackend:
    """NVIDIA cards, all of them or the given NVML indices.

    Slots pin executors by GPU UUID rather than index: CUDA numbers cards fastest
    first while NVML uses PCI order, so an index could name a different card.
    """

    def __init__(self, indices: list[int] | None = None, *, nvml: Any = None):
        # ``nvml`` stands in for the pynvml module (tests exercise faults through it).
        self._nvml: Any = nvml if nvml is not None else _load_nvml()
        if self._nvml is None:
            raise DeviceUnavailable("NVML is not available: the pynvml package is not installed")
        try:
            self._nvml.nvmlInit()
        except self._nvml.NVMLError as exc:
            raise DeviceUnavailable(f"NVML could not be initialised: {exc}") from exc
        self._open = True
        try:
            count = int(self._nvml.nvmlDeviceGetCount())
            wanted = list(range(count)) if indices is None else list(indices)
            for i in wanted:
                if not 0 <= i < count:
                    raise ValidationError(
                        f"GPU {i} does not exist: NVML sees {count} device(s)", field="slots"
                    )
            self._slots = [self._describe(i) for i in wanted]
        except BaseException:
            self.close()
            raise

    def _describe(self, index: int) -> Slot:
        # A card that cannot be described still gets its slot: status() then reports
        # it unavailable, instead of one bad card taking the whole inventory down.
        nv = self._nvml
        name, visible = f"GPU {index}", str(index)
        try:
            handle = nv.nvmlDeviceGetHandleByIndex(index)
            name = _text(nv.nvmlDeviceGetName(handle))
            visible = _text(nv.nvmlDeviceGetUUID(handle))
        except nv.NVMLError:
            pass
        return Slot(f"gpu{index}", "nvml", index, name, visible)

    def slots(self) -> list[Slot]:
        return list(self._slots)

    def status(self) -> list[DeviceStatus]:
        return [self._status_of(slot) for slot in self._slots]

    def _status_of(self, slot: Slot) -> DeviceStatus:
        nv = self._nvml
        try:
            handle = nv.nvmlDeviceGetHandleByIndex(slot.index)
            mem = nv.nvmlDeviceGetMemoryInfo(handle)
            util = self._optional(lambda: float(nv.nvmlDeviceGetUtilizationRates(handle).gpu))
            temp = self._optional(
                lambda: float(nv.nvmlDeviceGetTemperature(handle, nv.NVML_TEMPERATURE_GPU))
            )
        except Exception as exc:  # one sick card must not hide the others
            return DeviceStatus.unavailable(slot, f"{type(exc).__name__}: {exc}")
        return DeviceStatus(
            slot.slot_id,
            slot.name,
            memory_total_mb=int(mem.total) // BYTES_PER_MB,
            memory_used_mb=int(mem.used) // BYTES_PER_MB,
            memory_free_mb=int(mem.free) // BYTES_PER_MB,
            utilization_percent=util,
            temperature_c=temp,
            available=True,
        )

    def _optional(self, read: Any) -> float | None:
        """Some cards (MIG slices, some boards) lack a sensor; that is not a fault."""
        try:
            return float(read())
        except self._nvml.NVMLError_NotSupported:
            return None

    def close(self) -> None:
        if self._open:
            self._open = False
            try:
                self._nvml.nvmlShutdown()
            except self._nvml.NVMLError:
                pass
