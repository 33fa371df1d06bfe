"""The MOFSimBench report over HTTP (the work is ``mofsim_core.bench_report``'s).

``GET /api/v1/bench/report`` answers the metrics of the campaigns in the spool with
the Markdown and a self-contained HTML page (plots inlined); ``GET
/api/v1/bench/report.html`` answers the page itself.  ``campaign`` (comma-separated
ids) narrows it.  A report reads every campaign task's result, whoever submitted it,
so it needs an admin key.
"""

from __future__ import annotations

import asyncio
import re
from typing import Any

from aiohttp import web

from mofsim_http.app import API_PREFIX, SPOOL_KEY
from mofsim_http.describe import describe
from mofsim_http.envelope import ok
from mofsim_http.openapi import returns
from spool.errors import ValidationError

CAMPAIGNS = r"[A-Za-z0-9_.-]+(,[A-Za-z0-9_.-]+)*"
QUERY = {
    "type": "object",
    "properties": {
        "campaign": {
            "type": "string",
            "pattern": f"^{CAMPAIGNS}$",
            "description": "campaign ids, comma-separated (default: every campaign)",
        }
    },
}
RESPONSES = {200: "the report", 400: "bad campaign id", 404: "no such campaign"}


def _report(request: web.Request) -> dict[str, Any]:
    from mofsim_core.bench_render import render_inline
    from mofsim_core.bench_report import compare

    raw = request.query.get("campaign")
    if raw is not None and not re.fullmatch(CAMPAIGNS, raw):
        raise ValidationError("campaign: comma-separated campaign ids", field="campaign")
    ids = raw.split(",") if raw else None
    report = compare(request.app[SPOOL_KEY], ids)
    return {"report": report, **render_inline(report)}


@describe(
    summary="MOFSimBench report", tags=["bench"], query=QUERY, responses=RESPONSES, admin=True
)
async def report_json(request: web.Request) -> web.Response:
    """The paper's metrics against DFT per campaign (bulk modulus and Cv MAE, volumes
    against the DFT-optimized cells, stability fractions), with the report as Markdown
    and HTML (parity plots inlined as PNG)."""
    return ok(request, await asyncio.to_thread(_report, request))


@returns(media_type="text/html")
@describe(
    summary="MOFSimBench report as a web page",
    tags=["bench"],
    query=QUERY,
    responses=RESPONSES,
    admin=True,
)
async def report_html(request: web.Request) -> web.Response:
    """The same report as one HTML page."""
    out = await asyncio.to_thread(_report, request)
    return web.Response(text=out["html"], content_type="text/html")


def setup(app: web.Application) -> None:
    app.router.add_get(API_PREFIX + "/bench/report", report_json)
    app.router.add_get(API_PREFIX + "/bench/report.html", report_html)
