"""MatGL's M3GNet: the catalogue entry, its weights found in matgl's Hugging Face cache
without any network access, and the clear error when they are neither there nor
downloadable.  A tiny, randomly initialised M3GNet saved the way matgl saves models
stands in for the published weights."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk

from executors.families import get_family
from executors.families.matgl import HUB_ORGANISATION, MATGL_ELEMENTS, cached_folder
from executors.loaders import describe_versions, load_calculator
from executors.models import resolve_model
from spool.errors import ModelUnavailable

WEIGHTS = "M3GNet-PES-MatPES-PBE-2025.2"


def save_tiny_m3gnet(folder: Path) -> None:
    """An M3GNet for Al and Cu with 8 features and one block, saved by ``Potential.save``
    into ``folder`` (model.json, model.pt, state.pt)."""
    import torch
    from matgl.apps.pes import Potential
    from matgl.models import M3GNet

    torch.manual_seed(0)
    model = M3GNet(
        element_types=("Al", "Cu"),
        dim_node_embedding=8,
        dim_edge_embedding=8,
        units=8,
        nblocks=1,
        max_n=2,
        max_l=2,
        is_intensive=False,
    )
    # Large output weights, so that forces are big enough to compare with differences.
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(4.0)
    Potential(model=model, element_refs=np.array([-3.0, -4.0])).save(str(folder))


def into_hub_cache(cache: Path, source: Path, weights: str = WEIGHTS) -> None:
    """The files laid out as huggingface_hub caches a download of the model's repo."""
    repo = cache / f"models--{HUB_ORGANISATION}--{weights}"
    snapshot = repo / "snapshots" / "0123456789abcdef0123456789abcdef01234567"
    snapshot.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(snapshot.name)
    for name in ("model.json", "model.pt", "state.pt"):
        (snapshot / name).write_bytes((source / name).read_bytes())


def alcu() -> Atoms:
    atoms = bulk("Cu", "fcc", a=3.6, cubic=True)
    atoms[0].symbol = "Al"
    atoms.rattle(0.1, seed=3)
    return atoms


def test_the_catalogue_entry() -> None:
    spec = resolve_model("M3GNet")
    assert (spec.key, spec.family, spec.weights) == ("m3gnet", "matgl", WEIGHTS)
    assert resolve_model(WEIGHTS).key == "m3gnet" and spec.elements == list(MATGL_ELEMENTS)
    assert len(MATGL_ELEMENTS) == 89 and "Po" not in MATGL_ELEMENTS and "Pu" in MATGL_ELEMENTS
    family = get_family("matgl")
    assert family is not None and family.dtypes == ("float32", "float64")
    assert "matgl" in describe_versions(spec)["packages"]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_cached_weights_load_offline_and_give_conservative_forces(
    dtype: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    save_tiny_m3gnet(tmp_path / "saved")
    into_hub_cache(tmp_path / "cache", tmp_path / "saved")
    monkeypatch.setattr("matgl.config.MATGL_CACHE", tmp_path / "cache")
    monkeypatch.setenv("MOFSIM_OFFLINE", "1")
    assert cached_folder(WEIGHTS) is not None

    calc = load_calculator(resolve_model("m3gnet"), dtype=dtype)
    atoms = alcu()
    atoms.calc = calc
    energy, forces, stress = atoms.get_potential_energy(), atoms.get_forces(), atoms.get_stress()
    assert np.isfinite(energy) and forces.shape == (4, 3) and np.isfinite(forces).all()
    assert stress.shape == (6,) and np.isfinite(stress).all()
    assert np.abs(forces).max() > 1e-3
    if dtype == "float64":
        atom, axis = np.unravel_index(np.abs(forces).argmax(), forces.shape)
        step, shifted = 1e-4, []
        for sign in (1, -1):
            moved = atoms.copy()
            moved.positions[atom, axis] += sign * step
            moved.calc = calc
            shifted.append(moved.get_potential_energy())
        assert -(shifted[0] - shifted[1]) / (2 * step) == pytest.approx(
            forces[atom, axis], rel=1e-4
        )


def test_a_partial_cache_is_not_used(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    save_tiny_m3gnet(tmp_path / "saved")
    into_hub_cache(tmp_path / "cache", tmp_path / "saved")
    monkeypatch.setattr("matgl.config.MATGL_CACHE", tmp_path / "cache")
    snapshots = tmp_path / "cache" / f"models--{HUB_ORGANISATION}--{WEIGHTS}" / "snapshots"
    next(snapshots.iterdir()).joinpath("state.pt").unlink()
    assert cached_folder(WEIGHTS) is None


def test_offline_weights_are_unavailable_quickly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("matgl.config.MATGL_CACHE", tmp_path)
    monkeypatch.setenv("MOFSIM_OFFLINE", "1")
    start = time.perf_counter()
    with pytest.raises(ModelUnavailable) as info:
        load_calculator(resolve_model("m3gnet"))
    assert time.perf_counter() - start < 60  # the imports, never a network timeout
    message = info.value.message
    assert "m3gnet" in message and "not cached" in message and "MOFSIM_OFFLINE" in message
    assert f"hf download {HUB_ORGANISATION}/{WEIGHTS}" in message and str(tmp_path) in message
    assert info.value.code == 30005
