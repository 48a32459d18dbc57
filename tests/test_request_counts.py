"""AWS request counts of the worker loop: what a backlog, a big prediction and idling cost.

Counts, not timings: they are exact and repeatable on any machine. Speed is measured in
``benchmarks/``.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import replace

import pytest

from mlpoc import samples
from mlpoc.aws import Clients
from mlpoc.settings import Settings
from mlpoc.worker.loop import JobContext, Worker
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


def test_a_1000_job_backlog_costs_about_the_floor_of_sqs_and_dynamodb_calls(
    moto_endpoint: str,
) -> None:
    # GIVEN 1,000 queued jobs and a worker with a prefetch of 10
    stack = create_stack(moto_endpoint)
    send_jobs(stack, 1000)
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
    assert done == 1000
    sqs_calls = counter["ReceiveMessage"] + counter["DeleteMessageBatch"]
    assert 200 <= sqs_calls <= 220, counter.calls
    assert counter["DeleteMessage"] == 0
    assert counter["UpdateItem"] == 2000
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
        Bucket=stack.data_bucket, Key="datasets/train.csv", Body=samples.training_csv().encode()
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
    x, _ = samples.digits()
    lines = ["id," + ",".join(samples.FEATURES)]
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


def test_an_idle_worker_makes_at_most_one_receive_per_20_seconds(moto_endpoint: str) -> None:
    stack = create_stack(moto_endpoint)
    clients = stack.clients()
    counter = CallCounter(clients)
    worker = Worker(
        settings=_settings(stack, "predict", wait_seconds=20), clients=clients, handler=_echo
    )
    worker.start()
    counter.reset()
    stop = threading.Event()

    def loop() -> None:
        while not stop.is_set():
            worker.process_batch()

    thread = threading.Thread(target=loop, daemon=True)
    started = time.monotonic()
    thread.start()
    time.sleep(20.5)
    stop.set()
    elapsed = time.monotonic() - started
    # one poll from t=0 to t=20, a second one starting at t=20: never more than ceil(t/20)
    assert counter["ReceiveMessage"] <= 2, (counter.calls, elapsed)
    assert sum(counter.calls.values()) == counter["ReceiveMessage"]
