"""``/api/v1/auth/keys``: API keys managed over HTTP, with an admin key.

The same store as ``mofsim keys``; a new key's token appears once, in the answer that
creates it.
"""

from __future__ import annotations

from aiohttp import web

from mofsim_http.auth import GUARD_KEY, caller_of
from mofsim_http.describe import describe
from mofsim_http.envelope import API_KEY, ok
from mofsim_http.json_body import read_json
from mofsim_http.paging import page_of, page_query
from spool.errors import AuthError, ValidationError

_KEY_BODY = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "name": {"type": ["string", "null"], "maxLength": 100},
        "admin": {"type": "boolean", "default": False},
    },
}


@describe(
    summary="List API keys",
    tags=["auth"],
    admin=True,
    query=page_query(),
    responses={200: "the keys (never their secrets)"},
)
async def list_keys_handler(request: web.Request) -> web.Response:
    """Every key ever created, revoked ones included, without hashes."""
    _require_key(request)
    return ok(request, page_of(request.query, request.app[GUARD_KEY].keys.entries()))


@describe(
    summary="Create an API key",
    tags=["auth"],
    admin=True,
    body=_KEY_BODY,
    body_optional=True,
    responses={201: "the key; its token is shown only in this answer", 400: "invalid body"},
)
async def create_key_handler(request: web.Request) -> web.Response:
    """The answer's ``key`` is the only copy of the token: store it now."""
    _require_key(request)
    body = await read_json(request, allow_empty=True)
    if not isinstance(body, dict):
        raise ValidationError("the body must be a JSON object", field="body")
    name = body.get("name")
    admin = body.get("admin", False)
    if name is not None and not isinstance(name, str):
        raise ValidationError("name must be a string", field="name")
    if not isinstance(admin, bool):
        raise ValidationError("admin must be true or false", field="admin")
    unknown = sorted(set(body) - {"name", "admin"})
    if unknown:
        raise ValidationError(f"unknown field(s): {', '.join(unknown)}", field=unknown[0])
    entry, token = request.app[GUARD_KEY].keys.create(name, admin, actor=_actor(request))
    return ok(request, {**entry, "key": token}, status=201, message="Created")


@describe(
    summary="Revoke an API key",
    tags=["auth"],
    admin=True,
    responses={200: "the revoked key", 404: "no such key"},
)
async def revoke_key_handler(request: web.Request) -> web.Response:
    _require_key(request)
    entry = request.app[GUARD_KEY].keys.revoke(request.match_info["key_id"], actor=_actor(request))
    return ok(request, entry, message="Revoked")


def _actor(request: web.Request) -> str:
    return caller_of(request).actor(f"anonymous@{request.remote}")


def _require_key(request: web.Request) -> None:
    """Keys are managed with a key, even where anonymous requests pass: otherwise any
    local process (or a web page posting to localhost) could lock the owner out."""
    if request.get(API_KEY) is None:
        raise AuthError(
            "managing API keys over HTTP needs an admin key; create the first "
            "one with `mofsim keys create --admin`"
        )


def setup(app: web.Application) -> None:
    app.router.add_get("/api/v1/auth/keys", list_keys_handler)
    app.router.add_post("/api/v1/auth/keys", create_key_handler)
    app.router.add_delete("/api/v1/auth/keys/{key_id}", revoke_key_handler)
