"""Run jobs in-process against a stack: a trained model and stored predictions for API tests."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

from mlpoc.data import digits
from mlpoc.runtime.contract import QUEUE_OF_TYPE
from mlpoc.runtime.environment import Settings
from mlpoc.worker.loop import Worker
from mlpoc.worker.predict import PredictHandler
from mlpoc.worker.train import handle_train
from tests.support.aws_stack import Stack


def run_job(stack: Stack, message: dict[str, Any]) -> None:
    """Send one job and run it with an in-process worker of its type."""
    clients = stack.clients()
    role = QUEUE_OF_TYPE[message["type"]]  # a monitor job: predict; a features job: train
    settings = replace(Settings.from_env(role, stack.env()), wait_seconds=1)
    body = json.dumps({"schema": 1, **message})
    clients.sqs.send_message(QueueUrl=settings.queue_url, MessageBody=body)
    handler = handle_train if role == "train" else PredictHandler(settings, clients)
    assert (
        Worker(settings=settings, clients=clients, handler=handler).process_batch().succeeded == 1
    )


def train(stack: Stack, job_id: str, **params: Any) -> None:
    key = "datasets/digits/train.csv"
    text = digits.training_csv(slice(0, 1500))
    stack.clients().s3.put_object(Bucket=stack.data_bucket, Key=key, Body=text.encode())
    dataset = f"s3://{stack.data_bucket}/{key}"
    run_job(
        stack,
        {
            "job_id": job_id,
            "type": "train",
            "model": "digits",
            "dataset": dataset,
            "params": params,
        },
    )


def prepare(stack: Stack) -> Stack:
    """digits v1 promoted, and stored predictions for rows 1500-1796 (some for review)."""
    train(stack, "train-1")
    key = "datasets/digits/score.csv"
    text = digits.prediction_csv(slice(1500, 1797))
    stack.clients().s3.put_object(Bucket=stack.data_bucket, Key=key, Body=text.encode())
    dataset = f"s3://{stack.data_bucket}/{key}"
    params = {"review_threshold": 0.95}
    run_job(
        stack,
        {"job_id": "predict-1", "type": "predict", "model": "digits", "dataset": dataset,
         "params": params},
    )  # fmt: skip
    return stack


def scan(dynamodb: Any, table: str) -> list[dict[str, Any]]:
    """Every item of a table (DynamoDB's raw attribute maps), page by page."""
    items: list[dict[str, Any]] = []
    kwargs: dict[str, Any] = {"TableName": table}
    while True:
        page = dynamodb.scan(**kwargs)
        items.extend(page["Items"])
        if "LastEvaluatedKey" not in page:
            return items
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
