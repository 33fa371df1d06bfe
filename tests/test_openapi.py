"""The OpenAPI document and the locally served documentation pages."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from mofsim_core.config import Config
from mofsim_http.app import create_app
from mofsim_http.describe import describe, description_of
from mofsim_http.docs import ASSETS, asset_dir
from mofsim_http.openapi import build_openapi, build_operation, returns
from spool.errors import ERROR_CODES


def _app(tmp_path: Path) -> web.Application:
    return create_app(Config(spool=str(tmp_path / "spool")))


async def _get_doc(tmp_path: Path) -> dict[str, Any]:
    async with TestClient(TestServer(_app(tmp_path))) as client:
        resp = await client.get("/openapi.json")
        assert resp.status == 200
        assert resp.content_type == "application/json"
        doc: dict[str, Any] = await resp.json()
        return doc


@pytest.mark.asyncio
async def test_document_is_valid_openapi_31(tmp_path: Path) -> None:
    from openapi_spec_validator import validate

    doc = await _get_doc(tmp_path)
    assert doc["openapi"] == "3.1.0"
    validate(doc)  # raises on any structural error
    ids = [op["operationId"] for item in doc["paths"].values() for op in item.values()]
    assert len(ids) == len(set(ids)), "operationIds must be unique"


@pytest.mark.asyncio
async def test_document_covers_every_route_and_each_has_describe(tmp_path: Path) -> None:
    app = _app(tmp_path)
    doc = build_openapi(app)
    missing = []
    for route in app.router.routes():
        if route.method in ("HEAD", "*") or isinstance(route.resource, web.StaticResource):
            continue
        assert route.resource is not None
        path = route.resource.canonical
        assert route.method.lower() in doc["paths"].get(path, {}), (route.method, path)
        if description_of(route.handler) is None:
            missing.append(f"{route.method} {path}")
    assert not missing, f"handlers without @describe: {missing}"
    for path in ("/openapi.json", "/docs", "/redoc"):
        assert "get" in doc["paths"][path]


@pytest.mark.asyncio
async def test_shared_parts_error_table_task_schemas_security(tmp_path: Path) -> None:
    from executors.registry import task_module, task_type_names

    doc = await _get_doc(tmp_path)
    schemas = doc["components"]["schemas"]
    for task_type in task_type_names():
        schema = schemas[f"Parameters-{task_type}"]
        assert schema["properties"] == task_module(task_type).SCHEMA.to_schema()["properties"]
    assert schemas["Parameters-optimization"]["properties"]["fmax"]["default"] == 0.05
    assert {e["code"] for e in doc["x-error-codes"]} == {e.code for e in ERROR_CODES.values()}
    for e in ERROR_CODES.values():
        assert f"| {e.code} | {e.http_status} |" in doc["info"]["description"]
    assert schemas["ErrorEnvelope"]["properties"]["code"]["enum"] == [
        e.code for e in ERROR_CODES.values()
    ]
    assert set(schemas["MiraError"]["required"]) == {"detail", "error_code"}
    sec = doc["components"]["securitySchemes"]
    assert sec["ApiKeyHeader"] == {
        **sec["ApiKeyHeader"],
        "type": "apiKey",
        "in": "header",
        "name": "X-API-Key",
    }
    assert sec["BearerAuth"]["scheme"] == "bearer"
    assert doc["paths"]["/openapi.json"]["get"]["security"] == []


def test_operation_from_describe_metadata() -> None:
    body = {"type": "object", "required": ["model"], "properties": {"model": {"type": "string"}}}

    @returns(
        schema={"type": "object", "properties": {"task_id": {"type": "string"}}},
        example={"task_id": "task_1"},
    )
    @describe(
        summary="Submit",
        tags=["tasks"],
        body=body,
        admin=True,
        query={
            "type": "object",
            "required": ["kind"],
            "properties": {
                "kind": {"type": "string", "description": "what"},
                "limit": {"type": "integer", "minimum": 1},
            },
        },
        responses={202: "queued", 404: "no such thing"},
    )
    async def submit(request: web.Request) -> web.Response:
        """Queue it."""
        raise AssertionError("not called")

    op = build_operation("post", "/api/v1/things/{thing_id}", submit)
    assert op["summary"] == "Submit" and op["tags"] == ["tasks"]
    assert "Queue it." in op["description"] and "admin" in op["description"]
    params = {(p["in"], p["name"]): p for p in op["parameters"]}
    assert params[("path", "thing_id")]["required"] is True
    assert params[("query", "kind")]["required"] is True
    assert params[("query", "limit")]["required"] is False
    assert params[("query", "kind")]["description"] == "what"
    assert op["requestBody"]["content"]["application/json"]["schema"] == body
    ok = op["responses"]["202"]["content"]["application/json"]
    assert ok["schema"]["allOf"][0] == {"$ref": "#/components/schemas/Envelope"}
    assert ok["example"] == {"task_id": "task_1"}
    not_found = op["responses"]["404"]
    assert not_found["content"]["application/json"]["schema"]["$ref"].endswith("ErrorEnvelope")
    assert "30001" in not_found["description"] and "30003" in not_found["description"]
    assert {"401", "403", "default"} <= set(op["responses"])
    assert "security" not in op  # the document-wide API-key requirement applies

    mira = build_operation("post", "/mira/api/v1/things/{thing_id}", submit)
    assert mira["tags"][0] == "MIRA"
    assert mira["responses"]["404"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "MiraError"
    )
    assert mira["responses"]["202"]["content"]["application/json"]["schema"]["properties"] == {
        "task_id": {"type": "string"}
    }  # bare body: no envelope around it
    assert mira["operationId"] != op["operationId"]


def test_sse_and_public_operations() -> None:
    @describe(summary="Stream", sse=True, public=True)
    async def stream(request: web.Request) -> web.Response:
        raise AssertionError("not called")

    op = build_operation("get", "/api/v1/tasks/{task_id}/events", stream)
    assert "text/event-stream" in op["responses"]["200"]["content"]
    assert op["security"] == [] and "401" not in op["responses"]


@pytest.mark.asyncio
async def test_docs_pages_load_only_local_assets(tmp_path: Path) -> None:
    assert asset_dir() is not None, "the documentation bundle package must be installed"
    async with TestClient(TestServer(_app(tmp_path))) as client:
        for page, needed in (("/docs", "swagger-ui-bundle.js"), ("/redoc", "redoc.standalone.js")):
            resp = await client.get(page)
            assert resp.status == 200 and resp.content_type == "text/html"
            text = await resp.text()
            assert needed in text and "/openapi.json" in text
            refs = re.findall(r'(?:src|href)="([^"]+)"', text)
            assert refs and all(r.startswith("/") for r in refs), refs  # no CDN, no host
            for ref in refs:
                asset = await client.get(ref)
                assert asset.status == 200, ref
                assert len(await asset.read()) > 100
        js = await client.get("/docs/assets/redoc.standalone.js")
        assert js.headers["Content-Type"].startswith("application/javascript")
        assert b"Redoc" in (await js.read())[:2000]
        for bad in ("nope.js", "..%2f..%2fapp.py", "swagger-ui-dist"):
            resp = await client.get(f"/docs/assets/{bad}")
            assert resp.status == 404
            assert (await resp.json())["code"] == 30007
        yaml_resp = await client.get("/openapi.yaml")
        assert yaml_resp.status == 200
        assert "openapi: 3.1.0" in await yaml_resp.text()
    assert set(ASSETS) >= {"swagger-ui-bundle.js", "swagger-ui.css", "redoc.standalone.js"}
