"""``/api/v1/structures``: upload (every form of both seeds), list, detail, preview,
delete, built-ins.

Handlers only parse requests and shape answers; the work is in ``structure_service``
and ``structure_deletion``.
Also home of a request helper other route modules use: ``read_upload_form`` (a
multipart, url-encoded or JSON upload, size-limited while it streams).  Lists page as
every list does (``paging``).
"""

from __future__ import annotations

import asyncio
import json
import os
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import BodyPartReader, web
from aiohttp.http_exceptions import HttpProcessingError

from mofsim_core import task_records
from mofsim_core.structure_deletion import delete_structure
from mofsim_core.structure_service import (
    StructureIndex,
    builtin_structures,
    preview_structure,
    store_structure,
    structure_view,
)
from mofsim_http.app import API_PREFIX, CONFIG_KEY, MIRROR_KEY, SPOOL_KEY, config_upload_limit
from mofsim_http.auth import caller_of
from mofsim_http.describe import describe
from mofsim_http.envelope import ok
from mofsim_http.json_body import read_json_object
from mofsim_http.paging import page_of, page_query
from spool.errors import PayloadTooLarge, UnsupportedFormat, ValidationError

STRUCTURE_INDEX_KEY = web.AppKey("structure_index", StructureIndex)
# A user key's request for another key's upload answers as for one that does not exist.
_NOT_FOUND = "not found (or another key's)"
MAX_TEXT_FIELD = 1024 * 1024  # name, format, description, config: never large
DEFAULT_PAGE_SIZE = 100


# --- request helpers -------------------------------------------------------------------------


@dataclass
class UploadForm:
    """Text fields of a form, plus at most one file: in memory (``data``) or, when the
    caller asked to spill, in a temporary file (``path``)."""

    fields: dict[str, str] = field(default_factory=dict)
    data: bytes | None = None
    path: Path | None = None
    filename: str | None = None
    file_field: str | None = None
    size: int = 0

    def discard(self) -> None:
        if self.path is not None:
            self.path.unlink(missing_ok=True)


async def read_upload_form(
    request: web.Request,
    *,
    limit: int,
    file_fields: tuple[str, ...] = ("file", "content"),
    spill_dir: Path | None = None,
) -> UploadForm:
    """Read a multipart form (streamed: a body over ``limit`` bytes is refused as
    soon as it is seen, or at once from its Content-Length), a url-encoded form or a
    JSON object.  The first of ``file_fields`` present is the file."""
    if request.content_length is not None and request.content_length > limit:
        raise PayloadTooLarge(
            f"request body of {request.content_length} bytes is over the {limit} byte limit"
        )
    ctype = request.content_type
    if ctype.startswith("multipart/"):
        try:
            return await _read_multipart(request, limit, file_fields, spill_dir)
        except (ValueError, AssertionError, HttpProcessingError) as exc:
            # aiohttp's multipart parser raises these on malformed parts and headers.
            raise ValidationError(f"malformed multipart body: {exc}", field="body") from exc
    form = UploadForm()
    if ctype == "application/x-www-form-urlencoded":
        try:
            posted = await request.post()
        except (ValueError, HttpProcessingError) as exc:
            raise ValidationError(f"malformed form body: {exc}", field="body") from exc
        values = {k: v for k, v in posted.items() if isinstance(v, str)}
    elif ctype == "application/json":
        body = await read_json_object(request)
        values = {
            k: v if isinstance(v, str) else json.dumps(v) for k, v in body.items() if v is not None
        }
    else:
        raise UnsupportedFormat(
            f"unsupported content type {ctype or 'none'!r}: send multipart/form-data, a "
            "url-encoded form or JSON",
            field="body",
        )
    for name in file_fields:
        if name in values:
            form.data = values.pop(name).encode()
            form.file_field = name
            form.size = len(form.data)
            break
    if form.data is not None and spill_dir is not None:
        form.path = _spill_path(spill_dir)
        form.path.write_bytes(form.data)
        form.data = None
    form.filename = values.pop("filename", None)
    form.fields = values
    return form


async def _read_multipart(
    request: web.Request, limit: int, file_fields: tuple[str, ...], spill_dir: Path | None
) -> UploadForm:
    form = UploadForm()
    total = 0
    try:
        reader = await request.multipart()
    except (ValueError, AssertionError) as exc:
        raise ValidationError(f"malformed multipart body: {exc}", field="body") from exc
    while True:
        part = await reader.next()
        if part is None:
            break
        if not isinstance(part, BodyPartReader) or not part.name:
            continue
        is_file = part.name in file_fields or part.filename is not None
        if is_file and form.file_field is None:
            form.file_field = part.name
            form.filename = part.filename
            chunks: list[bytes] = []
            fh = None
            if spill_dir is not None:
                form.path = _spill_path(spill_dir)
                fh = open(form.path, "wb")  # closed in finally
            try:
                while chunk := await part.read_chunk(256 * 1024):
                    total += len(chunk)
                    if total > limit:
                        form.discard()
                        raise PayloadTooLarge(f"upload is over the {limit} byte limit")
                    if fh is not None:
                        fh.write(chunk)
                    else:
                        chunks.append(chunk)
            finally:
                if fh is not None:
                    fh.close()
            form.size = total
            if fh is None:
                form.data = b"".join(chunks)
        elif is_file:
            continue  # one file per upload; further files are ignored
        else:
            raw = bytearray()
            # Read in pieces: a chunked body has no Content-Length to refuse it by.
            while chunk := await part.read_chunk(64 * 1024):
                raw += chunk
                if len(raw) > MAX_TEXT_FIELD:
                    form.discard()
                    raise ValidationError(f"form field {part.name!r} is too long", field=part.name)
            total += len(raw)
            if total > limit:
                form.discard()
                raise PayloadTooLarge(f"upload is over the {limit} byte limit")
            text = bytes(part.decode(bytes(raw)))
            form.fields[part.name] = text.decode(part.get_charset("utf-8"), errors="replace")
    return form


def _spill_path(spill_dir: Path) -> Path:
    spill_dir.mkdir(parents=True, exist_ok=True)
    return spill_dir / f".upload-{os.getpid()}-{uuid.uuid4().hex}.part"


def _int_arg(
    request: web.Request, name: str, default: int | None, lo: int, hi: int | None = None
) -> int | None:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError as exc:
        raise ValidationError(f"{name} must be an integer", field=name) from exc
    if value < lo or (hi is not None and value > hi):
        bound = f"between {lo} and {hi}" if hi is not None else f"at least {lo}"
        raise ValidationError(f"{name} must be {bound}", field=name)
    return value


# --- core access for both dialects ------------------------------------------------------------


def structure_index(app: web.Application) -> StructureIndex:
    return app[STRUCTURE_INDEX_KEY]


async def accept_upload(
    request: web.Request, file_fields: tuple[str, ...] = ("file", "content")
) -> dict[str, Any]:
    """Read an upload request in any accepted form, validate and store it; returns the
    stored ``meta.json`` document (see ``structure_service.store_structure``)."""
    app = request.app
    limit = config_upload_limit(app[CONFIG_KEY])
    form = await read_upload_form(request, limit=limit, file_fields=file_fields)
    if form.data is None:
        raise ValidationError(
            "send the structure as a file part 'file' or a form field 'content'", field="file"
        )
    return await asyncio.to_thread(
        store_structure,
        app[SPOOL_KEY],
        form.data,
        name=form.fields.get("name"),
        fmt=form.fields.get("format"),
        filename=form.filename or form.fields.get("filename"),
        max_bytes=limit,
        owner=caller_of(request).owner,
    )


# --- handlers --------------------------------------------------------------------------------

_FORMATS = ["cif", "xyz", "extxyz", "poscar", "vasp", "auto"]
UPLOAD_BODY = {
    "type": "object",
    "properties": {
        "file": {"type": "string", "format": "binary", "description": "the structure file"},
        "content": {"type": "string", "description": "the structure text (instead of file)"},
        "name": {"type": "string", "maxLength": 200},
        "format": {"type": "string", "enum": _FORMATS},
    },
    "anyOf": [{"required": ["file"]}, {"required": ["content"]}],
    "additionalProperties": False,
}
_UPLOAD_RESPONSES = {
    201: "stored",
    413: "too large",
    415: "unsupported format",
    422: "unparsable or unphysical structure",
}


@describe(
    summary="Upload a structure (CIF, XYZ/extended XYZ, POSCAR)",
    tags=["structures"],
    body=UPLOAD_BODY,
    content_type="multipart/form-data",
    responses=_UPLOAD_RESPONSES,
)
async def upload(request: web.Request) -> web.Response:
    """Multipart ``file`` or form field ``content``, with optional ``name`` and
    ``format``.  The structure is parsed and checked (periodic cell, no overlapping
    atoms) before it is accepted; the answer carries the ``file_id`` a task uses as
    ``{"source": "upload", "file_id": ...}``."""
    meta = await accept_upload(request)
    return ok(request, structure_view(meta), status=201, message="Structure uploaded")


@describe(
    summary="Upload a structure file",
    tags=["structures"],
    body={
        "type": "object",
        "required": ["file"],
        "properties": {
            "file": {"type": "string", "format": "binary"},
            "name": {"type": "string", "maxLength": 200},
            "format": {"type": "string", "enum": _FORMATS},
        },
        "additionalProperties": False,
    },
    content_type="multipart/form-data",
    responses=_UPLOAD_RESPONSES,
)
async def upload_file(request: web.Request) -> web.Response:
    """Multipart ``file`` (name defaults to the file's name)."""
    meta = await accept_upload(request, file_fields=("file",))
    return ok(request, structure_view(meta), status=201, message="Structure uploaded")


@describe(
    summary="List uploaded structures",
    tags=["structures"],
    query=page_query(default_size=DEFAULT_PAGE_SIZE),
)
async def list_structures(request: web.Request) -> web.Response:
    """Newest first, paginated; a user key lists its own uploads."""
    limit, offset = task_records.page_args(request.query, default_size=DEFAULT_PAGE_SIZE)
    items, total = await asyncio.to_thread(
        structure_index(request.app).list, offset, limit, caller_of(request)
    )
    return ok(
        request, {"items": items, "pagination": task_records.pagination(total, limit, offset)}
    )


@describe(summary="Built-in structures", tags=["structures"], query=page_query())
async def list_builtin(request: web.Request) -> web.Response:
    """Frameworks generated from published crystallographic data; use them as
    ``{"source": "builtin", "name": ...}``."""
    items = await asyncio.to_thread(builtin_structures)
    return ok(request, page_of(request.query, items))


@describe(summary="Structure detail", tags=["structures"], responses={404: _NOT_FOUND})
async def get_structure(request: web.Request) -> web.Response:
    """Formula, atom count, cell, volume, density, elements, space group."""
    meta = structure_index(request.app).get(request.match_info["file_id"], caller_of(request))
    return ok(request, structure_view(meta))


@describe(
    summary="Structure preview (atoms and cell)",
    tags=["structures"],
    query={"type": "object", "properties": {"max_atoms": {"type": "integer", "minimum": 0}}},
    responses={404: _NOT_FOUND},
)
async def preview(request: web.Request) -> web.Response:
    """Symbols, Cartesian positions (A), cell vectors, periodicity and the first lines
    of the stored file."""
    meta = structure_index(request.app).get(request.match_info["file_id"], caller_of(request))
    max_atoms = _int_arg(request, "max_atoms", None, 0)
    data = await asyncio.to_thread(preview_structure, request.app[SPOOL_KEY], meta, max_atoms)
    return ok(request, data)


@describe(
    summary="Delete a structure and its tasks",
    tags=["structures"],
    admin=True,
    responses={403: "needs an admin key", 404: "not found"},
)
async def delete(request: web.Request) -> web.Response:
    """Queued tasks using it are cancelled and deleted, finished ones deleted, running
    ones cancelled; ``deleted_tasks`` counts the deleted ones.  Results go with the
    tasks: an admin key is needed, and the deletion is audited."""
    app = request.app
    file_id = request.match_info["file_id"]
    structure_index(app).get(file_id)  # 404 before any work
    data = await asyncio.to_thread(
        delete_structure,
        app[SPOOL_KEY],
        structure_index(app),
        file_id,
        app[MIRROR_KEY],
        actor=caller_of(request).actor(f"anonymous@{request.remote}"),
    )
    return ok(request, data, message="Structure deleted")


def setup(app: web.Application) -> None:
    if STRUCTURE_INDEX_KEY not in app:  # the MIRA dialect shares it
        app[STRUCTURE_INDEX_KEY] = StructureIndex(app[SPOOL_KEY])
    p = API_PREFIX + "/structures"
    app.router.add_post(p, upload)
    app.router.add_post(p + "/upload", upload)
    app.router.add_post(p + "/upload/file", upload_file)
    app.router.add_get(p, list_structures)
    app.router.add_get(p + "/builtin", list_builtin)
    app.router.add_get(p + "/{file_id}", get_structure)
    app.router.add_get(p + "/{file_id}/preview", preview)
    app.router.add_delete(p + "/{file_id}", delete)
