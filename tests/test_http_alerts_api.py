"""``/api/v1/system/alerts/*`` and ``/api/v1/alerts/*``: the alert engine's store read
back as filtered, paged lists."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from aiohttp.test_utils import TestClient, TestServer

from mofsim_core.alerts import AlertStore, Snapshot, evaluate, load_rules
from mofsim_core.config import Config
from mofsim_core.devices_simulated import SimulatedBackend
from mofsim_http.app import create_app

Client = TestClient[Any, Any]


@pytest_asyncio.fixture
async def client(tmp_path: Path) -> AsyncIterator[Client]:
    app = create_app(Config(spool=str(tmp_path / "spool"), http_rate_limit=0))
    async with TestClient(TestServer(app)) as c:
        yield c


async def data_of(client: Client, path: str, status: int = 200) -> Any:
    resp = await client.get(path)
    body = await resp.json()
    assert resp.status == status, body
    return body.get("data", body)


def _history(directory: Path, entries: list[dict[str, Any]]) -> None:
    """A history as the engine writes it (one JSON object a line, oldest first)."""
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / "history.jsonl", "w") as fh:
        for entry in entries:
            fh.write(json.dumps(entry) + "\n")


def _entry(n: int, level: str, kind: str, resolved: bool = False) -> dict[str, Any]:
    return {
        "alert_id": f"alert_{n}",
        "type": kind,
        "level": level,
        "subject": f"gpu{n % 2}",
        "message": f"entry {n}",
        "details": {},
        "timestamp": f"2025-12-30T10:{n:02d}:00.000Z",
        "resolved": resolved,
        "resolved_at": f"2025-12-30T11:{n:02d}:00.000Z" if resolved else None,
    }


@pytest.mark.asyncio
async def test_empty_without_an_engine_then_read_from_its_store(
    client: Client, tmp_path: Path
) -> None:
    for kind in ("rules", "history", "active"):
        for prefix in ("/api/v1/system/alerts", "/api/v1/alerts"):
            data = await data_of(client, f"{prefix}/{kind}")
            assert data["items"] == [] and data["engine"] == "not running on this spool"
            assert data["pagination"]["total"] == 0 and data["pagination"]["page"] == 1
    # The daemon's engine writes its store in state/alerts: the endpoints read it.
    backend = SimulatedBackend(2)
    backend.set_temperature(1, 91.0)
    store = AlertStore(tmp_path / "spool" / "state" / "alerts")
    rules = load_rules(None)
    evaluate(rules, Snapshot(devices=[d.to_dict() for d in backend.status()]), store)
    active = await data_of(client, "/api/v1/alerts/active")
    assert active["engine"] == "running" and active["pagination"]["total"] == 1
    assert active["items"][0]["type"] == "gpu_temperature_high"
    rules_data = await data_of(client, "/api/v1/system/alerts/rules")
    assert {r["type"] for r in rules_data["items"]} == set(rules)
    critical = await data_of(client, "/api/v1/system/alerts/rules?level=critical")
    assert critical["items"] and {r["level"] for r in critical["items"]} == {"CRITICAL"}
    backend.set_temperature(1, 50.0)
    evaluate(rules, Snapshot(devices=[d.to_dict() for d in backend.status()]), store)
    history = await data_of(client, "/api/v1/system/alerts/history?limit=5")
    assert [h["resolved"] for h in history["items"]] == [True, False]  # newest first
    assert (await data_of(client, "/api/v1/alerts/active"))["items"] == []


@pytest.mark.asyncio
async def test_history_filters_and_pages(client: Client, tmp_path: Path) -> None:
    kinds = ("gpu_memory_low", "queue_backlog", "gpu_unavailable")
    levels = ("WARNING", "WARNING", "CRITICAL")
    entries = [_entry(n, levels[n % 3], kinds[n % 3], resolved=n % 4 == 3) for n in range(12)]
    _history(tmp_path / "spool" / "state" / "alerts", entries)
    base = "/api/v1/system/alerts/history"

    page = await data_of(client, f"{base}?page=2&page_size=5")
    assert [i["alert_id"] for i in page["items"]] == [f"alert_{n}" for n in range(6, 1, -1)]
    assert page["pagination"] == {
        **page["pagination"],
        "page": 2,
        "page_size": 5,
        "total": 12,
        "total_pages": 3,
    }
    skipped = await data_of(client, f"{base}?skip=10&limit=5")
    assert [i["alert_id"] for i in skipped["items"]] == ["alert_1", "alert_0"]

    critical = await data_of(client, f"{base}?level=CRITICAL")
    assert {i["alert_id"] for i in critical["items"]} == {f"alert_{n}" for n in (2, 5, 8, 11)}
    assert critical["pagination"]["total"] == 4  # the matches, not the whole history
    both = await data_of(client, f"{base}?type=queue_backlog,gpu_unavailable&level=warning")
    assert {i["type"] for i in both["items"]} == {"queue_backlog"}
    by_rule = await data_of(client, "/api/v1/alerts/history?rule=gpu_memory_low&subject=gpu0")
    assert {i["alert_id"] for i in by_rule["items"]} == {"alert_0", "alert_6"}

    # A resolution counts at the time it resolved, a firing at the time it fired.
    window = await data_of(client, f"{base}?since=2025-12-30T10:05:00Z&until=2025-12-30T10:09:00Z")
    assert {i["alert_id"] for i in window["items"]} == {"alert_5", "alert_6", "alert_8", "alert_9"}
    late = await data_of(client, f"{base}?since=2025-12-30T11:00:00%2B00:00")
    assert {i["alert_id"] for i in late["items"]} == {"alert_3", "alert_7", "alert_11"}
    resolved = await data_of(client, f"{base}?resolved=true")
    assert {i["alert_id"] for i in resolved["items"]} == {"alert_3", "alert_7", "alert_11"}
    firing = await data_of(client, f"{base}?resolved=false")
    assert firing["pagination"]["total"] == 9


@pytest.mark.asyncio
async def test_bad_filters_are_refused_with_the_field(client: Client, tmp_path: Path) -> None:
    _history(tmp_path / "spool" / "state" / "alerts", [_entry(1, "INFO", "queue_backlog")])
    base = "/api/v1/alerts/history"
    for query, field in (
        ("limit=0", "limit"),
        ("page_size=5000", "page_size"),
        ("level=LOUD", "level"),
        ("since=yesterday", "since"),
        ("until=2025-12-30", "until"),
        ("since=2025-13-40T10:00:00Z", "since"),
        ("resolved=maybe", "resolved"),
    ):
        resp = await client.get(f"{base}?{query}")
        body = await resp.json()
        assert resp.status == 400, query
        assert body["error"]["field"] == field, query
