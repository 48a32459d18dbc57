"""A fresh set of the kit's resources in a moto server, one per test.

Until the CDK data stack exists, this creates the same resources the stack declares, from the
same key schemas (``mlpoc.tables``), so the runtime is exercised against what it will meet.
"""

from __future__ import annotations

import json
import os
import uuid
from dataclasses import dataclass
from typing import Any

import boto3

from mlpoc import tables
from mlpoc.aws import Clients
from mlpoc.local import motoserver

REGION = "us-east-1"
FAKE_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": REGION,
    "AWS_REGION": REGION,
}


@dataclass(frozen=True)
class Stack:
    endpoint: str
    data_bucket: str
    model_bucket: str
    jobs_table: str
    models_table: str
    predictions_table: str
    annotations_table: str
    train_queue_url: str
    predict_queue_url: str
    train_dlq_url: str
    predict_dlq_url: str

    def env(self, endpoint: str | None = None) -> dict[str, str]:
        """The environment a worker gets (what the CDK task definition sets on AWS)."""
        return {
            **FAKE_CREDENTIALS,
            "AWS_ENDPOINT_URL": endpoint or self.endpoint,
            "MLPOC_DATA_BUCKET": self.data_bucket,
            "MLPOC_MODEL_BUCKET": self.model_bucket,
            "MLPOC_JOBS_TABLE": self.jobs_table,
            "MLPOC_MODELS_TABLE": self.models_table,
            "MLPOC_PREDICTIONS_TABLE": self.predictions_table,
            "MLPOC_ANNOTATIONS_TABLE": self.annotations_table,
            "MLPOC_TRAIN_QUEUE_URL": self.train_queue_url,
            "MLPOC_PREDICT_QUEUE_URL": self.predict_queue_url,
        }

    def clients(self) -> Clients:
        session = boto3.session.Session(region_name=REGION)
        return Clients(
            s3=session.client("s3", endpoint_url=self.endpoint or None),
            sqs=session.client("sqs", endpoint_url=self.endpoint or None),
            dynamodb=session.client("dynamodb", endpoint_url=self.endpoint or None),
        )


def create_stack(
    endpoint: str | None, *, visibility_seconds: int = 30, max_receive_count: int = 5
) -> Stack:
    """Create buckets, tables and queues (+DLQs) with unique names; endpoint None = mock_aws."""
    suffix = uuid.uuid4().hex[:8]
    session = boto3.session.Session(region_name=REGION)
    s3 = session.client("s3", endpoint_url=endpoint)
    sqs = session.client("sqs", endpoint_url=endpoint)
    dynamodb = session.client("dynamodb", endpoint_url=endpoint)

    names: dict[str, Any] = {}
    for kind in ("data", "model"):
        bucket = f"mlpoc-{kind}-{suffix}"
        s3.create_bucket(Bucket=bucket)
        names[f"{kind}_bucket"] = bucket
    for kind, schema in (
        ("jobs", tables.JOBS),
        ("models", tables.MODELS),
        ("predictions", tables.PREDICTIONS),
        ("annotations", tables.ANNOTATIONS),
    ):
        table = f"mlpoc-{kind}-{suffix}"
        dynamodb.create_table(**schema.create_table_kwargs(table))
        names[f"{kind}_table"] = table
    for kind in ("train", "predict"):
        dlq_url = sqs.create_queue(
            QueueName=f"mlpoc-{kind}-dlq-{suffix}",
            Attributes={"MessageRetentionPeriod": str(14 * 24 * 3600)},
        )["QueueUrl"]
        dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])[
            "Attributes"
        ]["QueueArn"]
        names[f"{kind}_dlq_url"] = dlq_url
        names[f"{kind}_queue_url"] = sqs.create_queue(
            QueueName=f"mlpoc-{kind}-{suffix}",
            Attributes={
                "VisibilityTimeout": str(visibility_seconds),
                "RedrivePolicy": json.dumps(
                    {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": str(max_receive_count)}
                ),
            },
        )["QueueUrl"]
    return Stack(endpoint=endpoint or "", **names)


def send_jobs(stack: Stack, count: int) -> None:
    """``count`` predict jobs (job-0, job-1, …) on the predict queue, ten per batch call."""
    sqs = stack.clients().sqs
    dataset = f"s3://{stack.data_bucket}/datasets/x.csv"
    for start in range(0, count, 10):
        entries = []
        for i in range(start, min(start + 10, count)):
            body = {"schema": 1, "job_id": f"job-{i}", "type": "predict", "model": "digits",
                    "dataset": dataset}  # fmt: skip
            entries.append({"Id": str(i - start), "MessageBody": json.dumps(body)})
        sqs.send_message_batch(QueueUrl=stack.predict_queue_url, Entries=entries)


class EmbeddedMoto(motoserver.EmbeddedMoto):
    """Local mode's moto server, for scripts (benchmarks): fake credentials in this process."""

    def __init__(self) -> None:
        os.environ.update(FAKE_CREDENTIALS)
        os.environ.pop("AWS_PROFILE", None)
        os.environ["AWS_CONFIG_FILE"] = os.environ["AWS_SHARED_CREDENTIALS_FILE"] = os.devnull
        super().__init__()
