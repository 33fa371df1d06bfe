"""The OpenAPI 3.1 document, generated from the running application.

Nothing here is written by hand per endpoint: ``build_openapi`` walks ``app.router`` and
reads the ``@describe`` metadata every handler carries (summary, tags, JSON Schemas of
body and query), so the document always matches the routes that exist.  Around them it
adds what is shared (``openapi_components``): the two dialects' response and error
shapes, the error code table, the parameter schema of each task type, and the API-key
security schemes.

``@returns(...)`` is an optional companion of ``@describe``: it states what a success
answers (a JSON Schema of the payload, a media type other than JSON, an example).
``openapi_examples`` holds the request and response examples (and a few payload
schemas) of operations whose handlers do not carry them, by ``"METHOD path"``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, TypeVar

from aiohttp import web

from mofsim_core.version import package_version
from mofsim_http.describe import description_of
from mofsim_http.mira_errors import mira_codes_for_status
from mofsim_http.openapi_components import (
    codes_for_status,
    error_code_table_markdown,
    security_schemes,
    shared_schemas,
    task_parameter_schemas,
)
from mofsim_http.openapi_examples import request_examples, response_examples
from mofsim_http.paging import PAGINATION_SCHEMA
from spool.errors import ERROR_CODES

F = TypeVar("F", bound=Callable[..., Any])

OPENAPI_VERSION = "3.1.0"
MIRA_ROOT = "/mira"
API_ROOT = "/api/v1"
_METHODS = ("get", "put", "post", "delete", "patch", "options")
_PATH_PARAM = re.compile(r"{([^}:]+)(?::[^}]*)?}")


def returns(
    *,
    schema: dict[str, Any] | None = None,
    media_type: str | None = None,
    example: Any = None,
    status: int | None = None,
) -> Callable[[F], F]:
    """What a handler's success answers: ``schema`` of the payload (the envelope's
    ``data`` on /api/v1, the whole body on /mira), ``media_type`` when it is not JSON
    (a download, HTML, ``text/plain``), an ``example`` (or a function returning it, called
    when the document is built).  Independent of ``@describe``'s order."""

    def mark(fn: F) -> F:
        fn.__openapi_returns__ = {  # type: ignore[attr-defined]
            "schema": schema,
            "media_type": media_type,
            "example": example,
            "status": status,
        }
        return fn

    return mark


def returns_of(handler: Any) -> dict[str, Any]:
    return dict(getattr(handler, "__openapi_returns__", None) or {})


def path_params(**schemas: dict[str, Any]) -> Callable[[F], F]:
    """JSON Schemas of path parameters narrower than "a string" (an enum of kinds)."""

    def mark(fn: F) -> F:
        fn.__openapi_path__ = schemas  # type: ignore[attr-defined]
        return fn

    return mark


def is_mira_path(path: str) -> bool:
    return path == MIRA_ROOT or path.startswith(MIRA_ROOT + "/")


def dialect_of(path: str) -> str:
    """``api`` (the envelope), ``mira`` (bare bodies, MIRA errors) or ``root`` (probes,
    metrics, documentation: bodies of their own, errors in the envelope)."""
    if is_mira_path(path):
        return "mira"
    return "api" if path.startswith(API_ROOT + "/") else "root"


# --- operations ------------------------------------------------------------------------------


def _operation_id(method: str, path: str) -> str:
    slug = re.sub(r"[^A-Za-z0-9]+", "_", _PATH_PARAM.sub(r"by_\1", path)).strip("_")
    return f"{method.lower()}_{slug}"


def _path_parameters(path: str, handler: Any) -> list[dict[str, Any]]:
    narrower = getattr(handler, "__openapi_path__", None) or {}
    return [
        {
            "name": name,
            "in": "path",
            "required": True,
            "schema": narrower.get(name, {"type": "string"}),
        }
        for name in _PATH_PARAM.findall(path)
    ]


def _query_parameters(query: dict[str, Any] | None) -> list[dict[str, Any]]:
    if not query:
        return []
    required = set(query.get("required") or [])
    out = []
    for name, schema in (query.get("properties") or {}).items():
        param: dict[str, Any] = {
            "name": name,
            "in": "query",
            "required": name in required,
            "schema": schema,
        }
        if isinstance(schema, dict) and schema.get("description"):
            param["description"] = schema["description"]
        out.append(param)
    return out


def _error_response(status: int, text: str, mira: bool) -> dict[str, Any]:
    codes: list[Any] = mira_codes_for_status(status) if mira else codes_for_status(status)
    if codes:
        text = f"{text} (error codes: {', '.join(map(str, codes))})"
    ref = "#/components/schemas/MiraError" if mira else "#/components/schemas/ErrorEnvelope"
    return {"description": text, "content": {"application/json": {"schema": {"$ref": ref}}}}


def _success_response(
    status: int, text: str, desc: dict[str, Any], ret: dict[str, Any], dialect: str
) -> dict[str, Any]:
    if desc.get("sse"):
        return {
            "description": text,
            "content": {
                # Before OpenAPI 3.2 (and its itemSchema) the schema of an event stream
                # is read as the schema of each event.
                "text/event-stream": {
                    "schema": {
                        "type": "object",
                        "description": "Server-sent events: `event:` log, status, progress, "
                        "end; an `id:` on each; resume with Last-Event-ID. `data` is a "
                        "JSON log line.",
                        "properties": {
                            "event": {"type": "string"},
                            "id": {"type": "string"},
                            "data": {"type": "string"},
                            "retry": {"type": "integer"},
                        },
                    }
                }
            },
        }
    media = ret.get("media_type") or "application/json"
    payload = ret.get("schema")
    structured = media.endswith(("json", "yaml"))
    if not structured:
        content: dict[str, Any] = {"schema": {"type": "string"}}
        if media.startswith(("application/octet-stream", "chemical/")):
            content["schema"] = {"type": "string", "contentMediaType": media}
        return {"description": text, "content": {media: content}}
    if dialect == "api":
        schema: dict[str, Any] = {"$ref": "#/components/schemas/Envelope"}
        if payload is not None:
            schema = {"allOf": [schema, {"type": "object", "properties": {"data": payload}}]}
    else:
        schema = payload if payload is not None else {}
    body: dict[str, Any] = {"schema": schema}
    example = _built(ret.get("example"))
    if example is not None:
        body["example"] = example
    return {"description": text, "content": {media: body}}


def _built(value: Any) -> Any:
    """A schema or example given as a function (it depends on the model families
    present) is computed now."""
    return value() if callable(value) else value


def _request_body(desc: dict[str, Any]) -> dict[str, Any] | None:
    body = _built(desc.get("body"))
    if not body:
        return None
    media = desc.get("content_type") or "application/json"
    required = not desc.get("body_optional") and (
        bool(body.get("required")) or media == "application/json"
    )
    return {"required": required, "content": {media: {"schema": body}}}


def build_operation(method: str, path: str, handler: Any) -> dict[str, Any]:
    """One OpenAPI operation from a handler's ``@describe`` (and ``@returns``)."""
    desc = description_of(handler) or {}
    key = f"{method.upper()} {path}"
    # What the handler says wins; the examples table fills in what it leaves out.
    ret = {**response_examples().get(key, {})}
    ret.update({k: v for k, v in returns_of(handler).items() if v is not None})
    dialect = dialect_of(path)
    mira = dialect == "mira"
    tags = list(desc.get("tags") or [])
    if mira and "MIRA" not in tags:
        tags = ["MIRA", *tags]
    name = getattr(handler, "__name__", "handler")
    op: dict[str, Any] = {
        "operationId": _operation_id(method, path),
        "summary": desc.get("summary") or name.replace("_", " "),
        "tags": tags or ["misc"],
    }
    notes = [desc.get("description") or ""]
    if desc.get("admin"):
        notes.append("Needs an **admin** API key.")
    if not desc:
        notes.append("(This handler carries no `@describe` metadata.)")
    text = "\n\n".join(n for n in notes if n)
    if text:
        op["description"] = text
    params = _path_parameters(path, handler) + _query_parameters(_built(desc.get("query")))
    if params:
        op["parameters"] = params
    body = _request_body(desc)
    if body is not None:
        example = request_examples().get(key)
        if example is not None:
            for media in body["content"].values():
                media["example"] = example
        op["requestBody"] = body

    responses: dict[str, Any] = {}
    declared = {int(k): str(v) for k, v in (desc.get("responses") or {}).items()}
    success = [s for s in declared if s < 400]
    if not success:
        declared[int(ret.get("status") or 200)] = "OK"
    for status in sorted(declared):
        text_s = declared[status]
        if status < 300:
            responses[str(status)] = _success_response(status, text_s, desc, ret, dialect)
        elif status < 400:
            responses[str(status)] = {"description": text_s}
        else:
            responses[str(status)] = _error_response(status, text_s, mira)
    if not desc.get("public") and "401" not in responses:
        responses["401"] = _error_response(401, "API key missing or invalid", mira)
    if desc.get("admin") and "403" not in responses:
        responses["403"] = _error_response(403, "an admin key is needed", mira)
    responses["default"] = _error_response(500, "any other error", mira)
    op["responses"] = responses
    if desc.get("public"):
        op["security"] = []
    return op


def _routes(app: web.Application) -> list[tuple[str, str, Any]]:
    out = []
    for route in app.router.routes():
        method = route.method.lower()
        if method not in _METHODS:
            continue  # HEAD mirrors GET; '*' routes are not operations
        resource = route.resource
        if resource is None or isinstance(resource, web.StaticResource):
            continue
        out.append((method, resource.canonical, route.handler))
    return out


def build_openapi(app: web.Application, *, title: str = "MOFSim API") -> dict[str, Any]:
    """The whole document for ``app``'s routes (call after every ``setup`` has run)."""
    paths: dict[str, dict[str, Any]] = {}
    tags: dict[str, None] = {}
    for method, path, handler in _routes(app):
        op = build_operation(method, path, handler)
        paths.setdefault(path, {})[method] = op
        for tag in op["tags"]:
            tags.setdefault(tag, None)
    schemas = shared_schemas()
    schemas.update(task_parameter_schemas())
    schemas["Pagination"] = PAGINATION_SCHEMA
    return {
        "openapi": OPENAPI_VERSION,
        "info": {"title": title, "version": package_version(), "description": _description()},
        "servers": [{"url": "/", "description": "this server"}],
        "tags": [{"name": t, "description": TAG_TEXT.get(t, "")} for t in tags],
        "paths": dict(sorted(paths.items())),
        "components": {"schemas": schemas, "securitySchemes": security_schemes()},
        "security": [{"ApiKeyHeader": []}, {"BearerAuth": []}],
        "x-error-codes": [
            {"code": e.code, "http_status": e.http_status, "name": e.name, "summary": e.summary}
            for e in ERROR_CODES.values()
        ],
    }


TAG_TEXT = {
    "MIRA": "The MIRA guide's dialect under /mira/api/v1: bare bodies, the guide's four "
    "statuses (pending, running, completed, failed) with the state beside as `state`, "
    "`structure_id`/`model_key`, errors as `{detail, error_code, field, code}` with the "
    "guide's HTTP statuses (plus 401/403/429 for keys and request limits, 405 for methods).",
}

_USAGE = """```python
import httpx

api = httpx.Client(base_url="http://127.0.0.1:8000/api/v1",
                   headers={"X-API-Key": "KEY"})
task = api.post("/tasks/optimization", json={
    "model": "sevennet-0", "structure": {"source": "builtin", "name": "MOF-5"},
    "parameters": {"fmax": 0.05}}).json()["data"]
print(api.get(f"/tasks/{task['task_id']}").json()["data"]["status"])
```"""


def _description() -> str:
    return "\n\n".join(
        [
            "Job server for MOF simulations with machine-learning interatomic potentials.",
            "**Dialects.** `/api/v1` answers the spec's envelope `{success, code, message, data, "
            "timestamp, request_id}` with uppercase task states; `/mira/api/v1` answers the MIRA "
            "guide's bare bodies with its four lowercase statuses (a MIRA client works "
            "unmodified with `MIRA_GATEWAY_URL=http://host:port/mira`); its errors carry the "
            "table's name as `error_code` and the guide's HTTP statuses.",
            "**Authentication.** When the server has API keys, send one as `X-API-Key: KEY` or "
            "`Authorization: Bearer KEY`. Admin operations need an admin key.",
            "**Example.**\n\n" + _USAGE,
            "**Error codes.** Each code has exactly one HTTP status on `/api/v1`.\n\n"
            + error_code_table_markdown(),
        ]
    )
