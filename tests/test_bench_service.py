"""Campaigns through a server: ``POST/GET /api/v1/bench/campaigns`` with two user keys
and an admin key on a real aiohttp server, and ``mofsim bench run/status --server``
against a live one.  The suite's CIFs travel with the request; the tasks are the key's."""

from __future__ import annotations

import fcntl
import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from aiohttp.test_utils import TestClient, TestServer
from typer.testing import CliRunner

from mofsim_cli.main import app
from mofsim_core.api_keys import KeyStore
from mofsim_core.bench_suites import StructureSource, suite_paths
from mofsim_core.config import Config
from mofsim_http.app import create_app
from spool import Spool
from tests.daemon_helpers import LiveServer

API = "/api/v1"


@pytest.fixture
def tokens(tmp_path: Path) -> dict[str, str]:
    root = tmp_path / "spool"
    store = KeyStore(root / "state" / "api_keys.json", Spool(root).paths)
    out = {}
    for name, admin in (("alice", False), ("bob", False), ("ops", True)):
        entry, token = store.create(name, admin=admin)
        out[name], out[f"{name}_id"] = token, entry["id"]
    return out


@pytest_asyncio.fixture
async def client(tmp_path: Path, tokens: dict[str, str]) -> AsyncIterator[TestClient[Any, Any]]:
    config = Config(spool=str(tmp_path / "spool"), http_rate_limit=0)
    async with TestClient(TestServer(create_app(config))) as c:
        yield c


@pytest.fixture(scope="module")
def quick_files(mofsimbench_dir: Path) -> dict[str, str]:
    here = StructureSource.folder(mofsimbench_dir)
    return {p: here.read(p) for p in suite_paths("quick", here)}


async def call(
    client: TestClient[Any, Any], method: str, url: str, token: str, **kw: Any
) -> tuple[int, Any]:
    resp = await client.request(method, url, headers={"X-API-Key": token}, **kw)
    return resp.status, await resp.json()


@pytest.mark.asyncio
async def test_a_campaign_through_the_api_belongs_to_its_key(
    client: TestClient[Any, Any],
    tokens: dict[str, str],
    quick_files: dict[str, str],
    tmp_path: Path,
) -> None:
    # A whole folder may be sent: what is not the benchmark's is left aside and named.
    extra = {"main_set/README.cif": "data_notes"}
    body = {"model": "emt", "suite": "quick", "structures": {**quick_files, **extra}}
    status, doc = await call(client, "POST", f"{API}/bench/campaigns", tokens["alice"], json=body)
    assert status == 202, doc
    row = doc["data"]
    assert row["unknown_files"] == ["main_set/README.cif"]
    cid = row["campaign_id"]
    assert cid == f"emt-quick.{tokens['alice_id']}"
    # EMT has no Zn, Zr, ...: four entries run, twelve are refused with the reason.
    assert len(row["submitted"]) == 4 and row["states"] == {"QUEUED": 4, "REFUSED": 12}

    campaign = json.loads((tmp_path / "spool" / "bench" / f"{cid}.json").read_text())
    task_id = next(r["task_id"] for r in campaign["entries"].values() if r.get("task_id"))
    assert (await call(client, "GET", f"{API}/tasks/{task_id}", tokens["alice"]))[0] == 200
    assert (await call(client, "GET", f"{API}/tasks/{task_id}", tokens["bob"]))[0] == 404

    # Sent again, nothing is submitted twice.
    status, doc = await call(client, "POST", f"{API}/bench/campaigns", tokens["alice"], json=body)
    assert status == 202 and doc["data"]["submitted"] == []

    _, listing = await call(client, "GET", f"{API}/bench/campaigns", tokens["alice"])
    assert [r["campaign_id"] for r in listing["data"]["items"]] == [cid]
    assert (await call(client, "GET", f"{API}/bench/campaigns", tokens["bob"]))[1]["data"][
        "pagination"
    ]["total"] == 0
    assert (await call(client, "GET", f"{API}/bench/campaigns", tokens["ops"]))[1]["data"][
        "pagination"
    ]["total"] == 1

    # The report: the owner's and the admin's; another key's campaign is not there.
    status, doc = await call(client, "GET", f"{API}/bench/report?campaign={cid}", tokens["alice"])
    assert status == 200 and doc["data"]["report"]["campaigns"][0]["campaign_id"] == cid
    assert (await call(client, "GET", f"{API}/bench/report?campaign={cid}", tokens["bob"]))[
        0
    ] == 404
    _, doc = await call(client, "GET", f"{API}/bench/report", tokens["bob"])
    assert doc["data"]["report"]["campaigns"] == []
    _, doc = await call(client, "GET", f"{API}/bench/report", tokens["ops"])
    assert [c["campaign_id"] for c in doc["data"]["report"]["campaigns"]] == [cid]
    # One campaign named twice is reported once; a report compares at most 20.
    url = f"{API}/bench/report?campaign={cid},{cid}"
    _, doc = await call(client, "GET", url, tokens["alice"])
    assert len(doc["data"]["report"]["campaigns"]) == 1
    many = ",".join(f"c{i}" for i in range(21))
    status, doc = await call(client, "GET", f"{API}/bench/report?campaign={many}", tokens["ops"])
    assert status == 400 and doc["error"]["field"] == "campaign"

    # While another request submits the campaign, a second one is told to come back.
    with open(tmp_path / "spool" / "bench" / f"{cid}.lock", "a") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        resp = await client.post(
            f"{API}/bench/campaigns", headers={"X-API-Key": tokens["alice"]}, json=body
        )
        assert resp.status == 429 and resp.headers["Retry-After"] == "5"


@pytest.mark.parametrize(
    ("change", "status", "field"),
    [
        ({"structures": {}}, 400, "structures"),
        ({"structures": {"main_set/nope.cif": "data_x"}}, 400, "structures"),
        ({"suite": "huge"}, 400, "suite"),
        ({"with_d3": "yes"}, 400, "with_d3"),
        ({"overrides": {"stability": 3}}, 400, "overrides"),
        ({"colour": "blue"}, 400, "colour"),
        ({"model": "no-such-model"}, 404, "model"),
        ({"drop": "main_set/MOF-5_primitive.cif"}, 400, "structures"),
        ({"drop": "hcmof/RSM0004.cif"}, 400, "structures"),
    ],
)
@pytest.mark.asyncio
async def test_bad_campaign_requests_say_which_field(
    client: TestClient[Any, Any],
    tokens: dict[str, str],
    quick_files: dict[str, str],
    tmp_path: Path,
    change: dict[str, Any],
    status: int,
    field: str,
) -> None:
    body: dict[str, Any] = {"model": "emt", "suite": "quick", "structures": dict(quick_files)}
    if "drop" in change:
        del body["structures"][change.pop("drop")]
    body.update(change)
    got, doc = await call(client, "POST", f"{API}/bench/campaigns", tokens["alice"], json=body)
    assert got == status, doc
    assert doc["error"]["field"] == field
    assert not list((tmp_path / "spool" / "bench").glob("*.json"))


@pytest.fixture
def keyed_server(tmp_path: Path, tokens: dict[str, str]) -> Iterator[LiveServer]:
    server = LiveServer(tmp_path / "spool", http_rate_limit=0).start()
    yield server
    server.close()


def test_cli_runs_a_campaign_through_a_server(
    keyed_server: LiveServer, tokens: dict[str, str], mofsimbench_dir: Path
) -> None:
    remote = ["--server", keyed_server.url, "--api-key", tokens["bob"]]
    argv = ["bench", "run", "--model", "emt", "--suite", "quick", "--data", str(mofsimbench_dir)]
    result = CliRunner().invoke(app, [*argv, "--json", *remote], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    row = json.loads(result.output)
    assert row["campaign_id"] == f"emt-quick.{tokens['bob_id']}"
    assert len(row["submitted"]) == 4

    status = CliRunner().invoke(app, ["bench", "status", "--json", *remote])
    assert status.exit_code == 0, status.output
    (listed,) = json.loads(status.output)
    assert listed["states"] == {"QUEUED": 4, "REFUSED": 12}
    # A key that did not start it sees no campaign.
    other = ["--server", keyed_server.url, "--api-key", tokens["alice"]]
    assert json.loads(CliRunner().invoke(app, ["bench", "status", "--json", *other]).output) == []

    # Without the folder: one line naming --data, no traceback.
    bad = CliRunner().invoke(app, [*argv[:-2], "--data", "/nowhere", *remote])
    assert bad.exit_code == 1 and "missing" in bad.output and "Traceback" not in bad.output
