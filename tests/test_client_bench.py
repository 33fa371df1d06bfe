"""The SDK's MOFSimBench methods against a live server with API keys: a campaign started
from the benchmark's whole folder, continued, listed and reported, in both clients."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from mofsim_client import AsyncMOFSimClient, MOFSimClient, ValidationError, benchmark_files
from mofsim_core.api_keys import KeyStore
from spool import Spool
from tests.daemon_helpers import LiveServer


@pytest.fixture
def server_and_key(tmp_path: Path) -> Iterator[tuple[str, str]]:
    root = tmp_path / "spool"
    _, token = KeyStore(root / "state" / "api_keys.json", Spool(root).paths).create("carol")
    server = LiveServer(root, http_rate_limit=0).start()
    yield server.url, token
    server.close()


def test_a_campaign_from_the_whole_folder(
    server_and_key: tuple[str, str], mofsimbench_dir: Path
) -> None:
    url, key = server_and_key
    files = benchmark_files(mofsimbench_dir)
    assert "main_set/MOF-5_primitive.cif" in files and "hcmof/RSM0004.cif" in files
    with MOFSimClient(url, api_key=key) as client:
        first = client.start_bench_campaign("emt", mofsimbench_dir, "quick")
        assert first["campaign_id"].startswith("emt-quick.")
        assert len(first["submitted"]) == 4 and first["states"]["REFUSED"] == 12
        # The folder holds more than the benchmark's sets: those files are named, unused.
        assert first["unknown_files"] and all(f in files for f in first["unknown_files"])
        again = client.start_bench_campaign("emt", files, "quick")
        assert again["submitted"] == [] and again["campaign_id"] == first["campaign_id"]
        (listed,) = client.list_bench_campaigns()
        assert listed["entries"] == 16
        report = client.get_bench_report([first["campaign_id"]])
        assert report["report"]["campaigns"][0]["campaign_id"] == first["campaign_id"]
        assert "| metric |" in report["markdown"] and "<table" in report["html"]

    async def twin() -> list[dict[str, object]]:
        async with AsyncMOFSimClient(url, api_key=key) as client:
            report = await client.get_bench_report()
            assert len(report["report"]["campaigns"]) == 1
            return await client.list_bench_campaigns()

    assert [c["campaign_id"] for c in asyncio.run(twin())] == [first["campaign_id"]]


def test_a_folder_without_the_benchmark_is_refused_before_sending(tmp_path: Path) -> None:
    with pytest.raises(ValidationError) as err:
        benchmark_files(tmp_path)
    assert err.value.field == "structures"
