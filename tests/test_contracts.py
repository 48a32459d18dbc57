"""The job message contract: what is accepted, and the reason given for what is not."""

from __future__ import annotations

import json
from typing import Any

import pytest

from mlpoc.errors import JobRejected
from mlpoc.runtime.contract import MAX_MESSAGE_BYTES, Job, S3Uri, parse_job

BUCKET = "mlpoc-data-abc"


def body(**changes: Any) -> str:
    message = {
        "schema": 1,
        "job_id": "train-1",
        "type": "train",
        "model": "digits",
        "dataset": f"s3://{BUCKET}/datasets/digits.csv",
        "version": "current",
        "params": {"C": 0.5},
    }
    message.update(changes)
    return json.dumps({k: v for k, v in message.items() if v is not ...})


def test_a_valid_message_round_trips() -> None:
    job = parse_job(body(), data_bucket=BUCKET)
    assert job == Job(
        job_id="train-1",
        type="train",
        model="digits",
        dataset=S3Uri(BUCKET, "datasets/digits.csv"),
        version="current",
        params={"C": 0.5},
    )
    assert parse_job(job.to_json(), data_bucket=BUCKET) == job


def test_version_and_params_have_defaults_and_integer_versions_are_accepted() -> None:
    job = parse_job(body(version=..., params=...), data_bucket=BUCKET)
    assert (job.version, job.params) == ("current", {})
    assert parse_job(body(version=3), data_bucket=BUCKET).version == "3"


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("not json", "not JSON"),
        ("[1, 2]", "must be a JSON object, not list"),
        (body(job_id=...), "job_id must be"),
        (body(job_id="has space"), "job_id must be"),
        (body(job_id="x" * 129), "job_id must be"),
    ],
)
def test_rejections_without_a_usable_job_id(raw: str, reason: str) -> None:
    with pytest.raises(JobRejected, match=reason) as caught:
        parse_job(raw, data_bucket=BUCKET)
    assert caught.value.job_id is None


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"schema": 2}, r"schema 2 is not supported; this worker reads schema \[1\]"),
        ({"schema": "1"}, "schema must be an integer"),
        ({"schema": True}, "schema must be an integer"),
        ({"extra": 1}, r"unknown field\(s\) \['extra'\]"),
        ({"type": "serve"}, r"type must be one of \['train', 'predict', 'monitor', 'features'\]"),
        ({"model": "Digits"}, "model must be 1-64 characters of lowercase"),
        ({"dataset": "datasets/x.csv"}, "is not an s3://bucket/key URI"),
        ({"dataset": 5}, "dataset must be an s3:// URI string"),
        ({"dataset": "s3://other-bucket/x.csv"}, "must be inside the data bucket"),
        ({"dataset": f"s3://{BUCKET}/datasets/x.parquet"}, "must be a .csv object"),
        (
            {"dataset": f"s3://{BUCKET}/x.csv"},
            "a train job's dataset must be under datasets/, inputs/, dataset-versions/, "
            r"feature-sets/ of the data bucket \(what the train worker may read\); got key 'x.csv'",
        ),
        (
            {"type": "predict", "dataset": f"s3://{BUCKET}/dataset-versions/m/a.csv"},
            "a predict job's dataset must be under datasets/, inputs/, input-samples/, "
            "feature-sets/ of the data bucket",
        ),
        ({"dataset": f"s3://{BUCKET}/datasets/"}, "must be under datasets/"),
        ({"version": "latest"}, "version must be 'current' or a positive integer"),
        ({"version": 0}, "version must be 'current' or a positive integer"),
        ({"params": [1]}, "params must be a JSON object; got list"),
    ],
)
def test_rejections_keep_the_job_id_for_the_ledger(changes: dict[str, Any], reason: str) -> None:
    with pytest.raises(JobRejected, match=reason) as caught:
        parse_job(body(**changes), data_bucket=BUCKET)
    assert caught.value.job_id == "train-1"


def test_oversized_messages_are_rejected_both_ways() -> None:
    with pytest.raises(JobRejected, match="over SQS's limit of 262144"):
        parse_job(body(params={"blob": "x" * MAX_MESSAGE_BYTES}), data_bucket=BUCKET)
    job = parse_job(body(), data_bucket=BUCKET)
    big = Job(**{**job.__dict__, "params": {"blob": "x" * MAX_MESSAGE_BYTES}})
    with pytest.raises(JobRejected, match="put large parameters in a file"):
        big.to_json()
