"""A fresh set of the kit's resources in moto, one per test, created from the data stack's own
synthesized template the way local mode creates it: the runtime is exercised against what the
stack declares, not against a hand-written copy."""

from __future__ import annotations

import copy
import json
import os
import uuid
from dataclasses import dataclass
from typing import Any

import boto3

from mlpoc.aws.clients import Clients
from mlpoc.local import motoserver
from mlpoc.local.deploy import LocalDeployer, supported_by_moto
from mlpoc.local.moto_template import for_moto
from tests.support.cdk_app import default_app

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
    features_table: str
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
            "MLPOC_FEATURES_TABLE": self.features_table,
            "MLPOC_TRAIN_QUEUE_URL": self.train_queue_url,
            "MLPOC_PREDICT_QUEUE_URL": self.predict_queue_url,
        }

    def clients(self) -> Clients:
        session = boto3.session.Session(region_name=REGION)
        return Clients(
            s3=session.client("s3", endpoint_url=self.endpoint or None),
            sqs=session.client("sqs", endpoint_url=self.endpoint or None),
            dynamodb=session.client("dynamodb", endpoint_url=self.endpoint or None),
            sns=session.client("sns", endpoint_url=self.endpoint or None),
        )


# the stack outputs behind each field of Stack
OUTPUTS = {
    "data_bucket": "DataBucketName", "model_bucket": "ModelBucketName",
    "jobs_table": "JobsTableName", "models_table": "ModelsTableName",
    "predictions_table": "PredictionsTableName", "annotations_table": "AnnotationsTableName",
    "features_table": "FeaturesTableName",
    "train_queue_url": "TrainQueueUrl", "predict_queue_url": "PredictQueueUrl",
    "train_dlq_url": "TrainDeadLetterQueueUrl", "predict_dlq_url": "PredictDeadLetterQueueUrl",
}  # fmt: skip
JOB_QUEUES = ("TrainQueue", "PredictQueue")  # the logical ids' prefixes


def stack_template(*, visibility_seconds: int, max_receive_count: int) -> dict[str, Any]:
    """The data stack's synthesized template, as local mode creates it, with the two job queues'
    visibility timeout and receive limit a test asks for, and no exports (so that every test
    gets a stack of its own)."""
    template = copy.deepcopy(default_app().data_json)
    for output in template.get("Outputs", {}).values():
        output.pop("Export", None)
    for logical_id, resource in template["Resources"].items():
        if resource["Type"] == "AWS::SQS::Queue" and logical_id.startswith(JOB_QUEUES):
            resource["Properties"]["VisibilityTimeout"] = visibility_seconds
            resource["Properties"]["RedrivePolicy"]["maxReceiveCount"] = max_receive_count
    return template


def create_stack(
    endpoint: str | None, *, visibility_seconds: int = 30, max_receive_count: int = 5
) -> Stack:
    """A fresh data stack from the data stack's template (what local mode creates), under a
    name of its own; endpoint None = the moto of this process (mock_aws)."""
    template = stack_template(
        visibility_seconds=visibility_seconds, max_receive_count=max_receive_count
    )
    name = f"mlpoc-test-{uuid.uuid4().hex[:8]}"
    if endpoint:
        outputs = LocalDeployer(endpoint).create(name, template).outputs
    else:
        cloudformation = boto3.session.Session(region_name=REGION).client("cloudformation")
        prepared = for_moto(template, supported_by_moto).template
        cloudformation.create_stack(StackName=name, TemplateBody=json.dumps(prepared))
        (described,) = cloudformation.describe_stacks(StackName=name)["Stacks"]
        outputs = {o["OutputKey"]: o["OutputValue"] for o in described.get("Outputs", [])}
    return Stack(endpoint=endpoint or "", **{field: outputs[o] for field, o in OUTPUTS.items()})


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
