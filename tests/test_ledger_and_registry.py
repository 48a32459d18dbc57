"""Ledger leases and registry promotion, against moto's DynamoDB with a controllable clock."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws

from mlpoc.aws import table_keys
from mlpoc.errors import LeaseLost, PointerMoved, RegistryError
from mlpoc.models.registry import ModelVersion, Registry
from mlpoc.runtime.contract import parse_job
from mlpoc.runtime.job_records import Status
from mlpoc.runtime.ledger import ClaimOutcome, Ledger


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def dynamodb() -> Iterator[Any]:
    with mock_aws():
        client = boto3.client("dynamodb")
        client.create_table(**table_keys.JOBS.create_table_kwargs("jobs"))
        client.create_table(**table_keys.MODELS.create_table_kwargs("models"))
        yield client


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def ledger(dynamodb: Any, clock: Clock) -> Ledger:
    return Ledger(dynamodb, "jobs", clock=clock)


JOB = parse_job(
    json.dumps(
        {
            "schema": 1,
            "job_id": "j1",
            "type": "train",
            "model": "m",
            "dataset": "s3://data-bucket/datasets/d.csv",
        }
    ),
    data_bucket="data-bucket",
)


def test_a_job_is_claimed_once_until_its_lease_expires(ledger: Ledger, clock: Clock) -> None:
    assert ledger.create(JOB, source="api") is True
    assert ledger.create(JOB, source="api") is False  # the id is the idempotency key
    first = ledger.claim(JOB, worker_id="a", lease_seconds=30, body="{}")
    assert first.outcome is ClaimOutcome.CLAIMED and first.attempts == 1
    assert first.record["source"] == "api"
    busy = ledger.claim(JOB, worker_id="b", lease_seconds=30, body="{}")
    assert busy.outcome is ClaimOutcome.BUSY and busy.record["lease_owner"] == "a"
    # the owner's heartbeat keeps it
    clock.now += 20
    assert ledger.heartbeat("j1", worker_id="a", lease_seconds=30)
    clock.now += 20
    assert (
        ledger.claim(JOB, worker_id="b", lease_seconds=30, body="{}").outcome is ClaimOutcome.BUSY
    )
    # a silent owner loses it
    clock.now += 31
    taken = ledger.claim(JOB, worker_id="b", lease_seconds=30, body="{}")
    assert taken.outcome is ClaimOutcome.CLAIMED and taken.attempts == 2
    # and the old owner can no longer heartbeat, note, commit or fail
    assert not ledger.heartbeat("j1", worker_id="a", lease_seconds=30)
    with pytest.raises(LeaseLost):
        ledger.note("j1", worker_id="a", model_version=3)
    with pytest.raises(LeaseLost):
        ledger.commit("j1", worker_id="a", result={"x": 1})
    assert not ledger.fail("j1", worker_id="a", reason="late")
    ledger.commit("j1", worker_id="b", result={"x": 1})
    record = ledger.get("j1")
    assert record is not None
    assert record["status"] == Status.SUCCEEDED and record["result"] == {"x": 1}
    assert "lease_owner" not in record


def test_a_finished_job_is_never_claimed_again(ledger: Ledger, clock: Clock) -> None:
    ledger.claim(JOB, worker_id="a", lease_seconds=30, body="{}")
    ledger.commit("j1", worker_id="a", result={})
    clock.now += 10_000
    again = ledger.claim(JOB, worker_id="b", lease_seconds=30, body="{}")
    assert again.outcome is ClaimOutcome.DONE and again.record["status"] == "SUCCEEDED"
    # nor overwritten by a later malformed message with the same id
    assert ledger.reject("j1", reason="bad", body="x") is False


def test_unknown_jobs_are_recorded_on_claim_from_the_message(ledger: Ledger) -> None:
    claim = ledger.claim(JOB, worker_id="a", lease_seconds=30, body=JOB.to_json())
    assert claim.record["type"] == "train" and claim.record["source"] == "queue"
    assert json.loads(claim.record["message"])["job_id"] == "j1"


def test_released_jobs_are_retryable_and_claimable(ledger: Ledger) -> None:
    ledger.claim(JOB, worker_id="a", lease_seconds=30, body="{}")
    assert ledger.release("j1", worker_id="a", reason="SIGTERM")
    assert ledger.get("j1")["status"] == "RETRYABLE"  # type: ignore[index]
    assert ledger.claim(JOB, worker_id="b", lease_seconds=30, body="{}").attempts == 2


def _version(number: int, accuracy: float) -> ModelVersion:
    return ModelVersion(
        model="m",
        version=number,
        sha256="0" * 64,
        artifact_key=f"models/m/{number}/model.onnx",
        metadata_key=f"models/m/{number}/metadata.json",
        features=["a"],
        classes=["0", "1"],
        metrics={"accuracy": accuracy},
        job_id=f"job-{number}",
        dataset="s3://d/x.csv",
        plugin="sklearn",
        created_at=1.0,
        extra={"train_rows": 10},
    )


def test_promotion_rollback_and_compare_and_set(dynamodb: Any) -> None:
    registry = Registry(dynamodb, "models")
    with pytest.raises(RegistryError, match="has no promoted version"):
        registry.resolve("m", "current")
    assert [registry.allocate_version("m") for _ in range(3)] == [1, 2, 3]
    for number, accuracy in ((1, 0.8), (2, 0.9), (3, 0.85)):
        dynamodb.put_item(**registry.put_version_request(_version(number, accuracy)))
    assert registry.versions("m")[1].extra == {"train_rows": 10}

    registry.promote("m", 1)
    stale = registry.pointer("m")
    registry.promote("m", 2)
    assert registry.resolve("m", "current").version == 2
    # a writer that read the pointer before the last promotion loses
    with pytest.raises(ClientError, match="ConditionalCheckFailed"):
        dynamodb.update_item(**registry.promote_request("m", 3, 0.85, expected=stale))
    pointer = registry.rollback("m")
    assert (pointer.promoted, pointer.history) == (1, [])
    with pytest.raises(RegistryError, match="no earlier promoted version"):
        registry.rollback("m")
    with pytest.raises(RegistryError, match="has no version 9"):
        registry.promote("m", 9)


def test_a_version_number_is_never_reused_by_another_job(dynamodb: Any) -> None:
    registry = Registry(dynamodb, "models")
    dynamodb.put_item(**registry.put_version_request(_version(1, 0.8)))
    dynamodb.put_item(**registry.put_version_request(_version(1, 0.8)))  # same job: fine
    other = ModelVersion(**{**_version(1, 0.8).__dict__, "job_id": "intruder"})
    with pytest.raises(ClientError, match="ConditionalCheckFailed"):
        dynamodb.put_item(**registry.put_version_request(other))


def test_pointer_moved_is_raised_for_operator_promotions(dynamodb: Any) -> None:
    registry = Registry(dynamodb, "models")
    dynamodb.put_item(**registry.put_version_request(_version(1, 0.8)))
    request = registry.promote_request("m", 1, 0.8, expected=None)
    dynamodb.update_item(**request)
    with pytest.raises(PointerMoved, match="changed meanwhile"):
        registry._apply(request)
