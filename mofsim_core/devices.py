"""Device inventory: which slots the supervisor drives and how each one is doing.

Three backends behind one small protocol: NVIDIA cards through NVML, CPU slots on a
machine without GPUs, and simulated cards whose memory, temperature, utilization and
presence tests can change at will (also from another process, through a state file).
``status()`` never raises for a single misbehaving device: a lost card is reported as
unavailable with the error text, so the scheduler can route around it.
"""

from __future__ import annotations

import json
import os
import re
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, Literal, Protocol, cast

from spool.errors import DeviceUnavailable, ValidationError

SlotKind = Literal["nvml", "cpu", "simulate"]
MAX_SLOTS = 256
_MB = 1024 * 1024


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

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class DeviceBackend(Protocol):
    def slots(self) -> list[Slot]: ...

    def status(self) -> list[DeviceStatus]: ...

    def close(self) -> None: ...


# --- NVML ---------------------------------------------------------------------------


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
            return DeviceStatus(
                slot.slot_id,
                slot.name,
                None,
                None,
                None,
                None,
                None,
                available=False,
                error=f"{type(exc).__name__}: {exc}",
            )
        return DeviceStatus(
            slot.slot_id,
            slot.name,
            memory_total_mb=int(mem.total) // _MB,
            memory_used_mb=int(mem.used) // _MB,
            memory_free_mb=int(mem.free) // _MB,
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


# --- CPU ----------------------------------------------------------------------------


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
    return int(vm.total) // _MB, int(vm.available) // _MB


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
        _check_count(n)
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


# --- simulated cards -----------------------------------------------------------------


class SimulatedBackend:
    """Pretend GPUs for tests and demos; executors on them run on the CPU.

    With ``state_file`` every injected fault is written there and every ``status()``
    re-reads it (a few hundred bytes; cheaper than trusting mtimes, which can miss two
    writes within one clock tick), so a test can steer a daemon running elsewhere by
    building its own ``SimulatedBackend`` on the same file.
    """

    def __init__(self, n: int, memory_total_mb: int = 24576, *, state_file: Path | None = None):
        _check_count(n)
        if not memory_total_mb > 0:
            raise ValidationError("memory_total_mb must be positive", field="slots")
        self.memory_total_mb = int(memory_total_mb)
        self.state_file = Path(state_file) if state_file is not None else None
        self._slots = [Slot(f"sim{i}", "simulate", i, f"Simulated GPU {i}", "") for i in range(n)]
        self._state = [self._fresh() for _ in range(n)]
        self._reload()

    @staticmethod
    def _fresh() -> dict[str, Any]:
        return {
            "memory_used_mb": 0,
            "temperature_c": 40.0,
            "utilization_percent": 0.0,
            "lost": False,
        }

    def slots(self) -> list[Slot]:
        return list(self._slots)

    def status(self) -> list[DeviceStatus]:
        self._reload()
        out = []
        for slot, st in zip(self._slots, self._state, strict=True):
            if st["lost"]:
                out.append(
                    DeviceStatus(
                        slot.slot_id,
                        slot.name,
                        None,
                        None,
                        None,
                        None,
                        None,
                        available=False,
                        error="GPU is lost (simulated)",
                    )
                )
                continue
            used = min(int(st["memory_used_mb"]), self.memory_total_mb)
            out.append(
                DeviceStatus(
                    slot.slot_id,
                    slot.name,
                    self.memory_total_mb,
                    used,
                    self.memory_total_mb - used,
                    float(st["utilization_percent"]),
                    float(st["temperature_c"]),
                    available=True,
                )
            )
        return out

    def set_memory_used(self, i: int, mb: int) -> None:
        self._set(i, "memory_used_mb", max(0, int(mb)))

    def set_temperature(self, i: int, c: float) -> None:
        self._set(i, "temperature_c", float(c))

    def set_utilization(self, i: int, pct: float) -> None:
        self._set(i, "utilization_percent", min(100.0, max(0.0, float(pct))))

    def lose(self, i: int) -> None:
        self._set(i, "lost", True)

    def restore(self, i: int) -> None:
        self._set(i, "lost", False)

    def close(self) -> None:
        pass

    def _set(self, i: int, key: str, value: Any) -> None:
        if not 0 <= i < len(self._slots):
            raise ValidationError(f"no simulated GPU {i}", field="slots")
        self._reload()  # start from what other processes injected
        self._state[i][key] = value
        if self.state_file is not None:
            self._write()

    def _write(self) -> None:
        assert self.state_file is not None
        path = self.state_file
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps({"slots": self._state}))
        os.replace(tmp, path)  # readers see the old file or the new one, never half

    def _reload(self) -> None:
        if self.state_file is None:
            return
        try:
            saved = json.loads(self.state_file.read_text())["slots"]
        except (OSError, ValueError, KeyError, TypeError):
            return  # absent or unreadable: keep the last good state, never fail a poll
        if not isinstance(saved, list):
            return
        for i, entry in enumerate(saved[: len(self._state)]):
            if not isinstance(entry, dict):
                continue
            for key, old in self._state[i].items():
                new = entry.get(key)
                # Same JSON type as the default (bool for "lost", numbers otherwise).
                if isinstance(new, bool) == isinstance(old, bool) and isinstance(new, int | float):
                    self._state[i][key] = new


class NoLocalSlots:
    """``slots = "slurm"``: this machine computes nothing; pilots on a Slurm cluster do
    (``mofsimd.slurm_pool``), and they come and go while the daemon runs."""

    def slots(self) -> list[Slot]:
        return []

    def status(self) -> list[DeviceStatus]:
        return []

    def close(self) -> None:
        pass


# --- the --slots option ----------------------------------------------------------------


def _check_count(n: int) -> None:
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= MAX_SLOTS:
        raise ValidationError(f"slot count must be 1..{MAX_SLOTS}, got {n!r}", field="slots")


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
