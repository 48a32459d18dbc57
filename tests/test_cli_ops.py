"""The operator commands against a moto-backed stack: submit, jobs, models, DLQ redrive."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mlpoc.cli import ops
from mlpoc.cli.target import Deployment
from mlpoc.data import digits
from mlpoc.errors import TargetError
from mlpoc.local.safety import local_session
from mlpoc.runtime.contract import Job, S3Uri
from mlpoc.runtime.environment import RESOURCE_OUTPUTS
from mlpoc.runtime.ledger import Ledger
from tests.support.aws_stack import Stack


def deployment(stack: Stack) -> Deployment:
    outputs = {
        **{RESOURCE_OUTPUTS[k]: v for k, v in stack.env().items() if k in RESOURCE_OUTPUTS},
        "TrainDeadLetterQueueUrl": stack.train_dlq_url,
        "PredictDeadLetterQueueUrl": stack.predict_dlq_url,
    }
    return Deployment(
        name="local",
        region="us-east-1",
        outputs=outputs,
        session=local_session(),
        endpoint=stack.endpoint,
        api_url=None,
        local_api_key="k" * 32,
    )


def queued(stack: Stack, queue_url: str) -> list[dict[str, object]]:
    messages = stack.clients().sqs.receive_message(
        QueueUrl=queue_url, MaxNumberOfMessages=10, MessageAttributeNames=["All"]
    )
    return list(messages.get("Messages", []))


def test_a_local_csv_is_uploaded_and_its_job_recorded_then_queued(
    stack: Stack, tmp_path: Path
) -> None:
    # GIVEN a training CSV on the laptop
    csv = tmp_path / "digits.csv"
    csv.write_text(digits.training_csv(slice(0, 50)))
    dep = deployment(stack)
    # WHEN it is submitted with a parameter
    job = ops.submit(
        dep,
        job_type="train",
        model="digits",
        dataset=str(csv),
        params={"test_size": 0.3},
        job_id="my-train-1",
    )
    # THEN the file is in the data bucket outside datasets/ (no second job from the upload event)
    assert job.dataset.bucket == stack.data_bucket
    assert job.dataset.key.startswith("inputs/digits/")
    assert job.dataset.key.endswith("-digits.csv")
    body = stack.clients().s3.get_object(Bucket=job.dataset.bucket, Key=job.dataset.key)["Body"]
    assert body.read().decode() == csv.read_text()
    # AND the ledger has it QUEUED and the train queue has the contract's message
    record = Ledger(stack.clients().dynamodb, stack.jobs_table).get("my-train-1")
    assert record is not None
    assert (record["status"], record["source"]) == ("QUEUED", "cli")
    (message,) = queued(stack, stack.train_queue_url)
    assert json.loads(str(message["Body"])) == {
        "schema": 1,
        "job_id": "my-train-1",
        "type": "train",
        "model": "digits",
        "dataset": str(job.dataset),
        "version": "current",
        "params": {"test_size": 0.3},
    }
    # AND the same id again is refused, not sent twice
    with pytest.raises(TargetError, match="exists already"):
        ops.submit(
            dep, job_type="train", model="digits", dataset=str(job.dataset), job_id="my-train-1"
        )
    assert queued(stack, stack.train_queue_url) == []


@pytest.mark.parametrize(
    ("model", "dataset", "message"),
    [
        ("Digits", "s3://b/x.csv", "model name 'Digits' is not valid"),
        ("digits", "/no/such/file.csv", "neither an s3:// URI nor a file"),
        ("digits", "s3://other-bucket/x.csv", "not a valid job"),
        ("digits", "s3://", "is not an s3://bucket/key URI"),
    ],
)
def test_a_bad_submission_says_what_is_wrong_and_sends_nothing(
    stack: Stack, model: str, dataset: str, message: str
) -> None:
    with pytest.raises(TargetError, match=message):
        ops.submit(deployment(stack), job_type="predict", model=model, dataset=dataset)
    assert queued(stack, stack.predict_queue_url) == []


def test_an_unknown_model_is_named(stack: Stack) -> None:
    with pytest.raises(TargetError, match="no model 'nope'"):
        ops.models(deployment(stack), "nope")
    assert ops.models(deployment(stack)) == []


def test_the_dead_letter_queue_is_shown_and_redriven_after_a_fix(stack: Stack) -> None:
    # GIVEN a job that failed for good and whose message sits in the train DLQ with the reason
    clients, dep = stack.clients(), deployment(stack)
    ledger = Ledger(clients.dynamodb, stack.jobs_table)
    job = Job(
        job_id="dead-1",
        type="train",
        model="digits",
        dataset=S3Uri(stack.data_bucket, "datasets/digits/a.csv"),
    )
    ledger.create(job, source="test")
    ledger.reject("dead-1", reason="plugin 'xgb' is not installed", body=job.to_json())
    clients.sqs.send_message(
        QueueUrl=stack.train_dlq_url,
        MessageBody=job.to_json(),
        MessageAttributes={
            "mlpoc-reason": {"DataType": "String", "StringValue": "plugin 'xgb' is not installed"},
            "trace": {"DataType": "String", "StringValue": "abc"},
        },
    )
    clients.sqs.send_message(QueueUrl=stack.train_dlq_url, MessageBody="{not json")
    # WHEN the operator looks
    count, letters = ops.dlq_show(dep, "train")
    # THEN both are listed with their reasons
    assert count == 2
    reasons = {letter.job_id: letter.reason for letter in letters}
    assert reasons["dead-1"] == "plugin 'xgb' is not installed"
    assert "maximum receives" in reasons[None]
    # WHEN they are redriven (after the plugin was installed)
    moved = ops.dlq_redrive(dep, "train")
    # THEN the DLQ is empty, the train queue has both (without the reason), the job is claimable
    assert sorted(str(m.job_id) for m in moved) == ["None", "dead-1"]
    assert ops.dlq_show(dep, "train")[0] == 0
    back = queued(stack, stack.train_queue_url)
    assert sorted(str(m["Body"]) for m in back) == sorted([job.to_json(), "{not json"])
    for message in back:
        assert "mlpoc-reason" not in message.get("MessageAttributes", {})  # type: ignore[operator]
    with_trace = [m for m in back if m.get("MessageAttributes")]
    assert with_trace[0]["MessageAttributes"] == {
        "trace": {"DataType": "String", "StringValue": "abc"}
    }
    record = ledger.get("dead-1")
    assert record is not None
    assert record["status"] == "RETRYABLE"
    assert record["reason"].startswith("redriven from the DLQ after: plugin 'xgb'")


def test_requeue_only_revives_failed_or_abandoned_jobs(stack: Stack) -> None:
    ledger = Ledger(stack.clients().dynamodb, stack.jobs_table)
    job = Job(job_id="j", type="train", model="m", dataset=S3Uri(stack.data_bucket, "k.csv"))
    ledger.create(job, source="test")
    assert not ledger.requeue("j", reason="x")  # QUEUED: nothing to revive
    ledger.reject("j", reason="bad", body="{}")
    assert ledger.requeue("j", reason="fixed")
    assert not ledger.requeue("unknown", reason="x")
