"""Simulated cards: a device backend whose memory, temperature, utilization and
presence tests can change at will, also from another process through a state file.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from mofsim_core.devices import DeviceStatus, Slot, check_slot_count
from spool.errors import ValidationError


class SimulatedBackend:
    """Pretend GPUs for tests and demos; executors on them run on the CPU.

    With ``state_file`` every injected fault is written there and every ``status()``
    re-reads it (a few hundred bytes; cheaper than trusting mtimes, which can miss two
    writes within one clock tick), so a test can steer a daemon running elsewhere by
    building its own ``SimulatedBackend`` on the same file.
    """

    def __init__(self, n: int, memory_total_mb: int = 24576, *, state_file: Path | None = None):
        check_slot_count(n)
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
                out.append(DeviceStatus.unavailable(slot, "GPU is lost (simulated)"))
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
