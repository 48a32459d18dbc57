"""A plugin's failure is classified: a bug on valid data fails the job at once, with the
innermost frames of its traceback in the ledger; what a service or the machine caused is
retried. In-process, against moto (mock_aws)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import numpy as np
import pytest
from moto import mock_aws

from mlpoc import plugins
from mlpoc.data import digits
from mlpoc.errors import PluginError
from mlpoc.runtime.environment import Settings
from mlpoc.runtime.ledger import Ledger
from mlpoc.schema import Schema
from mlpoc.worker.loop import Worker
from mlpoc.worker.train import handle_train
from tests.support.aws_stack import Stack, create_stack

NOTHING = plugins.TrainingData(schema=Schema(columns=()), columns={}, y=np.zeros(0))


@pytest.fixture
def stack() -> Iterator[Stack]:
    with mock_aws():
        yield create_stack(None)


def train_once(stack: Stack, plugin: str, **params: Any) -> tuple[dict[str, Any], int]:
    """One train job with ``plugin`` through one batch of an in-process worker: the ledger
    record, and how many messages the train queue still holds (visible or not)."""
    clients = stack.clients()
    key = "datasets/digits/train.csv"
    text = digits.training_csv(slice(0, 300))
    clients.s3.put_object(Bucket=stack.data_bucket, Key=key, Body=text.encode())
    body = {
        "schema": 1, "job_id": f"job-{plugin}", "type": "train", "model": "digits",
        "dataset": f"s3://{stack.data_bucket}/{key}", "params": {"plugin": plugin, **params},
    }  # fmt: skip
    clients.sqs.send_message(QueueUrl=stack.train_queue_url, MessageBody=json.dumps(body))
    settings = replace(Settings.from_env("train", stack.env("")), wait_seconds=0)
    Worker(settings=settings, clients=clients, handler=handle_train).process_batch()
    record = Ledger(clients.dynamodb, stack.jobs_table).get(f"job-{plugin}")
    assert record is not None
    counts = clients.sqs.get_queue_attributes(
        QueueUrl=stack.train_queue_url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return record, sum(int(n) for n in counts.values())


def test_a_plugin_that_raises_on_valid_data_fails_the_job_at_once_with_where(
    stack: Stack,
) -> None:
    record, left = train_once(stack, "crash")
    assert record["status"] == "FAILED"
    assert int(record["attempts"]) == 1 and left == 0  # deleted: not sent round again
    reason = record["reason"]
    assert reason.startswith("the plugin 'crash' raised RuntimeError: boom: the plugin crashed")
    assert "fault_plugins.py:" in reason and "in train_crash" in reason
    assert reason.endswith("fix it, then send the job again")


def test_a_plugins_onnx_that_onnxruntime_refuses_fails_the_job_at_once(stack: Stack) -> None:
    record, left = train_once(stack, "bad_onnx")
    assert record["status"] == "FAILED" and left == 0
    assert record["reason"].startswith(
        "the ONNX model of the plugin 'bad_onnx', run by onnxruntime"
    )


def test_a_service_a_plugin_needs_being_down_is_retried(stack: Stack) -> None:
    record, left = train_once(stack, "unreachable")
    assert record["status"] == "RETRYABLE" and left == 1  # back on the queue after a backoff
    assert record["reason"] == "ConnectionError: the feature service did not answer"


@pytest.mark.parametrize("raised", [ConnectionError("x"), TimeoutError("x"), MemoryError()])
def test_transient_errors_pass_through_unchanged(raised: BaseException) -> None:
    def train(data: plugins.TrainingData, params: Any) -> Any:
        raise raised

    plugin = plugins.Plugin(name="t", train=train, libraries=())
    with pytest.raises(type(raised)):
        plugins.run_train(plugin, NOTHING, {})


def test_a_refused_parameter_keeps_the_plugins_own_sentence() -> None:
    def train(data: plugins.TrainingData, params: Any) -> Any:
        raise PluginError("params.depth must be a whole number; got 'deep'")

    plugin = plugins.Plugin(name="t", train=train, libraries=())
    with pytest.raises(PluginError, match=r"^params\.depth must be a whole number; got 'deep'$"):
        plugins.run_train(plugin, NOTHING, {})


def test_a_bad_review_threshold_fails_the_train_job_before_it_trains(stack: Stack) -> None:
    record, left = train_once(stack, "sklearn", review_threshold=2)
    assert record["status"] == "FAILED" and left == 0
    assert record["reason"] == "params.review_threshold must be from 0 to 1; got 2"
    assert "model_version" not in record  # no version was allocated: nothing was trained
