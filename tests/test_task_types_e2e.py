"""Every task type through the real path: ``mofsim submit`` -> spool -> daemon -> executor.

One daemon (one CPU slot) serves the whole module.  The jobs use EMT copper with loose
limits so that all six run in seconds; the physics is checked for sanity here and
validated in each task type's own tests.  Bad parameters must be refused by ``mofsim
submit`` itself (exit 1, error 40001 naming the field) with nothing published.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from ase import Atoms
from ase.build import bulk, fcc111
from ase.io import read, write
from ase.units import kB, kJ, mol
from typer.testing import CliRunner

from mofsim_cli.main import app
from spool import Spool
from tests.daemon_helpers import Daemon, wait_for

TERMINAL = ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT")
R = kB * mol / kJ * 1000.0  # J/(K mol)


def cli(*args: str | Path, spool: Path) -> Any:
    return CliRunner().invoke(app, [*map(str, args), "--spool", str(spool)], catch_exceptions=False)


def submit(spool: Path, task_type: str, structure: Path, *params: str) -> str:
    argv: list[str | Path] = ["submit", task_type, structure, "-m", "emt", "--json"]
    for p in params:
        argv += ["-p", p]
    r = cli(*argv, spool=spool)
    assert r.exit_code == 0, r.output
    return str(json.loads(r.stdout)["task_id"])


@pytest.fixture(scope="module")
def structures(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("structures")
    files = {
        # 4-atom cubic cell, stretched: every relaxation has work to do.
        "cu_cubic": bulk("Cu", "fcc", a=3.7, cubic=True),
        "cu_primitive": bulk("Cu", "fcc", a=3.7),
        # Near EMT's 3.59 A: what a stable crystal looks like to a short NPT run.
        "cu_equilibrium": bulk("Cu", "fcc", a=3.6, cubic=True).repeat(2),
        # A periodic slab with 16 A of vacuum: the largest void is far from the metal.
        "cu_slab": fcc111("Cu", size=(2, 2, 3), vacuum=8.0, periodic=True),
    }
    out = {}
    for name, atoms in files.items():
        path = d / f"{name}.cif"
        write(path, atoms, format="cif")
        out[name] = path
    return out


@pytest.fixture(scope="module")
def spool_root(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    root = tmp_path_factory.mktemp("e2e") / "spool"
    with Daemon(root, slots="cpu:1"):
        yield root


def wait_all(sp: Spool, ids: dict[str, str], timeout: float = 45.0) -> dict[str, Any]:
    wait_for(
        lambda: all(sp.record(t)["status"] in TERMINAL for t in ids.values()),
        timeout,
        "every task to end",
    )
    return {name: sp.record(t) for name, t in ids.items()}


def test_six_task_types_complete_with_sane_numbers(
    spool_root: Path, structures: dict[str, Path]
) -> None:
    sp = Spool(spool_root)
    ids = {
        "single-point-energy": submit(spool_root, "single-point-energy", structures["cu_cubic"]),
        "optimization": submit(
            spool_root,
            "optimization",
            structures["cu_cubic"],
            "fmax=0.01",
            "max_steps=200",
            "relax_cell=true",
        ),
        "stability": submit(
            spool_root,
            "stability",
            structures["cu_equilibrium"],
            "relax_steps=20",
            "nvt_steps=20",
            "npt_steps=40",
            "timestep=2",
            "frame_interval=10",
            "relax_fmax=0.01",
        ),
        "bulk-modulus": submit(
            spool_root,
            "bulk-modulus",
            structures["cu_primitive"],
            "num_points=5",
            "strain_range=0.04",
            "fmax=0.01",
            "max_steps=100",
        ),
        "heat-capacity": submit(
            spool_root,
            "heat-capacity",
            structures["cu_cubic"],
            "supercell=[1,1,1]",
            "temperature_range=[0,1000,100]",
            "fmax=0.01",
            "max_steps=100",
        ),
        "interaction-energy": submit(
            spool_root, "interaction-energy", structures["cu_slab"], "gas=CO2"
        ),
    }
    records = wait_all(sp, ids)
    for name, rec in records.items():
        assert rec["status"] == "COMPLETED", (name, rec["error"])
    res = {name: rec["result"]["result"] for name, rec in records.items()}
    for name, result in res.items():
        json.dumps(result, allow_nan=False)
        workspace = sp.paths.workspace(ids[name])
        for key, filename in (result.get("output_files") or {}).items():
            assert (workspace / filename).stat().st_size > 0, (name, key, filename)
        assert records[name]["result"]["provenance"]["model"] == "emt"

    sp_res = res["single-point-energy"]
    assert sp_res["natoms"] == 4 and sp_res["max_force_eV_A"] < 1e-6  # fcc: no net force
    assert sp_res["pressure_GPa"] < 0.0  # stretched: the cell wants to shrink

    opt = res["optimization"]
    assert opt["converged"] is True and opt["volume_change_percent"] < -3.0
    # EMT copper's lattice constant is 3.59 A.
    assert opt["cell_parameters"]["a"] == pytest.approx(3.59, abs=0.01)

    stab = res["stability"]
    assert stab["stability_assessment"] == "stable", stab["verdict"]
    assert abs(stab["volume_change_percent"]) < 5.0
    assert stab["metal_coordination"]["final"] == 12.0
    assert [s["type"] for s in stab["parameters_used"]["stages"]] == ["relax", "nvt", "npt"]
    assert stab["parameters_used"]["npt_pressure"] == 1.01325  # the seed's default
    assert stab["npt_duration_ps"] == pytest.approx(0.08)
    assert 50.0 < stab["avg_temperature"] < 800.0
    assert set(stab["output_files"]) == {"trajectory", "plot", "final_structure"}
    frames = read(sp.paths.workspace(ids["stability"]) / stab["trajectory_file"], index=":")
    assert isinstance(frames, list) and len(frames) == stab["n_frames"]
    assert isinstance(frames[-1], Atoms) and frames[-1].info["stage_type"] == "npt"

    bm = res["bulk-modulus"]
    assert len(bm["points"]) == 5 and bm["reliable"] is True
    assert 110.0 < bm["bulk_modulus_GPa"] < 160.0  # EMT copper: ~134 GPa
    assert bm["output_files"]["plot"] == "eos.png"

    hc = res["heat-capacity"]
    assert hc["temperatures_K"] == [100.0 * k for k in range(11)]
    per_atom = hc["heat_capacity"]["J_per_K_mol_atoms"]
    assert 0.9 * 3 * R < per_atom[-1] <= 3 * R * 1.001  # Dulong-Petit at 1000 K
    assert hc["cv_300K_J_per_K_g"] == pytest.approx(hc["cv_J_per_K_g"][3])
    assert hc["output_files"]["plot"] == "heat_capacity.png"

    ie = res["interaction-energy"]
    assert ie["guest_formula"] == "CO2"
    assert ie["min_guest_framework_distance_A"] > 5.0
    assert abs(ie["interaction_energy_eV"]) < 1e-3  # far from the metal: no interaction
    total = ie["complex_energy_eV"] - ie["framework_energy_eV"] - ie["guest_energy_eV"]
    assert ie["interaction_energy_eV"] == pytest.approx(total, abs=1e-9)


@pytest.mark.parametrize(
    ("task_type", "structure", "param", "field"),
    [
        ("stability", "cu_cubic", "nvt_steps=-5", "parameters.nvt_steps"),
        (
            "stability",
            "cu_cubic",
            'stages=[{"type": "npt", "steps": -1}]',
            "parameters.stages[0].steps",
        ),
        ("optimization", "cu_cubic", "max_steps=-1", "parameters.max_steps"),
        ("bulk-modulus", "cu_primitive", "num_points=-3", "parameters.num_points"),
        ("heat-capacity", "cu_cubic", "supercell=[0,0,0]", "parameters.supercell"),
        ("interaction-energy", "cu_slab", "gas=XeF6", "parameters.gas"),
        ("single-point-energy", "cu_cubic", "fmax=0.1", "parameters.fmax"),
    ],
)
def test_bad_parameters_are_refused_at_submission(
    spool_root: Path,
    structures: dict[str, Path],
    task_type: str,
    structure: str,
    param: str,
    field: str,
) -> None:
    sp = Spool(spool_root)
    before = sorted(sp.iter_task_ids())
    r = cli(
        "submit",
        task_type,
        structures[structure],
        "-m",
        "emt",
        "-p",
        param,
        "--json",
        spool=spool_root,
    )
    assert r.exit_code == 1, r.output
    err = json.loads(r.stdout)["error"]
    assert err["code"] == 40001 and err["field"] == field, err
    assert field.removeprefix("parameters.").split("[")[0] in err["message"]
    human = cli(
        "submit", task_type, structures[structure], "-m", "emt", "-p", param, spool=spool_root
    )
    assert human.exit_code == 1 and human.stderr.startswith("error 40001: ")
    assert "Traceback" not in human.output
    assert sorted(sp.iter_task_ids()) == before  # nothing published, no executor involved


def test_guest_index_out_of_range_is_a_clear_40001(
    spool_root: Path, structures: dict[str, Path]
) -> None:
    """The structure decides the valid range: the submitter loads it and refuses."""
    sp = Spool(spool_root)
    before = sorted(sp.iter_task_ids())
    r = cli(
        "submit",
        "interaction-energy",
        structures["cu_slab"],
        "-m",
        "emt",
        "-p",
        "guest_indices=[0,999]",
        "--json",
        spool=spool_root,
    )
    assert r.exit_code == 1, r.output
    err = json.loads(r.stdout)["error"]
    assert sorted(sp.iter_task_ids()) == before
    assert err["code"] == 40001 and err["field"] == "parameters.guest_indices", err
    assert "out of range" in err["message"] and "999" in err["message"]
