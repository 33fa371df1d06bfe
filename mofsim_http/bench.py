"""MOFSimBench over HTTP: campaigns and their report (the work is ``mofsim_core``'s).

- ``POST /api/v1/bench/campaigns`` starts or continues the caller's campaign; the body
  carries the suite's CIF files, so the server needs no copy of the benchmark;
- ``GET /api/v1/bench/campaigns`` lists the campaigns the caller may see;
- ``GET /api/v1/bench/report`` answers the metrics with the Markdown and a
  self-contained HTML page (plots inlined); ``GET /api/v1/bench/report.html`` answers
  the page itself.  ``campaign`` (comma-separated ids) narrows it.

A user key starts, lists and reports its own campaigns (whose tasks are its own); an
admin key sees every campaign.
"""

from __future__ import annotations

import asyncio
import re
from typing import Any

from aiohttp import web

from mofsim_http.app import API_PREFIX, MIRROR_KEY, SPOOL_KEY
from mofsim_http.auth import caller_of
from mofsim_http.describe import describe
from mofsim_http.envelope import ok
from mofsim_http.json_body import read_json
from mofsim_http.openapi import returns
from mofsim_http.paging import page_of, page_query
from spool.errors import RateLimited, ValidationError

BUSY_RETRY_S = 5
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
    report = compare(request.app[SPOOL_KEY], ids, caller_of(request))
    return {"report": report, **render_inline(report)}


@describe(summary="MOFSimBench report", tags=["bench"], query=QUERY, responses=RESPONSES)
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
)
async def report_html(request: web.Request) -> web.Response:
    """The same report as one HTML page."""
    out = await asyncio.to_thread(_report, request)
    return web.Response(text=out["html"], content_type="text/html")


CAMPAIGN_BODY = {
    "type": "object",
    "required": ["model", "structures"],
    "properties": {
        "model": {"type": "string", "minLength": 1, "description": "model key"},
        "suite": {"type": "string", "enum": ["quick", "main", "full"], "default": "quick"},
        "with_d3": {"type": "boolean", "default": False},
        "overrides": {
            "type": "object",
            "additionalProperties": {"type": "object"},
            "description": "protocol values per task type, recorded in the campaign",
        },
        "retry_failed": {"type": "boolean", "default": False},
        "structures": {
            "type": "object",
            "minProperties": 1,
            "additionalProperties": {"type": "string", "minLength": 1},
            "description": "CIF text per path in the benchmark's folder "
            "(e.g. main_set/MOF-5_primitive.cif): every file of the suite; files that "
            "are not the benchmark's are left aside (unknown_files in the answer)",
        },
    },
    "additionalProperties": False,
}


@describe(
    summary="Start or continue a MOFSimBench campaign",
    tags=["bench"],
    body=CAMPAIGN_BODY,
    responses={
        202: "the campaign, with the entries submitted by this request",
        400: "a bad field, or a file of the suite missing",
        404: "unknown model",
        413: "body too large",
        429: "another request is submitting this campaign (Retry-After)",
    },
)
async def start_campaign(request: web.Request) -> web.Response:
    """Submits one ``protocol: mofsimbench`` task per entry of the suite that has none
    yet (with ``retry_failed``, also those that failed); sending the same request again
    continues an interrupted campaign and runs nothing twice."""
    from mofsim_core.bench_service import start_campaign as start

    body = await read_json(request)
    try:
        row = await asyncio.to_thread(
            start, request.app[SPOOL_KEY], request.app[MIRROR_KEY], body, caller_of(request)
        )
    except RateLimited as exc:
        # Another request is submitting this campaign (a client's retry, say).
        exc.headers = {"Retry-After": str(BUSY_RETRY_S)}  # type: ignore[attr-defined]
        raise
    return ok(request, row, status=202, message=f"{len(row['submitted'])} task(s) submitted")


@describe(summary="MOFSimBench campaigns", tags=["bench"], query=page_query())
async def list_campaigns(request: web.Request) -> web.Response:
    """Every campaign the caller may see, with its entries counted by state."""
    from mofsim_core.bench_service import campaign_rows

    rows = await asyncio.to_thread(campaign_rows, request.app[SPOOL_KEY], caller_of(request))
    return ok(request, page_of(request.query, rows))


def setup(app: web.Application) -> None:
    app.router.add_post(API_PREFIX + "/bench/campaigns", start_campaign)
    app.router.add_get(API_PREFIX + "/bench/campaigns", list_campaigns)
    app.router.add_get(API_PREFIX + "/bench/report", report_json)
    app.router.add_get(API_PREFIX + "/bench/report.html", report_html)
