"""SevenNet-0, a real universal potential, on one small benchmark MOF: every task type
end to end with loose limits (force calls are the cost: about a second each here)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from ase import Atoms
from ase.io import read

from executors.api import NullObserver, TaskContext


@pytest.fixture(scope="module")
def sevennet() -> Any:
    from executors.loaders import load_calculator
    from executors.models import resolve_model

    return load_calculator(resolve_model("7net-0"))


PER_TASK: dict[str, dict[str, Any]] = {
    "single-point-energy": {},
    "optimization": {"max_steps": 3, "fmax": 0.1},
    "interaction-energy": {"gas": "H2"},
    "stability": {
        "relax_steps": 1,
        "nvt_steps": 2,
        "npt_steps": 2,
        "frame_interval": 1,
        "relax_fmax": 0.05,
    },
    "bulk-modulus": {"num_points": 5, "strain_range": 0.02, "pre_optimize": False, "max_steps": 0},
    # 78 displacements: the cell is P1.
    "heat-capacity": {
        "pre_optimize": False,
        "supercell": [1, 1, 1],
        "temperature_range": [0, 600, 100],
    },
}


@pytest.mark.slow
@pytest.mark.parametrize("task", list(PER_TASK))
def test_sevennet_on_the_smallest_hcmof(
    task: str, sevennet: Any, mofsimbench_dir: Path, tmp_path: Path
) -> None:
    from executors.registry import task_module

    atoms = read(mofsimbench_dir / "hcmof" / "RSM0004.cif")  # 13 atoms, C3H3EuO6
    assert isinstance(atoms, Atoms)
    module = task_module(task)
    atoms.calc = sevennet
    ctx = TaskContext(
        task_id="t",
        task_type=task,
        atoms=atoms,
        structure_name="RSM0004",
        parameters=module.validate(PER_TASK[task]),
        model_key="7net-0",
        calculator=sevennet,
        workspace=tmp_path,
        observer=NullObserver(),
    )
    result = module.run(ctx)
    json.dumps(result, allow_nan=False)
    if task == "single-point-energy":
        assert result["energy_eV"] < 0 and len(result["forces_eV_A"]) == 13
    elif task == "optimization":
        assert result["steps"] <= 3 and result["final_energy_eV"] <= result["initial_energy_eV"]
    elif task == "interaction-energy":
        assert abs(result["interaction_energy_eV"]) < 5.0
    elif task == "stability":
        assert result["stability_assessment"] in ("stable", "unstable")
        assert result["n_frames"] == 2 + 2 + 2
    elif task == "bulk-modulus":
        assert len(result["energies_eV"]) == 5
        assert result["bulk_modulus_GPa"] > 0.0
    else:
        assert result["n_displacements"] > 0
        assert result["cv_300K_J_per_K_g"] > 0.0
    for name in result.get("output_files", {}).values():
        assert (tmp_path / name).stat().st_size > 0
