"""``GET /api/v1/system/logs/stream`` (admin, spec 6.4): the system log, live, as SSE;
``GET /api/v1/system/logs`` (admin): one day of the system, access or audit log, read
back from whichever form it is kept in (plain, gzipped, or in its month's archive).

It follows the daemon's JSON system log file of the day (``mofsim_core.logs``), so it works
whether the server runs inside the daemon or on its own.  Event ids are
``<date>:<byte offset>``: a client reconnecting with ``Last-Event-ID`` resumes where it
stopped, across midnight too.  ``?level=WARNING`` filters; ``?tail=N`` starts with the
last N lines instead of only new ones.
"""

from __future__ import annotations

import asyncio
import json
import re
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from aiohttp import web

from mofsim_core.logs import log_dir_of
from mofsim_http.app import API_PREFIX, CONFIG_KEY, SHUTDOWN_KEY
from mofsim_http.describe import describe
from mofsim_http.envelope import ok
from mofsim_http.openapi_components import any_case
from mofsim_http.paging import page_of, page_properties
from spool.errors import ValidationError
from spool.events import LEVEL_RANK

POLL_S = 0.25
# Read in any case; empty means every level.
LEVEL_QUERY = {"type": "string", "pattern": f"^(?:{'|'.join(map(any_case, LEVEL_RANK))})?$"}
QUERY = {
    "type": "object",
    "properties": {
        "level": LEVEL_QUERY,
        "tail": {"type": "integer", "minimum": 0, "maximum": 10000},
    },
}
MAX_LINES = 10000
DAY_PAGE = 1000
_DAY = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
DAY_QUERY = {
    "type": "object",
    "properties": {
        "date": {
            "type": "string",
            "format": "date",
            "description": "The day (UTC), YYYY-MM-DD; default today",
        },
        "kind": {"type": "string", "enum": ["system", "access", "audit"], "default": "system"},
        "level": LEVEL_QUERY,
        "offset": {
            "type": "integer",
            "minimum": 0,
            "maximum": 10**9,
            "default": 0,
            "description": "the same as skip",
        },
        **page_properties(MAX_LINES, DAY_PAGE),
    },
}


@describe(
    summary="One day of a log file (system, access or audit), archives included",
    tags=["system"],
    admin=True,
    query=DAY_QUERY,
)
async def day_log(request: web.Request) -> web.Response:
    from mofsim_core.logs import KINDS, read_day

    raw_day = request.query.get("date")
    try:
        # Only the documented form: fromisoformat alone also takes 20251230 and 2025-W52-2.
        if raw_day is not None and not _DAY.fullmatch(raw_day):
            raise ValueError(raw_day)
        day = date.fromisoformat(raw_day) if raw_day is not None else datetime.now(UTC).date()
    except ValueError as exc:
        raise ValidationError("date must be YYYY-MM-DD", field="date") from exc
    kind = request.query.get("kind", "system")
    if kind not in KINDS:
        raise ValidationError(f"kind must be one of {', '.join(KINDS)}", field="kind")
    level = (request.query.get("level") or "DEBUG").upper()
    if level not in LEVEL_RANK:
        raise ValidationError(f"level must be one of {', '.join(LEVEL_RANK)}", field="level")
    records = await asyncio.to_thread(read_day, log_dir_of(request.app[CONFIG_KEY]), kind, day)
    floor = LEVEL_RANK[level]
    if floor > LEVEL_RANK["DEBUG"]:
        records = [r for r in records if LEVEL_RANK.get(str(r.get("level")), 1) >= floor]
    page = page_of(
        request.query, records, default_size=DAY_PAGE, max_size=MAX_LINES, date=day.isoformat()
    )
    return ok(request, {**page, "kind": kind})


def _file(log_dir: Path, day: date) -> Path:
    return log_dir / f"system-{day.isoformat()}.jsonl"


def _resume(raw: str | None) -> tuple[date, int] | None:
    if not raw:
        return None
    day_text, _, offset = raw.partition(":")
    try:
        return date.fromisoformat(day_text), int(offset)
    except ValueError as exc:
        raise ValidationError(
            "Last-Event-ID must be <date>:<offset>", field="Last-Event-ID"
        ) from exc


@describe(summary="Stream the system log (SSE)", tags=["system"], admin=True, sse=True, query=QUERY)
async def stream(request: web.Request) -> web.StreamResponse:
    level = (request.query.get("level") or "DEBUG").upper()
    if level not in LEVEL_RANK:
        raise ValidationError(f"level must be one of {', '.join(LEVEL_RANK)}", field="level")
    try:
        tail = int(request.query.get("tail", "0"))
    except ValueError as exc:
        raise ValidationError("tail must be an integer", field="tail") from exc
    log_dir = log_dir_of(request.app[CONFIG_KEY])
    today = datetime.now(UTC).date()
    resumed = _resume(request.headers.get("Last-Event-ID"))
    skip: int | None = None  # Last-Event-ID names the last event seen: resume after it
    if resumed is not None:
        day, offset = resumed
        skip = offset
    else:
        day = today
        events = _read_new(_file(log_dir, day), 0)
        offset = (
            events[-tail][0]
            if 0 < tail <= len(events)
            else (0 if tail else _size(_file(log_dir, day)))
        )
    response = web.StreamResponse(
        headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
    )
    await response.prepare(request)
    try:
        await _follow(request, response, log_dir, day, offset, skip, LEVEL_RANK[level])
    except ConnectionError:
        pass  # the client left (mid-write or at a heartbeat): normal, nothing to report
    return response


async def _follow(
    request: web.Request,
    response: web.StreamResponse,
    log_dir: Path,
    day: date,
    offset: int,
    skip: int | None,
    floor: int,
) -> None:
    """Send new log records from ``offset`` on until shutdown or until the client goes."""
    shutdown = request.app[SHUTDOWN_KEY]
    heartbeat = request.app[CONFIG_KEY].sse_heartbeat_s
    idle = 0.0
    while not shutdown.is_set() and not _client_gone(request):
        sent = False
        path = _file(log_dir, day)
        for start, end, data in _read_new(path, offset):
            offset = end
            if start == skip:
                skip = None
                continue
            if LEVEL_RANK.get(str(data.get("level")), 1) >= floor:
                text = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
                await response.write(
                    f"event: log\nid: {day.isoformat()}:{start}\ndata: {text}\n\n".encode()
                )
                sent = True
        now_day = datetime.now(UTC).date()
        if now_day != day and _size(path) <= offset:
            day, offset = now_day, 0
        if sent:
            idle = 0.0
            continue
        idle += POLL_S
        if idle >= heartbeat:
            await response.write(b": heartbeat\n\n")
            idle = 0.0
        try:
            await asyncio.wait_for(shutdown.wait(), POLL_S)
        except TimeoutError:
            pass


def _client_gone(request: web.Request) -> bool:
    transport = request.transport
    return transport is None or transport.is_closing()


def _read_new(path: Path, offset: int) -> list[tuple[int, int, dict[str, Any]]]:
    """Whole JSON lines from ``offset`` on, with their start and end offsets."""
    out: list[tuple[int, int, dict[str, Any]]] = []
    try:
        fh = open(path, "rb")
    except FileNotFoundError:
        return out
    with fh:
        fh.seek(offset)
        pos = offset
        for raw in fh:
            if not raw.endswith(b"\n"):
                break  # a line being written: read it next time
            start, pos = pos, pos + len(raw)
            try:
                data = json.loads(raw)
            except ValueError:
                continue
            if isinstance(data, dict):
                out.append((start, pos, data))
    return out


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def setup(app: web.Application) -> None:
    app.router.add_get(API_PREFIX + "/system/logs", day_log)
    app.router.add_get(API_PREFIX + "/system/logs/stream", stream)
