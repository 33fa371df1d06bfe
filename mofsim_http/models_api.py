"""``/api/v1/models``: catalogue, families, detail, status, load/unload, custom models.

Handlers parse and shape; ``model_service`` does the work.  Load and unload answer 202
with a request id: the daemon carries the request out and ``GET /models/{key}/status``
shows the outcome.
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web

from executors.models import custom_frameworks, family_names
from mofsim_core.config import Config
from mofsim_core.custom_models import (
    VALIDATION_TIMEOUT_S,
    delete_custom_model,
    get_custom_model,
    list_custom_models,
    save_custom_model,
    validate_custom_model,
)
from mofsim_core.model_service import (
    list_model_entries,
    model_detail,
    model_families,
    model_status,
    request_model_action,
)
from mofsim_http.app import API_PREFIX, CONFIG_KEY, SPOOL_KEY, config_upload_limit
from mofsim_http.auth import caller_of
from mofsim_http.describe import describe
from mofsim_http.envelope import ok
from mofsim_http.json_body import parse_json, read_json_object
from mofsim_http.paging import page_of, page_query
from mofsim_http.structures import read_upload_form
from spool.errors import ValidationError

VALIDATION_LOCKS_KEY = web.AppKey("model_validation_locks", dict)


def validation_timeout(config: Config) -> float:
    extra = config.extra if isinstance(config.extra, dict) else {}
    return float(extra.get("model_validation_timeout_s", VALIDATION_TIMEOUT_S))


def model_upload_limit(config: Config) -> int:
    """Model files obey the one upload limit (``max_upload_mb``, 100 MB by default)."""
    return config_upload_limit(config)


async def _json_body(request: web.Request) -> dict[str, Any]:
    """An optional JSON object body (empty means {})."""
    return await read_json_object(request, allow_empty=True)


def _action_args(request: web.Request, body: dict[str, Any]) -> dict[str, Any]:
    slot = body.get("slot", request.query.get("slot"))
    gpu_id = body.get("gpu_id", request.query.get("gpu_id"))
    # Absent means the model's own default (an upload's with_d3), as for a task.
    with_d3 = body.get("with_d3", request.query.get("with_d3"))
    if slot is not None and not isinstance(slot, str):
        raise ValidationError("slot must be a string such as 'gpu0' or 'cpu0'", field="slot")
    if gpu_id is not None:
        try:
            gpu_id = int(gpu_id)
        except (TypeError, ValueError) as exc:
            raise ValidationError("gpu_id must be an integer", field="gpu_id") from exc
    if isinstance(with_d3, str):
        with_d3 = with_d3.lower() in ("1", "true", "yes")
    return {"slot": slot, "gpu_id": gpu_id, "with_d3": None if with_d3 is None else bool(with_d3)}


# --- catalogue ---------------------------------------------------------------------------------


def family_query() -> dict[str, Any]:
    """The ``family`` filter: one of the families present (the custom uploads included)."""
    return page_query({"family": {"type": "string", "enum": family_names()}})


@describe(summary="List models", tags=["models"], query=family_query)
async def list_all(request: web.Request) -> web.Response:
    """Built-in and validated-or-not custom models, with where each is loaded."""
    items = await asyncio.to_thread(
        list_model_entries,
        request.app[SPOOL_KEY],
        request.query.get("family") or None,
        caller_of(request),
    )
    return ok(request, page_of(request.query, items))


@describe(summary="Model families", tags=["models"], query=page_query())
async def list_families(request: web.Request) -> web.Response:
    """Each family with its package, whether that package is installed, and its models."""
    items = await asyncio.to_thread(model_families, request.app[SPOOL_KEY], caller_of(request))
    return ok(request, page_of(request.query, items))


@describe(summary="Model detail", tags=["models"], responses={404: "unknown model"})
async def detail(request: web.Request) -> web.Response:
    """Elements, supported task types, D3 flag, source of the weights, loaded slots."""
    data = await asyncio.to_thread(
        model_detail, request.app[SPOOL_KEY], request.match_info["key"], caller_of(request)
    )
    return ok(request, data)


@describe(summary="Where a model is loaded", tags=["models"], responses={404: "unknown model"})
async def status(request: web.Request) -> web.Response:
    """Loaded or not, on which slots, and the recent load/unload requests with their
    outcome (pending, running, completed, failed)."""
    data = await asyncio.to_thread(
        model_status, request.app[SPOOL_KEY], request.match_info["key"], caller_of(request)
    )
    return ok(request, data)


# A slot name is a file-name-safe token (``spool.layout.is_safe_token``).
SLOT_NAME: dict[str, Any] = {
    "type": "string",
    "pattern": r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$",
    "not": {"pattern": r"\.\."},
}
_ACTION_BODY = {
    "type": "object",
    "properties": {
        "slot": {
            **SLOT_NAME,
            "description": "e.g. gpu0, cpu0; default: any idle slot "
            "(load) or every slot holding it (unload)",
        },
        "gpu_id": {"type": "integer", "minimum": 0},
        "with_d3": {
            "type": "boolean",
            "description": "load with D3(BJ) dispersion; default: the model's own default, "
            "as a task that says nothing of D3 would run it",
        },
    },
}


async def _action(request: web.Request, action: str) -> web.Response:
    args = _action_args(request, await _json_body(request))
    data = await asyncio.to_thread(
        request_model_action,
        request.app[SPOOL_KEY],
        request.match_info["key"],
        action,
        actor=caller_of(request).actor(f"anonymous@{request.remote}"),
        **args,
    )
    data["status_url"] = f"{API_PREFIX}/models/{data['model_key']}/status"
    return ok(request, data, status=202, message=f"Model {action} requested")


@describe(
    summary="Load a model onto a slot",
    tags=["models"],
    body=_ACTION_BODY,
    body_optional=True,
    admin=True,
    responses={202: "requested", 404: "unknown model", 409: "no daemon or unvalidated"},
)
async def load(request: web.Request) -> web.Response:
    """The daemon loads it on an idle executor (or the one named); follow the outcome
    at ``/models/{key}/status``."""
    return await _action(request, "load")


@describe(
    summary="Unload a model",
    tags=["models"],
    body=_ACTION_BODY,
    body_optional=True,
    admin=True,
    responses={202: "requested", 404: "unknown model", 409: "no daemon"},
)
async def unload(request: web.Request) -> web.Response:
    """From the slot named, or every slot holding it."""
    return await _action(request, "unload")


# --- custom models -----------------------------------------------------------------------------


def custom_body() -> dict[str, Any]:
    """The upload form: the families that accept files, each with its extensions."""
    frameworks = custom_frameworks()
    kinds = "; ".join(f"{name} {'/'.join(exts)}" for name, exts in frameworks.items())
    return {
        "type": "object",
        "required": ["file", "framework"],
        "properties": {
            "file": {"type": "string", "format": "binary", "description": f"weights: {kinds}"},
            "name": {"type": "string", "maxLength": 200},
            "framework": {"type": "string", "enum": list(frameworks)},
            "description": {"type": "string"},
            "with_d3": {
                "type": "boolean",
                "description": "tasks on the model add D3(BJ) dispersion unless their "
                "parameters.with_d3 says otherwise",
            },
            "d3_included": {
                "type": "boolean",
                "description": "the weights already include D3 (trained on D3-corrected "
                "data): tasks asking for D3 are refused unless they set force_d3",
            },
            "shared": {
                "type": "boolean",
                "description": "visible to and usable by every API key (default: only the "
                "uploading key and admin keys)",
            },
            "config": {
                "type": "string",
                "description": 'JSON object, e.g. {"precision": "float32"}; a pytorch '
                "upload (a torch.jit.save archive) describes its interface here: inputs, "
                "outputs, and optionally units, cutoff, stress, elements",
            },
            "elements": {"type": "string", "description": "element symbols, JSON list or commas"},
        },
        "additionalProperties": False,
    }


@describe(
    summary="Upload a custom model",
    tags=["models"],
    body=custom_body,
    content_type="multipart/form-data",
    admin=True,
    responses={
        201: "stored (not yet validated)",
        413: "too large",
        415: "not a model file of that framework",
    },
)
async def upload_custom(request: web.Request) -> web.Response:
    """Stored unvalidated: validate it (``POST /models/custom/{id}/validate``) before
    tasks can use it as ``custom:<model_id>``."""
    spool = request.app[SPOOL_KEY]
    form = await read_upload_form(
        request,
        limit=model_upload_limit(request.app[CONFIG_KEY]),
        file_fields=("file",),
        spill_dir=spool.paths.tmp,
    )
    try:
        if form.path is None:
            raise ValidationError(
                "send the weights as the multipart file part 'file'", field="file"
            )
        fields: dict[str, Any] = dict(form.fields)
        metadata = fields.pop("metadata", None)
        if metadata:
            extra = parse_json(metadata, field="metadata")
            if not isinstance(extra, dict):
                raise ValidationError("metadata must be a JSON object", field="metadata")
            fields = {**extra, **fields}
        info = await asyncio.to_thread(
            save_custom_model,
            spool,
            form.path,
            form.filename,
            fields,
            caller_of(request).owner,
            actor=caller_of(request).actor(f"anonymous@{request.remote}"),
        )
    finally:
        form.discard()
    return ok(request, info, status=201, message="Custom model uploaded; validate it next")


@describe(summary="List custom models", tags=["models"], query=page_query())
async def list_custom(request: web.Request) -> web.Response:
    """A user key lists the models it uploaded, an admin key all of them."""
    items = await asyncio.to_thread(list_custom_models, request.app[SPOOL_KEY], caller_of(request))
    return ok(request, page_of(request.query, items))


@describe(
    summary="Custom model detail", tags=["models"], responses={404: "not found (or another key's)"}
)
async def get_custom(request: web.Request) -> web.Response:
    data = get_custom_model(
        request.app[SPOOL_KEY], request.match_info["model_id"], caller_of(request)
    )
    return ok(request, data)


@describe(
    summary="Delete a custom model",
    tags=["models"],
    admin=True,
    responses={403: "needs an admin key", 404: "not found"},
)
async def delete_custom(request: web.Request) -> web.Response:
    """Removes the files; slots holding it are asked to unload it.  Audited."""
    data = await asyncio.to_thread(
        delete_custom_model,
        request.app[SPOOL_KEY],
        request.match_info["model_id"],
        actor=caller_of(request).actor(f"anonymous@{request.remote}"),
    )
    return ok(request, data, message="Custom model deleted")


@describe(
    summary="Validate a custom model", tags=["models"], admin=True, responses={404: "not found"}
)
async def validate(request: web.Request) -> web.Response:
    """Loads the weights and computes one single point in a separate process (the
    server never unpickles uploads), within ``model_validation_timeout_s``.  The answer
    says ``valid`` true or false with the details; the verdict is kept with the model."""
    app = request.app
    info = get_custom_model(app[SPOOL_KEY], request.match_info["model_id"])
    locks = app[VALIDATION_LOCKS_KEY]
    lock = locks.setdefault(info["model_id"], asyncio.Lock())
    async with lock:
        data = await validate_custom_model(
            app[SPOOL_KEY],
            info["model_id"],
            timeout=validation_timeout(app[CONFIG_KEY]),
            actor=caller_of(request).actor(f"anonymous@{request.remote}"),
        )
    return ok(
        request, data, message="Model is valid" if data["valid"] else "Model failed validation"
    )


def setup(app: web.Application) -> None:
    app[VALIDATION_LOCKS_KEY] = {}
    p = API_PREFIX + "/models"
    r = app.router
    r.add_get(p, list_all)
    r.add_get(p + "/families", list_families)
    r.add_get(p + "/custom", list_custom)
    r.add_post(p + "/custom", upload_custom)
    r.add_get(p + "/custom/{model_id}", get_custom)
    r.add_delete(p + "/custom/{model_id}", delete_custom)
    r.add_post(p + "/custom/{model_id}/validate", validate)
    r.add_get(p + "/{key}", detail)
    r.add_get(p + "/{key}/status", status)
    r.add_post(p + "/{key}/load", load)
    r.add_post(p + "/{key}/unload", unload)
