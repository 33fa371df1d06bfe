"""Submission bounds (atoms after supercells, steps, timeout, queue length) in every path
that submits: HTTP in both dialects, ``mofsim submit`` on a spool, and files dropped
into ``incoming/`` by hand (admitted by a live daemon)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from aiohttp.test_utils import TestClient, TestServer
from typer.testing import CliRunner

from mofsim_cli.main import app as cli_app
from mofsim_core.config import Config, load_config
from mofsim_http.app import create_app
from spool import Spool
from spool.errors import QueueFull, ValidationError
from spool.limits import Limits, step_counts
from tests.daemon_helpers import Daemon, cu_xyz, quick_job, status, wait_for

CU = {"source": "inline", "format": "extxyz", "content": cu_xyz(), "name": "Cu"}
SMALL = {"max_atoms": 20, "max_steps": 1000, "max_timeout_s": 3600.0, "max_queued": 3}


# --- the bounds themselves and their configuration -------------------------------------------


def test_step_counts_are_found_at_any_depth() -> None:
    params = {"max_steps": 5, "stages": [{"type": "nvt", "steps": 7}], "fmax": 0.1}
    assert dict(step_counts(params, "parameters")) == {
        "parameters.max_steps": 5,
        "parameters.stages[0].steps": 7,
    }
    limits = Limits(max_steps=6)
    with pytest.raises(ValidationError) as e:
        limits.check_steps(params)
    assert e.value.field == "parameters.stages[0].steps"


def test_atoms_name_the_structure_or_the_parameter_that_multiplies_it() -> None:
    limits = Limits(max_atoms=100)
    limits.check_atoms(100)
    limits.check_atoms(25, 4, "parameters.supercell")
    with pytest.raises(ValidationError) as e:
        limits.check_atoms(26, 4, "parameters.supercell")
    assert e.value.field == "parameters.supercell" and "26 x 4 = 104" in e.value.message
    with pytest.raises(ValidationError) as e:
        limits.check_atoms(101, 8, "parameters.supercell")
    assert e.value.field == "structure"


@pytest.mark.parametrize(
    ("setting", "value"),
    [
        ("max_atoms", "0"),
        ("max_steps", "-1"),
        ("max_queued", "many"),
        ("max_atoms", "1e400"),
        ("max_timeout_s", "nan"),
        ("max_timeout_s", "inf"),
        ("max_timeout_s", "0"),
        ("webhook_allowed_networks", "10.0.0.0/33"),
    ],
)
def test_out_of_range_bounds_are_configuration_errors(
    tmp_path: Path, setting: str, value: str
) -> None:
    with pytest.raises(ValidationError) as e:
        load_config(None, {setting: value}, env={})
    assert e.value.field == setting


def test_bounds_come_from_the_configuration_file(tmp_path: Path) -> None:
    f = tmp_path / "m.toml"
    f.write_text(
        "[daemon]\nmax_atoms = 50\nmax_queued = 7\nwebhook_allowed_networks = ['10.1.0.0/16']\n"
    )
    cfg = load_config(f, env={})
    assert cfg.limits.max_atoms == 50 and cfg.limits.max_queued == 7
    assert cfg.limits.webhook_allowed_networks == ("10.1.0.0/16",)
    assert Config().limits == Limits()


def test_a_full_queue_refuses_until_a_task_leaves(tmp_path: Path) -> None:
    sp = Spool(tmp_path, limits=Limits(max_queued=2))
    first = quick_job()
    sp.submit(first)
    sp.submit(quick_job())
    with pytest.raises(QueueFull) as e:
        sp.submit(quick_job())
    assert (e.value.code, e.value.http_status) == (30006, 503)
    assert len(sp.queued()) == 2  # nothing half-published
    sp.request_cancel(first.task_id)
    sp.submit(quick_job())  # the count follows the folder, not a tally of submits


# --- HTTP, both dialects -------------------------------------------------------------------


@pytest_asyncio.fixture
async def client(tmp_path: Path) -> AsyncIterator[TestClient]:
    config = Config(spool=str(tmp_path / "spool"), http_rate_limit=0, **SMALL)
    async with TestClient(TestServer(create_app(config))) as c:
        yield c


# Each case: the endpoint, the body's changes, then the expected field.
HTTP_CASES: list[tuple[str, dict[str, Any], str]] = [
    ("optimization", {"parameters": {"max_steps": 1e12}}, "parameters.max_steps"),
    ("optimization", {"parameters": {"max_steps": 10**400}}, "parameters.max_steps"),
    ("optimization", {"parameters": {"steps": 1001}}, "parameters.max_steps"),
    ("stability", {"parameters": {"nvt_steps": 10, "npt_steps": 5000}}, "parameters.npt_steps"),
    ("single-point", {"options": {"timeout": 1e300}}, "options.timeout"),
    ("single-point", {"timeout": 3601}, "options.timeout"),
    ("heat-capacity", {"parameters": {"supercell": [2, 2, 2]}}, "parameters.supercell"),
    ("heat-capacity", {"parameters": {"supercell": [20, 20, 20]}}, "parameters.supercell"),
    (
        "single-point",
        {"options": {"notify_url": "http://169.254.169.254/latest"}},
        "options.notify_url",
    ),
    ("single-point", {"notify_url": "http://localhost:5432/"}, "options.notify_url"),
    ("single-point", {"notify_url": "http://[::ffff:10.0.0.1]/h"}, "options.notify_url"),
]


@pytest.mark.asyncio
@pytest.mark.parametrize(("endpoint", "changes", "field"), HTTP_CASES)
async def test_api_v1_refuses_what_is_over_a_bound(
    client: TestClient, endpoint: str, changes: dict[str, Any], field: str
) -> None:
    body = {"model": "emt", "structure": dict(CU), **changes}
    resp = await client.post(f"/api/v1/tasks/{endpoint}", json=body)
    doc = await resp.json()
    assert (resp.status, doc["code"], doc["error"]["field"]) == (400, 40001, field), doc


async def upload_cu(client: TestClient) -> str:
    form = {"name": "Cu", "format": "extxyz", "content": cu_xyz()}
    resp = await client.post("/mira/api/v1/structures/upload", data=form)
    assert resp.status == 201, await resp.text()
    return str((await resp.json())["id"])


@pytest.mark.asyncio
async def test_mira_refuses_the_same_with_flat_field_names(client: TestClient) -> None:
    sid = await upload_cu(client)
    cases = [
        ("optimization", {"max_steps": 10**13}, "max_steps"),
        ("heat-capacity", {"supercell": [3, 3, 3]}, "supercell"),
        ("single-point", {"timeout": 1e9}, "options.timeout"),
        ("single-point", {"notify_url": "http://127.0.0.1:9/x"}, "options.notify_url"),
    ]
    for endpoint, flat, field in cases:
        body = {"structure_id": sid, "model_key": "emt", **flat}
        resp = await client.post(f"/mira/api/v1/tasks/{endpoint}", json=body)
        doc = await resp.json()
        assert (resp.status, doc["error_code"], doc["field"]) == (400, "VALIDATION", field), doc


@pytest.mark.asyncio
async def test_a_full_queue_answers_503_with_30006_in_both_dialects(client: TestClient) -> None:
    sid = await upload_cu(client)
    ok = {"model": "emt", "structure": dict(CU)}
    for _ in range(SMALL["max_queued"]):
        resp = await client.post("/api/v1/tasks/single-point", json=ok)
        assert resp.status == 202, await resp.text()
    resp = await client.post("/api/v1/tasks/single-point", json=ok)
    doc = await resp.json()
    assert (resp.status, doc["code"]) == (503, 30006), doc
    resp = await client.post(
        "/api/v1/tasks/batch", json={"tasks": [{**ok, "task_type": "single-point"}]}
    )
    report = (await resp.json())["data"]
    assert report["accepted"] == 0 and report["items"][0]["error"]["code"] == 30006, report
    resp = await client.post(
        "/mira/api/v1/tasks/single-point", json={"structure_id": sid, "model_key": "emt"}
    )
    assert (resp.status, (await resp.json())["error_code"]) == (503, "QUEUE_FULL")


# --- mofsim submit on a spool --------------------------------------------------------------


def test_cli_refuses_what_is_over_a_bound(tmp_path: Path, monkeypatch: Any) -> None:
    conf = tmp_path / "mofsim.toml"
    conf.write_text("[daemon]\n" + "".join(f"{k} = {v}\n" for k, v in SMALL.items()))
    monkeypatch.setenv("MOFSIM_CONFIG", str(conf))
    cu = tmp_path / "cu.xyz"
    cu.write_text(cu_xyz())
    spool = tmp_path / "spool"
    cases = [
        (["optimization", "-p", "max_steps=1e12"], "parameters.max_steps"),
        (["optimization", "-p", "max_steps=" + "9" * 400], "parameters.max_steps"),
        (["heat-capacity", "-p", "supercell=[3,3,3]"], "parameters.supercell"),
        (["single-point", "--timeout", "1e300"], "options.timeout"),
    ]
    for args, field in cases:
        argv = ["submit", args[0], str(cu), "-m", "emt", *args[1:], "--json"]
        r = CliRunner().invoke(cli_app, [*argv, "--spool", str(spool)], catch_exceptions=False)
        assert r.exit_code == 1, r.output
        err = json.loads(r.stdout)["error"]
        assert (err["code"], err["field"]) == (40001, field), err
    for _ in range(SMALL["max_queued"]):
        argv = ["submit", "single-point", str(cu), "-m", "emt", "--spool", str(spool)]
        assert CliRunner().invoke(cli_app, argv).exit_code == 0
    r = CliRunner().invoke(cli_app, [*argv, "--json"])
    assert r.exit_code == 1 and json.loads(r.stdout)["error"]["code"] == 30006


# --- files dropped by hand -----------------------------------------------------------------


def test_dropped_files_over_a_bound_are_rejected_or_fail_with_the_field(tmp_path: Path) -> None:
    """Steps and timeout are checked when the daemon adopts a file (rejected/ with the
    reason); atoms when the task meets its structure (FAILED, 40001, the field).  A queue
    over ``max_queued`` still takes files a person put there."""
    sp = Spool(tmp_path / "spool")
    incoming = sp.paths.root / "incoming" / "2-normal"
    drops: dict[str, dict[str, Any]] = {
        "steps.json": {"task_type": "optimization", "parameters": {"max_steps": 1e12}},
        "timeout.json": {"task_type": "single-point", "options": {"timeout": 1e300}},
        "atoms.json": {
            "task_type": "heat-capacity",
            "task_id": "task_big_supercell",
            "parameters": {"supercell": [3, 3, 3], "pre_optimize": False},
        },
    }
    for i in range(SMALL["max_queued"] + 1):
        drops[f"ok{i}.json"] = {"task_type": "single-point"}
    for name, job in drops.items():
        (incoming / name).write_text(json.dumps({"model": "emt", "structure": CU, **job}))
    with Daemon(sp.root, **SMALL):
        rejected = sp.paths.root / "rejected"
        wait_for(lambda: len(list(rejected.glob("*.reason"))) >= 2, 30, "two rejections")
        wait_for(lambda: status(sp, "task_big_supercell") == "FAILED", 60, "atoms failure")
    reasons = {p.name: p.read_text() for p in rejected.glob("*.reason")}
    assert any("40001" in r and "parameters.max_steps" in r for r in reasons.values()), reasons
    assert any("40001" in r and "options.timeout" in r for r in reasons.values()), reasons
    assert len(reasons) == 2  # the others were all taken, the full queue notwithstanding
    error = sp.record("task_big_supercell")["error"]
    assert error["code"] == 40001 and error.get("field") == "parameters.supercell", error
