"""AWS request counts of the worker loop: what a backlog, a big prediction and idling cost.

Counts, not timings: they are exact and repeatable on any machine. Speed is measured in
``benchmarks/``.
"""

from __future__ import annotations

import json
from dataclasses import replace
from types import SimpleNamespace
from typing import Any

import pytest

from mlpoc.aws.clients import Clients
from mlpoc.data import digits
from mlpoc.runtime.environment import Settings
from mlpoc.worker.context import JobContext
from mlpoc.worker.loop import Worker
from mlpoc.worker.predict import PredictHandler
from mlpoc.worker.train import handle_train
from tests.support.aws_stack import Stack, create_stack, send_jobs
from tests.support.counting import CallCounter

pytestmark = pytest.mark.perf


def _settings(stack: Stack, role: str, **changes: object) -> Settings:
    """Worker settings with a visibility timeout long enough that no heartbeat fires: these
    tests count the calls a job costs, and a heartbeat's count depends on the machine's speed."""
    base = Settings.from_env("train" if role == "train" else "predict", stack.env())
    return replace(base, visibility_seconds=900, **changes)  # type: ignore[arg-type]


def _echo(ctx: JobContext) -> None:
    ctx.commit({"echo": ctx.job.job_id})


BACKLOG = 100


def test_a_backlog_costs_about_the_floor_of_sqs_and_dynamodb_calls(moto_endpoint: str) -> None:
    # GIVEN a backlog of queued jobs and a worker with a prefetch of 10 (the count per job is
    # what matters; benchmarks/worker_throughput.py drains larger backlogs for speed)
    stack = create_stack(moto_endpoint)
    send_jobs(stack, BACKLOG)
    clients = stack.clients()
    counter = CallCounter(clients)
    worker = Worker(
        settings=_settings(stack, "predict", prefetch=10, wait_seconds=1),
        clients=clients,
        handler=_echo,
    )
    # WHEN it drains the queue
    done = 0
    while (batch := worker.process_batch()).received:
        done += batch.succeeded
    # THEN SQS saw ~1 receive + 1 batched delete per 10 jobs, DynamoDB 2 writes per job
    assert done == BACKLOG
    sqs_calls = counter["ReceiveMessage"] + counter["DeleteMessageBatch"]
    floor = 2 * BACKLOG // 10
    assert floor <= sqs_calls <= floor * 1.1, counter.calls
    assert counter["DeleteMessage"] == 0
    assert counter["UpdateItem"] == 2 * BACKLOG
    assert counter["TransactWriteItems"] == 0


def test_a_prefetch_of_one_costs_one_receive_and_one_delete_per_job(moto_endpoint: str) -> None:
    stack = create_stack(moto_endpoint)
    send_jobs(stack, 20)
    clients = stack.clients()
    counter = CallCounter(clients)
    worker = Worker(
        settings=_settings(stack, "predict", prefetch=1, wait_seconds=1),
        clients=clients,
        handler=_echo,
    )
    while worker.process_batch().received:
        pass
    assert counter["ReceiveMessage"] == 21  # the last one finds the queue empty
    assert counter["DeleteMessageBatch"] == 20


def _train(stack: Stack, clients: Clients) -> None:
    clients.s3.put_object(
        Bucket=stack.data_bucket, Key="datasets/train.csv", Body=digits.training_csv().encode()
    )
    clients.sqs.send_message(
        QueueUrl=stack.train_queue_url,
        MessageBody=json.dumps(
            {
                "schema": 1,
                "job_id": "train-1",
                "type": "train",
                "model": "digits",
                "dataset": f"s3://{stack.data_bucket}/datasets/train.csv",
            }
        ),
    )
    trainer = Worker(
        settings=_settings(stack, "train", wait_seconds=1), clients=clients, handler=handle_train
    )
    assert trainer.process_batch().succeeded == 1


def test_a_1000_row_prediction_costs_40_batch_writes(moto_endpoint: str) -> None:
    stack = create_stack(moto_endpoint)
    clients = stack.clients()
    _train(stack, clients)
    # 1,000 rows: the digits repeated with their own ids
    x, _ = digits.digits()
    lines = ["id," + ",".join(digits.FEATURES)]
    lines += [f"row-{i}," + ",".join(map(str, x[i % len(x)])) for i in range(1000)]
    clients.s3.put_object(
        Bucket=stack.data_bucket, Key="datasets/p.csv", Body="\n".join(lines).encode()
    )
    clients.sqs.send_message(
        QueueUrl=stack.predict_queue_url,
        MessageBody=json.dumps(
            {
                "schema": 1,
                "job_id": "predict-1",
                "type": "predict",
                "model": "digits",
                "dataset": f"s3://{stack.data_bucket}/datasets/p.csv",
            }
        ),
    )
    settings = _settings(stack, "predict", wait_seconds=1)
    counter = CallCounter(clients)
    worker = Worker(settings=settings, clients=clients, handler=PredictHandler(settings, clients))
    assert worker.process_batch().succeeded == 1
    assert counter["BatchWriteItem"] <= 44
    assert counter["BatchWriteItem"] >= 40
    assert counter["PutItem"] == 0
    items = clients.dynamodb.scan(TableName=stack.predictions_table, Select="COUNT")["Count"]
    assert items == 1000


def test_an_idle_worker_long_polls_for_20_seconds_and_calls_nothing_else(
    moto_endpoint: str,
) -> None:
    """An idle worker's cost is its receives: one long poll per 20 seconds at most, because SQS
    holds a receive with ``WaitTimeSeconds=20`` open until a message arrives or 20 s pass. The
    test checks what the worker asks for, not the wall clock: each empty receive is answered at
    once by a botocore hook, as SQS would after its 20 seconds."""
    stack = create_stack(moto_endpoint)
    clients = stack.clients()
    worker = Worker(
        settings=_settings(stack, "predict", wait_seconds=20), clients=clients, handler=_echo
    )
    worker.start()
    counter = CallCounter(clients)
    sent: list[dict[str, Any]] = []

    def record(params: dict[str, Any], **_: Any) -> None:
        sent.append(dict(params))

    def answered_empty(**_: Any) -> tuple[Any, dict[str, Any]]:
        return SimpleNamespace(status_code=200), {"ResponseMetadata": {"HTTPStatusCode": 200}}

    clients.sqs.meta.events.register("provide-client-params.sqs.ReceiveMessage", record)
    clients.sqs.meta.events.register("before-call.sqs.ReceiveMessage", answered_empty)
    for _ in range(3):
        assert worker.process_batch().received == 0
    assert [p["WaitTimeSeconds"] for p in sent] == [20, 20, 20]
    assert not counter.calls  # and nothing else: no ledger, no S3, no other SQS call
