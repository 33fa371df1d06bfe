"""JSON-line logs per day and kind; archives that compress and bundle but never lose."""

from __future__ import annotations

import json
import sys
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from loguru import logger

from mofsim_core import logs


def _restore() -> None:
    logger.remove()
    logger.add(sys.stderr, level="INFO")


def test_records_go_to_their_kind_in_the_spec_format(tmp_path: Path) -> None:
    try:
        logs.configure(tmp_path, "INFO", console=False)
        logger.bind(task_id="task_1", gpu_id=3, step=42).info("Optimization step completed")
        logger.bind(kind="access", method="GET", path="/health").info("GET /health 200")
        logs.audit("task.cancel", task_id="task_1", by="key_abc")
        logger.debug("not at INFO")
    finally:
        _restore()
    today = datetime.now(UTC).date().isoformat()
    system = [json.loads(x) for x in (tmp_path / f"system-{today}.jsonl").read_text().splitlines()]
    assert len(system) == 1
    rec = system[0]
    assert set(rec) == {"timestamp", "level", "logger", "message", "task_id", "gpu_id", "extra"}
    assert rec["task_id"] == "task_1" and rec["gpu_id"] == 3 and rec["extra"] == {"step": 42}
    assert rec["timestamp"].endswith("Z") and rec["level"] == "INFO"
    access = (tmp_path / f"access-{today}.jsonl").read_text()
    assert "/health" in access and "Optimization" not in access
    audit = json.loads((tmp_path / f"audit-{today}.jsonl").read_text())
    assert audit["message"] == "task.cancel" and audit["extra"]["by"] == "key_abc"


def test_archive_gzips_after_7_days_bundles_after_30_and_reads_back(tmp_path: Path) -> None:
    today = date(2026, 11, 22)
    days = {d: today - timedelta(days=d) for d in (0, 3, 10, 45, 50)}
    for age, day in days.items():
        line = json.dumps({"message": f"age {age}"}) + "\n"
        (tmp_path / f"system-{day.isoformat()}.jsonl").write_text(line)
    done = logs.archive(tmp_path, today)
    assert len(done["gzipped"]) == 3 and len(done["bundled"]) == 2
    names = sorted(p.name for p in tmp_path.iterdir())
    assert f"system-{days[3].isoformat()}.jsonl" in names
    assert f"system-{days[10].isoformat()}.jsonl.gz" in names
    assert "system-2026-10.tar" in names
    for age, day in days.items():
        assert logs.read_day(tmp_path, "system", day) == [{"message": f"age {age}"}]
    assert logs.archive(tmp_path, today) == {"gzipped": [], "bundled": []}
    assert logs.read_day(tmp_path, "system", date(2020, 1, 1)) == []


def test_a_request_that_ends_before_its_answer_is_logged_499_not_500() -> None:
    import asyncio
    from typing import Any

    from aiohttp.test_utils import make_mocked_request

    from mofsim_http.app import request_context

    seen: list[Any] = []
    sink = logger.add(
        lambda m: seen.append(m.record["extra"].get("status")),
        filter=lambda r: r["extra"].get("kind") == "access",
    )

    async def gone(request: Any) -> Any:
        raise asyncio.CancelledError

    try:
        request = make_mocked_request("GET", "/api/v1/tasks/t/events")
        try:
            asyncio.run(request_context(request, gone))
        except asyncio.CancelledError:
            pass
    finally:
        logger.remove(sink)
    assert seen == [499]
