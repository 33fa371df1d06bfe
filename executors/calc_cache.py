"""Per-executor LRU cache of loaded calculators.

One executor process serves one device; loading a model costs seconds (and GPU memory),
so calculators stay loaded between jobs, keyed by (model key, device, dtype, D3 flag).
``loaded_keys()`` is what the scheduler reads for model affinity; ``loaded_memory()``
what each loaded model took when it was loaded (the executor reports both).
"""

from __future__ import annotations

import gc
import os
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from executors.loaders import check_d3, load_calculator
from executors.models import ModelSpec, normalize_precision

if TYPE_CHECKING:
    from ase.calculators.calculator import Calculator

CacheKey = tuple[str, str, str, bool]


@dataclass
class CacheEntry:
    calculator: Calculator
    load_seconds: float
    loaded_at: float
    last_used: float
    hits: int = 0
    info: dict[str, Any] = field(default_factory=dict)


class CalculatorCache:
    def __init__(
        self, max_size: int = 2, loader: Callable[..., Calculator] = load_calculator
    ) -> None:
        if max_size < 1:
            raise ValueError("max_size must be at least 1")
        self.max_size = max_size
        self._loader = loader
        self._entries: OrderedDict[CacheKey, CacheEntry] = OrderedDict()
        self._lock = threading.RLock()
        self.hits = 0
        self.misses = 0
        self.evictions = 0
        # Seconds of the most recent load of each key, kept after eviction for estimates.
        self.load_times: dict[CacheKey, float] = {}

    @staticmethod
    def make_key(spec: ModelSpec, device: str, dtype: str, with_d3: bool) -> CacheKey:
        return (spec.key, device, normalize_precision(dtype), bool(with_d3))

    def get(
        self,
        spec: ModelSpec,
        device: str = "cpu",
        dtype: str = "float32",
        with_d3: bool = False,
        force_d3: bool = False,
        models_root: Path | None = None,
    ) -> Calculator:
        """The cached calculator, loading it on a miss.  The least recently used entries
        are evicted before loading so that their memory is free for the new model."""
        # Refusals do not depend on what is loaded: check before looking.
        check_d3(spec, with_d3, force_d3)
        key = self.make_key(spec, device, dtype, with_d3)
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None:
                self._entries.move_to_end(key)
                entry.hits += 1
                entry.last_used = time.time()
                self.hits += 1
                return entry.calculator
            self.misses += 1
            while len(self._entries) >= self.max_size:
                self._evict_oldest()
            before = memory_in_use_mb(device)
            start = time.perf_counter()
            calc = self._loader(
                spec,
                device=device,
                dtype=key[2],
                with_d3=with_d3,
                force_d3=force_d3,
                models_root=models_root,
            )
            seconds = time.perf_counter() - start
            after = memory_in_use_mb(device)
            taken = (
                round(max(0.0, after - before), 1)
                if before is not None and after is not None
                else None
            )
            now = time.time()
            self._entries[key] = CacheEntry(
                calc,
                seconds,
                now,
                now,
                info={"memory_mb": parameter_megabytes(calc), "memory_usage_mb": taken},
            )
            self.load_times[key] = seconds
            return calc

    def loaded_keys(self) -> list[str]:
        """Model keys currently loaded, most recently used first, without repeats."""
        with self._lock:
            return list(dict.fromkeys(k[0] for k in reversed(self._entries)))

    def loaded_memory(self) -> dict[str, float | None]:
        """Per loaded model key, the memory its loads took (MB, summed over its entries);
        None where it could not be measured."""
        out: dict[str, float | None] = {}
        with self._lock:
            for (model_key, *_), entry in self._entries.items():
                taken = entry.info.get("memory_usage_mb")
                if model_key in out and out[model_key] is None:
                    continue  # one part unmeasured: the sum is unknown
                if taken is None:
                    out[model_key] = None
                else:
                    out[model_key] = round((out.get(model_key) or 0.0) + float(taken), 1)
        return out

    def unload(self, model_key: str) -> int:
        """Drop every entry of ``model_key`` (any device, dtype, D3 flag); how many."""
        with self._lock:
            keys = [k for k in self._entries if k[0] == model_key]
            for k in keys:
                release(self._entries.pop(k).calculator)
        if keys:
            free_memory()
        return len(keys)

    def clear(self) -> None:
        with self._lock:
            had = bool(self._entries)
            for entry in self._entries.values():
                release(entry.calculator)
            self._entries.clear()
        if had:
            free_memory()

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: object) -> bool:
        return key in self._entries

    def stats(self) -> dict[str, Any]:
        """Counters and one row per loaded calculator (JSON-safe)."""
        with self._lock:
            rows = [
                {
                    "model_key": k[0],
                    "device": k[1],
                    "dtype": k[2],
                    "with_d3": k[3],
                    "load_seconds": round(e.load_seconds, 3),
                    "hits": e.hits,
                    "loaded_at": e.loaded_at,
                    "last_used": e.last_used,
                    **e.info,
                }
                for k, e in reversed(self._entries.items())
            ]
            return {
                "max_size": self.max_size,
                "hits": self.hits,
                "misses": self.misses,
                "evictions": self.evictions,
                "entries": rows,
            }

    def _evict_oldest(self) -> None:
        release(self._entries.popitem(last=False)[1].calculator)
        self.evictions += 1
        free_memory()


def release(calc: Any) -> None:
    """End what a dropped calculator holds outside this process (a sandboxed model's
    host process), without waiting for the garbage collector."""
    # ASE's SumCalculator (model plus D3) keeps its parts in its mixer.
    parts = getattr(getattr(calc, "mixer", None), "calcs", None) or [calc]
    for part in parts:
        close = getattr(part, "close", None)
        if callable(close):
            close()


def free_memory() -> None:
    """Collect the dropped model and hand cached CUDA blocks back to the driver, so that
    the supervisor's memory guard sees the real usage."""
    gc.collect()
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()


def memory_in_use_mb(device: str) -> float | None:
    """What this process holds now, in MB: CUDA memory allocated on a GPU device, the
    resident set on the CPU; None where it cannot be read.  Measured around a load, the
    difference is what the loaded model takes there."""
    if str(device).startswith("cuda"):
        torch = sys.modules.get("torch")
        if torch is None:
            return 0.0  # torch not imported yet: nothing of ours is on the card
        try:
            return float(torch.cuda.memory_allocated(torch.device(device))) / 2**20
        except Exception:  # noqa: BLE001 - no CUDA runtime: unmeasured, not an error
            return None
    try:
        with open("/proc/self/statm") as f:
            resident_pages = int(f.read().split()[1])
        return resident_pages * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        return None


def parameter_megabytes(calc: Any) -> float | None:
    """Size of the torch parameters behind a calculator (None for classical ones)."""
    torch = sys.modules.get("torch")
    if torch is None:
        return None
    seen: set[int] = set()
    visited: set[int] = set()
    total = 0
    stack = [calc]
    while stack:
        obj = stack.pop()
        if id(obj) in visited:
            continue
        visited.add(id(obj))
        if isinstance(obj, torch.nn.Module):
            for tensor in [*obj.parameters(), *obj.buffers()]:
                if id(tensor) not in seen:
                    seen.add(id(tensor))
                    total += tensor.numel() * tensor.element_size()
            continue
        # SumCalculator keeps its parts in .calcs (or .mixer.calcs); models in .model(s).
        for name in ("model", "models", "calcs", "mixer"):
            value = getattr(obj, name, None)
            if isinstance(value, list | tuple):
                stack.extend(value)
            elif value is not None:
                stack.append(value)
    return round(total / 2**20, 3) if seen else None
