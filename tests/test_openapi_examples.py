"""The examples of the OpenAPI document (spec 12.3): where they are, and that each one
is valid against the schema it illustrates."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from jsonschema import Draft202012Validator  # type: ignore[import-untyped]

from mofsim_core.config import Config
from mofsim_http.app import create_app
from mofsim_http.openapi import build_openapi
from mofsim_http.openapi_examples import RESULT, request_examples, response_examples


@pytest.fixture(scope="module")
def doc(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    spool = tmp_path_factory.mktemp("openapi") / "spool"
    return build_openapi(create_app(Config(spool=str(spool))))


def _errors(doc: dict[str, Any], schema: dict[str, Any], example: Any) -> list[str]:
    # The schema sits in a document that has the components its $refs point into.
    root = {"components": doc["components"], "allOf": [schema]}
    return [
        f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
        for e in Draft202012Validator(root).iter_errors(example)
    ]


def _examples(doc: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any], Any]]:
    """``(where, schema, example)`` of every example an operation carries."""
    for path, item in doc["paths"].items():
        for method, op in item.items():
            for media, content in (op.get("requestBody") or {}).get("content", {}).items():
                if "example" in content:
                    yield f"{method} {path} request {media}", content["schema"], content["example"]
            for status, response in op["responses"].items():
                for media, content in (response.get("content") or {}).items():
                    if "example" in content:
                        where = f"{method} {path} {status} {media}"
                        yield where, content["schema"], content["example"]


def test_every_example_is_valid_against_its_schema(doc: dict[str, Any]) -> None:
    seen = 0
    failures = {}
    for where, schema, example in _examples(doc):
        seen += 1
        errors = _errors(doc, schema, example)
        if errors:
            failures[where] = errors
    assert not failures, failures
    assert seen >= 30


def test_component_examples_are_valid(doc: dict[str, Any]) -> None:
    schemas = doc["components"]["schemas"]
    failures = {
        name: _errors(doc, schema, schema["example"])
        for name, schema in schemas.items()
        if "example" in schema
    }
    assert not any(failures.values()), failures


def test_an_invalid_example_is_caught(doc: dict[str, Any]) -> None:
    """The check above can fail: a result without its task id is refused."""
    op = doc["paths"]["/api/v1/tasks/{task_id}/result"]["get"]
    schema = op["responses"]["200"]["content"]["application/json"]["schema"]
    broken = {k: v for k, v in RESULT.items() if k != "task_id"}
    envelope = {**op["responses"]["200"]["content"]["application/json"]["example"]}
    assert _errors(doc, schema, {**envelope, "data": broken})


def test_every_api_write_has_a_request_example(doc: dict[str, Any]) -> None:
    missing = [
        f"{method.upper()} {path}"
        for path, item in doc["paths"].items()
        if path.startswith("/api/v1/")
        for method, op in item.items()
        if method in ("post", "put", "patch") and "requestBody" in op
        for content in op["requestBody"]["content"].values()
        if "example" not in content
    ]
    assert not missing, missing


def test_examples_name_operations_that_exist(doc: dict[str, Any]) -> None:
    operations = {
        f"{method.upper()} {path}" for path, item in doc["paths"].items() for method in item
    }
    assert set(request_examples()) <= operations
    assert set(response_examples()) <= operations


def test_main_reads_answer_with_an_example(doc: dict[str, Any]) -> None:
    for path in (
        "/api/v1/tasks/{task_id}",
        "/api/v1/tasks",
        "/api/v1/tasks/{task_id}/result",
        "/api/v1/models",
        "/api/v1/system/gpus",
        "/api/v1/system/queue",
        "/api/v1/health",
    ):
        content = doc["paths"][path]["get"]["responses"]["200"]["content"]["application/json"]
        assert "example" in content, path


def test_the_result_has_the_spec_shape(doc: dict[str, Any]) -> None:
    """GET /tasks/{id}/result documents the result document, not a bare envelope; its
    example is the spec's 5.3 optimization result."""
    op = doc["paths"]["/api/v1/tasks/{task_id}/result"]["get"]
    content = op["responses"]["200"]["content"]["application/json"]
    data = content["schema"]["allOf"][1]["properties"]["data"]
    assert {"task_id", "task_type", "status", "model", "result", "metrics"} <= set(data["required"])
    example = content["example"]["data"]
    assert example["result"]["final_energy_eV"] == -1234.567
    assert example["result"]["output_files"]["optimized_structure"].startswith("/api/v1/files/")
    assert example["metrics"] == {"peak_gpu_memory_MB": 8234, "avg_step_time_ms": 2085}


def test_the_spec_submission_is_the_generic_example(doc: dict[str, Any]) -> None:
    body = doc["paths"]["/api/v1/tasks"]["post"]["requestBody"]["content"]["application/json"]
    assert body["example"]["parameters"] == {
        "fmax": 0.001,
        "max_steps": 1000,
        "optimizer": "BFGS",
        "with_d3": True,
    }
    batch = doc["paths"]["/api/v1/tasks/batch"]["post"]["requestBody"]["content"]
    assert len(batch["application/json"]["example"]["tasks"]) >= 2
