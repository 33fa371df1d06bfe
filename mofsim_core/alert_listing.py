"""The alert engine's lists as a client reads them: ``active`` alerts, the ``history``
(newest first) and the ``rules``, filtered and paged.

Read from the engine's store (``alerts.AlertStore``, ``<spool>/state/alerts/``) by the
HTTP API and by the CLI on a local spool alike, so that both answer the same page:
``{items, pagination, engine}`` (and ``error`` when the rules file cannot be read).  The
query is a mapping of strings, as a URL's query string gives it:

- ``level``: CRITICAL, WARNING or INFO, or a comma-separated list (any case);
- ``type`` (or ``rule``): a rule type, or a comma-separated list;
- ``subject``: what the alert is about (``gpu0``, a model key...);
- ``since`` / ``until``: RFC 3339 times; an entry's time is when it resolved for a
  resolution, else when it fired (history and active alerts);
- ``resolved``: ``true`` or ``false`` (history: resolutions or firings);
- ``page``/``page_size`` or ``skip``/``limit``: as every list (``task_records.page_args``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from mofsim_core.alerts import LEVELS, load_rules, read_active, read_history
from mofsim_core.task_records import MAX_PAGE, page_args, pagination
from spool.errors import ValidationError

KINDS = ("active", "history", "rules")
# What an alert list says while no daemon evaluates alerts on the spool.
NO_ENGINE = "not running on this spool"
HISTORY_PAGE = 100  # the newest hundred, as before pages existed
# RFC 3339 (what the OpenAPI ``date-time`` format means); nothing looser.
_RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:[Zz]|[+-]\d{2}:\d{2})$")
# The filters each list takes.
FILTERS = {
    "rules": ("level", "type"),
    "active": ("level", "type", "subject", "since", "until"),
    "history": ("level", "type", "subject", "since", "until", "resolved"),
}

Predicate = Callable[[dict[str, Any]], bool]


def parse_time(raw: str, field: str) -> datetime:
    """An RFC 3339 time (``2025-12-30T10:00:00Z``)."""
    if not _RFC3339.match(raw):
        raise ValidationError(
            f"{field} must be an RFC 3339 time such as 2025-12-30T10:00:00Z", field=field
        )
    try:
        return datetime.fromisoformat(raw.upper().replace("Z", "+00:00"))
    except ValueError:
        raise ValidationError(f"{field} is not a valid time: {raw!r}", field=field) from None


def _names(raw: str | None) -> set[str]:
    return {p.strip() for p in (raw or "").split(",") if p.strip()}


def _levels(raw: str | None) -> set[str]:
    levels = {n.upper() for n in _names(raw)}
    unknown = sorted(levels - set(LEVELS))
    if unknown:
        raise ValidationError(
            f"level must be one of {', '.join(LEVELS)} (or a comma-separated list)",
            field="level",
        )
    return levels


def _entry_time(item: Mapping[str, Any]) -> datetime | None:
    raw = item.get("resolved_at") if item.get("resolved") else item.get("timestamp")
    try:
        when = datetime.fromisoformat(str(raw).replace("Z", "+00:00"))
    except ValueError:
        return None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def predicate(kind: str, query: Mapping[str, Any]) -> Predicate:
    """Whether an item of the ``kind`` list matches the query's filters."""
    allowed = FILTERS[kind]
    checks: list[Predicate] = []
    levels = _levels(query.get("level")) if "level" in allowed else set()
    if levels:
        checks.append(lambda i: str(i.get("level", "")).upper() in levels)
    types = _names(query.get("type")) | _names(query.get("rule"))
    if types:
        checks.append(lambda i: i.get("type") in types)
    subject = query.get("subject") if "subject" in allowed else None
    if subject:
        checks.append(lambda i: i.get("subject") == subject)
    for name in ("since", "until"):
        raw = query.get(name) if name in allowed else None
        if raw is None:
            continue
        bound = parse_time(str(raw), name)
        later = name == "since"

        def within(i: dict[str, Any], bound: datetime = bound, later: bool = later) -> bool:
            when = _entry_time(i)
            return when is not None and (when >= bound if later else when <= bound)

        checks.append(within)
    if "resolved" in allowed and query.get("resolved") is not None:
        raw = str(query["resolved"])
        if raw not in ("true", "false"):
            raise ValidationError("resolved must be true or false", field="resolved")
        wanted = raw == "true"
        checks.append(lambda i: bool(i.get("resolved")) == wanted)
    return lambda item: all(check(item) for check in checks)


def list_alerts(
    directory: Path, kind: str, query: Mapping[str, Any], rules_file: Path | None = None
) -> dict[str, Any]:
    """One page of the ``kind`` list: ``{items, pagination, engine}``, with ``error``
    when the rules cannot be read.  ``engine`` is ``running``, or says why no engine
    evaluates alerts on this spool (the lists are then empty)."""
    if kind not in KINDS:
        raise ValidationError(f"kind must be one of {', '.join(KINDS)}", field="kind")
    limit, offset = page_args(query, default_size=HISTORY_PAGE if kind == "history" else MAX_PAGE)
    matches = predicate(kind, query)
    extra: dict[str, Any] = {"engine": "running"}
    items: list[dict[str, Any]] = []
    if not directory.is_dir():
        extra["engine"] = NO_ENGINE
    elif kind == "rules":
        try:
            items = [asdict(r) for r in load_rules(rules_file).values()]
        except (OSError, ValueError) as exc:
            extra["error"] = f"alert rules unreadable: {exc}"
    elif kind == "active":
        items = read_active(directory)
    else:
        # Every entry: the page is cut after filtering, so total counts the matches.
        items = read_history(directory, limit=2**62)
    items = [i for i in items if matches(i)]
    return {
        "items": items[offset : offset + limit],
        "pagination": pagination(len(items), limit, offset),
        **extra,
    }
