"""The admin system-log stream follows the daemon's JSON log file, with resumable ids."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from loguru import logger

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
        assert body["data"]["pagination"]["total"] == 2  # the line cut short is skipped
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


@pytest.mark.asyncio
async def test_a_client_leaving_the_stream_is_not_an_error(tmp_path: Path) -> None:
    """The client hangs up; the next heartbeat finds no one: a 200 in the access log, no
    unhandled error."""
    sp = Spool(tmp_path / "spool")
    app = create_app(Config(spool=str(sp.root), http="127.0.0.1:0", sse_heartbeat_s=0.1))
    records: list[tuple[str, str, Any]] = []
    logged = asyncio.Event()
    loop = asyncio.get_running_loop()

    def sink(message: Any) -> None:
        rec = message.record
        records.append((rec["level"].name, rec["message"], rec["extra"].get("status")))
        if rec["extra"].get("path") == "/api/v1/system/logs/stream":
            loop.call_soon_threadsafe(logged.set)

    sink_id = logger.add(sink, level="DEBUG")
    # The production runner: its handlers are not cancelled when a client leaves (the
    # test server's are), so the handler meets the closed connection at its next write.
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = int(runner.addresses[0][1])
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /api/v1/system/logs/stream HTTP/1.1\r\nHost: test\r\n\r\n")
        await writer.drain()
        assert (await reader.readline()).startswith(b"HTTP/1.1 200")
        writer.close()
        await writer.wait_closed()
        await asyncio.wait_for(logged.wait(), 10)
    finally:
        logger.remove(sink_id)
        await runner.cleanup()
    assert [status for _, _, status in records if status is not None] == [200], records
    assert not [r for r in records if r[0] in ("ERROR", "CRITICAL")], records
