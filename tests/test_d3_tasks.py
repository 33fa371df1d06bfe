"""Every task type with ``with_d3: true`` on SevenNet-0, through the executor's own path
(``Worker.run_claimed``: the warm calculator's reset, the task, result.json), on the
smallest benchmark MOF with tiny step counts.  The D3 sum once lacked ``reset`` (every
task failed) and ``free_energy`` (the first NPT step failed)."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest

from executors.worker import Worker
from spool import Job, Spool, transitions

PER_TASK: dict[str, dict[str, Any]] = {
    "single-point-energy": {},
    "optimization": {"max_steps": 2, "fmax": 0.1, "relax_cell": True},
    "interaction-energy": {"gas": "H2"},
    "stability": {"relax_steps": 1, "nvt_steps": 2, "npt_steps": 2, "frame_interval": 1},
    "bulk-modulus": {"num_points": 5, "strain_range": 0.02, "pre_optimize": False, "max_steps": 0},
    "heat-capacity": {
        "pre_optimize": False,
        "supercell": [1, 1, 1],
        "temperature_range": [0, 600, 100],
    },
}
CASES = [(task, params) for task, params in PER_TASK.items()] + [
    (
        "stability",
        {"protocol_variant": "temperature_ramp", "relax_steps": 1, "nvt_steps": 1, "npt_steps": 1},
    )
]


@pytest.fixture(scope="module")
def worker_spool(tmp_path_factory: pytest.TempPathFactory) -> tuple[Worker, Spool]:
    """One executor for all cases: its calculator stays warm from one task to the next."""
    sp = Spool(tmp_path_factory.mktemp("d3") / "spool")
    return Worker(sp.root, "cpu0", out=io.StringIO()), sp


@pytest.mark.slow
@pytest.mark.parametrize(
    ("task", "params"), CASES, ids=[c[0] + str(i) for i, c in enumerate(CASES)]
)
def test_every_task_type_runs_with_d3_on_sevennet(
    task: str,
    params: dict[str, Any],
    worker_spool: tuple[Worker, Spool],
    mofsimbench_dir: Path,
) -> None:
    worker, sp = worker_spool
    cif = mofsimbench_dir / "hcmof" / "RSM0004.cif"  # 13 atoms, C3H3EuO6
    job = Job.from_dict(
        {
            "task_type": task,
            "model": "sevennet-0",
            "structure": {"source": "path", "path": str(cif)},
            "parameters": {**params, "with_d3": True},
        }
    )
    claimed = transitions.claim(sp.paths, sp.submit(job), "cpu0", job.task_id)
    assert claimed is not None
    out = io.StringIO()
    worker.out = out
    worker.run_claimed(job.task_id, claimed)
    finished = json.loads(out.getvalue().splitlines()[-1])
    assert finished["status"] == "COMPLETED", finished.get("error")
    doc = json.loads(sp.paths.result_file(job.task_id).read_text())
    assert doc["provenance"]["with_d3"] is True
    result = doc["result"]
    if task == "single-point-energy":
        assert result["energy_eV"] < 0 and len(result["forces_eV_A"]) == 13
    elif task == "optimization":
        assert result["final_energy_eV"] <= result["initial_energy_eV"]
    elif task == "interaction-energy":
        assert abs(result["interaction_energy_eV"]) < 5.0
    elif task == "stability":
        npt = [s for s in result["stages"] if s["type"] == "npt"]
        assert npt and all(s["energy_drift_quantity"] == "conserved_energy" for s in npt)
        assert result["stability_assessment"] in ("stable", "unstable")
    elif task == "bulk-modulus":
        assert len(result["energies_eV"]) == 5
    else:
        assert result["cv_300K_J_per_K_g"] > 0.0


@pytest.mark.slow
def test_d3_changes_the_energy_and_a_warm_calculator_answers_a_new_structure(
    mofsimbench_dir: Path,
) -> None:
    from ase.io import read

    from executors.loaders import load_calculator
    from executors.models import resolve_model

    spec = resolve_model("sevennet-0")
    plain, with_d3 = load_calculator(spec), load_calculator(spec, with_d3=True)
    atoms = read(mofsimbench_dir / "hcmof" / "RSM0004.cif")
    atoms.calc = plain
    e_plain = atoms.get_potential_energy()
    atoms.calc = with_d3
    e_d3 = atoms.get_potential_energy()
    assert e_d3 < e_plain  # dispersion binds
    assert atoms.get_potential_energy(force_consistent=True) == pytest.approx(e_d3)
    with_d3.reset()
    assert with_d3.results == {}
    moved = atoms.copy()
    moved.positions[0] += 0.05
    moved.calc = with_d3
    assert moved.get_potential_energy() != pytest.approx(e_d3, abs=1e-9)
