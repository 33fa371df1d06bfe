"""The MIRA dialect's structures and models (``/mira/api/v1/structures``, ``/models``).

Parsing and shaping only: uploads go through ``structures.accept_upload`` and the
structure index, models through ``model_service``, exactly as ``/api/v1`` does.
"""

from __future__ import annotations

import asyncio
import re
from typing import Any

from aiohttp import web

from executors.models import family_names
from mofsim_core.mira_shapes import mira_supported_tasks
from mofsim_core.model_service import (
    list_model_entries,
    model_detail,
    model_families,
    model_status,
)
from mofsim_core.structure_deletion import delete_structure
from mofsim_core.structure_service import StructureIndex, preview_structure
from mofsim_core.task_records import query_int
from mofsim_http.app import MIRA_API_PREFIX, MIRROR_KEY, SPOOL_KEY
from mofsim_http.auth import caller_of
from mofsim_http.describe import describe
from mofsim_http.envelope import ok
from mofsim_http.models_api import family_query
from mofsim_http.openapi import returns
from mofsim_http.structures import STRUCTURE_INDEX_KEY, accept_upload, structure_index

TAGS = ["MIRA"]
MIRA_MODEL_KEYS = (
    "key",
    "name",
    "family",
    "description",
    "elements",
    "supported_tasks",
    "references",
)
DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
# A user key's request for another key's upload answers as for one that does not exist.
_UNKNOWN = "unknown structure (or another key's)"

# --- shapes --------------------------------------------------------------------------------------


def mira_structure(meta: dict[str, Any]) -> dict[str, Any]:
    """An upload as the guide shows it: id, formula, counts, cell in ``metadata``."""
    summary = meta.get("summary") or {}
    cell = summary.get("cell") or {}
    return {
        "id": meta["file_id"],
        "name": meta.get("name"),
        "format": meta.get("format"),
        "formula": summary.get("formula"),
        "num_atoms": summary.get("natoms"),
        "volume": summary.get("volume"),
        "density": summary.get("density"),
        "upload_time": meta.get("created_at"),
        "metadata": {
            **_space_group(summary.get("spacegroup")),
            **{k: cell.get(k) for k in ("a", "b", "c", "alpha", "beta", "gamma")},
        },
    }


def _space_group(text: Any) -> dict[str, Any]:
    """spglib's ``"Fm-3m (225)"`` as the guide shows it (``"Fm-3m"``), the number
    beside; as stored when it is not in that form."""
    match = re.fullmatch(r"\s*(\S+)\s*\((\d+)\)\s*", text) if isinstance(text, str) else None
    if match is None:
        return {"space_group": text, "space_group_number": None}
    return {"space_group": match.group(1), "space_group_number": int(match.group(2))}


def mira_structure_item(meta: dict[str, Any]) -> dict[str, Any]:
    full = mira_structure(meta)
    return {k: full[k] for k in ("id", "name", "formula", "num_atoms", "upload_time")}


def mira_model(entry: dict[str, Any]) -> dict[str, Any]:
    out = {k: entry.get(k) for k in MIRA_MODEL_KEYS}
    out["supported_tasks"] = mira_supported_tasks(entry.get("supported_tasks"))
    return out


STRUCTURE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "id": {"type": "string"},
        "name": {"type": "string"},
        "format": {"type": "string"},
        "formula": {"type": "string"},
        "num_atoms": {"type": "integer"},
        "volume": {"type": ["number", "null"]},
        "density": {"type": ["number", "null"]},
        "upload_time": {"type": "string"},
        "metadata": {"type": "object"},
    },
}
STRUCTURE_EXAMPLE = {
    "id": "struct_550e8400e29b41d4",
    "name": "MOF-5",
    "format": "cif",
    "formula": "C48H24O26Zn8",
    "num_atoms": 106,
    "volume": 4298.9,
    "density": 0.594,
    "upload_time": "2025-12-30T10:30:00Z",
    "metadata": {
        "space_group": "Fm-3m",
        "space_group_number": 225,
        "a": 18.28,
        "b": 18.28,
        "c": 18.28,
        "alpha": 60.0,
        "beta": 60.0,
        "gamma": 60.0,
    },
}
MODEL_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "key": {"type": "string"},
        "name": {"type": "string"},
        "family": {"type": "string"},
        "description": {"type": "string"},
        "elements": {"type": "array", "items": {"type": "string"}},
        "supported_tasks": {"type": "array", "items": {"type": "string"}},
        "references": {"type": "string"},
    },
}
_UPLOAD_RESPONSES = {
    201: "stored",
    400: "no content, or too large",
    422: "unsupported format, or unparsable or unphysical structure",
}
_FORMATS = ["cif", "poscar", "xyz", "extxyz", "vasp"]


def int_query(request: web.Request, name: str, default: int, low: int, high: int) -> int:
    return query_int(request.query, name, default, low, high)


# --- structures ------------------------------------------------------------------------------


@returns(schema=STRUCTURE_SCHEMA, example=STRUCTURE_EXAMPLE, status=201)
@describe(
    summary="Upload a structure (form: name, format, content)",
    tags=TAGS,
    body={
        "type": "object",
        "required": ["content"],
        "properties": {
            "name": {"type": "string", "maxLength": 200},
            "format": {"type": "string", "enum": _FORMATS},
            "content": {
                "type": "string",
                "description": "the file's text (a file part "
                "named content works too, as with curl -F content=@x.cif)",
            },
        },
        "additionalProperties": False,
    },
    content_type="application/x-www-form-urlencoded",
    responses=_UPLOAD_RESPONSES,
)
async def upload(request: web.Request) -> web.Response:
    """Parsed and checked (periodic cell, no overlapping atoms) before it is kept; the
    answer's `id` is the `structure_id` tasks take."""
    meta = await accept_upload(request, file_fields=("content", "file"))
    return ok(request, mira_structure(meta), status=201)


@returns(schema=STRUCTURE_SCHEMA, example=STRUCTURE_EXAMPLE, status=201)
@describe(
    summary="Upload a structure file (multipart: file, name)",
    tags=TAGS,
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
    """The name defaults to the file's name; the format follows its extension."""
    meta = await accept_upload(request, file_fields=("file",))
    return ok(request, mira_structure(meta), status=201)


@returns(
    schema={
        "type": "object",
        "properties": {
            "total": {"type": "integer"},
            "structures": {"type": "array", "items": {"type": "object"}},
        },
    }
)
@describe(
    summary="List structures",
    tags=TAGS,
    query={
        "type": "object",
        "properties": {
            "skip": {"type": "integer", "minimum": 0, "maximum": 10**9},
            "limit": {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT},
        },
    },
    responses={200: "newest first", 400: "bad skip or limit"},
)
async def list_structures(request: web.Request) -> web.Response:
    skip = int_query(request, "skip", 0, 0, 10**9)
    limit = int_query(request, "limit", DEFAULT_LIMIT, 1, MAX_LIMIT)
    index = structure_index(request.app)
    metas = await asyncio.to_thread(index.visible, caller_of(request))
    page = metas[skip : skip + limit]
    return ok(request, {"total": len(metas), "structures": [mira_structure_item(m) for m in page]})


@returns(schema=STRUCTURE_SCHEMA, example=STRUCTURE_EXAMPLE)
@describe(
    summary="Structure detail",
    tags=TAGS,
    responses={200: "the structure", 404: _UNKNOWN},
)
async def get_structure(request: web.Request) -> web.Response:
    meta = structure_index(request.app).get(request.match_info["structure_id"], caller_of(request))
    return ok(request, mira_structure(meta))


@returns(
    schema={
        "type": "object",
        "properties": {
            "symbols": {"type": "array", "items": {"type": "string"}},
            "positions": {"type": "array", "items": {"type": "array", "items": {"type": "number"}}},
            "cell": {"type": "array", "items": {"type": "array", "items": {"type": "number"}}},
            "pbc": {"type": "array", "items": {"type": "boolean"}},
        },
    }
)
@describe(
    summary="Structure preview (for viewers)",
    tags=TAGS,
    responses={200: "symbols, positions (A), cell vectors, pbc", 404: _UNKNOWN},
)
async def preview(request: web.Request) -> web.Response:
    meta = structure_index(request.app).get(request.match_info["structure_id"], caller_of(request))
    data = await asyncio.to_thread(preview_structure, request.app[SPOOL_KEY], meta)
    return ok(request, {k: data[k] for k in ("symbols", "positions", "cell", "pbc")})


@returns(
    schema={
        "type": "object",
        "properties": {"message": {"type": "string"}, "deleted_tasks": {"type": "integer"}},
    },
    example={"message": "Structure deleted successfully", "deleted_tasks": 3},
)
@describe(
    summary="Delete a structure and its tasks",
    tags=TAGS,
    admin=True,
    responses={200: "deleted", 403: "needs an admin key", 404: "unknown structure"},
)
async def delete(request: web.Request) -> web.Response:
    """Finished and queued tasks on it are deleted (counted in `deleted_tasks`);
    running ones are cancelled.  Needs an admin key; audited."""
    app = request.app
    structure_id = request.match_info["structure_id"]
    index = structure_index(app)
    index.get(structure_id)  # 404 before any work
    out = await asyncio.to_thread(
        delete_structure,
        app[SPOOL_KEY],
        index,
        structure_id,
        app[MIRROR_KEY],
        actor=caller_of(request).actor(f"anonymous@{request.remote}"),
    )
    return ok(
        request,
        {"message": "Structure deleted successfully", "deleted_tasks": out["deleted_tasks"]},
    )


# --- models --------------------------------------------------------------------------------------


@returns(schema={"type": "array", "items": MODEL_SCHEMA})
@describe(
    summary="List models",
    tags=TAGS,
    query=family_query,
    responses={200: "a JSON array of models", 400: "unknown family"},
)
async def list_models(request: web.Request) -> web.Response:
    family = request.query.get("family") or None
    entries = await asyncio.to_thread(
        list_model_entries, request.app[SPOOL_KEY], family, caller_of(request)
    )
    return ok(request, [mira_model(e) for e in entries])


@returns(schema={"type": "array", "items": {"type": "string"}}, example=family_names)
@describe(summary="List model families", tags=TAGS, responses={200: "family names"})
async def list_families(request: web.Request) -> web.Response:
    fams = await asyncio.to_thread(model_families, request.app[SPOOL_KEY], caller_of(request))
    return ok(request, [f["family"] for f in fams])


@returns(schema=MODEL_SCHEMA)
@describe(summary="Model detail", tags=TAGS, responses={200: "the model", 404: "unknown model"})
async def get_model(request: web.Request) -> web.Response:
    """The guide's fields plus framework, aliases, D3 flag and where it is loaded;
    `supported_task_types` lists the task types by our names alone."""
    data = await asyncio.to_thread(
        model_detail, request.app[SPOOL_KEY], request.match_info["model_key"], caller_of(request)
    )
    return ok(request, {**data, "supported_tasks": mira_supported_tasks(data["supported_tasks"])})


@returns(
    schema={
        "type": "object",
        "properties": {
            "model_key": {"type": "string"},
            "loaded": {"type": "boolean"},
            "device": {"type": ["string", "null"]},
            "memory_usage_mb": {"type": ["number", "null"]},
        },
    }
)
@describe(
    summary="Model load status",
    tags=TAGS,
    responses={200: "whether an executor holds it now", 404: "unknown model"},
)
async def get_model_status(request: web.Request) -> web.Response:
    """From the daemon's slot snapshot; `memory_usage_mb` is what loading the model
    took on `device`, measured by its executor (CUDA memory on a GPU, the process's
    resident memory on the CPU); null while it is not loaded."""
    data = await asyncio.to_thread(
        model_status, request.app[SPOOL_KEY], request.match_info["model_key"], caller_of(request)
    )
    return ok(request, data)


def setup(app: web.Application) -> None:
    if STRUCTURE_INDEX_KEY not in app:  # shared with /api/v1 when its module is set up
        app[STRUCTURE_INDEX_KEY] = StructureIndex(app[SPOOL_KEY])
    p = MIRA_API_PREFIX
    app.router.add_post(p + "/structures/upload", upload)
    app.router.add_post(p + "/structures/upload/file", upload_file)
    app.router.add_get(p + "/structures", list_structures)
    app.router.add_get(p + "/structures/{structure_id}", get_structure)
    app.router.add_get(p + "/structures/{structure_id}/preview", preview)
    app.router.add_delete(p + "/structures/{structure_id}", delete)
    app.router.add_get(p + "/models", list_models)
    app.router.add_get(p + "/models/families", list_families)
    app.router.add_get(p + "/models/{model_key}", get_model)
    app.router.add_get(p + "/models/{model_key}/status", get_model_status)
