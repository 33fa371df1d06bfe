"""Records <-> database rows, and the SQL pieces every mirror backend shares.

Pure functions only: the SQLite and PostgreSQL mirrors are thin I/O shells around them,
so both normalize, validate and filter in exactly one way.  The SQL produced here is the
subset both databases speak (``IN``, ``CASE``, ``IS NULL`` ordering); the placeholder
mark is the only dialect difference (``?`` for sqlite3, ``%s`` for psycopg).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from spool.errors import ValidationError
from spool.job import normalize_priority, priority_name
from spool.states import ALL_STATES, TERMINAL_STATES

# Python logging's levels plus loguru's TRACE and SUCCESS, which executors may emit.
LOG_LEVELS = {
    "TRACE": 5,
    "DEBUG": 10,
    "INFO": 20,
    "SUCCESS": 25,
    "WARNING": 30,
    "WARN": 30,
    "ERROR": 40,
    "CRITICAL": 50,
}

TASK_COLUMNS: dict[str, type] = {
    "task_id": str,
    "task_type": str,
    "model": str,
    "status": str,
    "priority": str,
    "created_at": str,
    "started_at": str,
    "completed_at": str,
    "slot": str,
    "gpu_id": int,
    "attempts": int,
    "progress": float,
    "structure_name": str,
    "error": str,
    "result": str,
    "parameters": str,
    "options": str,
    "owner": str,  # the submitting API key's id (schema version 3)
}
JSON_COLUMNS = ("error", "result", "parameters", "options")
TIME_COLUMNS = ("created_at", "started_at", "completed_at")
LOG_COLUMNS: dict[str, type] = {
    "task_id": str,
    "seq": int,
    "timestamp": str,
    "level": str,
    "level_no": int,
    "logger": str,
    "message": str,
    "gpu_id": int,
    "event": str,
    "extra": str,
}
LOG_JSON_COLUMNS = ("extra",)
# The list filters; each backend indexes exactly these.
INDEXED_COLUMNS = ("status", "task_type", "model", "created_at")
SORTABLE = (
    "created_at",
    "started_at",
    "completed_at",
    "status",
    "task_type",
    "model",
    "priority",
    "progress",
    "task_id",
)
_PRIORITY_ORDER = (
    "CASE priority WHEN 'CRITICAL' THEN 0 WHEN 'HIGH' THEN 1 "
    "WHEN 'NORMAL' THEN 2 WHEN 'LOW' THEN 3 ELSE 4 END"
)


def iso_time(value: Any, field: str = "created_at") -> str | None:
    """Timestamps as ISO-8601 UTC text; numbers are epoch milliseconds (the Job's unit)."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, datetime):
        moment = value if value.tzinfo else value.replace(tzinfo=UTC)
    elif isinstance(value, int | float) and not isinstance(value, bool):
        moment = datetime.fromtimestamp(value / 1000.0, tz=UTC)
    else:
        raise ValidationError(f"invalid timestamp {value!r}", field=field)
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def norm_status(value: Any) -> str:
    text = str(value).upper()
    if text not in ALL_STATES:
        raise ValidationError(f"unknown task status {value!r}", field="status")
    return text


def json_text(value: Any) -> str | None:
    from executors.api import json_safe

    return None if value is None else json.dumps(json_safe(value))


def number(value: Any, kind: type, field: str) -> Any:
    if value is None:
        return None
    try:
        return kind(value)
    except (TypeError, ValueError) as exc:
        raise ValidationError(f"{field} must be a number, got {value!r}", field=field) from exc


def task_row(record: dict[str, Any], *, full: bool = False) -> dict[str, Any]:
    """Column values for a task record.  Only the keys present are returned (so an
    upsert touches only them) unless ``full``; unknown keys are dropped.  JSON columns
    hold JSON text."""
    task_id = record.get("task_id")
    if not isinstance(task_id, str) or not task_id:
        raise ValidationError("a task record needs a task_id", field="task_id")
    row: dict[str, Any] = {"task_id": task_id}
    for key, kind in TASK_COLUMNS.items():
        if key == "task_id" or (key not in record and not full):
            continue
        value = record.get(key)
        if key == "attempts" and value is None:
            value = 0
        if value is None and key not in JSON_COLUMNS:
            row[key] = None
        elif key == "status":
            row[key] = norm_status(value)
        elif key == "priority":
            row[key] = priority_name(normalize_priority(value))
        elif key in TIME_COLUMNS:
            row[key] = iso_time(value, key)
        elif key in JSON_COLUMNS:
            row[key] = json_text(value)
        elif kind is str:
            row[key] = str(value)
        else:
            row[key] = number(value, kind, key)
    return row


def upsert_sql(table: str, columns: Sequence[str], key: Sequence[str], marks: Sequence[str]) -> str:
    """``INSERT ... ON CONFLICT (key) DO UPDATE`` of the given columns, in the syntax
    SQLite and PostgreSQL share; ``marks`` are the parameter markers, one per column.  Names
    come from the column tables above, never from input."""
    updates = [f"{c} = excluded.{c}" for c in columns if c not in key]
    action = f"DO UPDATE SET {', '.join(updates)}" if updates else "DO NOTHING"
    return (
        f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join(marks)}) "
        f"ON CONFLICT ({', '.join(key)}) {action}"
    )


def _decode(value: Any, decoded: bool) -> Any:
    # PostgreSQL hands JSONB back already parsed; SQLite hands back the text we stored.
    if value is None or decoded:
        return value
    return json.loads(value)


def task_from_row(row: dict[str, Any], *, json_decoded: bool = False) -> dict[str, Any]:
    out = {key: row.get(key) for key in TASK_COLUMNS}
    for key in JSON_COLUMNS:
        out[key] = _decode(out[key], json_decoded)
    for key in ("parameters", "options"):
        if out[key] is None:
            out[key] = {}
    return out


def log_row(task_id: str, event: dict[str, Any]) -> dict[str, Any]:
    """One events.jsonl entry (spec 6.3 plus ``seq`` and ``event``) as a log row."""
    seq = event.get("seq")
    if isinstance(seq, bool) or not isinstance(seq, int):
        raise ValidationError(f"log event of {task_id} without an integer seq", field="seq")
    level = str(event.get("level") or "INFO").upper()
    extra = event.get("extra")
    return {
        "task_id": task_id,
        "seq": seq,
        "timestamp": iso_time(event.get("timestamp"), "timestamp"),
        "level": level,
        "level_no": LOG_LEVELS.get(level, LOG_LEVELS["INFO"]),
        "logger": str(event.get("logger") or ""),
        "message": str(event.get("message") or ""),
        "gpu_id": number(event.get("gpu_id"), int, "gpu_id"),
        "event": str(event.get("event") or "log"),
        "extra": json_text(extra if extra is not None else {}),
    }


def log_from_row(row: dict[str, Any], *, json_decoded: bool = False) -> dict[str, Any]:
    keys = ("timestamp", "level", "logger", "message", "task_id", "gpu_id", "seq", "event")
    out = {key: row[key] for key in keys}
    out["extra"] = _decode(row["extra"], json_decoded) if row["extra"] else {}
    return out


# --- query pieces ------------------------------------------------------------------------


# Every record has these (created_at comes from the job file itself).
NEVER_NULL = ("created_at", "task_id")


def parse_order(order: Any) -> tuple[str, bool]:
    """``"created_at desc"``, ``"created_at"`` or ``"-created_at"`` -> (column,
    descending); the one reading of ``order`` for the mirror and the spool alike."""
    parts = order.strip().lower().split() if isinstance(order, str) else []
    if len(parts) == 1 and parts[0].startswith("-"):
        parts = [parts[0][1:], "desc"]
    if (
        not 1 <= len(parts) <= 2
        or parts[0] not in SORTABLE
        or (len(parts) == 2 and parts[1] not in ("asc", "desc"))
    ):
        raise ValidationError(
            f"invalid order {order!r}: use one of {', '.join(SORTABLE)}, then asc or desc",
            field="order",
        )
    return parts[0], parts[-1] == "desc"


def order_clause(order: str) -> str:
    """``"created_at desc"`` -> SQL, from a fixed list of columns (never raw input)."""
    name, descending = parse_order(order)
    column = _PRIORITY_ORDER if name == "priority" else name
    direction = "DESC" if descending else "ASC"
    if name in NEVER_NULL:
        # The common case (newest first) must walk the (created_at, task_id) index:
        # a NULLs-last term would force a sort of the whole table on every page.
        return f"{column} {direction}, task_id {direction}"
    # NULLs last either way, and task_id as tie-breaker, so pages never overlap.
    return f"({column} IS NULL), {column} {direction}, task_id {direction}"


def page(limit: int, offset: int) -> tuple[int, int]:
    for name, value in (("limit", limit), ("offset", offset)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValidationError(f"{name} must be a non-negative integer", field=name)
    return limit, offset


def task_filter(
    status: str | Sequence[str] | None,
    task_type: str | None,
    model: str | None,
    mark: str,
    owner: str | None = None,
) -> tuple[str, list[Any]]:
    """The WHERE condition of a task list and its parameters.  ``status`` may be one
    state or several (any case); a task type may be given by an alias; ``owner`` keeps
    the tasks of one API key."""
    where: list[str] = ["1 = 1"]
    params: list[Any] = []
    if status is not None:
        states = [status] if isinstance(status, str) else list(status)
        norm = [norm_status(s) for s in states]
        where.append(f"status IN ({', '.join(mark for _ in norm)})" if norm else "1 = 0")
        params.extend(norm)
    if task_type is not None:
        where.append(f"task_type = {mark}")
        from executors.registry import task_type_aliases

        params.append(task_type_aliases().get(task_type, task_type))
    if model is not None:
        where.append(f"model = {mark}")
        params.append(model)
    if owner is not None:
        where.append(f"owner = {mark}")
        params.append(owner)
    return " AND ".join(where), params


def logs_query(
    task_id: str, level: str | None, since_seq: int | None, limit: int, offset: int, mark: str
) -> tuple[str, list[Any]]:
    """SELECT of a task's log events in ``seq`` order.  ``level`` is a minimum
    (``WARNING`` also returns ERROR and CRITICAL); ``since_seq`` keeps later events."""
    limit, offset = page(limit, offset)
    sql = f"SELECT * FROM task_logs WHERE task_id = {mark}"
    params: list[Any] = [task_id]
    if level is not None:
        if str(level).upper() not in LOG_LEVELS:
            raise ValidationError(f"unknown log level {level!r}", field="level")
        sql += f" AND level_no >= {mark}"
        params.append(LOG_LEVELS[str(level).upper()])
    if since_seq is not None:
        sql += f" AND seq > {mark}"
        params.append(number(since_seq, int, "since_seq"))
    sql += f" ORDER BY seq LIMIT {mark} OFFSET {mark}"
    return sql, [*params, limit, offset]


# Upper bounds (seconds) of the task duration histogram: a single point takes seconds,
# a benchmark MD run hours.
DURATION_BUCKETS = (
    1.0,
    5.0,
    15.0,
    30.0,
    60.0,
    120.0,
    300.0,
    600.0,
    1800.0,
    3600.0,
    7200.0,
    21600.0,
    86400.0,
)
FINISHED_STATES = tuple(sorted(TERMINAL_STATES))


@dataclass(frozen=True)
class DurationStats:
    """Run times (``started_at`` to ``completed_at``) of finished tasks of one type and
    state: ``buckets[i]`` counts those of at most ``DURATION_BUCKETS[i]`` seconds."""

    buckets: tuple[int, ...]
    count: int
    total_s: float


def duration_sql(seconds_expr: str) -> str:
    """One aggregate query for every (task type, state) pair; ``seconds_expr`` is the
    backend's expression for ``completed_at - started_at`` in seconds."""
    cases = ", ".join(
        f"sum(CASE WHEN d <= {b!r} THEN 1 ELSE 0 END) AS b{i}"
        for i, b in enumerate(DURATION_BUCKETS)
    )
    states = ", ".join(f"'{s}'" for s in FINISHED_STATES)
    return (
        f"SELECT task_type, status, count(*) AS n, sum(d) AS total, {cases} FROM "
        f"(SELECT task_type, status, {seconds_expr} AS d FROM tasks "
        f"WHERE status IN ({states}) AND started_at IS NOT NULL "
        f"AND completed_at IS NOT NULL) AS finished GROUP BY task_type, status"
    )


def duration_stats(rows: Sequence[dict[str, Any]]) -> dict[tuple[str, str], DurationStats]:
    """``duration_sql``'s rows, keyed by ``(task_type, status)``; a clock that went
    backwards gives a negative duration, counted in the first bucket."""
    out: dict[tuple[str, str], DurationStats] = {}
    for row in rows:
        if row["task_type"] is None or row["status"] is None:
            continue
        buckets = tuple(int(row[f"b{i}"] or 0) for i in range(len(DURATION_BUCKETS)))
        out[(str(row["task_type"]), str(row["status"]))] = DurationStats(
            buckets, int(row["n"]), float(row["total"] or 0.0)
        )
    return out
