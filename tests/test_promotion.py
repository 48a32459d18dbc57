"""Promotion on the same held-out rows, with an in-process worker against moto: the scores of
both versions are recorded; a live version that cannot take the new table is not compared and
not replaced; the metric and the least improvement are the job's, kept by the version."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest
from moto import mock_aws

from mlpoc.data import digits
from mlpoc.models.registry import Registry
from mlpoc.runtime.environment import Settings
from mlpoc.runtime.ledger import Ledger
from mlpoc.worker.loop import Worker
from mlpoc.worker.train import handle_train
from tests.support.aws_stack import Stack, create_stack


@pytest.fixture
def stack() -> Iterator[Stack]:
    with mock_aws():
        yield create_stack(None)


def train(stack: Stack, job_id: str, text: str, **params: Any) -> dict[str, Any]:
    clients = stack.clients()
    key = f"datasets/digits/{job_id}.csv"
    clients.s3.put_object(Bucket=stack.data_bucket, Key=key, Body=text.encode())
    body = {
        "schema": 1, "job_id": job_id, "type": "train", "model": "digits",
        "dataset": f"s3://{stack.data_bucket}/{key}", "params": params,
    }  # fmt: skip
    clients.sqs.send_message(QueueUrl=stack.train_queue_url, MessageBody=json.dumps(body))
    settings = replace(Settings.from_env("train", stack.env("")), wait_seconds=0)
    Worker(settings=settings, clients=clients, handler=handle_train).process_batch()
    record = Ledger(clients.dynamodb, stack.jobs_table).get(job_id)
    assert record is not None and record["status"] == "SUCCEEDED", record
    result: dict[str, Any] = record["result"]
    return result


def without(text: str, column: str) -> str:
    lines = [line.split(",") for line in text.splitlines()]
    at = lines[0].index(column)
    return "\n".join(",".join(c for i, c in enumerate(row) if i != at) for row in lines) + "\n"


def test_both_scores_on_the_same_rows_decide_and_are_recorded(stack: Stack) -> None:
    text = digits.training_csv(slice(0, 600))
    first = train(stack, "v1", text, estimator="logistic_regression", C=0.001)
    assert first["promoted"] is True and "compared" not in first
    # a better configuration on more rows: scored beside v1 on the rows neither trained on
    second = train(stack, "v2", digits.training_csv(slice(0, 900)), estimator="logistic_regression")
    compared = second["compared"]
    assert compared["live"] == 1 and compared["metric"] == "accuracy"
    assert compared["candidate"] > compared["live_score"] and second["promoted"] is True
    registry = Registry(stack.clients().dynamodb, stack.models_table)
    assert registry.get("digits", 2).extra["compared"] == compared
    # v1's held-out rows are all among v2's: the same row is on the same side in both
    assert compared["rows"] >= registry.get("digits", 1).extra["test_rows"]


def test_the_metric_and_the_least_improvement_are_the_jobs(stack: Stack) -> None:
    text = digits.training_csv(slice(0, 600))
    train(stack, "v1", text, metric="macro_f1")
    # the same model again: a tie on the same rows keeps the live version
    tie = train(stack, "v2", text, metric="macro_f1")
    assert tie["compared"]["candidate"] == tie["compared"]["live_score"]
    assert (tie["compared"]["metric"], tie["promoted"]) == ("macro_f1", False)
    # better, but not by the least improvement the job asks
    forest = train(
        stack, "v3", text, estimator="random_forest", metric="macro_f1", min_improvement=0.5
    )
    assert forest["promoted"] is False
    registry = Registry(stack.clients().dynamodb, stack.models_table)
    recorded = registry.get("digits", 3)
    assert recorded.extra["promotion"] == {"metric": "macro_f1", "min_improvement": 0.5}
    assert recorded.metric_name == "macro_f1" and recorded.metric == forest["metrics"]["macro_f1"]


def test_a_live_version_that_cannot_take_the_new_table_is_not_compared_or_replaced(
    stack: Stack,
) -> None:
    text = digits.training_csv(slice(0, 600))
    train(stack, "v1", text)
    # the new table lacks a column v1 needs: v1 cannot be scored on its rows
    second = train(stack, "v2", without(text, "pixel_10"))
    assert second["compared"] == {
        "live": 1,
        "metric": "accuracy",
        "not_compared": "v1: it needs the column 'pixel_10'",
    }
    assert second["promoted"] is False
    assert train(stack, "v3", without(text, "pixel_10"), promote="always")["promoted"] is True


def test_a_live_version_that_predicts_another_label_is_not_compared(stack: Stack) -> None:
    text = digits.training_csv(slice(0, 600))
    train(stack, "v1", text)
    relabelled = text.replace(",label\n", ",digit\n", 1)
    second = train(stack, "v2", relabelled, label_column="digit")
    assert (
        second["compared"]["not_compared"] == "v1: it predicts 'label', the data's label is 'digit'"
    )
