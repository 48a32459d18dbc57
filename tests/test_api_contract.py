"""The API's OpenAPI contract: every status a route answers is one its entry lists, with the one
error shape; the key is a security scheme; a 405 says what is allowed; a test can swap any
dependency."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from mlpoc.api.app import create_app
from mlpoc.api.deps import get_registry
from mlpoc.api.settings import ApiSettings
from mlpoc.errors import PointerMoved
from tests.support.aws_stack import Stack, create_stack
from tests.support.pipeline import prepare

KEY = "contract-api-key-0123456789"
AUTH = {"X-API-Key": KEY}
ERROR_STATUSES = {"401", "404", "405", "409", "413", "422", "500"}


@pytest.fixture(scope="module")
def stack(moto_endpoint: str) -> Stack:
    return prepare(create_stack(moto_endpoint))


@pytest.fixture(scope="module")
def app(stack: Stack) -> FastAPI:
    env = {**stack.env(), "MLPOC_API_KEY": KEY, "MLPOC_MAX_BODY_BYTES": "4096"}
    return create_app(ApiSettings.from_env(env), stack.clients(), start_poller=False)


@pytest.fixture(scope="module")
def api(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client


@pytest.fixture(scope="module")
def spec(api: TestClient) -> dict[str, Any]:
    document: dict[str, Any] = api.get("/openapi.json").json()
    return document


def template(spec: dict[str, Any], path: str) -> str | None:
    """The contract's path template (``/v1/jobs/{job_id}``) a request's path is an instance of."""
    for candidate in spec["paths"]:
        if re.fullmatch(re.sub(r"\{[^}]+\}", "[^/]+", candidate), path):
            return str(candidate)
    return None


def probes(stack: Stack) -> list[tuple[str, str, dict[str, Any]]]:
    """Requests that reach every documented answer: the happy path, no key, unknown ids, bad
    bodies, a body over the limit, conflicts."""
    dataset = f"s3://{stack.data_bucket}/datasets/digits/train.csv"
    job = {"job_id": "contract-1", "type": "train", "model": "digits", "dataset": dataset}
    # the contract's version is "current" or a number: both are accepted as they are
    predict_v1 = {**job, "job_id": "contract-p1", "type": "predict", "version": 1}
    big = {
        "content": b"{" + b" " * 5000 + b"}",
        "headers": {**AUTH, "content-type": "application/json"},
    }
    bad = {"json": {"nonsense": True}, "headers": AUTH}
    found = [
        ("GET", "/healthz", {}),
        ("GET", "/v1/health", {"headers": AUTH}),
        ("POST", "/v1/jobs", {"json": job, "headers": AUTH}),
        ("POST", "/v1/jobs", {"json": job, "headers": AUTH}),  # 409: the id exists
        (
            "POST",
            "/v1/jobs",
            {"json": {**job, "job_id": "c2", "dataset": "s3://x/y.csv"}, "headers": AUTH},
        ),
        ("POST", "/v1/jobs", {"content": b"not json", "headers": AUTH}),
        ("POST", "/v1/jobs", {"content": b"\xff{", "headers": AUTH}),  # not even UTF-8
        ("POST", "/v1/jobs", {"json": predict_v1, "headers": AUTH}),
        ("GET", "/v1/jobs", {"headers": AUTH, "params": {"limit": "many"}}),
        ("GET", "/v1/jobs/contract-1", {"headers": AUTH}),
        ("GET", "/v1/jobs/nope", {"headers": AUTH}),
        ("GET", "/v1/models", {"headers": AUTH}),
        ("GET", "/v1/models/digits", {"headers": AUTH}),
        ("GET", "/v1/models/nope", {"headers": AUTH}),
        ("POST", "/v1/models/digits/promote", {"json": {"version": 1}, "headers": AUTH}),
        ("POST", "/v1/models/digits/promote", {"json": {"version": 99}, "headers": AUTH}),
        ("POST", "/v1/models/digits/rollback", {"headers": AUTH}),  # 409: nothing before v1
        ("POST", "/v1/predict", {"json": {"model": "nope", "rows": [{"a": 1.0}]}, "headers": AUTH}),
        (
            "POST",
            "/v1/predict",
            {"json": {"model": "digits", "rows": [{"a": 1.0}]}, "headers": AUTH},
        ),
        ("POST", "/v1/predict", {"json": {"model": "digits", "keys": ["a"]}, "headers": AUTH}),
        ("GET", "/v1/features", {"headers": AUTH}),
        ("GET", "/v1/features/nope", {"headers": AUTH}),  # 404
        ("POST", "/v1/features/nope/promote", {"json": {"version": 1}, "headers": AUTH}),
        ("POST", "/v1/features/nope/rollback", {"headers": AUTH}),  # 409: nothing promoted
        ("GET", "/v1/predictions/digits/nope", {"headers": AUTH}),
        ("GET", "/v1/models/digits/quality", {"headers": AUTH}),
        ("GET", "/v1/models/nope/quality", {"headers": AUTH}),  # 404
        ("GET", "/v1/models/digits/charts/metric.svg", {"headers": AUTH}),
        ("GET", "/v1/models/digits/charts/confusion.svg", {"headers": AUTH}),
        (
            "GET",
            "/v1/models/digits/charts/confusion.svg",
            {"headers": AUTH, "params": {"version": "0"}},
        ),  # 422
        ("GET", "/v1/models/digits/charts/compare.svg", {"headers": AUTH, "params": {"b": "9"}}),
        ("GET", "/v1/models/digits/charts/realized.svg", {"headers": AUTH}),
        (
            "GET",
            "/v1/models/digits/charts/drift.svg",
            {"headers": AUTH, "params": {"feature": "pixel_1"}},
        ),  # 404
        ("GET", "/v1/models/digits/charts/drift.svg", {"headers": AUTH}),  # 422: no feature
        ("GET", "/v1/annotations/digits", {"headers": AUTH}),
        (
            "POST",
            "/v1/annotations/digits",
            {"json": {"item_id": "nope", "label": "1"}, "headers": AUTH},
        ),
        ("POST", "/v1/annotations/digits/retrain", {"headers": AUTH}),  # 409: no corrections
        ("POST", "/v1/annotations/nope/retrain", {"headers": AUTH}),  # 409: no model
    ]
    for method, path, _ in list(found):
        if path != "/healthz":
            found.append((method, path, {}))  # 401: no key
            if method == "POST":
                found.append((method, path, big))  # 413
                found.append((method, path, bad))  # 422 (or the route takes no body)
    return found


def test_every_status_a_route_answers_is_listed_in_its_openapi_entry(
    app: FastAPI, api: TestClient, spec: dict[str, Any], stack: Stack
) -> None:
    seen: dict[tuple[str, str], set[str]] = {}
    for method, path, request in probes(stack):
        response = api.request(method, path, **request)
        route = template(spec, path)
        assert route is not None, (method, path)
        status = str(response.status_code)
        seen.setdefault((method, route), set()).add(status)
        documented = spec["paths"][route][method.lower()]["responses"]
        assert status in documented, (method, route, status, response.text[:200])
        if status in ERROR_STATUSES:
            assert set(response.json()) == {"error"}, response.text
            content = documented[status]["content"]["application/json"]["schema"]
            assert content == {"$ref": "#/components/schemas/ErrorBody"}
    # no 422 documented with FastAPI's own shape: ours is the one error shape
    for operations in spec["paths"].values():
        for operation in operations.values():
            for status, answer in operation["responses"].items():
                if status.startswith(("4", "5")):
                    schema = answer["content"]["application/json"]["schema"]
                    assert schema == {"$ref": "#/components/schemas/ErrorBody"}, operation
    # every operation in the contract was probed, and 401/404/409/413/422 were all reached
    operations = {(m.upper(), p) for p, ops in spec["paths"].items() for m in ops}
    assert operations == set(seen)
    assert {"401", "404", "409", "413", "422"} <= set().union(*seen.values())


def test_the_key_is_a_security_scheme_on_every_route_but_healthz(spec: dict[str, Any]) -> None:
    schemes = spec["components"]["securitySchemes"]
    assert schemes == {
        "APIKeyHeader": {
            "type": "apiKey",
            "in": "header",
            "name": "X-API-Key",
            "description": schemes["APIKeyHeader"]["description"],
        }
    }
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            expected = [] if path == "/healthz" else [{"APIKeyHeader": []}]
            assert operation.get("security", []) == expected, (method, path)


def test_a_predict_job_may_name_its_version_as_a_number(api: TestClient, stack: Stack) -> None:
    dataset = f"s3://{stack.data_bucket}/datasets/digits/score.csv"
    job = {"type": "predict", "model": "digits", "dataset": dataset, "version": 1}
    accepted = api.post("/v1/jobs", json=job, headers=AUTH)
    assert accepted.status_code == 202, accepted.text


def test_submitting_a_job_has_a_body_model(spec: dict[str, Any]) -> None:
    body = spec["paths"]["/v1/jobs"]["post"]["requestBody"]["content"]["application/json"]
    assert body["schema"] == {"$ref": "#/components/schemas/JobRequest"}
    fields = spec["components"]["schemas"]["JobRequest"]["properties"]
    assert {
        "schema", "job_id", "type", "model", "dataset", "version", "params", "resources"
    } == set(fields)  # fmt: skip


BAD_BODIES = [b"\xff", b"{bad", b"[]", b"{" + b" " * 5000 + b"}"]


def test_without_the_key_every_v1_call_is_401_whatever_its_body_or_method(
    api: TestClient, spec: dict[str, Any]
) -> None:
    # what an outside fuzzer sends: every operation, every method, bodies that are not JSON,
    # not UTF-8, or over the limit, with no key or a wrong one: the answer is 401 before any
    # parsing (the key is checked first), in the one error shape
    for path in spec["paths"]:
        if path == "/healthz":
            continue
        concrete = re.sub(r"\{[^}]+\}", "digits", path)
        for method in ("GET", "POST", "PUT", "DELETE"):
            for body in BAD_BODIES:
                for headers in ({}, {"X-API-Key": "wrong"}):
                    response = api.request(method, concrete, content=body, headers=headers)
                    assert response.status_code == 401, (method, concrete, body[:5], response.text)
                    assert response.json()["error"]["code"] == "unauthorized"
    assert api.get("/v1/no-such-route").status_code == 401  # no route is revealed either


def test_with_the_key_a_body_that_is_not_json_is_a_documented_422(api: TestClient) -> None:
    for body in (b"\xff", b"{bad"):
        response = api.post("/v1/jobs", content=body, headers=AUTH)
        assert response.status_code == 422, response.text
        assert response.json()["error"]["code"] == "invalid_request"
    # the contract's closed sets are enums: a wrong type is named by the body's validation
    job = {"type": "retrain", "model": "digits", "dataset": "s3://x/datasets/a.csv"}
    wrong = api.post("/v1/jobs", json=job, headers=AUTH)
    assert wrong.status_code == 422
    assert wrong.json()["error"]["details"][0]["where"] == "body.type"


def test_the_contracts_closed_sets_are_enums(spec: dict[str, Any]) -> None:
    fields = spec["components"]["schemas"]["JobRequest"]["properties"]
    assert fields["type"]["enum"] == ["train", "predict", "features"]
    assert fields["resources"]["enum"] == ["cpu", "gpu"]


def test_a_wrong_method_is_405_with_every_allowed_method(api: TestClient) -> None:
    response = api.delete("/v1/jobs", headers=AUTH)
    assert response.status_code == 405
    assert response.headers["allow"] == "GET, POST"  # two routes share the path
    assert response.json()["error"]["code"] == "method_not_allowed"
    assert api.put("/v1/models/digits", headers=AUTH).headers["allow"] == "GET"


def test_a_dependency_can_be_swapped_for_a_test(app: FastAPI, api: TestClient) -> None:
    class MovedUnderneath:
        def promote(self, model: str, version: int) -> None:
            raise PointerMoved(f"{model}: another writer promoted first")

    app.dependency_overrides[get_registry] = MovedUnderneath
    try:
        response = api.post("/v1/models/digits/promote", json={"version": 1}, headers=AUTH)
    finally:
        app.dependency_overrides.clear()
    assert response.status_code == 409
    assert json.loads(response.text)["error"] == {
        "code": "conflict",
        "message": "digits: another writer promoted first",
    }
