"""Uploads without a weights-only form run only in the sandbox: a real daemon's executor
computes with a model served by ``executors.model_host`` in the sandbox, and a checkpoint
that fakes its validation still runs nowhere else."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from ase import Atoms

from executors.loaders import load_calculator
from executors.models import resolve_model
from tests.daemon_helpers import LiveServer, wait_for
from tests.model_factories import build_tiny_mace
from tests.test_custom_models import Evil
from tests.test_sandbox import sandbox_pids


def alcu() -> Atoms:
    return Atoms(
        "AlCuAlCu",
        scaled_positions=[[0, 0, 0], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.52, 0.5]],
        cell=[3.9, 3.9, 3.9],
        pbc=True,
    )


def _upload(server: LiveServer, content: bytes, name: str) -> str:
    files = {"file": (f"{name}.model", content, "application/octet-stream")}
    data = {"name": name, "framework": "mace"}
    resp = httpx.post(f"{server.url}/api/v1/models/custom", files=files, data=data, timeout=60)
    assert resp.status_code == 201, resp.text
    model_id = str(resp.json()["data"]["model_id"])
    resp = httpx.post(f"{server.url}/api/v1/models/custom/{model_id}/validate", timeout=600)
    assert resp.status_code == 200, resp.text
    return model_id


def _saved(model: Any) -> bytes:
    import torch

    buf = io.BytesIO()
    torch.save(model, buf)
    return buf.getvalue()


@pytest.mark.slow
def test_a_model_without_weights_only_form_runs_tasks_in_the_sandbox(
    live_server: LiveServer,
) -> None:
    from ase.io import write

    model_id = _upload(live_server, _saved(build_tiny_mace(plain=True)), "plain")
    models = live_server.spool_root / "models"
    detail = httpx.get(f"{live_server.url}/api/v1/models/custom/{model_id}").json()["data"]
    assert detail["validated"] is True and detail["weights_only"] is False
    assert "ScaleShiftMACE" in detail["validation"]["safe_form"]["reason"]

    spec = resolve_model(f"custom:{model_id}", models)
    calc: Any = load_calculator(spec, models_root=models)
    assert type(calc).__name__ == "SandboxedCalculator"
    atoms, direct = alcu(), alcu()
    atoms.calc = calc
    direct.calc = load_calculator(spec, allow_pickle=True)
    assert atoms.get_potential_energy() == pytest.approx(direct.get_potential_energy(), abs=1e-6)
    assert np.allclose(atoms.get_forces(), direct.get_forces(), atol=1e-6)
    assert np.allclose(atoms.get_stress(), direct.get_stress(), atol=1e-7)
    calc.close()
    if os.geteuid() == 0:
        assert sandbox_pids() == []

    buf = io.StringIO()
    write(buf, alcu(), format="extxyz")
    body = {
        "model": f"custom:{model_id}",
        "structure": {"source": "inline", "format": "extxyz", "content": buf.getvalue()},
    }
    resp = httpx.post(f"{live_server.url}/api/v1/tasks/single-point", json=body, timeout=60)
    assert resp.status_code == 202, resp.text
    task_id = resp.json()["data"]["task_id"]

    def finished() -> Any:
        rec = httpx.get(f"{live_server.url}/api/v1/tasks/{task_id}").json()["data"]
        return rec if rec["status"] in ("COMPLETED", "FAILED") else None

    rec = wait_for(finished, 300, "the task to end")
    assert rec["status"] == "COMPLETED", rec
    result = httpx.get(f"{live_server.url}/api/v1/tasks/{task_id}/result").json()["data"]
    energy = result["result"]["energy_eV"]
    assert energy == pytest.approx(direct.get_potential_energy(), abs=1e-5)


# Runs while the upload is unpickled: claims a passing validation without writing any
# weights-only form, so that executors must take it to the sandbox; there it tries to
# write outside.
FAKER = """
import json, os
for target in TARGETS:
    try:
        open(target, "w").write("marker")
    except OSError:
        pass
os.write(1, (json.dumps({"ok": True}) + "\\n").encode())
os._exit(0)
"""


@pytest.mark.slow
def test_a_checkpoint_that_fakes_validation_runs_only_in_the_sandbox(
    live_server: LiveServer, tmp_path: Path
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    outside.chmod(0o777)
    targets = [str(outside / "marker"), str(live_server.spool_root / "state" / "marker")]
    code = f"TARGETS = {targets!r}\n" + FAKER
    model_id = _upload(live_server, _saved(Evil(code)), "faker")
    models = live_server.spool_root / "models"
    verdict = json.loads((models / ".verdicts" / f"{model_id}.json").read_text())
    assert verdict["valid"] is True and verdict["safe_form"] is None  # it lied, and no form
    calc: Any = load_calculator(resolve_model(f"custom:{model_id}", models))
    assert type(calc).__name__ == "SandboxedCalculator"  # taken to the sandbox
    atoms = alcu()
    atoms.calc = calc
    with pytest.raises(Exception, match="sandboxed model"):
        atoms.get_potential_energy()
    calc.close()
    assert calc._proc.poll() is not None
    if os.geteuid() == 0:  # with its own user and a read-only view: nothing written
        assert not any(Path(t).exists() for t in targets)
