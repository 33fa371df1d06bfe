"""``/openapi.json``, ``/openapi.yaml``, ``/docs`` (Swagger UI) and ``/redoc`` (ReDoc).

Deployments are often offline, so the pages load no CDN: the Swagger UI and ReDoc
bundles are served from an installed package (``drf-spectacular-sidecar``, which ships
both as plain static files; its Django dependency is installed but never imported here -
the files are found through the import system without executing the package).
"""

from __future__ import annotations

import html
import importlib.util
import json
from pathlib import Path
from typing import Any

from aiohttp import web

from mofsim_http.describe import describe
from mofsim_http.openapi import build_openapi, returns
from spool.errors import FileNotFound

OPENAPI_CACHE_KEY = web.AppKey("openapi_cache", dict)
ASSET_PACKAGE = "drf_spectacular_sidecar"
# Public name -> path inside the package's static folder.  Only these are ever served.
ASSETS: dict[str, tuple[str, str]] = {
    "swagger-ui-bundle.js": ("swagger-ui-dist/swagger-ui-bundle.js", "application/javascript"),
    "swagger-ui-standalone-preset.js": (
        "swagger-ui-dist/swagger-ui-standalone-preset.js",
        "application/javascript",
    ),
    "swagger-ui.css": ("swagger-ui-dist/swagger-ui.css", "text/css"),
    "favicon-32x32.png": ("swagger-ui-dist/favicon-32x32.png", "image/png"),
    "redoc.standalone.js": ("redoc/bundles/redoc.standalone.js", "application/javascript"),
}
ASSET_ROUTE = "/docs/assets"


def asset_dir() -> Path | None:
    """The folder holding the bundles, or None when the package is not installed."""
    spec = importlib.util.find_spec(ASSET_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(next(iter(spec.submodule_search_locations))) / "static" / ASSET_PACKAGE
    return folder if folder.is_dir() else None


def asset_path(name: str) -> tuple[Path, str]:
    """The file behind a public asset name and its content type; FileNotFound otherwise."""
    entry = ASSETS.get(name)
    folder = asset_dir()
    if entry is None or folder is None:
        raise FileNotFound(f"no documentation asset {name!r}", field="name")
    path = folder / entry[0]
    if not path.is_file():
        raise FileNotFound(
            f"documentation asset {name!r} is missing from {ASSET_PACKAGE}", field="name"
        )
    return path, entry[1]


def openapi_document(app: web.Application) -> dict[str, Any]:
    """Built once per application: the router is frozen once the server runs."""
    cache = app[OPENAPI_CACHE_KEY]
    if "doc" not in cache:
        cache["doc"] = build_openapi(app)
    return cache["doc"]  # type: ignore[no-any-return]


@returns(schema={"type": "object", "description": "an OpenAPI 3.1 document"})
@describe(
    summary="The OpenAPI 3.1 document", tags=["docs"], public=True, responses={200: "the document"}
)
async def openapi_json(request: web.Request) -> web.Response:
    """Generated from the routes themselves; bare JSON in both dialects' sense."""
    doc = openapi_document(request.app)
    return web.Response(text=json.dumps(doc, ensure_ascii=False), content_type="application/json")


@returns(
    media_type="application/yaml",
    schema={"type": "object", "description": "an OpenAPI 3.1 document"},
)
@describe(
    summary="The OpenAPI 3.1 document as YAML",
    tags=["docs"],
    public=True,
    responses={200: "the document"},
)
async def openapi_yaml(request: web.Request) -> web.Response:
    import yaml

    doc = openapi_document(request.app)
    text = yaml.safe_dump(doc, allow_unicode=True, sort_keys=False)
    return web.Response(text=text, content_type="application/yaml")


_MISSING = (
    "<p>The documentation bundles are not installed on this server "
    "(package <code>drf-spectacular-sidecar</code>, part of "
    "<code>mofsim[server]</code>). The API description is at "
    '<a href="/openapi.json">/openapi.json</a>.</p>'
)

SWAGGER_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title} - Swagger UI</title>
<link rel="icon" type="image/png" href="{assets}/favicon-32x32.png">
<link rel="stylesheet" href="{assets}/swagger-ui.css"></head>
<body><div id="swagger-ui">{missing}</div>
<script src="{assets}/swagger-ui-bundle.js"></script>
<script src="{assets}/swagger-ui-standalone-preset.js"></script>
<script>
window.ui = SwaggerUIBundle({{
  url: "/openapi.json", dom_id: "#swagger-ui", deepLinking: true,
  persistAuthorization: true, displayRequestDuration: true,
  presets: [SwaggerUIBundle.presets.apis, SwaggerUIStandalonePreset],
  layout: "StandaloneLayout"
}});
</script></body></html>
"""

REDOC_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title} - ReDoc</title>
<meta name="viewport" content="width=device-width, initial-scale=1"></head>
<body>{missing}<redoc spec-url="/openapi.json"></redoc>
<script src="{assets}/redoc.standalone.js"></script></body></html>
"""


def _page(template: str) -> web.Response:
    missing = "" if asset_dir() is not None else _MISSING
    body = template.format(title=html.escape("MOFSim API"), assets=ASSET_ROUTE, missing=missing)
    return web.Response(text=body, content_type="text/html")


@returns(media_type="text/html")
@describe(
    summary="Swagger UI (interactive documentation)",
    tags=["docs"],
    public=True,
    responses={200: "an HTML page"},
)
async def swagger_ui(request: web.Request) -> web.Response:
    """Served from the installed bundle: works without internet access."""
    return _page(SWAGGER_PAGE)


@returns(media_type="text/html")
@describe(
    summary="ReDoc (reference documentation)",
    tags=["docs"],
    public=True,
    responses={200: "an HTML page"},
)
async def redoc(request: web.Request) -> web.Response:
    """Served from the installed bundle: works without internet access."""
    return _page(REDOC_PAGE)


@returns(media_type="application/javascript")
@describe(
    summary="A static file of the documentation pages",
    tags=["docs"],
    public=True,
    responses={200: "the file", 404: "no such asset"},
)
async def docs_asset(request: web.Request) -> web.StreamResponse:
    path, content_type = asset_path(request.match_info["name"])
    return web.FileResponse(
        path, headers={"Content-Type": content_type, "Cache-Control": "public, max-age=86400"}
    )


def setup(app: web.Application) -> None:
    app[OPENAPI_CACHE_KEY] = {}
    app.router.add_get("/openapi.json", openapi_json)
    app.router.add_get("/openapi.yaml", openapi_yaml)
    app.router.add_get("/docs", swagger_ui)
    app.router.add_get("/redoc", redoc)
    app.router.add_get(ASSET_ROUTE + "/{name}", docs_asset)
