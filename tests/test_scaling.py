"""The scale-from-zero nudge against moto's ECS: every submit path raises a worker service at
zero tasks to one, leaves a running one alone, and never fails a submit when it cannot."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import boto3
import pytest
from fastapi.testclient import TestClient
from moto import mock_aws

from mlpoc.api.app import create_app
from mlpoc.api.settings import ApiSettings
from mlpoc.cli import ops
from mlpoc.cli.target import Deployment
from mlpoc.data import digits
from mlpoc.runtime import submission
from mlpoc.runtime.contract import Job, S3Uri
from mlpoc.runtime.ledger import Ledger
from mlpoc.runtime.scaling import CLUSTER_OUTPUT, SERVICE_OUTPUTS, WorkerServices, nudger
from tests.support.aws_stack import REGION, Stack, create_stack
from tests.support.lambda_context import context
from tests.test_lambdas import load, upload_event

KEY = "k" * 32


@dataclass
class Cluster:
    """A moto ECS cluster with the two worker services at zero tasks, as the stack deploys them."""

    ecs: Any
    services: WorkerServices
    update_calls: list[dict[str, Any]]

    def desired(self, queue: str) -> int:
        name = self.services.services[queue]
        described = self.ecs.describe_services(cluster=self.services.cluster, services=[name])
        return int(described["services"][0]["desiredCount"])

    def env(self) -> dict[str, str]:
        return {
            "MLPOC_WORKER_CLUSTER": self.services.cluster,
            "MLPOC_TRAIN_SERVICE": self.services.services["train"],
            "MLPOC_PREDICT_SERVICE": self.services.services["predict"],
        }


@pytest.fixture
def stack() -> Iterator[Stack]:
    with mock_aws():
        yield create_stack(None)


@pytest.fixture
def cluster(stack: Stack) -> Cluster:
    ecs = boto3.client("ecs", region_name=REGION)
    ecs.create_cluster(clusterName="workers")
    ecs.register_task_definition(
        family="worker", containerDefinitions=[{"name": "worker", "image": "mlpoc", "memory": 512}]
    )
    names = {}
    for queue in ("train", "predict"):
        names[queue] = f"{queue}-service"
        ecs.create_service(
            cluster="workers", serviceName=names[queue], taskDefinition="worker", desiredCount=0
        )
    calls: list[dict[str, Any]] = []
    ecs.meta.events.register(
        "provide-client-params.ecs.UpdateService", lambda params, **_: calls.append(params)
    )
    return Cluster(ecs, WorkerServices("workers", names), calls)


def job(stack: Stack, job_id: str, job_type: str = "train") -> Job:
    key = f"datasets/digits/{job_id}.csv"
    return Job(job_id, job_type, "digits", S3Uri(stack.data_bucket, key))  # type: ignore[arg-type]


def test_a_submit_raises_the_services_at_zero_to_one_and_leaves_running_ones(
    stack: Stack, cluster: Cluster
) -> None:
    clients = stack.clients()
    ledger = Ledger(clients.dynamodb, stack.jobs_table)
    nudge = nudger(cluster.services, cluster.ecs)
    # GIVEN both services at zero, WHEN a train job is submitted
    submission.enqueue(ledger, clients.sqs, stack, job(stack, "t1"), source="test", nudge=nudge)
    # THEN the train service wants one task at once, and the predict service still none
    assert (cluster.desired("train"), cluster.desired("predict")) == (1, 0)
    assert len(cluster.update_calls) == 1
    # AND a second submit while it runs changes nothing (one DescribeServices, no update)
    submission.enqueue(ledger, clients.sqs, stack, job(stack, "t2"), source="test", nudge=nudge)
    assert cluster.desired("train") == 1
    assert len(cluster.update_calls) == 1
    # AND a predict job raises its own service
    submission.enqueue(
        ledger, clients.sqs, stack, job(stack, "p1", "predict"), source="test", nudge=nudge
    )
    assert cluster.desired("predict") == 1


def test_a_failed_nudge_never_fails_the_submit(stack: Stack, cluster: Cluster) -> None:
    clients = stack.clients()
    ledger = Ledger(clients.dynamodb, stack.jobs_table)
    gone = WorkerServices("no-such-cluster", {"train": "train-service"})
    submission.enqueue(
        ledger, clients.sqs, stack, job(stack, "t1"), source="test", nudge=nudger(gone, cluster.ecs)
    )
    record = ledger.get("t1")
    assert record is not None
    assert record["status"] == "QUEUED"
    assert cluster.desired("train") == 0


def test_the_names_come_from_the_environment_and_are_absent_locally() -> None:
    assert WorkerServices.from_env({}) is None
    assert WorkerServices.from_env({"MLPOC_WORKER_CLUSTER": "c"}) is None
    services = WorkerServices.from_env(
        {"MLPOC_WORKER_CLUSTER": "c", "MLPOC_TRAIN_SERVICE": "t", "MLPOC_PREDICT_SERVICE": "p"}
    )
    assert services == WorkerServices("c", {"train": "t", "predict": "p"})


def test_the_api_nudges_on_post_jobs(stack: Stack, cluster: Cluster) -> None:
    settings = ApiSettings.from_env({**stack.env(""), "MLPOC_API_KEY": KEY, **cluster.env()})
    app = create_app(settings, stack.clients(), start_poller=False, ecs=cluster.ecs)
    dataset = f"s3://{stack.data_bucket}/datasets/digits/a.csv"
    with TestClient(app) as api:
        answer = api.post(
            "/v1/jobs",
            headers={"X-API-Key": KEY},
            json={"type": "predict", "model": "digits", "dataset": dataset},
        )
    assert answer.status_code == 202, answer.text
    assert (cluster.desired("train"), cluster.desired("predict")) == (0, 1)


def test_the_upload_function_nudges(
    stack: Stack, cluster: Cluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in {**stack.env(""), **cluster.env()}.items():
        if name.startswith("MLPOC_"):
            monkeypatch.setenv(name, value)
    uploaded = load("dataset_uploaded")
    key = "datasets/digits/train.csv"
    body = digits.training_csv(slice(0, 50)).encode()
    stack.clients().s3.put_object(Bucket=stack.data_bucket, Key=key, Body=body)
    answer = uploaded.handler(upload_event(stack, key), context())
    assert answer == {"batchItemFailures": []}
    assert cluster.desired("train") == 1


def test_the_cli_nudges_on_aws_only(stack: Stack) -> None:
    outputs = {CLUSTER_OUTPUT: "c", **{o: f"{q}-svc" for q, o in SERVICE_OUTPUTS.items()}}
    session = boto3.session.Session(region_name=REGION)
    aws = Deployment("aws", REGION, outputs, session, endpoint=None, api_url=None)
    assert ops.worker_services(aws) == WorkerServices(
        "c", {"train": "train-svc", "predict": "predict-svc", "gpu": "gpu-svc"}
    )
    local = Deployment(
        "local", REGION, outputs, session, endpoint="http://127.0.0.1:1", api_url=None
    )
    assert ops.worker_services(local) is None
