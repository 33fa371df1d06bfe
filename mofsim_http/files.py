"""``/api/v1/files/{file_id}``: download a task's output files.

File ids and what they may name: ``mofsim_core.output_files``."""

from __future__ import annotations

import asyncio

from aiohttp import web

from mofsim_core.output_files import OutputFile, parse_file_id, resolve_file
from mofsim_core.owners import check_task
from mofsim_http.app import API_PREFIX, SPOOL_KEY
from mofsim_http.auth import caller_of
from mofsim_http.describe import describe
from mofsim_http.openapi import returns
from spool.errors import FileNotFound, TaskNotFound


def file_response(out: OutputFile) -> web.FileResponse:
    """A streamed download with its content type and a suggested file name."""
    return web.FileResponse(
        out.path,
        headers={
            "Content-Type": out.content_type,
            "Content-Disposition": f'attachment; filename="{out.download_name}"',
        },
    )


@describe(
    summary="Download a task's output file",
    tags=["files"],
    responses={404: "no such file (or a file of another key's task)", 409: "task not finished"},
)
@returns(media_type="application/octet-stream")
async def download(request: web.Request) -> web.FileResponse:
    """File ids come from a result's ``output_files`` URLs; content types follow the
    file: ``chemical/x-cif``, ``chemical/x-xyz``, ``image/png``, ``application/json``,
    ``application/octet-stream`` (ASE trajectories)."""
    spool, fid = request.app[SPOOL_KEY], request.match_info["file_id"]
    task_id, _ = parse_file_id(fid)
    try:
        await asyncio.to_thread(check_task, spool, caller_of(request), task_id)
    except TaskNotFound:
        raise FileNotFound(f"file {fid!r} not found", field="file_id") from None
    out = resolve_file(spool, fid)
    return file_response(out)


def setup(app: web.Application) -> None:
    app.router.add_get(API_PREFIX + "/files/{file_id}", download)
