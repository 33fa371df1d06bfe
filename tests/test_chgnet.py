"""CHGNet, the universal potential whose weights ship in its package: the catalogue, the
installation that keeps nvidia-ml-py's pynvml, and real tasks on a built-in MOF, run
directly and through a daemon behind the MIRA API."""

from __future__ import annotations

import asyncio
import importlib.metadata
import io
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from aiohttp.test_utils import TestClient, TestServer

from executors.api import NullObserver, TaskContext
from executors.builtin_structures import build_builtin
from executors.families import MPTRJ_ELEMENTS, get_family
from executors.loaders import describe_versions, load_calculator
from executors.models import resolve_model
from mofsim_core.config import Config
from mofsim_http.app import create_app
from spool.errors import ValidationError
from tests.daemon_helpers import Daemon

M = "/mira/api/v1"


@pytest.mark.parametrize(
    ("name", "key", "weights"),
    [
        ("chgnet", "chgnet", "0.3.0"),
        ("CHGNet-0.3.0", "chgnet", "0.3.0"),
        ("chgnet_0.2.0", "chgnet-0.2.0", "0.2.0"),
        ("chgnet-r2scan", "chgnet-r2scan", "r2scan"),
    ],
)
def test_the_catalogue_entries(name: str, key: str, weights: str) -> None:
    spec = resolve_model(name)
    assert (spec.key, spec.family, spec.weights) == (key, "chgnet", weights)
    assert spec.framework == "chgnet"
    assert spec.elements == list(MPTRJ_ELEMENTS) and not spec.d3_trained
    assert "optimization" in spec.task_types() and spec.references.startswith("https://doi.org/")
    assert spec.source == "bundled with the chgnet package"


def test_float32_only_and_no_uploads() -> None:
    family = get_family("chgnet")
    assert family is not None and family.dtypes == ("float32",) and not family.accepts_uploads
    with pytest.raises(ValidationError) as info:
        load_calculator(resolve_model("chgnet"), dtype="float64")
    assert info.value.field == "dtype" and "CHGNet" in info.value.message


def test_the_installation_keeps_nvidia_ml_py_pynvml() -> None:
    # chgnet names nvidia-ml-py3, whose pynvml.py would replace nvidia-ml-py's.
    with pytest.raises(importlib.metadata.PackageNotFoundError):
        importlib.metadata.distribution("nvidia-ml-py3")
    owned = [str(f) for f in importlib.metadata.files("nvidia-ml-py") or []]
    assert "pynvml.py" in owned
    assert "chgnet" in describe_versions(resolve_model("chgnet"))["packages"]


@pytest.fixture(scope="module")
def chgnet() -> Any:
    return load_calculator(resolve_model("chgnet"))


@pytest.mark.slow
def test_forces_are_the_energy_gradient(chgnet: Any) -> None:
    assert isinstance(sys.modules["nvidia_smi"], type(sys))  # chgnet imported without it
    atoms = build_builtin("CALF-20")
    atoms.calc = chgnet
    energy, forces = atoms.get_potential_energy(), atoms.get_forces()
    assert np.isfinite(energy) and -9.0 < energy / len(atoms) < -5.0
    assert forces.shape == (len(atoms), 3) and np.isfinite(forces).all()
    assert np.abs(forces.sum(axis=0)).max() < 1e-3  # no net force on a periodic cell
    atom, axis = np.unravel_index(np.abs(forces).argmax(), forces.shape)
    step = 0.01
    shifted = []
    for sign in (1, -1):
        moved = atoms.copy()
        moved.positions[atom, axis] += sign * step
        moved.calc = chgnet
        shifted.append(moved.get_potential_energy())
    assert -(shifted[0] - shifted[1]) / (2 * step) == pytest.approx(forces[atom, axis], rel=0.05)


@pytest.mark.slow
def test_single_point_and_a_short_optimization(chgnet: Any, tmp_path: Path) -> None:
    from executors.registry import task_module

    results = {}
    for task, params in (
        ("single-point-energy", {}),
        ("optimization", {"max_steps": 4, "fmax": 0.1}),
    ):
        atoms = build_builtin("CALF-20")
        atoms.calc = chgnet
        module = task_module(task)
        ctx = TaskContext(
            task_id="t",
            task_type=task,
            atoms=atoms,
            structure_name="CALF-20",
            parameters=module.validate(params),
            model_key="chgnet",
            calculator=chgnet,
            workspace=tmp_path / task,
            observer=NullObserver(),
        )
        (tmp_path / task).mkdir()
        results[task] = module.run(ctx)
        json.dumps(results[task], allow_nan=False)
    single, opt = results["single-point-energy"], results["optimization"]
    assert len(single["forces_eV_A"]) == single["natoms"] == 44
    assert opt["initial_energy_eV"] == pytest.approx(single["energy_eV"], abs=1e-3)
    assert opt["final_energy_eV"] < opt["initial_energy_eV"]
    assert opt["steps"] <= 4 and opt["final_fmax"] < single["max_force_eV_A"]


async def _json(resp: Any, status: int) -> Any:
    text = await resp.text()
    assert resp.status == status, text
    return json.loads(text)


@pytest.mark.slow
@pytest.mark.asyncio
async def test_the_guides_optimization_with_model_key_chgnet(tmp_path: Path) -> None:
    from ase.io import write

    root = tmp_path / "spool"
    cif = io.BytesIO()
    write(cif, build_builtin("CALF-20"), format="cif")
    daemon = Daemon(root).start()
    try:
        config = Config(spool=str(root), http_rate_limit=0)
        async with TestClient(TestServer(create_app(config))) as client:
            families = await _json(await client.get(f"{M}/models/families"), 200)
            assert {"chgnet", "matgl"} <= set(families)
            listed = await _json(await client.get(f"{M}/models?family=chgnet"), 200)
            assert [m["key"] for m in listed] == ["chgnet", "chgnet-0.2.0", "chgnet-r2scan"]
            form = {"name": "CALF-20", "format": "cif", "content": cif.getvalue().decode()}
            sid = (await _json(await client.post(f"{M}/structures/upload", data=form), 201))["id"]
            body = {
                "structure_id": sid,
                "model_key": "chgnet",
                "fmax": 0.1,
                "max_steps": 30,
                "optimizer": "BFGS",
                "use_filter": True,
                "enable_d3": True,
            }
            submitted = await client.post(f"{M}/tasks/optimization", json=body)
            tid = (await _json(submitted, 201))["task_id"]
            async with client.get(f"/api/v1/tasks/{tid}/events") as events:
                await asyncio.wait_for(events.read(), 300)  # closes once the task ends
            task = await _json(await client.get(f"{M}/tasks/{tid}"), 200)
            assert task["status"] == "completed", task
            result = await _json(await client.get(f"{M}/results/{tid}"), 200)
            assert result["model_key"] == "chgnet" and result["converged"] is True
            assert result["energy_change"] < 0 and np.isfinite(result["final_energy"])
            assert abs(result["volume_change_percent"]) < 5.0
    finally:
        daemon.stop()
