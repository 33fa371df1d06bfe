"""Device inventory: simulated cards and their faults, CPU slots, NVML through a
stand-in module (this suite must pass on machines without a GPU), and --slots parsing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from mofsim_core import devices_nvml
from mofsim_core.devices_cpu import CpuBackend, parse_meminfo
from mofsim_core.devices_factory import parse_slots
from mofsim_core.devices_nvml import NvmlBackend
from mofsim_core.devices_simulated import SimulatedBackend
from spool.errors import DeviceUnavailable, ValidationError

ROOT = Path(__file__).resolve().parents[1]

# --- simulated -------------------------------------------------------------------------


def test_simulated_slots_and_defaults() -> None:
    b = SimulatedBackend(3, memory_total_mb=8000)
    slots = b.slots()
    assert [s.slot_id for s in slots] == ["sim0", "sim1", "sim2"]
    assert {s.kind for s in slots} == {"simulate"}
    assert [s.index for s in slots] == [0, 1, 2]
    # Executors on simulated cards must not see a real GPU.
    assert all(s.cuda_visible == "" for s in slots)
    st = b.status()
    assert [s.slot_id for s in st] == ["sim0", "sim1", "sim2"]
    assert all(s.available and s.error is None for s in st)
    assert st[0].memory_total_mb == 8000 and st[0].memory_used_mb == 0
    assert st[0].memory_free_mb == 8000
    assert st[0].to_dict()["slot_id"] == "sim0"


def test_simulated_fault_injection() -> None:
    b = SimulatedBackend(2, memory_total_mb=24576)
    b.set_memory_used(0, 20000)
    b.set_temperature(1, 91.5)
    b.set_utilization(1, 150)  # clipped
    s0, s1 = b.status()
    assert (s0.memory_used_mb, s0.memory_free_mb) == (20000, 4576)
    assert s1.temperature_c == 91.5 and s1.utilization_percent == 100.0
    assert s1.memory_used_mb == 0

    b.set_memory_used(0, 10**9)  # more than the card has: reported as full
    assert b.status()[0].memory_free_mb == 0

    b.lose(1)
    s0, s1 = b.status()
    assert s0.available
    assert not s1.available and "lost" in (s1.error or "")
    assert s1.memory_free_mb is None and s1.temperature_c is None
    b.restore(1)
    s1 = b.status()[1]
    assert s1.available and s1.error is None and s1.temperature_c == 91.5


def test_simulated_rejects_bad_arguments() -> None:
    b = SimulatedBackend(1)
    with pytest.raises(ValidationError):
        b.lose(1)
    with pytest.raises(ValidationError) as info:
        SimulatedBackend(0)
    assert info.value.field == "slots"
    with pytest.raises(ValidationError):
        SimulatedBackend(1, memory_total_mb=0)


_INJECT = """
import sys
from pathlib import Path
from mofsim_core.devices_simulated import SimulatedBackend
b = SimulatedBackend(2, state_file=Path(sys.argv[1]))
b.lose(1)
b.set_memory_used(0, 12000)
b.set_temperature(0, 88)
"""


def test_state_file_steers_a_backend_in_another_process(tmp_path: Path) -> None:
    state = tmp_path / "sim" / "state.json"
    daemon_side = SimulatedBackend(2, state_file=state)
    assert all(s.available for s in daemon_side.status())

    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    subprocess.run(
        [sys.executable, "-c", _INJECT, str(state)], check=True, cwd=ROOT, env=env, timeout=60
    )

    s0, s1 = daemon_side.status()
    assert not s1.available
    assert s0.memory_used_mb == 12000 and s0.temperature_c == 88.0

    # Injections from a second instance keep what the first process wrote.
    SimulatedBackend(2, state_file=state).restore(1)
    s0, s1 = daemon_side.status()
    assert s1.available and s0.memory_used_mb == 12000


def test_state_file_damage_keeps_last_good_state(tmp_path: Path) -> None:
    state = tmp_path / "state.json"
    b = SimulatedBackend(2, state_file=state)
    b.set_memory_used(1, 5000)
    state.write_text("{not json")
    assert b.status()[1].memory_used_mb == 5000
    state.write_text(json.dumps({"slots": [{"memory_used_mb": "lots", "lost": 1}]}))
    s0, s1 = b.status()
    assert s0.available and s0.memory_used_mb == 0 and s1.memory_used_mb == 5000


# --- CPU ---------------------------------------------------------------------------------


def test_cpu_backend_reports_machine_memory_and_load() -> None:
    b = CpuBackend(2)
    assert [s.slot_id for s in b.slots()] == ["cpu0", "cpu1"]
    assert all(s.kind == "cpu" and s.cuda_visible == "" for s in b.slots())
    st = b.status()
    assert len(st) == 2
    for s in st:
        assert s.available and s.temperature_c is None
        assert s.memory_total_mb is not None and s.memory_total_mb > 0
        assert s.memory_used_mb is not None and s.memory_free_mb is not None
        assert s.memory_used_mb + s.memory_free_mb == s.memory_total_mb
        assert s.utilization_percent is not None and 0.0 <= s.utilization_percent <= 100.0
    b.close()


@pytest.mark.skipif(not Path("/proc/meminfo").exists(), reason="needs /proc/meminfo")
def test_cpu_backend_without_psutil(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "psutil", None)  # import psutil -> ImportError
    s = CpuBackend(1).status()[0]
    total, free = parse_meminfo(Path("/proc/meminfo").read_text())
    assert s.memory_total_mb == total
    assert s.memory_free_mb is not None and s.memory_free_mb > 0


def test_parse_meminfo() -> None:
    text = "MemTotal:       16384000 kB\nMemFree:  1024000 kB\nMemAvailable:   8192000 kB\n"
    assert parse_meminfo(text) == (16000, 8000)
    old_kernel = "MemTotal: 2048000 kB\nMemFree: 512000 kB\nBuffers: 256000 kB\nCached: 256000 kB\n"
    assert parse_meminfo(old_kernel) == (2000, 1000)
    with pytest.raises(ValueError):
        parse_meminfo("MemFree: 1 kB\n")


def test_cpu_backend_count_validated() -> None:
    for bad in (0, -1, 10_000):
        with pytest.raises(ValidationError):
            CpuBackend(bad)


# --- NVML through a stand-in module --------------------------------------------------------


class _NVMLError(Exception):
    pass


class _NotSupported(_NVMLError):
    pass


class _GpuIsLost(_NVMLError):
    pass


class FakeNvml:
    """The slice of pynvml the backend uses, over an in-memory set of cards."""

    NVMLError = _NVMLError
    NVMLError_NotSupported = _NotSupported
    NVML_TEMPERATURE_GPU = 0

    def __init__(self, n: int = 2, init_error: bool = False):
        self.cards = [
            {
                "name": f"Fake GPU {i}".encode(),
                "total": 80 * 1024**3,
                "used": (i + 1) * 1024**3,
                "util": 10 * i,
                "temp": 30 + i,
                "lost": False,
                "no_temp": False,
            }
            for i in range(n)
        ]
        self.init_error = init_error
        self.init_calls = 0
        self.shutdown_calls = 0

    def nvmlInit(self) -> None:
        if self.init_error:
            raise _NVMLError("NVML Shared Library Not Found")
        self.init_calls += 1

    def nvmlShutdown(self) -> None:
        self.shutdown_calls += 1

    def nvmlDeviceGetCount(self) -> int:
        return len(self.cards)

    def nvmlDeviceGetHandleByIndex(self, i: int) -> dict[str, Any]:
        if self.cards[i]["lost"]:
            raise _GpuIsLost("GPU is lost")
        return self.cards[i]

    def nvmlDeviceGetName(self, h: dict[str, Any]) -> bytes:
        return bytes(h["name"])

    def nvmlDeviceGetUUID(self, h: dict[str, Any]) -> str:
        return "GPU-" + h["name"].decode().replace(" ", "-")

    def nvmlDeviceGetMemoryInfo(self, h: dict[str, Any]) -> SimpleNamespace:
        return SimpleNamespace(total=h["total"], used=h["used"], free=h["total"] - h["used"])

    def nvmlDeviceGetUtilizationRates(self, h: dict[str, Any]) -> SimpleNamespace:
        return SimpleNamespace(gpu=h["util"], memory=0)

    def nvmlDeviceGetTemperature(self, h: dict[str, Any], sensor: int) -> int:
        if h["no_temp"]:
            raise _NotSupported("Not Supported")
        return int(h["temp"])


def test_nvml_backend_reads_every_card() -> None:
    nv = FakeNvml(2)
    b = NvmlBackend(nvml=nv)
    slots = b.slots()
    assert [s.slot_id for s in slots] == ["gpu0", "gpu1"]
    assert slots[1].name == "Fake GPU 1" and slots[1].kind == "nvml"
    # Pinned by UUID: CUDA's index order can differ from NVML's.
    assert slots[1].cuda_visible == "GPU-Fake-GPU-1"
    s0, s1 = b.status()
    assert (s1.memory_total_mb, s1.memory_used_mb, s1.memory_free_mb) == (81920, 2048, 79872)
    assert s1.utilization_percent == 10.0 and s1.temperature_c == 31.0 and s1.available
    b.close()
    b.close()
    assert nv.shutdown_calls == 1


def test_nvml_lost_card_is_reported_not_raised() -> None:
    nv = FakeNvml(2)
    b = NvmlBackend(nvml=nv)
    nv.cards[0]["lost"] = True
    nv.cards[1]["no_temp"] = True
    s0, s1 = b.status()
    assert not s0.available and "lost" in (s0.error or "")
    assert s0.memory_free_mb is None
    # A missing sensor is not a fault.
    assert s1.available and s1.temperature_c is None and s1.memory_free_mb == 79872
    nv.cards[0]["lost"] = False
    assert b.status()[0].available


def test_nvml_subset_and_bad_index() -> None:
    nv = FakeNvml(4)
    b = NvmlBackend([1, 3], nvml=nv)
    assert [s.slot_id for s in b.slots()] == ["gpu1", "gpu3"]
    assert [s.slot_id for s in b.status()] == ["gpu1", "gpu3"]
    with pytest.raises(ValidationError) as info:
        NvmlBackend([0, 4], nvml=nv)
    assert info.value.field == "slots"
    assert nv.shutdown_calls == 1  # the failed constructor released NVML


def test_nvml_card_lost_at_start_still_gets_a_slot() -> None:
    nv = FakeNvml(2)
    nv.cards[1]["lost"] = True
    b = NvmlBackend(nvml=nv)
    assert [s.slot_id for s in b.slots()] == ["gpu0", "gpu1"]
    assert b.slots()[1].cuda_visible == "1"
    assert [s.available for s in b.status()] == [True, False]


def test_nvml_init_failure_is_device_unavailable() -> None:
    with pytest.raises(DeviceUnavailable):
        NvmlBackend(nvml=FakeNvml(init_error=True))


# --- parse_slots -------------------------------------------------------------------------


def test_parse_counted_specs(tmp_path: Path) -> None:
    b = parse_slots("cpu:3")
    assert isinstance(b, CpuBackend) and len(b.slots()) == 3
    b = parse_slots("cpu")
    assert isinstance(b, CpuBackend) and len(b.slots()) == 1
    for spec in ("simulate:2", " Simulate:2 ", "sim:2"):
        b = parse_slots(spec)
        assert isinstance(b, SimulatedBackend) and len(b.slots()) == 2
    b = parse_slots("simulate:2", state_file=tmp_path / "s.json")
    assert isinstance(b, SimulatedBackend)
    b.lose(0)
    assert (tmp_path / "s.json").exists()


@pytest.mark.parametrize(
    "spec",
    [
        "",
        "  ",
        "cpu:0",
        "cpu:x",
        "cpu:",
        "simulate:",
        "simulate:-1",
        "gpu:1",
        "-1",
        "0,,1",
        "0,0",
        "foo",
        "cpu:100000",
        "auto:2",
    ],
)
def test_parse_invalid_specs(spec: str) -> None:
    with pytest.raises(ValidationError) as info:
        parse_slots(spec)
    assert info.value.field == "slots"


def test_parse_non_string_spec() -> None:
    with pytest.raises(ValidationError):
        parse_slots(3)  # type: ignore[arg-type]


def test_auto_falls_back_to_cpu_without_nvml(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(devices_nvml, "_load_nvml", lambda: FakeNvml(init_error=True))
    b = parse_slots("auto")
    assert isinstance(b, CpuBackend) and [s.slot_id for s in b.slots()] == ["cpu0"]
    with pytest.raises(DeviceUnavailable):
        parse_slots("0,1")
    with pytest.raises(DeviceUnavailable):
        parse_slots("gpu")

    monkeypatch.setattr(devices_nvml, "_load_nvml", lambda: None)  # pynvml not installed
    assert isinstance(parse_slots("auto"), CpuBackend)
    with pytest.raises(DeviceUnavailable):
        parse_slots("0")


def test_auto_with_zero_gpus_uses_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    nv = FakeNvml(0)
    monkeypatch.setattr(devices_nvml, "_load_nvml", lambda: nv)
    assert isinstance(parse_slots("auto"), CpuBackend)
    assert nv.shutdown_calls == 1
    with pytest.raises(DeviceUnavailable):
        parse_slots("gpu")


def test_auto_with_gpus_uses_nvml(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(devices_nvml, "_load_nvml", lambda: FakeNvml(3))
    b = parse_slots("auto")
    assert isinstance(b, NvmlBackend) and len(b.slots()) == 3
    b = parse_slots("0, 2")
    assert [s.slot_id for s in b.slots()] == ["gpu0", "gpu2"]
    with pytest.raises(ValidationError):
        parse_slots("7")


def test_auto_on_this_machine() -> None:
    """The real pynvml: a GPU machine gets its cards, any other machine one CPU slot."""
    nvml = devices_nvml._load_nvml()
    has_gpu = False
    if nvml is not None:
        try:
            nvml.nvmlInit()
            has_gpu = nvml.nvmlDeviceGetCount() > 0
            nvml.nvmlShutdown()
        except nvml.NVMLError:
            has_gpu = False
    b = parse_slots("auto")
    try:
        if has_gpu:
            assert isinstance(b, NvmlBackend)
            assert all(s.available for s in b.status())
        else:
            assert isinstance(b, CpuBackend) and len(b.slots()) == 1
            assert b.status()[0].available
    finally:
        b.close()


def test_spare_slots_name_slots_by_id_or_device_index() -> None:
    from mofsim_core.devices_factory import spare_slot_ids

    assert spare_slot_ids("", ["gpu0", "gpu1"]) == frozenset()
    assert spare_slot_ids("7", [f"gpu{i}" for i in range(8)]) == {"gpu7"}
    assert spare_slot_ids(" GPU6, 7 ", [f"gpu{i}" for i in range(8)]) == {"gpu6", "gpu7"}
    assert spare_slot_ids("1", ["sim0", "sim1"]) == {"sim1"}
    with pytest.raises(ValidationError, match="not one of the slots") as info:
        spare_slot_ids("gpu9", ["gpu0", "gpu1"])
    assert info.value.field == "spare_slots"
    with pytest.raises(ValidationError, match="no slot to compute"):
        spare_slot_ids("0,1", ["gpu0", "gpu1"])
