"""What one task costs: peak memory, model load time, force calls and their time.

The executor wraps every task in a ``TaskMeter``.  It counts the calculator's force
calls (each ``calculate`` that ASE makes), times them, and reads the peak memory of the
task: ``torch.cuda.max_memory_allocated`` on a GPU, and on the CPU the peak resident
size of the executor above its level just before the task (``VmHWM`` of
``/proc/self/status``, reset through ``/proc/self/clear_refs``; where that reset is
refused, a sampling thread reads ``VmRSS`` instead).  With the structure's size and
its neighbour pairs within the model's cutoff, these are the points the cost model
(``executors.cost_model``) is fitted on.
"""

from __future__ import annotations

import ctypes
import functools
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ase import Atoms

    from executors.models import ModelSpec

_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")

# Radial cutoffs of the foundation models (Angstrom): what their message passing sees.
# A model not named here counts pairs within DEFAULT_CUTOFF; the count is a size
# feature of the fit, so a consistent radius matters more than the exact one.
DEFAULT_CUTOFF = 5.0
CUTOFFS = {
    "sevennet-0": 5.0,
    "sevennet-l3i5": 5.0,
    "mace-mp": 6.0,
    "mace-mpa-0-medium": 6.0,
    "mace-off23": 5.0,
    "orb-v2": 6.0,
    "orb-d3-v2": 6.0,
    "orb-v3-conservative-inf-omat": 6.0,
    "chgnet": 5.0,
    "chgnet-0.2.0": 5.0,
    "chgnet-r2scan": 5.0,
    "m3gnet": 5.0,
    "emt": 5.0,
    "lj": 3.0,
}


def model_cutoff(spec: ModelSpec | str) -> float:
    key = spec if isinstance(spec, str) else spec.key
    if not isinstance(spec, str):
        given = spec.extra.get("cutoff") if isinstance(spec.extra, dict) else None
        if isinstance(given, int | float) and not isinstance(given, bool) and given > 0:
            return float(given)
    return CUTOFFS.get(key, DEFAULT_CUTOFF)


def neighbour_pairs(atoms: Atoms, cutoff: float) -> int:
    """Ordered pairs (i, j) with j within ``cutoff`` of i, periodic images included: the
    edges a message-passing model builds.  Under a second for 10 000 atoms."""
    from ase.neighborlist import neighbor_list

    if len(atoms) == 0:
        return 0
    return int(len(neighbor_list("i", atoms, float(cutoff))))


def _status_kb(field: str) -> int | None:
    try:
        for line in _STATUS.read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def _trim_heap() -> None:
    """Hand freed heap back to the system, so an earlier task's high water does not
    hide this one's (glibc only; elsewhere a no-op)."""
    try:
        ctypes.CDLL(None).malloc_trim(0)
    except (OSError, AttributeError):
        pass


class _RssSampler(threading.Thread):
    """Peak VmRSS by sampling, where the kernel refuses to reset VmHWM."""

    def __init__(self, interval: float = 0.01) -> None:
        super().__init__(daemon=True, name="rss-sampler")
        self.interval = interval
        self.peak_kb = _status_kb("VmRSS") or 0
        self._stop = threading.Event()

    def run(self) -> None:
        while not self._stop.wait(self.interval):
            self.peak_kb = max(self.peak_kb, _status_kb("VmRSS") or 0)

    def stop(self) -> int:
        self._stop.set()
        self.join(timeout=1.0)
        return max(self.peak_kb, _status_kb("VmRSS") or 0)


class PeakMemory:
    """Peak memory of what runs between ``start()`` and ``stop()``, in MiB."""

    def __init__(self, device: str) -> None:
        self.gpu = device.startswith("cuda")
        self.source = "cuda" if self.gpu else "rss"
        self._base_kb = 0
        self._sampler: _RssSampler | None = None

    def start(self) -> None:
        if self.gpu:
            import torch

            torch.cuda.reset_peak_memory_stats()
            return
        _trim_heap()
        self._base_kb = _status_kb("VmRSS") or 0
        try:
            _CLEAR_REFS.write_text("5")  # resets VmHWM to the current RSS
        except OSError:
            self.source = "rss-sampled"
            self._sampler = _RssSampler()
            self._sampler.start()

    def stop(self) -> float | None:
        if self.gpu:
            import torch

            return round(torch.cuda.max_memory_allocated() / 2**20, 1)
        if self._sampler is not None:
            peak = self._sampler.stop()
        else:
            peak = _status_kb("VmHWM") or 0
        if not peak:
            return None
        return round(max(0, peak - self._base_kb) / 1024.0, 1)


class CallCounter:
    """Counts and times a calculator's ``calculate`` calls while installed.

    The wrapper is an attribute of the instance, removed on exit, so the calculator the
    cache keeps warm is left as it was."""

    def __init__(self, calc: Any) -> None:
        self.calc = calc
        self.calls = 0
        self.seconds = 0.0
        # Per system size: [calls, seconds, seconds of the first call].  A task may
        # compute forces on cells bigger than its structure (phonopy's supercells); the
        # cost model wants the biggest, and the first call of a size pays warm-up.
        self.by_size: dict[int, list[float]] = {}
        self._installed = False

    def __enter__(self) -> CallCounter:
        original = self.calc.calculate

        @functools.wraps(original)
        def counted(*args: Any, **kwargs: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                spent = time.perf_counter() - t0
                self.seconds += spent
                self.calls += 1
                atoms = args[0] if args else kwargs.get("atoms")
                size = len(atoms) if atoms is not None else len(self.calc.atoms or ())
                entry = self.by_size.setdefault(size, [0, 0.0, spent])
                entry[0] += 1
                entry[1] += spent

        try:
            self.calc.calculate = counted
            self._installed = True
        except AttributeError:  # a calculator with slots: run uncounted
            pass
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._installed:
            try:
                del self.calc.calculate
            except AttributeError:
                pass
            self._installed = False

    @property
    def largest(self) -> int | None:
        return max(self.by_size) if self.by_size else None

    @property
    def seconds_per_call(self) -> float | None:
        """Mean time of a call on the largest system, its warm-up call left out when
        there are others."""
        if not self.by_size:
            return None
        calls, seconds, first = self.by_size[max(self.by_size)]
        if calls > 1:
            return (seconds - first) / (calls - 1)
        return seconds / calls


class TaskMeter:
    """The measurement of one task: ``begin`` before it runs, ``metrics`` after."""

    def __init__(self, atoms: Atoms, spec: ModelSpec, device: str, calc: Any) -> None:
        self.natoms = len(atoms)
        self.cutoff = model_cutoff(spec)
        t0 = time.perf_counter()
        self.pairs = neighbour_pairs(atoms, self.cutoff)
        self.pairs_seconds = time.perf_counter() - t0
        self.memory = PeakMemory(device)
        self.counter = CallCounter(calc)
        self.peak_mb: float | None = None

    def __enter__(self) -> TaskMeter:
        self.memory.start()
        self.counter.__enter__()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.counter.__exit__(exc_type, exc, tb)
        self.peak_mb = self.memory.stop()

    def metrics(self, load_seconds: float) -> dict[str, Any]:
        per_call = self.counter.seconds_per_call
        natoms = self.counter.largest or self.natoms
        # Copies of the structure have its pairs per atom: a supercell scales them.
        pairs = self.pairs if natoms == self.natoms else round(self.pairs * natoms / self.natoms)
        return {
            "natoms": natoms,
            "neighbour_pairs": pairs,
            "structure_natoms": self.natoms,
            "cutoff_A": self.cutoff,
            "force_calls": self.counter.calls,
            "force_call_seconds": round(per_call, 6) if per_call is not None else None,
            "force_seconds_total": round(self.counter.seconds, 4),
            "peak_memory_mb": self.peak_mb,
            "memory_source": self.memory.source,
            "model_load_seconds": round(load_seconds, 3),
        }
