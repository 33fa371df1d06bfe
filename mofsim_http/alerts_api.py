"""``/api/v1/system/alerts/{active,history,rules}`` (also at ``/api/v1/alerts/*``): the
daemon's alert engine, filtered and paged like every list.

The engine (``mofsim_core.alerts``) runs in the daemon and keeps its store in
``<spool>/state/alerts/``; ``mofsim_core.alert_listing`` reads it.  While no daemon
evaluates alerts on the spool the lists are empty and ``engine`` says so, rather than
listing rules that nothing checks.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from aiohttp import web

from mofsim_core.alert_listing import FILTERS, HISTORY_PAGE, list_alerts
from mofsim_core.alerts import LEVELS
from mofsim_core.config import Config
from mofsim_http.app import API_PREFIX, CONFIG_KEY, SPOOL_KEY
from mofsim_http.describe import describe
from mofsim_http.envelope import ok
from mofsim_http.openapi import returns
from mofsim_http.openapi_components import any_case
from mofsim_http.paging import CATALOGUE_PAGE, list_schema, page_query
from spool.store import Spool

_ONE_LEVEL = rf"\s*(?:{'|'.join(map(any_case, LEVELS))})\s*"
_FILTER_SCHEMAS: dict[str, dict[str, Any]] = {
    "level": {
        "type": "string",
        "pattern": rf"^(?:{_ONE_LEVEL}(?:,{_ONE_LEVEL})*)?$",
        "description": "CRITICAL, WARNING or INFO, or a comma-separated list",
    },
    "type": {"type": "string", "description": "a rule type (e.g. gpu_memory_low) or a list"},
    "rule": {"type": "string", "description": "the same as type"},
    "subject": {"type": "string", "description": "what the alert is about (gpu0, a model)"},
    "since": {
        "type": "string",
        "format": "date-time",
        "description": "entries at or after this time (fired, or resolved for a resolution)",
    },
    "until": {"type": "string", "format": "date-time", "description": "at or before"},
    "resolved": {
        "type": "boolean",
        "description": "true: resolutions only; false: firings only",
    },
}
_ALERT_ITEM: dict[str, Any] = {
    "type": "object",
    "properties": {
        "alert_id": {"type": "string"},
        "type": {"type": "string"},
        "level": {"type": "string", "enum": list(LEVELS)},
        "subject": {"type": "string"},
        "message": {"type": "string"},
        "details": {"type": "object"},
        "timestamp": {"type": "string", "description": "when it fired"},
        "resolved": {"type": "boolean"},
        "resolved_at": {"type": ["string", "null"]},
    },
}
_RULE_ITEM: dict[str, Any] = {
    "type": "object",
    "properties": {
        "type": {"type": "string"},
        "level": {"type": "string", "enum": list(LEVELS)},
        "threshold": {"type": ["number", "null"]},
        "description": {"type": "string"},
        "enabled": {"type": "boolean"},
    },
}
_EXTRA: dict[str, Any] = {
    "engine": {
        "type": "string",
        "description": "running, or why no engine evaluates alerts (the list is then empty)",
    },
    "error": {"type": "string", "description": "why the rules could not be read"},
}
_SUMMARY = {
    "active": "Alerts firing now",
    "history": "Alert history (newest first)",
    "rules": "Alert rules",
}


def alerts_dir(spool: Spool) -> Path:
    """Where the daemon's alert engine keeps ``active.json`` and ``history.jsonl``."""
    return spool.paths.state_dir / "alerts"


def alert_rules_file(config: Config) -> Path:
    extra = config.extra if isinstance(config.extra, dict) else {}
    if extra.get("alert_rules"):
        return Path(str(extra["alert_rules"])).expanduser()
    return Path(__file__).resolve().parents[1] / "etc" / "alerts.toml"


def _handler(kind: str) -> Any:
    query = page_query(
        {name: _FILTER_SCHEMAS[name] for name in (*FILTERS[kind], "rule")},
        default_size=HISTORY_PAGE if kind == "history" else CATALOGUE_PAGE,
    )

    @describe(
        summary=_SUMMARY[kind],
        tags=["alerts"],
        query=query,
        responses={200: "data: {items, pagination, engine}", 400: "invalid filter"},
    )
    @returns(schema=list_schema(_RULE_ITEM if kind == "rules" else _ALERT_ITEM, _EXTRA))
    async def handler(request: web.Request) -> web.Response:
        """From the daemon's alert engine; empty, with ``engine`` saying why, while no
        daemon evaluates alerts on this spool."""
        app = request.app
        data = await asyncio.to_thread(
            list_alerts,
            alerts_dir(app[SPOOL_KEY]),
            kind,
            request.query,
            alert_rules_file(app[CONFIG_KEY]),
        )
        return ok(request, data)

    handler.__name__ = f"alerts_{kind}"
    return handler


def setup(app: web.Application) -> None:
    for kind in ("rules", "history", "active"):
        handler = _handler(kind)
        app.router.add_get(f"{API_PREFIX}/system/alerts/{kind}", handler)
        app.router.add_get(f"{API_PREFIX}/alerts/{kind}", handler)
