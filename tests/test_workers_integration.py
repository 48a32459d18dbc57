"""The workers as real subprocesses against a moto server, under the faults SQS and Spot make.

Each test gets its own buckets, tables and queues; messages are sent with plain boto3 and the
README's job contract, the way any producer would.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from mlpoc.data import digits
from mlpoc.models import artifacts
from mlpoc.models.registry import Registry
from mlpoc.runtime.ledger import Ledger
from tests.support import pipeline
from tests.support.aws_stack import Stack, create_stack
from tests.support.enforced import EnforcedStack
from tests.support.fault_proxy import FaultPlan, FaultProxy
from tests.support.workers import WorkerProcess, start_worker, wait_for, wait_for_status

pytestmark = pytest.mark.integration

TRAIN_ROWS = slice(0, 1500)
PREDICT_ROWS = slice(1500, 1797)


def upload(stack: Stack, key: str, text: str) -> str:
    stack.clients().s3.put_object(Bucket=stack.data_bucket, Key=key, Body=text.encode())
    return f"s3://{stack.data_bucket}/{key}"


def send(stack: Stack, queue_url: str, **fields: Any) -> str:
    job_id = fields.pop("job_id", f"job-{uuid.uuid4().hex[:10]}")
    body = {"schema": 1, "job_id": job_id, "version": "current", "params": {}, **fields}
    stack.clients().sqs.send_message(QueueUrl=queue_url, MessageBody=json.dumps(body))
    return job_id


def send_train(stack: Stack, *, job_id: str | None = None, **params: Any) -> str:
    dataset = upload(stack, "datasets/digits-train.csv", digits.training_csv(TRAIN_ROWS))
    return send(
        stack,
        stack.train_queue_url,
        type="train",
        model="digits",
        dataset=dataset,
        params=params,
        **({"job_id": job_id} if job_id else {}),
    )


def queue_depth(stack: Stack, queue_url: str) -> int:
    attributes = stack.clients().sqs.get_queue_attributes(
        QueueUrl=queue_url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return int(attributes["ApproximateNumberOfMessages"]) + int(
        attributes["ApproximateNumberOfMessagesNotVisible"]
    )


def predictions(stack: Stack) -> list[dict[str, Any]]:
    return pipeline.scan(stack.clients().dynamodb, stack.predictions_table)


def train_then_predict(
    stack: Stack,
    ledger: Ledger,
    log_dir: Path,
    endpoint: str | None = None,
    role_env: Callable[[str], dict[str, str]] = lambda _: {},
    *,
    covered: bool = False,
) -> tuple[dict[str, Any], dict[str, Any], WorkerProcess]:
    """Both workers running; a train job that asks for predictions afterwards. Returns the
    ledger records of the train job and of its follow-up predict job, and the train worker."""
    predict_uri = upload(stack, "datasets/digits-predict.csv", digits.prediction_csv(PREDICT_ROWS))
    train = start_worker(
        "train", stack, log_dir, endpoint=endpoint, covered=covered, **role_env("train")
    )
    predict = start_worker(
        "predict", stack, log_dir, endpoint=endpoint, covered=covered, **role_env("predict")
    )
    try:
        job_id = send_train(stack, then_predict=predict_uri)
        record = wait_for_status(ledger, job_id, {"SUCCEEDED", "FAILED"})
        followup = wait_for_status(ledger, f"{job_id}.predict", {"SUCCEEDED", "FAILED"})
    finally:
        assert train.terminate() == 0
        assert predict.terminate() == 0
    return record, followup, train


@pytest.fixture
def ledger(stack: Stack) -> Ledger:
    return Ledger(stack.clients().dynamodb, stack.jobs_table)


@pytest.fixture
def registry(stack: Stack) -> Registry:
    return Registry(stack.clients().dynamodb, stack.models_table)


def test_train_then_predict_end_to_end(
    stack: Stack, ledger: Ledger, registry: Registry, log_dir: Path
) -> None:
    # GIVEN both workers, WHEN a train job asks for pre-computed predictions afterwards
    record, followup, train = train_then_predict(stack, ledger, log_dir, covered=True)
    job_id = record["job_id"]

    # THEN the model is trained, stored, verified, registered and promoted ...
    assert record["status"] == "SUCCEEDED", record
    assert record["result"]["promoted"] is True
    version = registry.resolve("digits", "current")
    assert version.version == record["result"]["model_version"] == 1
    assert version.metrics["accuracy"] > 0.9
    assert version.features == digits.FEATURES
    assert version.classes == [str(d) for d in range(10)]
    s3 = stack.clients().s3
    onnx = s3.get_object(Bucket=stack.model_bucket, Key="models/digits/1/model.onnx")["Body"].read()
    assert artifacts.sha256(onnx) == version.sha256
    metadata = json.loads(
        s3.get_object(Bucket=stack.model_bucket, Key="models/digits/1/metadata.json")["Body"].read()
    )
    assert metadata["sha256"] == version.sha256
    assert {"scikit-learn", "skl2onnx", "onnxruntime"} <= set(metadata["libraries"])
    # ... and the follow-up job stored one prediction per row, low-confidence ones for review
    assert followup["status"] == "SUCCEEDED", followup
    stored = predictions(stack)
    rows = PREDICT_ROWS.stop - PREDICT_ROWS.start
    assert len(stored) == followup["result"]["rows"] == rows
    truth = digits.digits(PREDICT_ROWS)[1]
    correct = sum(
        item["label"]["S"] == str(truth[int(item["item_id"]["S"].split("-")[1]) - 1500])
        for item in stored
    )
    assert correct / rows > 0.85
    review = [item for item in stored if "review" in item]
    assert len(review) == followup["result"]["for_review"]
    assert all(float(item["confidence"]["N"]) < 0.8 and "features" in item for item in review)
    assert queue_depth(stack, stack.train_queue_url) == 0
    assert queue_depth(stack, stack.predict_queue_url) == 0
    started = train.events("job.started")
    assert started and all(e["job_id"] == job_id for e in started)
    assert train.events("job.succeeded")[0]["duration_ms"] > 0


def test_predict_job_with_an_explicit_version(stack: Stack, ledger: Ledger, log_dir: Path) -> None:
    train = start_worker("train", stack, log_dir)
    predict = start_worker("predict", stack, log_dir)
    try:
        wait_for_status(ledger, send_train(stack), {"SUCCEEDED"})
        dataset = upload(stack, "datasets/p.csv", digits.prediction_csv(slice(0, 50)))
        job_id = send(
            stack,
            stack.predict_queue_url,
            type="predict",
            model="digits",
            dataset=dataset,
            version=1,
            params={"review_threshold": 0.0},
        )
        record = wait_for_status(ledger, job_id, {"SUCCEEDED", "FAILED"})
    finally:
        train.terminate()
        predict.terminate()
    assert record["status"] == "SUCCEEDED", record
    assert record["result"] == {
        "model_version": 1,
        "rows": 50,
        "for_review": 0,
        "batch_write_calls": 2,
    }
    assert len(predictions(stack)) == 50


def test_same_message_delivered_twice_gives_one_result(
    stack: Stack, ledger: Ledger, registry: Registry, log_dir: Path
) -> None:
    # GIVEN the same job sent twice (an at-least-once redelivery, or a producer retry)
    job_id = send_train(stack)
    send_train(stack, job_id=job_id)
    send_train(stack, job_id=job_id)
    worker = start_worker("train", stack, log_dir)
    try:
        wait_for_status(ledger, job_id, {"SUCCEEDED"})
        wait_for(lambda: queue_depth(stack, stack.train_queue_url) == 0, what="an empty queue")
    finally:
        assert worker.terminate() == 0
    # THEN it ran once: one attempt, one version, the copies recognised and deleted
    record = ledger.get(job_id)
    assert record is not None
    assert record["attempts"] == 1
    assert [v.version for v in registry.versions("digits")] == [1]
    assert len(worker.events("job.duplicate")) == 2


def test_worker_killed_mid_job_is_redelivered_and_finished_once(
    moto_endpoint: str, log_dir: Path
) -> None:
    stack = create_stack(moto_endpoint, visibility_seconds=2)
    ledger = Ledger(stack.clients().dynamodb, stack.jobs_table)
    job_id = send_train(stack, plugin="slow", sleep_seconds=3)
    first = start_worker("train", stack, log_dir)
    wait_for_status(ledger, job_id, {"RUNNING"})
    # WHEN the task dies without warning (Spot reclaim past its notice, OOM kill)
    first.kill()
    second = start_worker("train", stack, log_dir)
    try:
        record = wait_for_status(ledger, job_id, {"SUCCEEDED", "FAILED"})
    finally:
        assert second.terminate() == 0
    # THEN another worker took it over after the lease expired and finished it exactly once
    assert record["status"] == "SUCCEEDED", record
    assert record["attempts"] == 2
    registry = Registry(stack.clients().dynamodb, stack.models_table)
    assert [v.job_id for v in registry.versions("digits")] == [job_id]
    assert queue_depth(stack, stack.train_queue_url) == 0


def test_sigterm_releases_the_job_at_once_and_exits_zero(
    stack: Stack, ledger: Ledger, log_dir: Path
) -> None:
    job_id = send_train(stack, plugin="slow", sleep_seconds=60)
    worker = start_worker("train", stack, log_dir, covered=True, MLPOC_STOP_GRACE_SECONDS="0.5")
    wait_for_status(ledger, job_id, {"RUNNING"})
    # WHEN ECS stops the task (scale-in, deployment, Spot interruption notice)
    stopped_at = time.monotonic()
    assert worker.terminate(timeout=10) == 0
    # THEN the job is RETRYABLE and its message can be received again right away
    assert time.monotonic() - stopped_at < 5
    record = ledger.get(job_id)
    assert record is not None and record["status"] == "RETRYABLE"
    assert "SIGTERM" in record["reason"]
    received = stack.clients().sqs.receive_message(
        QueueUrl=stack.train_queue_url,
        MessageSystemAttributeNames=["ApproximateReceiveCount"],
        WaitTimeSeconds=0,
    )["Messages"]
    assert json.loads(received[0]["Body"])["job_id"] == job_id
    assert received[0]["Attributes"]["ApproximateReceiveCount"] == "2"


def test_sigterm_lets_a_short_job_finish_within_the_grace_period(
    stack: Stack, ledger: Ledger, log_dir: Path
) -> None:
    job_id = send_train(stack, plugin="slow", sleep_seconds=1)
    worker = start_worker("train", stack, log_dir, covered=True, MLPOC_STOP_GRACE_SECONDS="30")
    wait_for_status(ledger, job_id, {"RUNNING"})
    assert worker.terminate(timeout=40) == 0
    record = ledger.get(job_id)
    assert record is not None and record["status"] == "SUCCEEDED"
    assert queue_depth(stack, stack.train_queue_url) == 0


def test_job_longer_than_the_visibility_timeout_survives_through_the_heartbeat(
    moto_endpoint: str, log_dir: Path
) -> None:
    # GIVEN a 3 s visibility timeout, a 5 s job and two competing workers (the heartbeat
    # extends the visibility every second: a beat would have to be 2 s late for the other
    # worker to see the message; tests/test_heartbeat.py checks the beat itself without a clock)
    stack = create_stack(moto_endpoint, visibility_seconds=3)
    ledger = Ledger(stack.clients().dynamodb, stack.jobs_table)
    job_id = send_train(stack, plugin="slow", sleep_seconds=5)
    workers = [start_worker("train", stack, log_dir) for _ in range(2)]
    try:
        record = wait_for_status(ledger, job_id, {"SUCCEEDED", "FAILED"})
    finally:
        for worker in workers:
            worker.terminate()
    # THEN the message never became visible to the other worker: one attempt, no contention
    assert record["status"] == "SUCCEEDED"
    assert record["attempts"] == 1
    assert sum(len(w.events("job.started")) for w in workers) == 1
    assert not any(w.events("job.busy") or w.events("job.duplicate") for w in workers)


def test_a_job_that_keeps_failing_transiently_ends_failed_and_in_the_dlq(
    moto_endpoint: str, log_dir: Path
) -> None:
    # a service the plugin needs stays down: retried (a plugin's own bug is not: see
    # tests/test_plugin_failures.py) until the queue's last receive, then the DLQ
    stack = create_stack(moto_endpoint, visibility_seconds=5, max_receive_count=2)
    ledger = Ledger(stack.clients().dynamodb, stack.jobs_table)
    job_id = send_train(stack, plugin="unreachable")
    worker = start_worker("train", stack, log_dir)
    try:
        record = wait_for_status(ledger, job_id, {"FAILED"}, timeout=30)
        dead = wait_for(
            lambda: (
                stack.clients()
                .sqs.receive_message(QueueUrl=stack.train_dlq_url, WaitTimeSeconds=1)
                .get("Messages")
            ),
            timeout=30,
            what="the message in the DLQ",
        )
    finally:
        assert worker.terminate() == 0
    assert "gave up after 2 attempts" in record["reason"]
    assert "ConnectionError: the feature service did not answer" in record["reason"]
    assert json.loads(dead[0]["Body"])["job_id"] == job_id
    assert len(worker.events("job.retrying")) == 1


def test_malformed_messages_fail_with_a_reason_and_are_kept_in_the_dlq(
    stack: Stack, ledger: Ledger, log_dir: Path
) -> None:
    sqs = stack.clients().sqs
    sqs.send_message(QueueUrl=stack.train_queue_url, MessageBody="this is not json")
    bad_version = send(
        stack,
        stack.train_queue_url,
        schema=99,
        type="train",
        model="digits",
        dataset=f"s3://{stack.data_bucket}/datasets/x.csv",
    )
    wrong_bucket = send(
        stack,
        stack.train_queue_url,
        type="train",
        model="digits",
        dataset="s3://someone-elses-bucket/datasets/x.csv",
    )
    worker = start_worker("train", stack, log_dir)
    try:
        first = wait_for_status(ledger, bad_version, {"FAILED"})
        second = wait_for_status(ledger, wrong_bucket, {"FAILED"})
        wait_for(lambda: queue_depth(stack, stack.train_queue_url) == 0, what="an empty queue")
    finally:
        assert worker.terminate() == 0
    assert "schema 99 is not supported" in first["reason"]
    assert "must be inside the data bucket" in second["reason"]
    dead = sqs.receive_message(
        QueueUrl=stack.train_dlq_url, MaxNumberOfMessages=10, MessageAttributeNames=["All"]
    )["Messages"]
    reasons = sorted(m["MessageAttributes"]["mlpoc-reason"]["StringValue"] for m in dead)
    assert len(reasons) == 3
    assert any(r.startswith("the message body is not JSON") for r in reasons)


def test_bad_dataset_fails_the_job_with_the_line_and_column(
    stack: Stack, ledger: Ledger, log_dir: Path
) -> None:
    text = digits.training_csv(slice(0, 40)).splitlines()
    text[5] = text[5].replace(",", ",abc,", 1).replace(",abc,", ",x", 1)
    dataset = upload(stack, "datasets/bad.csv", "\n".join(text))
    job_id = send(stack, stack.train_queue_url, type="train", model="digits", dataset=dataset)
    worker = start_worker("train", stack, log_dir)
    try:
        record = wait_for_status(ledger, job_id, {"FAILED", "SUCCEEDED"})
    finally:
        worker.terminate()
    assert record["status"] == "FAILED"
    # one text cell in a column of numbers: a typo, named with its column and line
    assert "1 cells are not numbers in a column of numbers (line 6)" in record["reason"]
    assert queue_depth(stack, stack.train_queue_url) == 0


def test_tampered_artifact_is_refused_and_nothing_is_written(
    stack: Stack, ledger: Ledger, log_dir: Path
) -> None:
    train = start_worker("train", stack, log_dir)
    try:
        wait_for_status(ledger, send_train(stack), {"SUCCEEDED"})
    finally:
        train.terminate()
    # WHEN someone overwrites the model object in the bucket
    s3 = stack.clients().s3
    key = "models/digits/1/model.onnx"
    original = s3.get_object(Bucket=stack.model_bucket, Key=key)["Body"].read()
    s3.put_object(Bucket=stack.model_bucket, Key=key, Body=original[:-16] + b"\x00" * 16)
    dataset = upload(stack, "datasets/p.csv", digits.prediction_csv(slice(0, 20)))
    job_id = send(stack, stack.predict_queue_url, type="predict", model="digits", dataset=dataset)
    predict = start_worker("predict", stack, log_dir)
    try:
        record = wait_for_status(ledger, job_id, {"FAILED", "SUCCEEDED"})
    finally:
        predict.terminate()
    # THEN the predict job fails naming the mismatch, and no prediction is stored
    assert record["status"] == "FAILED"
    assert "sha256" in record["reason"] and "modified after training" in record["reason"]
    assert predictions(stack) == []


def test_throttling_is_retried_and_nothing_is_lost(
    stack: Stack, ledger: Ledger, registry: Registry, log_dir: Path
) -> None:
    # GIVEN every fourth request of the workers is throttled by S3, SQS or DynamoDB
    plan = FaultPlan(every=4)
    with FaultProxy(stack.endpoint, plan) as proxy:
        record, followup, _ = train_then_predict(stack, ledger, log_dir, endpoint=proxy.url)
    # THEN all three services were throttled, and still every job and every row landed
    assert set(plan.injected) == {"s3", "sqs", "dynamodb"}, plan.injected
    assert record["status"] == "SUCCEEDED" and record["attempts"] == 1, record
    assert followup["status"] == "SUCCEEDED" and followup["attempts"] == 1, followup
    assert len(predictions(stack)) == PREDICT_ROWS.stop - PREDICT_ROWS.start
    assert [v.version for v in registry.versions("digits")] == [1]


def test_the_workers_run_under_their_deployed_roles(enforced: EnforcedStack, log_dir: Path) -> None:
    # GIVEN the data stack from its template and the workers under their task roles, with
    # moto's IAM on (what local mode runs, and what the deployed policies allow)
    stack = enforced.runtime_stack()
    ledger = Ledger(stack.clients().dynamodb, stack.jobs_table)
    # WHEN a train job asks for predictions once its version is promoted
    record, followup, train = train_then_predict(
        stack, ledger, log_dir, endpoint=enforced.endpoint, role_env=enforced.role_env
    )
    # THEN both succeed: the train role wrote the artifact and the registry and queued the
    # follow-up, and the predict role read the artifact and wrote the predictions
    assert record["status"] == "SUCCEEDED", record
    assert followup["status"] == "SUCCEEDED", followup
    assert followup["result"]["rows"] == PREDICT_ROWS.stop - PREDICT_ROWS.start
    assert not train.events("job.access_denied")
