"""interaction-energy: bookkeeping, limits (far guest -> 0), guest sources, validation."""

from __future__ import annotations

import json

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk, molecule
from ase.calculators.emt import EMT
from ase.calculators.lj import LennardJones
from ase.cluster import Icosahedron
from ase.io import read

from executors.api import NullObserver, TaskContext
from executors.tasks import interaction_energy as ie
from spool.errors import TaskCancelled, ValidationError

SIGMA, EPS, RC = 3.4, 0.0104, 8.0  # argon-like Lennard-Jones


def make_ctx(atoms, tmp_path, parameters, calculator=None, observer=None):
    return TaskContext(
        task_id="task_ie",
        task_type="interaction-energy",
        atoms=atoms,
        structure_name="test",
        parameters=parameters,
        model_key="test",
        calculator=calculator or EMT(),
        workspace=tmp_path,
        observer=observer or NullObserver(),
    )


def lj():
    return LennardJones(sigma=SIGMA, epsilon=EPS, rc=RC, smooth=False)


def argon_cluster_in_box(box: float = 40.0) -> Atoms:
    cluster = Icosahedron("Ar", noshells=2, latticeconstant=5.26)  # 13 atoms
    cluster.cell = [box, box, box]
    cluster.pbc = True
    cluster.center()
    return cluster


def lj_pair(r: np.ndarray) -> np.ndarray:
    """Pair energy of ASE's (shifted, unsmoothed) Lennard-Jones below the cutoff."""

    def bare(x):
        return 4 * EPS * ((SIGMA / x) ** 12 - (SIGMA / x) ** 6)

    return np.where(r < RC, bare(r) - bare(RC), 0.0)


def copper_slab() -> Atoms:
    slab = bulk("Cu", "fcc", a=3.6, cubic=True) * (2, 2, 1)
    slab.cell[2, 2] = 30.0  # vacuum along z
    return slab


def test_far_guest_gives_zero_and_near_guest_the_pair_sum(tmp_path):
    framework = argon_cluster_in_box()
    centre = framework.positions.mean(axis=0)
    far = ie.run(
        make_ctx(
            framework, tmp_path, {"gas": "Ar", "position": list(centre + 15.0)}, calculator=lj()
        )
    )
    assert far["interaction_energy_eV"] == pytest.approx(0.0, abs=1e-12)
    assert far["guest_energy_eV"] == 0.0  # a lone atom
    assert far["guest_forces_eV_A"] == [[0.0, 0.0, 0.0]]

    top = framework.positions[:, 2].max()
    position = centre + [0.0, 0.0, top - centre[2] + 3.8]  # 3.8 A above the top atom
    near = ie.run(
        make_ctx(framework, tmp_path, {"gas": "ar", "position": list(position)}, calculator=lj())
    )
    r = np.linalg.norm(framework.positions - position, axis=1)
    assert near["interaction_energy_eV"] == pytest.approx(lj_pair(r).sum(), rel=1e-10)
    assert near["interaction_energy_eV"] < -0.005
    assert near["min_guest_framework_distance_A"] == pytest.approx(r.min())
    assert near["interaction_energy_kJ_mol"] == pytest.approx(
        near["interaction_energy_eV"] * 96.485, rel=1e-4
    )
    assert near["guest_formula"] == "Ar" and near["guest_indices"] == [13]
    assert near["parameters_used"]["gas"] == "Ar"


def test_co_on_copper_bookkeeping_and_outputs(tmp_path):
    slab = copper_slab()
    obs = NullObserver()
    top = slab.positions[:, 2].max()
    params = {"gas": "CO", "position": [1.8, 1.8, top + 2.6]}
    result = ie.run(make_ctx(slab, tmp_path, params, observer=obs))
    json.dumps(result)
    complex_ = read(tmp_path / result["output_files"]["complex_structure"])
    assert len(complex_) == len(slab) + 2 == result["natoms_complex"]
    assert complex_.get_chemical_symbols()[-2:] == molecule("CO").get_chemical_symbols()

    # Independent evaluation of the three energies.
    complex_.calc = EMT()
    host = complex_[: len(slab)]
    host.calc = EMT()
    guest = molecule("CO")
    guest.calc = EMT()
    assert result["complex_energy_eV"] == pytest.approx(complex_.get_potential_energy())
    assert result["framework_energy_eV"] == pytest.approx(host.get_potential_energy())
    assert result["guest_energy_eV"] == pytest.approx(guest.get_potential_energy())
    assert result["interaction_energy_eV"] == pytest.approx(
        result["complex_energy_eV"] - result["framework_energy_eV"] - result["guest_energy_eV"]
    )
    assert abs(result["interaction_energy_eV"]) > 1e-3
    guest_forces = np.array(result["guest_forces_eV_A"])
    assert guest_forces == pytest.approx(complex_.get_forces()[-2:], abs=1e-6)
    assert result["guest_net_force_eV_A"] == pytest.approx(guest_forces.sum(axis=0).tolist())
    assert [f for f, _, _ in obs.progress_events] == pytest.approx([0, 1 / 3, 2 / 3, 1.0])


def test_guest_far_above_the_slab_has_vanishing_emt_interaction(tmp_path):
    slab = copper_slab()
    top = slab.positions[:, 2].max()
    result = ie.run(make_ctx(slab, tmp_path, {"gas": "CO", "position": [1.8, 1.8, top + 12.0]}))
    assert abs(result["interaction_energy_eV"]) < 1e-4


def test_guest_sources_agree(tmp_path):
    slab = copper_slab()
    frac = [0.3, 0.4, (slab.positions[:, 2].max() + 2.5) / 30.0]
    by_gas = ie.run(make_ctx(slab, tmp_path, {"gas": "CO", "position_fractional": frac}))
    complex_, guest_idx = ie.insert_guest(slab, molecule("CO"), np.array(frac) @ slab.cell.array)
    by_indices = ie.run(make_ctx(complex_, tmp_path, {"guest_indices": guest_idx}))
    tagged = complex_.copy()
    tagged.set_tags([0] * len(slab) + [7, 7])
    by_tag = ie.run(make_ctx(tagged, tmp_path, {"guest_tag": 7}))
    for other in (by_indices, by_tag):
        assert other["interaction_energy_eV"] == pytest.approx(by_gas["interaction_energy_eV"])
        assert other["guest_indices"] == by_gas["guest_indices"]


def test_guest_split_by_the_boundary_is_made_whole(tmp_path):
    slab = copper_slab()
    top = slab.positions[:, 2].max()
    co = molecule("CO")
    co.rotate(90, "y")  # along x, so it can straddle the x boundary
    complex_, idx = ie.insert_guest(slab, co, [0.0, 1.8, top + 2.5])
    complex_.wrap()
    assert np.ptp(complex_.positions[idx, 0]) > 3.0  # split across the cell
    result = ie.run(make_ctx(complex_, tmp_path, {"guest_indices": idx}))
    whole = molecule("CO")
    whole.calc = EMT()
    assert result["guest_energy_eV"] == pytest.approx(whole.get_potential_energy())
    assert result["min_guest_framework_distance_A"] > 1.5


def test_cancel_between_single_points(tmp_path):
    class CancelSecond(NullObserver):
        calls = 0

        def check_cancel(self) -> None:
            self.calls += 1
            if self.calls == 2:
                raise TaskCancelled("cancelled")

    with pytest.raises(TaskCancelled):
        ie.run(
            make_ctx(
                copper_slab(),
                tmp_path,
                {"gas": "CO", "position": [1, 1, 12]},
                observer=CancelSecond(),
            )
        )


def test_build_gas_is_isolated_and_case_insensitive():
    for name in ("co2", "H2O", "n2", "CH4", "H2", "O2", "CO", "NH3", "Ar", "H2S", "xe"):
        mol = ie.build_gas(name)
        assert not mol.pbc.any() and mol.cell.rank == 0 and len(mol) >= 1
    assert ie.build_gas("nh3").get_chemical_formula() == "H3N"
    with pytest.raises(ValidationError):
        ie.build_gas("unobtainium")


@pytest.mark.parametrize(
    "raw, field",
    [
        ({"gas": "XYZ", "position": [0, 0, 0]}, "parameters.gas"),
        ({}, "parameters.gas"),
        ({"gas": "CO2", "guest_indices": [1]}, "parameters.gas"),
        (
            {"gas": "CO2", "position": [0, 0, 0], "position_fractional": [0, 0, 0]},
            "parameters.position_fractional",
        ),
        ({"gas": "CO2", "position": [0, 0]}, "parameters.position"),
        ({"guest_indices": [1, 2], "position": [0, 0, 0]}, "parameters.position"),
        ({"guest_indices": [1, 1]}, "parameters.guest_indices"),
        ({"guest_indices": ["a"]}, "parameters.guest_indices"),
        ({"guest_indices": [-1]}, "parameters.guest_indices"),
        ({"guest_indices": []}, "parameters.guest_indices"),
        ({"guest_indices": [1], "dtype": "double"}, "parameters.dtype"),
    ],
)
def test_validate_rejects(raw, field):
    with pytest.raises(ValidationError) as err:
        ie.validate(raw)
    assert err.value.field == field


def test_validate_accepts_and_normalizes():
    out = ie.validate({"gas": "co2", "position_fractional": "0.5,0.5,0.5", "enable_d3": True})
    assert out["gas"] == "CO2" and out["position_fractional"] == [0.5, 0.5, 0.5]
    assert out["with_d3"] is True
    assert ie.validate({"guest_indices": ["3", 4]})["guest_indices"] == [3, 4]


@pytest.mark.parametrize(
    "params, field",
    [
        ({"guest_indices": [0, 99]}, "parameters.guest_indices"),
        ({"guest_indices": list(range(16))}, "parameters.guest_indices"),
        ({"guest_tag": 5}, "parameters.guest_tag"),
    ],
)
def test_run_time_guest_errors(tmp_path, params, field):
    with pytest.raises(ValidationError) as err:
        ie.run(make_ctx(copper_slab(), tmp_path, params))
    assert err.value.field == field


def test_fractional_or_automatic_position_needs_a_cell(tmp_path):
    cluster = Icosahedron("Ar", noshells=2)
    for params, field in (
        ({"gas": "Ar", "position_fractional": [0.5] * 3}, "parameters.position_fractional"),
        ({"gas": "Ar"}, "parameters.position"),
    ):
        with pytest.raises(ValidationError) as err:
            ie.run(make_ctx(cluster, tmp_path, params, calculator=lj()))
        assert err.value.field == field
    result = ie.run(
        make_ctx(cluster, tmp_path, {"gas": "Ar", "position": [30.0, 0, 0]}, calculator=lj())
    )
    assert result["output_files"]["complex_structure"] == "complex.xyz"
    assert result["interaction_energy_eV"] == pytest.approx(0.0, abs=1e-12)


def test_gas_without_position_goes_into_the_largest_void(tmp_path):
    framework = argon_cluster_in_box(box=20.0)
    result = ie.run(make_ctx(framework, tmp_path, {"gas": "Ar"}, calculator=lj()))
    # The cluster sits at the box centre, so the void centre is the box corner.
    com = np.array(result["guest_center_of_mass_A"]) % 20.0
    assert np.minimum(com, 20.0 - com) == pytest.approx([0.0, 0.0, 0.0], abs=0.5)
    assert result["min_guest_framework_distance_A"] > 12.0
    assert result["interaction_energy_eV"] == pytest.approx(0.0, abs=1e-12)


@pytest.mark.slow
def test_sevennet_co2_in_the_pore_of_mof5(tmp_path, mofsimbench_dir):
    import torch

    torch.serialization.add_safe_globals([slice])  # sevenn checkpoints pickle slices
    from sevenn.calculator import SevenNetCalculator

    framework = read(mofsimbench_dir / "main_set" / "MOF-5_primitive.cif")
    calc = SevenNetCalculator("7net-0", device="cpu")
    result = ie.run(make_ctx(framework, tmp_path, {"gas": "CO2"}, calculator=calc))
    json.dumps(result)
    assert result["guest_formula"] == "CO2"
    # The pore centre is farther from every framework atom than SevenNet-0's 5 A cutoff,
    # so without D3 the interaction vanishes up to float32 rounding.
    assert result["min_guest_framework_distance_A"] > 5.0
    assert abs(result["interaction_energy_kJ_mol"]) < 1.0
    assert result["guest_energy_eV"] < -20.0  # a bound molecule, evaluated without a cell
