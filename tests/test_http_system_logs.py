"""The admin system-log stream follows the daemon's JSON log file, with resumable ids."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer

from mofsim_core.config import Config
from mofsim_http.app import create_app
from spool import Spool


def line(level: str, message: str) -> str:
    return (
        json.dumps(
            {
                "timestamp": "2026-01-01T00:00:00.000Z",
                "level": level,
                "logger": "system",
                "message": message,
                "task_id": None,
                "gpu_id": None,
                "extra": {},
            }
        )
        + "\n"
    )


async def read_events(resp, n: int) -> list[tuple[str, dict]]:
    out: list[tuple[str, dict]] = []
    event_id, data = None, None
    while len(out) < n:
        raw = (await resp.content.readline()).decode().rstrip("\n")
        if raw.startswith("id: "):
            event_id = raw[4:]
        elif raw.startswith("data: "):
            data = json.loads(raw[6:])
        elif raw == "" and data is not None:
            out.append((str(event_id), data))
            event_id, data = None, None
    return out


@pytest.mark.asyncio
async def test_stream_tails_filters_and_resumes(tmp_path: Path) -> None:
    sp = Spool(tmp_path / "spool")
    log = sp.paths.state_dir / "logs" / f"system-{datetime.now(UTC).date().isoformat()}.jsonl"
    log.parent.mkdir(parents=True)
    log.write_text(line("INFO", "old one") + line("DEBUG", "noise") + line("WARNING", "warn"))
    app = create_app(Config(spool=str(sp.root), http="127.0.0.1:0", sse_heartbeat_s=0.2))
    async with TestClient(TestServer(app)) as client:
        resp = await client.get("/api/v1/system/logs/stream?tail=3&level=INFO")
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/event-stream")
        first = await read_events(resp, 2)
        assert [d["message"] for _, d in first] == ["old one", "warn"]
        with open(log, "a") as fh:
            fh.write(line("ERROR", "fresh"))
        ((eid, data),) = await read_events(resp, 1)
        assert data["message"] == "fresh"
        resp.close()
        resumed = await client.get(
            "/api/v1/system/logs/stream", headers={"Last-Event-ID": first[0][0]}
        )
        again = await read_events(resumed, 3)
        assert [d["message"] for _, d in again] == ["noise", "warn", "fresh"]
        resumed.close()
        bad = await client.get("/api/v1/system/logs/stream?level=LOUD")
        assert bad.status == 400 and (await bad.json())["error"]["field"] == "level"


@pytest.mark.asyncio
async def test_a_month_old_day_is_read_back_from_its_archive(tmp_path: Path) -> None:
    from datetime import timedelta

    from mofsim_core import logs
    from mofsim_core.api_keys import KeyStore

    sp = Spool(tmp_path / "spool")
    log_dir = sp.paths.state_dir / "logs"
    log_dir.mkdir(parents=True)
    today = datetime.now(UTC).date()
    old = today - timedelta(days=45)
    (log_dir / f"audit-{old.isoformat()}.jsonl").write_text(
        line("INFO", "key created") + line("WARNING", "task data deleted") + "{cut sh"
    )
    logs.archive(log_dir, today)
    assert not (log_dir / f"audit-{old.isoformat()}.jsonl").exists()  # only in the tar now
    config = Config(spool=str(sp.root), http="127.0.0.1:0", http_rate_limit=0)
    keys = KeyStore(config.api_keys_path, sp.paths)
    _, admin = keys.create("ops", admin=True)
    _, user = keys.create("chemist")
    async with TestClient(TestServer(create_app(config))) as client:
        url = f"/api/v1/system/logs?date={old.isoformat()}&kind=audit"
        resp = await client.get(url, headers={"X-API-Key": admin})
        body = await resp.json()
        assert resp.status == 200, body
        assert body["data"]["total"] == 2  # the line cut short is skipped
        assert [r["message"] for r in body["data"]["items"]] == ["key created", "task data deleted"]
        resp = await client.get(url + "&level=WARNING&limit=1", headers={"X-API-Key": admin})
        assert [r["message"] for r in (await resp.json())["data"]["items"]] == ["task data deleted"]
        denied = await client.get(url, headers={"X-API-Key": user})
        assert denied.status == 403
        for query, field in (
            ("date=22-11-2026", "date"),
            ("kind=debug", "kind"),
            ("limit=0", "limit"),
        ):
            bad = await client.get(f"/api/v1/system/logs?{query}", headers={"X-API-Key": admin})
            assert bad.status == 400 and (await bad.json())["error"]["field"] == field
