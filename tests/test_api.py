"""The API against a moto server: routes, auth, validation, hot swap, tampering, retraining."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from mlpoc.api.app import create_app
from mlpoc.api.settings import ApiSettings
from mlpoc.data import digits
from mlpoc.errors import SettingsError
from mlpoc.runtime.ledger import Ledger
from tests.support.aws_stack import Stack, create_stack
from tests.support.pipeline import prepare, train
from tests.support.workers import wait_for

KEY = "test-api-key-0123456789"
AUTH = {"X-API-Key": KEY}


@pytest.fixture
def trained(stack: Stack) -> Stack:
    """A fresh trained stack, for tests that change it."""
    return prepare(stack)


@pytest.fixture(scope="module")
def shared(moto_endpoint: str) -> Stack:
    """One trained stack for the tests that only read."""
    return prepare(create_stack(moto_endpoint))


def make_client(stack: Stack, **env: str) -> TestClient:
    settings = ApiSettings.from_env({**stack.env(), "MLPOC_API_KEY": KEY, **env})
    app = create_app(settings, stack.clients(), start_poller=False)
    return TestClient(app, raise_server_exceptions=False)


@pytest.fixture
def client(trained: Stack) -> Iterator[TestClient]:
    with make_client(trained) as test_client:
        yield test_client


@pytest.fixture
def reader(shared: Stack) -> Iterator[TestClient]:
    with make_client(shared) as test_client:
        yield test_client


def row(index: int) -> dict[str, float]:
    x, _ = digits.digits()
    return {name: float(v) for name, v in zip(digits.FEATURES, x[index], strict=True)}


PROTECTED = [
    ("GET", "/v1/jobs"), ("GET", "/v1/jobs/x"), ("POST", "/v1/jobs"), ("GET", "/v1/models"),
    ("GET", "/v1/models/digits"), ("POST", "/v1/models/digits/promote"),
    ("POST", "/v1/models/digits/rollback"), ("POST", "/v1/predict"),
    ("GET", "/v1/predictions/digits/digit-1500"), ("GET", "/v1/annotations/digits"),
    ("POST", "/v1/annotations/digits"), ("POST", "/v1/annotations/digits/retrain"),
]  # fmt: skip


@pytest.mark.parametrize(("method", "path"), PROTECTED)
@pytest.mark.parametrize("headers", [{}, {"X-API-Key": "wrong-key-0123456789"}, {"X-API-Key": ""}])
def test_every_route_but_health_needs_the_key(
    reader: TestClient, method: str, path: str, headers: dict[str, str]
) -> None:
    response = reader.request(method, path, headers=headers, json={})
    assert response.status_code == 401
    assert response.json() == {
        "error": {"code": "unauthorized", "message": "missing or wrong API key"}
    }


def test_health_needs_no_key_and_tells_nothing_but_the_models_are_behind_it(
    reader: TestClient,
) -> None:
    assert reader.get("/healthz").json() == {"status": "ok"}
    assert reader.get("/v1/health").status_code == 401
    assert reader.get("/v1/health", headers=AUTH).json() == {
        "status": "ok",
        "models": {},
        # the monitor's sample of realtime requests (mlpoc.quality.input_samples): 10 % by default
        "sampling": {"rate": 0.1, "held_rows": 0, "written_rows": 0, "dropped_rows": 0,
                     "failed_rows": 0},
    }  # fmt: skip
    reader.post("/v1/predict", headers=AUTH, json={"model": "digits", "rows": [row(0)]})
    assert reader.get("/v1/health", headers=AUTH).json()["models"] == {
        "digits": {"version": 1, "pinned": False}
    }
    assert reader.get("/healthz").json() == {"status": "ok"}


def test_on_aws_only_cloudfront_gets_through_and_the_docs_are_off(shared: Stack) -> None:
    # GIVEN the settings the stack gives the API: the origin secret's ARN and docs off
    secrets = {"arn:origin": "o" * 40}
    settings = ApiSettings.from_env(
        {**shared.env(), "MLPOC_API_KEY": KEY, "MLPOC_ORIGIN_SECRET_ARN": "arn:origin",
         "MLPOC_API_DOCS": "off"},
        read_secret=secrets.__getitem__,
    )  # fmt: skip
    origin = {"X-Origin-Verify": "o" * 40}
    with TestClient(create_app(settings, shared.clients(), start_poller=False)) as api:
        # THEN a request without CloudFront's header is refused, even with the key
        refused = api.get("/v1/jobs", headers=AUTH)
        assert refused.status_code == 403
        assert refused.json()["error"]["code"] == "forbidden"
        assert api.get("/v1/jobs", headers={**AUTH, "X-Origin-Verify": "o" * 39}).status_code == 403
        # AND with it the API answers as usual; /healthz needs neither (the container's check)
        assert api.get("/v1/jobs", headers={**AUTH, **origin}).status_code == 200
        assert api.get("/healthz").json() == {"status": "ok"}
        for path in ("/docs", "/redoc", "/openapi.json"):
            assert api.get(path, headers=origin).status_code == 404


def test_a_wrong_docs_switch_is_named(shared: Stack) -> None:
    with pytest.raises(SettingsError, match="MLPOC_API_DOCS must be on or off; got 'no'"):
        ApiSettings.from_env({**shared.env(), "MLPOC_API_KEY": KEY, "MLPOC_API_DOCS": "no"})


def test_jobs_are_validated_recorded_and_queued(client: TestClient, trained: Stack) -> None:
    dataset = f"s3://{trained.data_bucket}/datasets/digits/train.csv"
    accepted = client.post(
        "/v1/jobs",
        headers=AUTH,
        json={"job_id": "api-1", "type": "train", "model": "digits", "dataset": dataset},
    )
    assert (accepted.status_code, accepted.json()) == (202, {"job_id": "api-1", "status": "QUEUED"})
    assert client.get("/v1/jobs/api-1", headers=AUTH).json()["status"] == "QUEUED"
    assert "api-1" in [j["job_id"] for j in client.get("/v1/jobs", headers=AUTH).json()["jobs"]]
    (message,) = trained.clients().sqs.receive_message(QueueUrl=trained.train_queue_url)["Messages"]
    assert json.loads(message["Body"])["job_id"] == "api-1"
    again = client.post(
        "/v1/jobs",
        headers=AUTH,
        json={"job_id": "api-1", "type": "train", "model": "digits", "dataset": dataset},
    )
    assert again.status_code == 409 and again.json()["error"]["code"] == "conflict"
    wrong = client.post(
        "/v1/jobs",
        headers=AUTH,
        json={"type": "train", "model": "digits", "dataset": "s3://elsewhere/x.csv"},
    )
    assert wrong.status_code == 422
    assert wrong.json()["error"]["code"] == "invalid_job"
    assert "must be inside the data bucket" in wrong.json()["error"]["message"]
    garbage = client.post(
        "/v1/jobs", headers={**AUTH, "Content-Type": "application/json"}, content=b"{not json"
    )
    assert garbage.status_code == 422 and garbage.json()["error"]["code"] == "invalid_request"
    missing = client.get("/v1/jobs/nope", headers=AUTH)
    assert missing.status_code == 404 and missing.json() == {
        "error": {"code": "not_found", "message": "no job 'nope'"}
    }


def test_models_versions_promotion_and_rollback(client: TestClient, trained: Stack) -> None:
    train(trained, "train-2", promote="never")
    assert client.get("/v1/models", headers=AUTH).json() == {
        "models": [
            {
                "model": "digits",
                "promoted": 1,
                "promoted_metric": pytest.approx(0.96, abs=0.03),
                "versions": 2,
            }
        ]
    }
    detail = client.get("/v1/models/digits", headers=AUTH).json()
    assert [v["version"] for v in detail["versions"]] == [1, 2] and detail["promoted"] == 1
    promoted = client.post("/v1/models/digits/promote", headers=AUTH, json={"version": 2})
    assert promoted.json() == {"model": "digits", "promoted": 2, "history": [1]}
    assert client.post("/v1/models/digits/rollback", headers=AUTH).json() == {
        "model": "digits",
        "promoted": 1,
        "history": [],
    }
    assert client.post("/v1/models/digits/rollback", headers=AUTH).status_code == 409
    assert (
        client.post("/v1/models/digits/promote", headers=AUTH, json={"version": 9}).status_code
        == 404
    )
    assert (
        client.post("/v1/models/digits/promote", headers=AUTH, json={"version": 0}).status_code
        == 422
    )
    assert client.get("/v1/models/unknown", headers=AUTH).status_code == 404


def test_realtime_predictions_agree_with_stored_ones(reader: TestClient) -> None:
    response = reader.post(
        "/v1/predict",
        headers=AUTH,
        json={"model": "digits", "rows": [row(1500), row(1501)], "ids": ["a", "b"]},
    )
    assert response.status_code == 200
    body = response.json()
    assert body["version"] == 1 and [p["id"] for p in body["predictions"]] == ["a", "b"]
    stored = reader.get("/v1/predictions/digits/digit-1500", headers=AUTH).json()
    assert stored["label"] == body["predictions"][0]["label"]
    assert stored["confidence"] == pytest.approx(body["predictions"][0]["confidence"], abs=1e-5)
    assert "features" not in stored
    assert reader.get("/v1/predictions/digits/nope", headers=AUTH).status_code == 404


def test_predict_input_is_checked_against_the_recorded_features(reader: TestClient) -> None:
    bad = row(0)
    del bad["pixel_3"]
    bad["pixel_99"] = 1.0
    response = reader.post(
        "/v1/predict", headers=AUTH, json={"model": "digits", "rows": [row(0), bad]}
    )
    assert response.status_code == 422
    assert response.json()["error"] == {
        "code": "invalid_features",
        "message": "row 1: missing ['pixel_3'], unknown ['pixel_99']; "
        "model digits v1 takes 64 features",
    }
    dark = {**row(0), "pixel_0": "dark", "pixel_5": "12"}  # a number as text is a number
    wrong_type = reader.post(
        "/v1/predict", headers=AUTH, json={"model": "digits", "rows": [row(1), row(2), dark]}
    )
    assert wrong_type.status_code == 422
    error = wrong_type.json()["error"]
    assert error["message"] == "column(s) 'pixel_0' of model digits v1 take numbers"
    assert error["details"] == [
        {
            "where": "body.rows.2.pixel_0",
            "problem": "1 row(s) (2) are not finite numbers (null is a missing value)",
        }
    ]
    # a missing value is null: the model's graph imputes it, the request succeeds
    blank = reader.post(
        "/v1/predict", headers=AUTH, json={"model": "digits", "rows": [{**row(0), "pixel_9": None}]}
    )
    assert blank.status_code == 200 and blank.json()["predictions"][0]["label"]
    unknown = reader.post("/v1/predict", headers=AUTH, json={"model": "cats", "rows": [row(0)]})
    assert (
        unknown.status_code == 404
        and "has no promoted version" in unknown.json()["error"]["message"]
    )
    too_many = reader.post(
        "/v1/predict", headers=AUTH, json={"model": "digits", "rows": [row(0)] * 1001}
    )
    assert too_many.status_code == 422 and too_many.json()["error"]["code"] == "too_many_rows"


def test_a_new_promotion_is_swapped_in_during_traffic_without_a_failed_request(
    client: TestClient, trained: Stack
) -> None:
    server = client.app.state.services.server  # type: ignore[attr-defined]
    statuses: list[int] = []
    versions: set[int] = set()
    stop = threading.Event()

    def traffic() -> None:
        while not stop.is_set():
            response = client.post(
                "/v1/predict", headers=AUTH, json={"model": "digits", "rows": [row(7)]}
            )
            statuses.append(response.status_code)
            if response.status_code == 200:
                versions.add(response.json()["version"])

    threads = [threading.Thread(target=traffic) for _ in range(4)]
    for thread in threads:
        thread.start()
    try:
        train(trained, "train-2", promote="always", estimator="random_forest", n_estimators=20)
        server.refresh()  # what the poller does every MLPOC_MODEL_POLL_SECONDS
        wait_for(lambda: 2 in versions, timeout=30, interval=0.05, what="a request served by v2")
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    assert set(statuses) == {200} and len(statuses) > 10
    assert versions == {1, 2}


def test_a_tampered_new_version_is_refused_and_the_old_one_keeps_serving(
    client: TestClient, trained: Stack
) -> None:
    server = client.app.state.services.server  # type: ignore[attr-defined]
    assert (
        client.post("/v1/predict", headers=AUTH, json={"model": "digits", "rows": [row(0)]}).json()[
            "version"
        ]
        == 1
    )
    train(trained, "train-2", promote="always")
    s3 = trained.clients().s3
    s3.put_object(Bucket=trained.model_bucket, Key="models/digits/2/model.onnx", Body=b"tampered")
    server.refresh()
    assert (
        client.post("/v1/predict", headers=AUTH, json={"model": "digits", "rows": [row(0)]}).json()[
            "version"
        ]
        == 1
    )
    health = client.get("/v1/health", headers=AUTH).json()["models"]["digits"]
    assert health["version"] == 1 and "modified after training" in health["refused"]


def test_a_pinned_deployment_never_swaps(trained: Stack) -> None:
    train(trained, "train-2", promote="always")
    with make_client(trained, MLPOC_PINNED_MODELS="digits:1") as pinned:
        assert (
            pinned.post(
                "/v1/predict", headers=AUTH, json={"model": "digits", "rows": [row(0)]}
            ).json()["version"]
            == 1
        )
        pinned.app.state.services.server.refresh()  # type: ignore[attr-defined]
        assert pinned.get("/v1/health", headers=AUTH).json()["models"] == {
            "digits": {"version": 1, "pinned": True}
        }


def test_corrections_become_a_dataset_version_and_a_train_job(
    client: TestClient, trained: Stack
) -> None:
    # GIVEN the review queue, lowest confidence first
    queue = client.get("/v1/annotations/digits", headers=AUTH).json()["items"]
    assert len(queue) >= 3
    assert [i["confidence"] for i in queue] == sorted(i["confidence"] for i in queue)
    assert len(queue[0]["features"]) == 64
    # WHEN a person corrects three labels
    truth = digits.digits()[1]
    for item in queue[:3]:
        label = str(truth[int(item["item_id"].split("-")[1])])
        response = client.post(
            "/v1/annotations/digits",
            headers=AUTH,
            json={"item_id": item["item_id"], "label": label},
        )
        assert response.status_code == 201
    bad = client.post(
        "/v1/annotations/digits",
        headers=AUTH,
        json={"item_id": queue[3]["item_id"], "label": "cat"},
    )
    assert bad.status_code == 422 and bad.json()["error"]["code"] == "unknown_label"
    # they leave the queue
    remaining = {
        i["item_id"]
        for i in client.get("/v1/annotations/digits", headers=AUTH, params={"limit": 100}).json()[
            "items"
        ]
    }
    assert not remaining & {i["item_id"] for i in queue[:3]}
    # AND asks for a retrain
    retrain = client.post("/v1/annotations/digits/retrain", headers=AUTH)
    assert retrain.status_code == 202
    body = retrain.json()
    assert body["corrections"] == 3 and body["base_version"] == 1
    # THEN a train job over the model's folder is queued (the train worker builds the dataset
    # version: tests/test_builds.py); the API did no CSV work
    assert body["dataset"] == f"s3://{trained.data_bucket}/datasets/digits/"
    (message,) = trained.clients().sqs.receive_message(QueueUrl=trained.train_queue_url)["Messages"]
    job = json.loads(message["Body"])
    assert (job["job_id"], job["dataset"], job["type"], job["params"]) == (
        body["job_id"],
        body["dataset"],
        "train",
        {"origin": "retrain"},
    )
    record = Ledger(trained.clients().dynamodb, trained.jobs_table).get(body["job_id"])
    assert record is not None and record["status"] == "QUEUED"


def test_bodies_over_the_limit_are_refused(shared: Stack) -> None:
    with make_client(shared, MLPOC_MAX_BODY_BYTES="1000") as small:
        response = small.post(
            "/v1/predict", headers=AUTH, json={"model": "digits", "rows": [row(0)] * 10}
        )
    assert response.status_code == 413 and response.json()["error"]["code"] == "payload_too_large"


def test_server_errors_have_the_same_shape_and_no_trace(shared: Stack) -> None:
    with make_client(shared, MLPOC_JOBS_TABLE="no-such-table") as broken:
        response = broken.get("/v1/jobs", headers=AUTH)
    assert response.status_code == 500
    assert response.json() == {
        "error": {"code": "internal", "message": "internal error; see the server log"}
    }


def test_cors_is_closed(reader: TestClient) -> None:
    response = reader.options(
        "/v1/jobs",
        headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "GET"},
    )
    assert "access-control-allow-origin" not in response.headers


def test_the_api_key_must_be_configured(shared: Stack) -> None:
    with pytest.raises(SettingsError, match="no usable API key"):
        ApiSettings.from_env({**shared.env(), "MLPOC_API_KEY": "short"})
    settings = ApiSettings.from_env(
        {**shared.env(), "MLPOC_API_KEY_SECRET_ARN": "arn:secret"},
        read_secret=lambda arn: KEY + "\n",
    )
    assert settings.api_key == KEY


def test_the_beanstalk_bundle_runs_this_api_with_every_setting_it_needs() -> None:
    import yaml

    from tests.support.cdk_app import ROOT

    compose = yaml.safe_load((ROOT / "containers" / "docker-compose.yml").read_text())
    assert set(compose["services"]) == {"proxy", "api"}  # nginx in front of the API
    api, proxy = compose["services"]["api"], compose["services"]["proxy"]
    assert api["image"] == "${MLPOC_IMAGE}"
    # the official nginx image, pinned by digest (MLPOC_PROXY_IMAGE: a stand-in, in tests only)
    assert re.fullmatch(
        r"\$\{MLPOC_PROXY_IMAGE:-public\.ecr\.aws/docker/library/nginx:[\w.-]+@sha256:[0-9a-f]{64}\}",
        proxy["image"],
    )
    assert api["command"] == ["python", "-m", "mlpoc.api"]
    environment = api["environment"]
    # every environment property Beanstalk writes to .env reaches the API (the stack's are
    # pinned by test_the_api_environment_names_every_resource_and_secret); botocore's region
    assert api["env_file"] == ".env"
    assert environment["AWS_DEFAULT_REGION"] == "${AWS_REGION}"
    assert "MLPOC_API_KEY" not in environment  # the key itself never travels in the environment
    assert api["init"] is True  # SIGTERM forwarded to uvicorn, even while it starts
    # the host's network (IMDSv2 in one hop), the API on loopback: only the proxy reaches it
    assert api["network_mode"] == proxy["network_mode"] == "host"
    assert "ports" not in api
    assert environment["MLPOC_API_HOST"] == "127.0.0.1"
    assert (
        proxy["environment"]["MLPOC_API_UPSTREAM"] == f"127.0.0.1:{environment['MLPOC_API_PORT']}"
    )
    assert proxy["environment"]["MLPOC_PROXY_PORT"] == "80"
    assert proxy["depends_on"] == {"api": {"condition": "service_healthy"}}
    assert (
        "./proxy/default.conf.template:/etc/nginx/templates/default.conf.template:ro"
        in (proxy["volumes"])
    )
    # every file the compose file mounts from the bundle is in the bundle CDK uploads
    from stacks.constructs.api import BUNDLE_FILES

    mounted = {v.split(":")[0].removeprefix("./") for v in proxy["volumes"] if v.startswith("./")}
    assert mounted <= set(BUNDLE_FILES.values())
    assert all((ROOT / source).is_file() for source in BUNDLE_FILES)
