"""Calculator loaders: ASE, custom MACE/ORB files, D3, offline foundation weights."""

from __future__ import annotations

import inspect
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk
from ase.units import Bohr

from executors.families import MPTRJ_ELEMENTS
from executors.loaders import D3_CUTOFF_BOHR, describe_versions, load_calculator, prepare_torch
from executors.models import resolve_model
from spool.errors import ModelUnavailable, ValidationError
from tests.model_factories import (
    TINY_ORB_KWARGS,
    build_tiny_mace,
    build_tiny_orb,
    trust_custom_model,
    write_custom_model,
)


def alcu_cell() -> Atoms:
    atoms = bulk("Cu", "fcc", a=3.6, cubic=True)
    atoms[0].symbol = "Al"
    atoms.rattle(0.05, seed=1)
    return atoms


def test_emt_and_lj_load_and_compute() -> None:
    atoms = bulk("Cu", "fcc", a=3.6) * (2, 2, 2)
    atoms.calc = load_calculator(resolve_model("emt"))
    assert atoms.get_potential_energy() == pytest.approx(8 * -0.0057, abs=0.01)
    assert np.abs(atoms.get_forces()).max() < 1e-8
    dimer = Atoms("Ar2", positions=[[0, 0, 0], [0, 0, 2 ** (1 / 6)]])
    dimer.calc = load_calculator(resolve_model("lj"), dtype="float64")
    # ASE's LJ is shifted to zero at its 3 sigma cutoff.
    assert dimer.get_potential_energy() == pytest.approx(-1.0 - 4 * (3**-12 - 3**-6), abs=1e-9)


def test_bad_dtype_and_sevennet_float64_are_refused() -> None:
    with pytest.raises(ValidationError) as info:
        load_calculator(resolve_model("emt"), dtype="float16")
    assert info.value.field == "dtype"
    with pytest.raises(ValidationError) as info:
        load_calculator(resolve_model("sevennet-0"), dtype="float64")
    assert info.value.field == "dtype"


def test_d3_trained_model_refuses_a_second_d3() -> None:
    start = time.perf_counter()
    with pytest.raises(ValidationError) as info:
        load_calculator(resolve_model("orb-d3-v2"), with_d3=True)
    assert info.value.field == "with_d3" and "force_d3" in info.value.message
    assert time.perf_counter() - start < 1.0  # refused before anything is loaded


def test_d3_wrapper_adds_negative_dispersion() -> None:
    atoms = bulk("Cu", "fcc", a=3.6) * (2, 2, 2)
    atoms.rattle(0.02, seed=3)
    atoms.calc = load_calculator(resolve_model("emt"))
    bare_e, bare_f = atoms.get_potential_energy(), atoms.get_forces()
    calc: Any = load_calculator(resolve_model("emt"), with_d3=True)
    atoms.calc = calc
    e, f, stress = atoms.get_potential_energy(), atoms.get_forces(), atoms.get_stress()
    dispersion = e - bare_e
    assert -8 * 1.0 < dispersion < -8 * 0.05  # a few tenths of an eV per Cu atom
    assert np.abs(f - bare_f).max() < 0.5 and stress.shape == (6,)
    d3 = calc.mixer.calcs[1]
    assert type(d3).__name__ == "TorchDFTD3Calculator"
    assert d3.damping == "bj" and d3.abc is False
    assert d3.cutoff == pytest.approx(D3_CUTOFF_BOHR * Bohr)
    assert str(d3.dtype) == "torch.float32"


@pytest.mark.parametrize("pickle", [True, False], ids=["upload", "safe-form"])
def test_custom_mace_file_loads_in_both_precisions(tmp_path: Path, pickle: bool) -> None:
    write_custom_model(tmp_path, "tiny_mace", "mace", "model.model", build_tiny_mace())
    if not pickle:
        assert trust_custom_model(tmp_path, "tiny_mace")["safe_form"]
    spec = resolve_model("custom:tiny_mace", tmp_path)
    energies = {}
    for dtype in ("float32", "float64"):
        calc: Any = load_calculator(spec, dtype=dtype, models_root=tmp_path, allow_pickle=pickle)
        assert str(next(calc.models[0].parameters()).dtype) == f"torch.{dtype}"
        atoms = alcu_cell()
        atoms.calc = calc
        energies[dtype] = atoms.get_potential_energy()
        forces = atoms.get_forces()
        assert np.isfinite(energies[dtype]) and forces.shape == (4, 3)
        assert np.abs(forces.sum(axis=0)).max() < 1e-4  # a conservative model
    assert energies["float32"] == pytest.approx(energies["float64"], abs=1e-3)
    import torch

    assert torch.get_default_dtype() == torch.float32  # the load left no global change


def test_custom_mace_with_built_in_d3_needs_force(tmp_path: Path) -> None:
    write_custom_model(tmp_path, "d3mace", "mace", "m.model", build_tiny_mace(), with_d3=True)
    spec = resolve_model("d3mace", tmp_path)
    with pytest.raises(ValidationError):
        load_calculator(spec, with_d3=True, allow_pickle=True)
    calc = load_calculator(spec, with_d3=True, force_d3=True, allow_pickle=True)
    assert "SumCalculator" in [c.__name__ for c in type(calc).__mro__]


def test_broken_custom_file_is_unavailable_with_reason(tmp_path: Path) -> None:
    write_custom_model(tmp_path, "junk", "mace", "model.model", raw=b"not a torch file")
    with pytest.raises(ModelUnavailable) as info:
        load_calculator(resolve_model("custom:junk", tmp_path), allow_pickle=True)
    assert "custom:junk" in info.value.message and "model.model" in info.value.message
    write_custom_model(tmp_path, "gone", "sevennet", "model.pt", raw=b"x")
    spec = resolve_model("custom:gone", tmp_path)
    (tmp_path / "gone" / "model.pt").unlink()
    with pytest.raises(ModelUnavailable):
        load_calculator(spec, allow_pickle=True)


def test_custom_orb_state_dict_loads(tmp_path: Path) -> None:
    import torch

    write_custom_model(
        tmp_path,
        "tiny_orb",
        "orb",
        "orb.pt",
        build_tiny_orb().state_dict(),
        config={
            "precision": "float32",
            "architecture": "v3-conservative",
            "architecture_kwargs": TINY_ORB_KWARGS,
            "system_config": {"radius": 6.0, "max_num_neighbors": 20},
        },
    )
    spec = resolve_model("custom:tiny_orb", tmp_path)
    for dtype in ("float32", "float64"):
        atoms = alcu_cell()
        atoms.calc = load_calculator(spec, dtype=dtype)
        assert torch.get_default_dtype() == torch.float32
        energy, forces = atoms.get_potential_energy(), atoms.get_forces()
        assert np.isfinite(energy) and forces.shape == (4, 3)
        assert np.abs(forces.sum(axis=0)).max() < 1e-4  # conservative forces
        assert atoms.get_stress().shape == (6,)


def test_custom_orb_without_matching_architecture(tmp_path: Path) -> None:
    # No architecture named: the default-size builders are tried and none fits.
    write_custom_model(tmp_path, "odd_orb", "orb", "orb.pt", build_tiny_orb().state_dict())
    with pytest.raises(ModelUnavailable) as info:
        load_calculator(resolve_model("custom:odd_orb", tmp_path))
    assert "no known architecture" in info.value.message
    write_custom_model(
        tmp_path, "named", "orb", "orb.pt", raw=b"", config={"architecture": "orb-v9"}
    )
    with pytest.raises(ModelUnavailable):
        load_calculator(resolve_model("custom:named", tmp_path))


def test_offline_mace_weights_are_unavailable_quickly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setenv("MOFSIM_OFFLINE", "1")
    start = time.perf_counter()
    with pytest.raises(ModelUnavailable) as info:
        load_calculator(resolve_model("mace-mp"))
    assert time.perf_counter() - start < 60  # the imports, never a network timeout
    message = info.value.message
    assert "mace-mp" in message and "not cached" in message
    assert str(tmp_path / "mace") in message and "custom model" in message
    assert info.value.code == 30005


def test_offline_orb_weights_are_unavailable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("cached_path.common.CACHE_DIRECTORY", tmp_path)
    monkeypatch.setenv("MOFSIM_OFFLINE", "1")
    with pytest.raises(ModelUnavailable) as info:
        load_calculator(resolve_model("orb-v2"))
    assert "orb-v2" in info.value.message and str(tmp_path) in info.value.message


def test_mace_mp_uses_a_file_in_the_mace_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Stand-in weights at the exact place mace-torch caches MACE-MP-0 medium: proves the
    # cache is found and handed to mace_mp without any network access.
    prepare_torch()
    import torch

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setenv("MOFSIM_OFFLINE", "1")
    (tmp_path / "mace").mkdir()
    torch.save(build_tiny_mace(), tmp_path / "mace" / "20231203mace128L1_epoch199model")
    atoms = alcu_cell()
    atoms.calc = load_calculator(resolve_model("mace-mp"))
    assert np.isfinite(atoms.get_potential_energy())


def test_describe_versions() -> None:
    info = describe_versions(resolve_model("mace-mp"))
    assert info["model"] == "mace-mp" and info["framework"] == "mace"
    assert info["packages"]["ase"] and info["packages"]["torch"]
    assert "mace-torch" in info["packages"] and "torch-dftd" in info["packages"]


def test_sevennet_checkpoint_matches_the_catalogue() -> None:
    prepare_torch()
    import sevenn._const as const
    import torch
    from ase.data import chemical_symbols

    config = torch.load(const.SEVENNET_0_11Jul2024, map_location="cpu", weights_only=False)[
        "config"
    ]
    assert sorted(config["_type_map"]) == sorted(chemical_symbols.index(s) for s in MPTRJ_ELEMENTS)
    assert resolve_model("sevennet-0").elements == MPTRJ_ELEMENTS


@pytest.mark.slow
def test_sevennet_0_single_point_and_as_custom_checkpoint(tmp_path: Path) -> None:
    calc = load_calculator(resolve_model("7net-0"))
    atoms = bulk("Cu", "fcc", a=3.61, cubic=True)
    atoms.calc = calc
    energy = atoms.get_potential_energy()
    assert -4.5 < energy / len(atoms) < -3.5  # PBE (MP-compatible) Cu, about -4.1 eV/atom
    assert np.abs(atoms.get_forces()).max() < 1e-3  # every site is a symmetry centre
    assert np.abs(atoms.get_stress()).max() < 0.05
    atoms.rattle(0.05, seed=0)
    rattled = atoms.get_potential_energy()
    assert np.abs(atoms.get_forces()).max() > 1e-3
    # The same checkpoint uploaded as a custom SevenNet model gives the same numbers.
    import sevenn._const as const

    write_custom_model(tmp_path, "my7net", "sevennet", "model.pt", raw=b"")
    shutil.copyfile(const.SEVENNET_0_11Jul2024, tmp_path / "my7net" / "model.pt")
    with pytest.raises(ModelUnavailable, match="validation"):
        load_calculator(resolve_model("custom:my7net", tmp_path))  # not validated yet
    assert trust_custom_model(tmp_path, "my7net")["safe_form"]
    atoms.calc = load_calculator(resolve_model("custom:my7net", tmp_path))
    assert atoms.get_potential_energy() == pytest.approx(rattled, abs=1e-5)


@pytest.mark.slow
def test_orb_v2_uses_a_file_in_the_cached_path_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Random full-size orb-v2 weights where cached_path keeps the published file.
    prepare_torch()
    import torch
    from cached_path.util import resource_to_filename
    from orb_models.forcefield import pretrained
    from orb_models.forcefield.atomic_system import SystemConfig

    monkeypatch.setattr("cached_path.common.CACHE_DIRECTORY", tmp_path)
    monkeypatch.setenv("MOFSIM_OFFLINE", "1")
    url = inspect.signature(pretrained.orb_v2).parameters["weights_path"].default
    model = pretrained.orb_v2_architecture(system_config=SystemConfig(6.0, 20))
    torch.save(model.state_dict(), tmp_path / resource_to_filename(url))
    del model
    atoms = alcu_cell()
    atoms.calc = load_calculator(resolve_model("orb-v2"))
    assert np.isfinite(atoms.get_potential_energy()) and atoms.get_forces().shape == (4, 3)
