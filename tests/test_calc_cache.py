"""The per-executor LRU cache of calculators (with ASE calculators: cheap and real)."""

from __future__ import annotations

import gc
import json
import weakref
from pathlib import Path
from typing import Any

import pytest
from ase.build import bulk

from executors.calc_cache import CalculatorCache, parameter_megabytes
from executors.loaders import load_calculator
from executors.models import ModelSpec, resolve_model
from spool.errors import ModelUnavailable, ValidationError
from tests.model_factories import build_tiny_mace, trust_custom_model, write_custom_model


class CountingLoader:
    """The real loader, counting its calls."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, bool]] = []

    def __call__(self, spec: ModelSpec, **kwargs: Any) -> Any:
        self.calls.append((spec.key, kwargs["dtype"], kwargs["with_d3"]))
        return load_calculator(spec, **kwargs)


EMT, LJ = resolve_model("emt"), resolve_model("lj")


def test_hits_misses_and_lru_eviction_order() -> None:
    loader = CountingLoader()
    cache = CalculatorCache(max_size=2, loader=loader)
    a = cache.get(EMT)  # miss
    b = cache.get(LJ)  # miss
    assert cache.get(EMT) is a  # hit: EMT is now the most recent
    assert cache.loaded_keys() == ["emt", "lj"]
    c = cache.get(EMT, dtype="float64")  # miss: evicts LJ, the least recently used
    assert c is not a
    assert ("lj", "cpu", "float32", False) not in cache
    assert cache.loaded_keys() == ["emt"]
    assert cache.get(LJ) is not b  # miss again: evicts EMT float32
    assert ("emt", "cpu", "float32", False) not in cache
    assert ("emt", "cpu", "float64", False) in cache
    assert cache.loaded_keys() == ["lj", "emt"]
    assert (cache.hits, cache.misses, cache.evictions) == (1, 4, 2)
    assert loader.calls == [
        ("emt", "float32", False),
        ("lj", "float32", False),
        ("emt", "float64", False),
        ("lj", "float32", False),
    ]
    assert len(cache) == 2


def test_dtype_spellings_share_one_entry() -> None:
    cache = CalculatorCache(max_size=2)
    assert cache.get(EMT, dtype="double") is cache.get(EMT, dtype="float64")
    assert (cache.hits, cache.misses) == (1, 1)


def test_stats_and_load_times_are_json() -> None:
    cache = CalculatorCache(max_size=3)
    cache.get(EMT)
    cache.get(EMT)
    cache.get(LJ, with_d3=True)
    stats = cache.stats()
    json.dumps(stats)
    assert [row["model_key"] for row in stats["entries"]] == ["lj", "emt"]
    assert stats["entries"][1]["hits"] == 1 and stats["entries"][0]["with_d3"] is True
    assert all(row["load_seconds"] >= 0 for row in stats["entries"])
    assert set(cache.load_times) == {
        ("emt", "cpu", "float32", False),
        ("lj", "cpu", "float32", True),
    }


def test_unload_and_clear_release_calculators() -> None:
    cache = CalculatorCache(max_size=3)
    ref = weakref.ref(cache.get(EMT))
    cache.get(EMT, dtype="float64")
    cache.get(LJ)
    assert cache.unload("emt") == 2 and cache.unload("emt") == 0
    gc.collect()
    assert ref() is None  # the cache held the only reference
    assert cache.loaded_keys() == ["lj"]
    cache.clear()
    assert cache.loaded_keys() == [] and len(cache) == 0


def test_eviction_drops_the_reference() -> None:
    cache = CalculatorCache(max_size=1)
    ref = weakref.ref(cache.get(EMT))
    cache.get(LJ)
    assert ref() is None


def test_refusals_and_failures_leave_no_entry(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    loader = CountingLoader()
    cache = CalculatorCache(max_size=2, loader=loader)
    with pytest.raises(ValidationError):
        cache.get(resolve_model("orb-d3-v2"), with_d3=True)
    assert loader.calls == []
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setenv("MOFSIM_OFFLINE", "1")
    with pytest.raises(ModelUnavailable):
        cache.get(resolve_model("mace-mp"))
    assert len(cache) == 0 and cache.misses == 1


def test_d3_flag_is_part_of_the_key() -> None:
    cache = CalculatorCache(max_size=2)
    bare, with_d3 = cache.get(EMT), cache.get(EMT, with_d3=True)
    atoms = bulk("Cu", "fcc", a=3.6, cubic=True)
    atoms.calc = bare
    e_bare = atoms.get_potential_energy()
    atoms.calc = with_d3
    assert atoms.get_potential_energy() < e_bare
    assert cache.loaded_keys() == ["emt"]


def test_memory_of_a_torch_model_is_reported(tmp_path: Path) -> None:
    model = build_tiny_mace()
    write_custom_model(tmp_path, "tiny", "mace", "m.model", model)
    trust_custom_model(tmp_path, "tiny")
    expected = (
        sum(p.numel() * 4 for p in [*model.parameters(), *model.buffers()] if p.is_floating_point())
        / 2**20
    )
    cache = CalculatorCache(max_size=1)
    calc = cache.get(resolve_model("custom:tiny", tmp_path))
    memory = cache.stats()["entries"][0]["memory_mb"]
    assert memory is not None and memory >= expected * 0.9
    assert parameter_megabytes(calc) == memory
    assert cache.loaded_keys() == ["custom:tiny"]
    cache.get(EMT)
    assert cache.loaded_keys() == ["emt"]
    assert cache.stats()["entries"][0]["memory_mb"] is None


def test_memory_a_load_takes_is_measured_per_model() -> None:
    """On the CPU, the executor's resident memory grows by what the loader keeps."""
    import numpy as np
    from ase.calculators.emt import EMT as EMTCalculator

    from executors.calc_cache import memory_in_use_mb

    def heavy_loader(spec: Any, **kw: Any) -> Any:
        calc = EMTCalculator()
        calc.ballast = np.ones(12 * 2**20)  # 96 MiB, written, so resident
        return calc

    assert (memory_in_use_mb("cpu") or 0) > 0
    cache = CalculatorCache(max_size=2, loader=heavy_loader)
    cache.get(EMT, dtype="float32")
    cache.get(EMT, dtype="float64")
    taken = cache.loaded_memory()
    assert set(taken) == {"emt"}
    assert taken["emt"] is not None and taken["emt"] >= 2 * 90  # both entries, summed
    rows = cache.stats()["entries"]
    assert all(r["memory_usage_mb"] >= 90 for r in rows)
    cache.unload("emt")
    assert cache.loaded_memory() == {}


def test_max_size_must_be_positive() -> None:
    with pytest.raises(ValueError):
        CalculatorCache(max_size=0)
