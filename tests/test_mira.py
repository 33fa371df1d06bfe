"""The MIRA dialect under /mira: the guide's shapes, its error format, its scenario 1."""

from __future__ import annotations

import asyncio
import io
import json
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from aiohttp.test_utils import TestClient, TestServer

from mofsim_core.config import Config
from mofsim_http.app import create_app
from tests.daemon_helpers import Daemon, cu_xyz

M = "/mira/api/v1"

# The MIRA guide, section "完整使用流程示例", 场景 1, copied exactly as the guide writes it.
# Three of its blank lines hold four spaces; they are spelled "<4 spaces>" below (the linter
# refuses trailing whitespace) and restored, so the script that runs is byte for byte the
# guide's.
_GUIDE_SCENARIO_1 = r"""
import requests
import time
import os

# 配置
BASE_URL = os.getenv("MIRA_GATEWAY_URL", "http://localhost:8000") + "/api/v1"

# 1. 上传结构
with open("MOF-5.cif", "r") as f:
    content = f.read()

response = requests.post(
    f"{BASE_URL}/structures/upload",
    data={
        "name": "MOF-5",
        "format": "cif",
        "content": content
    }
)
structure_id = response.json()["id"]
print(f"✓ 结构已上传: {structure_id}")

# 2. 提交优化任务
response = requests.post(
    f"{BASE_URL}/tasks/optimization",
    json={
        "structure_id": structure_id,
        "model_key": "mace-mp",
        "fmax": 0.01,
        "max_steps": 500,
        "optimizer": "BFGS",
        "use_filter": True,
        "enable_d3": True
    }
)
task_id = response.json()["task_id"]
print(f"✓ 任务已提交: {task_id}")

# 3. 轮询任务状态
while True:
    response = requests.get(f"{BASE_URL}/tasks/{task_id}")
    task = response.json()
    status = task["status"]
<4 spaces>
    if status == "running":
        progress = task.get("progress", 0)
        print(f"  进度: {progress}%")
<4 spaces>
    if status == "completed":
        print("✓ 任务完成！")
        break
    elif status == "failed":
        print(f"✗ 任务失败: {task.get('error_message')}")
        exit(1)
<4 spaces>
    time.sleep(5)

# 4. 获取结果
response = requests.get(f"{BASE_URL}/results/{task_id}")
result = response.json()

print(f"\n=== 优化结果 ===")
print(f"最终能量: {result['final_energy']:.4f} eV")
print(f"能量变化: {result['energy_change']:.4f} eV")
print(f"优化步数: {result['num_steps']}")
print(f"收敛: {'是' if result['converged'] else '否'}")
print(f"体积变化: {result['volume_change_percent']:.2f}%")

# 5. 下载优化后的结构
response = requests.get(
    f"{BASE_URL}/results/{task_id}/download/structure",
    stream=True
)
with open("MOF-5-optimized.cif", "wb") as f:
    for chunk in response.iter_content(chunk_size=8192):
        f.write(chunk)
print(f"\n✓ 优化结构已保存: MOF-5-optimized.cif")
"""
SCENARIO_1 = _GUIDE_SCENARIO_1.replace("<4 spaces>", "    ")


def _config(root: Path) -> Config:
    return Config(spool=str(root), http_rate_limit=0)


@pytest_asyncio.fixture
async def client(tmp_path: Path) -> AsyncIterator[TestClient]:
    """A server on a loopback port, no daemon: tasks stay queued."""
    async with TestClient(TestServer(create_app(_config(tmp_path / "spool")))) as c:
        yield c


async def _json(resp: Any, status: int) -> Any:
    text = await resp.text()
    assert resp.status == status, text
    return json.loads(text)


async def _upload_cu(client: TestClient, repeat: int = 2) -> str:
    form = {"name": "Cu", "format": "extxyz", "content": cu_xyz(repeat, rattle=0.05)}
    body = await _json(await client.post(f"{M}/structures/upload", data=form), 201)
    return str(body["id"])


def _assert_mira_error(body: Any, name: str, field: str | None = "any") -> None:
    """The guide's shape: the table's name as ``error_code``, its number as ``code``."""
    from spool.errors import ERROR_CODES

    assert set(body) == {"detail", "error_code", "field", "code"}, body
    assert body["error_code"] == name and body["detail"]
    assert body["code"] == ERROR_CODES[name].code
    if field != "any":
        assert body["field"] == field


@pytest.mark.asyncio
async def test_structures_in_the_guides_shapes(client: TestClient) -> None:
    sid = await _upload_cu(client)
    detail = await _json(await client.get(f"{M}/structures/{sid}"), 200)
    assert detail["id"] == sid and detail["name"] == "Cu" and detail["format"] == "extxyz"
    assert detail["formula"] == "Cu32" and detail["num_atoms"] == 32
    assert detail["volume"] == pytest.approx(7.22**3, rel=1e-6)
    assert detail["density"] > 8 and detail["upload_time"].endswith("Z")
    assert detail["metadata"]["a"] == pytest.approx(7.22)
    assert detail["metadata"]["alpha"] == pytest.approx(90.0)

    # The file variant (multipart file + name), as the guide's second upload example.
    from aiohttp import FormData

    form = FormData()
    form.add_field("file", cu_xyz(1).encode(), filename="cu.extxyz")
    form.add_field("name", "Cu-small")
    small = await _json(await client.post(f"{M}/structures/upload/file", data=form), 201)
    assert small["name"] == "Cu-small" and small["num_atoms"] == 4

    listing = await _json(await client.get(f"{M}/structures?skip=0&limit=1"), 200)
    assert listing["total"] == 2 and len(listing["structures"]) == 1
    assert set(listing["structures"][0]) == {"id", "name", "formula", "num_atoms", "upload_time"}
    assert listing["structures"][0]["id"] == small["id"]  # newest first

    preview = await _json(await client.get(f"{M}/structures/{sid}/preview"), 200)
    assert set(preview) == {"symbols", "positions", "cell", "pbc"}
    assert preview["symbols"] == ["Cu"] * 32 and len(preview["positions"]) == 32
    assert preview["cell"][0][0] == pytest.approx(7.22) and preview["pbc"] == [True] * 3

    bad = await _json(
        await client.post(
            f"{M}/structures/upload",
            data={"name": "x", "format": "cif", "content": "this is not a crystal"},
        ),
        422,
    )
    _assert_mira_error(bad, "INVALID_STRUCTURE")
    missing = await _json(await client.get(f"{M}/structures/struct_0000000000000000"), 404)
    _assert_mira_error(missing, "STRUCTURE_NOT_FOUND", "structure_id")


@pytest.mark.asyncio
async def test_models_in_the_guides_shapes(client: TestClient) -> None:
    models = await _json(await client.get(f"{M}/models"), 200)
    assert isinstance(models, list)
    by_key = {m["key"]: m for m in models}
    assert set(by_key["mace-mp"]) == {
        "key",
        "name",
        "family",
        "description",
        "elements",
        "supported_tasks",
        "references",
    }
    assert (
        by_key["mace-mp"]["family"] == "mace" and "optimization" in by_key["emt"]["supported_tasks"]
    )
    mace = await _json(await client.get(f"{M}/models?family=mace"), 200)
    assert mace and {m["family"] for m in mace} == {"mace"}
    families = await _json(await client.get(f"{M}/models/families"), 200)
    assert isinstance(families, list) and all(isinstance(f, str) for f in families)
    assert {"mace", "orb", "sevennet"} <= set(families)
    one = await _json(await client.get(f"{M}/models/mace-mp"), 200)
    assert one["key"] == "mace-mp" and one["elements"]
    status = await _json(await client.get(f"{M}/models/mace-mp/status"), 200)
    assert status["model_key"] == "mace-mp" and status["loaded"] is False
    assert "device" in status and "memory_usage_mb" in status
    _assert_mira_error(await _json(await client.get(f"{M}/models/no-such"), 404), "MODEL_NOT_FOUND")
    _assert_mira_error(
        await _json(await client.get(f"{M}/models?family=zz"), 400), "VALIDATION", "family"
    )


@pytest.mark.asyncio
async def test_tasks_queue_cancel_and_errors_without_daemon(client: TestClient) -> None:
    sid = await _upload_cu(client)
    body = {
        "structure_id": sid,
        "model_key": "emt",
        "fmax": 0.05,
        "max_steps": 50,
        "optimizer": "BFGS",
        "use_filter": True,
        "enable_d3": False,
    }
    task = await _json(await client.post(f"{M}/tasks/optimization", json=body), 201)
    tid = task["task_id"]
    assert task["status"] == "pending" and task["state"] == "queued"
    assert task["task_type"] == "optimization"
    assert task["model_key"] == "emt" and task["structure_id"] == sid
    assert task["created_at"] and "estimated_time_minutes" in task
    assert task["parameters"]["use_filter"] is True and task["total_steps"] == 50

    shown = await _json(await client.get(f"{M}/tasks/{tid}"), 200)
    assert shown["status"] == "pending" and shown["state"] == "queued"
    assert shown["progress"] == 0 and isinstance(shown["progress"], int)
    pending = await _json(await client.get(f"{M}/tasks?status=pending"), 200)
    assert [t["task_id"] for t in pending["tasks"]] == [tid] and pending["total"] == 1
    none = await _json(await client.get(f"{M}/tasks?status=completed&task_type=optimization"), 200)
    assert none["total"] == 0 and none["tasks"] == []

    not_ready = await _json(await client.get(f"{M}/results/{tid}"), 400)
    _assert_mira_error(not_ready, "RESULT_NOT_READY")
    cancelled = await _json(await client.post(f"{M}/tasks/{tid}/cancel"), 200)
    assert cancelled == {
        "message": "Task cancelled successfully",
        "task_id": tid,
        "status": "failed",
        "state": "cancelled",
        "cancel_requested": False,
    }
    again = await _json(await client.post(f"{M}/tasks/{tid}/cancel"), 400)
    _assert_mira_error(again, "TASK_TERMINAL")
    ended = await _json(await client.get(f"{M}/tasks/{tid}"), 200)
    assert ended["status"] == "failed" and ended["state"] == "cancelled"
    assert ended["error_message"].startswith("task cancelled")
    assert ended["error_code"] == "TASK_CANCELLED" and ended["error_code_numeric"] == 50004

    bad_param = await _json(
        await client.post(f"{M}/tasks/optimization", json={**body, "fmax": -1}), 400
    )
    _assert_mira_error(bad_param, "VALIDATION", "fmax")
    unknown_key = await _json(
        await client.post(f"{M}/tasks/optimization", json={**body, "fmaxx": 1}), 400
    )
    _assert_mira_error(unknown_key, "VALIDATION")
    bad_model = await _json(
        await client.post(f"{M}/tasks/optimization", json={**body, "model_key": "nope"}), 404
    )
    _assert_mira_error(bad_model, "MODEL_NOT_FOUND", "model_key")
    bad_structure = await _json(
        await client.post(
            f"{M}/tasks/stability",
            json={"structure_id": "struct_ffffffffffffffff", "model_key": "emt"},
        ),
        404,
    )
    _assert_mira_error(bad_structure, "STRUCTURE_NOT_FOUND", "structure_id")
    _assert_mira_error(await _json(await client.get(f"{M}/tasks/task_nope"), 404), "TASK_NOT_FOUND")
    _assert_mira_error(
        await _json(await client.get(f"{M}/results/task_nope/summary"), 404), "TASK_NOT_FOUND"
    )
    _assert_mira_error(
        await _json(await client.get(f"{M}/tasks?limit=0"), 400), "VALIDATION", "limit"
    )
    _assert_mira_error(
        await _json(
            await client.post(
                f"{M}/tasks/optimization",
                data=b"{not json",
                headers={"Content-Type": "application/json"},
            ),
            400,
        ),
        "VALIDATION",
        "body",
    )
    _assert_mira_error(
        await _json(await client.get(f"{M}/no/such/route"), 404), "ENDPOINT_NOT_FOUND"
    )

    deleted = await _json(await client.delete(f"{M}/structures/{sid}"), 200)
    assert deleted == {"message": "Structure deleted successfully", "deleted_tasks": 1}
    # No daemon runs the tasks: degraded, as GET /health says.
    health = await _json(await client.get("/mira/health"), 200)
    assert health["status"] == "degraded" and health["daemon_running"] is False
    assert health["version"] and health["timestamp"]


async def _await_end(client: TestClient, task_id: str, timeout: float = 120.0) -> None:
    """The task's event stream closes once it is terminal: wait for that."""

    async def drain() -> None:
        async with client.get(f"/api/v1/tasks/{task_id}/events") as resp:
            assert resp.status == 200
            await resp.read()

    await asyncio.wait_for(drain(), timeout)


@pytest.mark.asyncio
async def test_full_flow_with_a_daemon(tmp_path: Path) -> None:
    """Upload, optimize with EMT, results, summary, downloads, list, delete."""
    root = tmp_path / "spool"
    daemon = Daemon(root).start()
    try:
        async with TestClient(TestServer(create_app(_config(root)))) as client:
            sid = await _upload_cu(client)
            body = {
                "structure_id": sid,
                "model_key": "emt",
                "fmax": 0.05,
                "max_steps": 200,
                "optimizer": "BFGS",
                "use_filter": True,
                "enable_d3": False,
            }
            tid = (await _json(await client.post(f"{M}/tasks/optimization", json=body), 201))[
                "task_id"
            ]
            await _await_end(client, tid)
            task = await _json(await client.get(f"{M}/tasks/{tid}"), 200)
            assert task["status"] == "completed", task
            assert task["progress"] == 100 and task["completed_at"]
            assert task["state"] == "completed"

            result = await _json(await client.get(f"{M}/results/{tid}"), 200)
            assert result["task_id"] == tid and result["status"] == "completed"
            assert result["model_key"] == "emt" and result["structure_id"] == sid
            assert result["final_energy"] == result["final_energy_eV"]
            assert result["energy_change"] == pytest.approx(
                result["final_energy"] - result["initial_energy"]
            )
            assert result["energy_change"] < 0  # a rattled crystal relaxes downhill
            assert result["num_steps"] == result["steps"] and result["converged"] is True
            assert result["final_fmax"] <= 0.05
            assert isinstance(result["volume_change_percent"], float)
            assert result["rmsd"] == result["rmsd_from_initial"] > 0
            assert result["computation_time_seconds"] > 0
            opt = result["optimized_structure"]
            assert opt["symbols"] == ["Cu"] * 32 and len(opt["positions"]) == 32
            assert len(opt["cell"]) == 3

            summary = await _json(await client.get(f"{M}/results/{tid}/summary"), 200)
            assert summary["key_metrics"]["final_energy"] == result["final_energy"]
            assert summary["key_metrics"]["num_steps"] == result["num_steps"]
            assert summary["key_metrics"]["converged"] is True
            assert summary["completed_at"] == task["completed_at"]

            cif = await client.get(f"{M}/results/{tid}/download/structure")
            assert cif.status == 200 and cif.content_type == "chemical/x-cif"
            from ase.io import read

            atoms = read(io.StringIO(await cif.text()), format="cif")
            assert len(atoms) == 32
            traj = await client.get(f"{M}/results/{tid}/download/trajectory")
            assert traj.status == 200
            traj_path = tmp_path / "t.traj"
            traj_path.write_bytes(await traj.read())
            frames = read(str(traj_path), index=":")
            assert len(frames) == result["num_steps"] + 1
            log = await client.get(f"{M}/results/{tid}/download/log")
            lines = [json.loads(x) for x in (await log.text()).splitlines()]
            assert any(x.get("extra", {}).get("status") == "COMPLETED" for x in lines)
            bad_kind = await _json(await client.get(f"{M}/results/{tid}/download/plot"), 400)
            _assert_mira_error(bad_kind, "VALIDATION", "file_type")

            done = await _json(
                await client.get(
                    f"{M}/tasks?status=completed&task_type=optimization&skip=0&limit=5"
                ),
                200,
            )
            assert [t["task_id"] for t in done["tasks"]] == [tid]
            assert done["tasks"][0]["status"] == "completed"
            # A finished task's list row comes from the mirror; it shows what its own
            # status call shows.
            assert task["current_step"] is not None and task["structure_name"] == "Cu"
            for key in ("structure_id", "structure_name", "current_step", "total_steps"):
                assert done["tasks"][0][key] == task[key], key

            health = await _json(await client.get("/mira/health"), 200)
            assert health["status"] == "healthy" and health["daemon_running"] is True

            deleted = await _json(await client.delete(f"{M}/structures/{sid}"), 200)
            assert deleted["deleted_tasks"] == 1
            _assert_mira_error(
                await _json(await client.get(f"{M}/tasks/{tid}"), 404), "TASK_NOT_FOUND"
            )
    finally:
        daemon.stop()


@pytest.mark.asyncio
async def test_guide_scenario_1_script_runs_unmodified(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Scenario 1 asks for ``mace-mp``, whose weights cannot be downloaded here: the task
    fails with 30005 and the script takes its failure branch (message, exit 1) after
    uploading and submitting through /mira exactly as written."""
    from executors.builtin_structures import build_builtin
    from executors.structure_io import atoms_to_text

    monkeypatch.setenv("MOFSIM_OFFLINE", "1")  # the daemon's executors inherit it
    root = tmp_path / "spool"
    work = tmp_path / "client"
    work.mkdir()
    (work / "MOF-5.cif").write_text(atoms_to_text(build_builtin("MOF-5"), "cif"))
    script = work / "scenario1.py"
    script.write_text(SCENARIO_1, encoding="utf-8")
    daemon = Daemon(root).start()
    try:
        async with TestClient(TestServer(create_app(_config(root)))) as client:
            env = {
                **os.environ,
                "PYTHONIOENCODING": "utf-8",
                "MIRA_GATEWAY_URL": str(client.make_url("/mira")).rstrip("/"),
            }
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                str(script),
                cwd=work,
                env=env,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
            out, err = await asyncio.wait_for(proc.communicate(), 240)
            stdout, stderr = out.decode(), err.decode()
            assert proc.returncode == 1, (stdout, stderr)
            assert "Traceback" not in stderr, stderr
            lines = stdout.splitlines()
            assert lines[0].startswith("✓ 结构已上传: struct_")
            assert lines[1].startswith("✓ 任务已提交: task_")
            assert lines[-1].startswith("✗ 任务失败: ")
            assert "mace-mp" in lines[-1] and "cannot be downloaded" in lines[-1]

            task_id = lines[1].split(": ", 1)[1]
            task = await _json(await client.get(f"{M}/tasks/{task_id}"), 200)
            assert task["status"] == "failed" and task["error_code"] == "MODEL_UNAVAILABLE"
            assert task["error_code_numeric"] == 30005 and task["state"] == "failed"
            assert task["model_key"] == "mace-mp"
            assert task["parameters"]["use_filter"] is True and task["total_steps"] == 500
            assert task["parameters"]["enable_d3"] is True and task["parameters"]["fmax"] == 0.01
            failed = await _json(await client.get(f"{M}/results/{task_id}"), 400)
            _assert_mira_error(failed, "TASK_FAILED")
            assert not (work / "MOF-5-optimized.cif").exists()
    finally:
        daemon.stop()


def test_shapes_of_records_and_results() -> None:
    from datetime import UTC, datetime

    from mofsim_core.mira_shapes import mira_result, mira_summary, mira_task, remaining_minutes

    running = {
        "task_id": "t1",
        "task_type": "stability",
        "status": "RUNNING",
        "model": "emt",
        "structure": {"source": "builtin", "name": "MOF-5"},
        "started_at": "2025-12-30T10:00:00Z",
        "progress": 0.25,
        "progress_detail": {"step": 250},
        "parameters": {},
        "error": None,
    }
    now = datetime(2025, 12, 30, 10, 3, tzinfo=UTC)
    shown = mira_task(running, now)
    assert shown["status"] == "running" and shown["progress"] == 25
    assert shown["current_step"] == 250 and shown["total_steps"] is None
    assert shown["structure_id"] is None  # a built-in structure has no upload id
    assert shown["estimated_remaining_minutes"] == pytest.approx(9.0)  # 3 min for 25 %
    assert remaining_minutes("2025-12-30T10:00:00Z", 0.0, now) is None
    assert remaining_minutes(None, 0.5, now) is None

    failed = mira_task(
        {
            **running,
            "status": "FAILED",
            "progress": None,
            "error": {"code": 30005, "message": "weights unavailable"},
        }
    )
    assert failed["status"] == "failed" and failed["error_message"] == "weights unavailable"
    assert failed["error_code"] == "MODEL_UNAVAILABLE" and failed["error_code_numeric"] == 30005
    assert failed["estimated_remaining_minutes"] is None

    doc = {
        "task_id": "t2",
        "task_type": "single-point-energy",
        "status": "COMPLETED",
        "model": "emt",
        "duration_seconds": 1.5,
        "completed_at": "2025-12-30T10:05:00Z",
        "result": {
            "energy_eV": -3.5,
            "max_force_eV_A": 0.1,
            "forces_eV_A": [[0, 0, 0]],
            "energy_per_atom_eV": -0.875,
            "output_files": {},
        },
    }
    flat = mira_result(doc, {"structure": {"source": "upload", "file_id": "struct_1"}})
    assert flat["energy"] == -3.5 == flat["energy_eV"] and flat["max_force"] == 0.1
    assert flat["structure_id"] == "struct_1" and flat["computation_time_seconds"] == 1.5
    assert flat["downloads"] == {"log": "/mira/api/v1/results/t2/download/log"}
    summary = mira_summary(doc)
    assert summary["key_metrics"] == {
        "energy": -3.5,
        "max_force": 0.1,
        "energy_per_atom_eV": -0.875,
    }
    assert summary["status"] == "completed" and summary["completed_at"] == doc["completed_at"]

    stab = {
        **doc,
        "task_type": "stability",
        "result": {
            "stability_assessment": "stable",
            "volume_drift_percent": 1.2,
            "final_rmsd": 0.4,
            "avg_temperature": 299.0,
            "time_series": {"time_ps": [0.0, 0.1]},
            "output_files": {"trajectory": "md.traj"},
        },
    }
    assert mira_summary(stab)["key_metrics"] == {
        "stability_assessment": "stable",
        "volume_drift_percent": 1.2,
        "final_rmsd": 0.4,
        "avg_temperature": 299.0,
    }
    assert "trajectory" in mira_result(stab)["downloads"]


@pytest.mark.asyncio
async def test_a_running_task_is_listed_under_status_running(tmp_path: Path) -> None:
    root = tmp_path / "spool"
    daemon = Daemon(root).start()
    try:
        async with TestClient(TestServer(create_app(_config(root)))) as client:
            sid = await _upload_cu(client, repeat=3)
            body = {
                "structure_id": sid,
                "model_key": "emt",
                "fmax": 1e-30,
                "max_steps": 10_000_000,
                "optimizer": "FIRE",
            }
            tid = (await _json(await client.post(f"{M}/tasks/optimization", json=body), 201))[
                "task_id"
            ]
            # The first progress event means the optimizer is stepping.
            async with client.get(f"/api/v1/tasks/{tid}/events") as resp:
                async for line in resp.content:
                    if line.startswith(b"event: progress"):
                        break
            for status in ("running", "RUNNING", "pending,running"):
                page = await _json(await client.get(f"{M}/tasks?status={status}"), 200)
                assert page["total"] == 1, (status, page)
                assert [t["task_id"] for t in page["tasks"]] == [tid]
                assert page["tasks"][0]["status"] == "running"
            for status in ("pending", "assigned"):
                page = await _json(await client.get(f"{M}/tasks?status={status}"), 200)
                assert page["total"] == 0 and page["tasks"] == [], (status, page)
            both = await _json(await client.get("/api/v1/tasks?status=running"), 200)
            assert both["data"]["pagination"]["total"] == 1, both
            assert [t["task_id"] for t in both["data"]["items"]] == [tid]
            answer = await _json(await client.post(f"{M}/tasks/{tid}/cancel"), 200)
            # Either it stopped within the answer's wait, or it is still at its step.
            assert (answer["state"], answer["cancel_requested"]) in (
                ("cancelled", False),
                ("running", True),
            ), answer
            await _await_end(client, tid)
    finally:
        daemon.stop()
