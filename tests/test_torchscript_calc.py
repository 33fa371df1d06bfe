"""TorchScript uploads run through the calculator their config describes: the numbers
match ASE's own Lennard-Jones, in any declared units, with forces and stress derived or
returned; a model that answers in other shapes is refused by name."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from ase import Atoms, units
from ase.build import bulk
from ase.calculators.lj import LennardJones

from executors.loaders import load_calculator
from executors.models import custom_spec
from spool.errors import ModelUnavailable
from tests.model_factories import LJ_CONFIG, torchscript_lj, write_custom_model


def argon() -> Atoms:
    atoms = bulk("Ar", "fcc", a=5.3).repeat(2)
    atoms.rattle(0.05, seed=1)
    return atoms


def calc_for(root: Path, raw: bytes, dtype: str = "float64", **config: Any) -> Any:
    write_custom_model(root, "ts", "pytorch", "model.pt", raw=raw, config={**LJ_CONFIG, **config})
    return load_calculator(custom_spec("ts", root), dtype=dtype)


def reference(atoms: Atoms, **lj: float) -> Atoms:
    ref = atoms.copy()
    ref.calc = LennardJones(**{"sigma": 2.3, "epsilon": 0.01, "rc": 5.0, **lj})
    return ref


@pytest.mark.parametrize("returns", ["energy", "dict"])
def test_energy_forces_stress_match_ase(tmp_path: Path, returns: str) -> None:
    atoms = argon()
    # The dict model returns forces and a detached energy: no stress can be derived.
    config = {"outputs": ["energy", "forces"], "stress": "none"} if returns == "dict" else {}
    atoms.calc = calc_for(tmp_path, torchscript_lj(returns=returns), **config)
    ref = reference(atoms)
    assert atoms.get_potential_energy() == pytest.approx(ref.get_potential_energy(), abs=1e-12)
    assert np.abs(atoms.get_forces() - ref.get_forces()).max() < 1e-12
    assert np.abs(ref.get_forces()).max() > 1e-3  # rattled: the comparison means something
    if returns == "energy":
        assert np.abs(atoms.get_stress() - ref.get_stress()).max() < 1e-12
    atoms.set_cell(atoms.cell * 1.02, scale_atoms=True)  # a new geometry is recomputed
    ref = reference(atoms)
    assert atoms.get_potential_energy() == pytest.approx(ref.get_potential_energy(), abs=1e-12)


def test_declared_units_are_converted(tmp_path: Path) -> None:
    # The same potential written in kcal/mol and Bohr.
    sigma, epsilon, rc = 2.3 / units.Bohr, 0.01 / (units.kcal / units.mol), 5.0 / units.Bohr
    raw = torchscript_lj(sigma, epsilon, rc)
    atoms = argon()
    atoms.calc = calc_for(tmp_path, raw, units={"energy": "kcal/mol", "length": "Bohr"}, cutoff=rc)
    ref = reference(atoms)
    assert atoms.get_potential_energy() == pytest.approx(ref.get_potential_energy(), rel=1e-6)
    assert np.abs(atoms.get_forces() - ref.get_forces()).max() < 1e-6
    assert np.abs(atoms.get_stress() - ref.get_stress()).max() < 1e-8


def test_float32_runs_the_module_cast(tmp_path: Path) -> None:
    atoms = argon()
    atoms.calc = calc_for(tmp_path, torchscript_lj(), dtype="float32")
    ref = reference(atoms)
    assert atoms.get_potential_energy() == pytest.approx(ref.get_potential_energy(), rel=1e-4)


def test_no_stress_when_the_config_says_none(tmp_path: Path) -> None:
    from ase.calculators.calculator import PropertyNotImplementedError

    atoms = argon()
    atoms.calc = calc_for(tmp_path, torchscript_lj(), stress="none")
    assert np.isfinite(atoms.get_forces()).all()
    with pytest.raises(PropertyNotImplementedError):
        atoms.get_stress()


@pytest.mark.parametrize(
    ("returns", "outputs", "words"),
    [
        ("flat-forces", ["energy", "forces"], r"forces has shape \[24\], expected \[8, 3\]"),
        ("pair-energies", ["energy"], "energy must be one floating-point number"),
        ("energy", ["energy", "forces"], "names 2 output"),
        ("dict", ["energy", "stress"], "has no stress"),
    ],
)
def test_outputs_of_another_shape_are_refused(
    tmp_path: Path, returns: str, outputs: list[str], words: str
) -> None:
    atoms = argon()
    atoms.calc = calc_for(tmp_path, torchscript_lj(returns=returns), outputs=outputs)
    with pytest.raises(ModelUnavailable, match=words) as exc:
        atoms.get_potential_energy()
    assert exc.value.field == "config.outputs"


def test_a_file_that_is_not_torchscript_is_refused(tmp_path: Path) -> None:
    import torch

    buf = io.BytesIO()
    torch.save({"weight": torch.zeros(3)}, buf)
    with pytest.raises(ModelUnavailable, match="not a TorchScript archive"):
        calc_for(tmp_path, buf.getvalue())
