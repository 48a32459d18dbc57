"""A CSV landed under ``datasets/`` in the data bucket: record a job and enqueue it.

S3 → events queue → this function (SQS event source, partial batch failures). The header
decides the job: a ``label`` column means *train*, an ``id`` column (and no label) means
*predict with the promoted version*. The model is the folder after ``datasets/``
(``datasets/digits/2026-11-27.csv`` → ``digits``), or the file's stem for a top-level file.

Each upload becomes exactly one job whatever S3 and SQS redeliver: the job id is derived from
the object's key and its S3 sequencer, the ledger record is created once, and a repeated send is
absorbed by the workers' ledger. A header that is neither kind is recorded as a FAILED job with
the reason, so the person who uploaded sees why nothing ran.
"""

from __future__ import annotations

import csv
import functools
import hashlib
import io
import json
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote_plus

import boto3
from aws_lambda_powertools.utilities.batch import (
    BatchProcessor,
    EventType,
    process_partial_response,
)
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext
from botocore.config import Config
from botocore.exceptions import ClientError

from mlpoc.aws import bucket_layout, lambda_logs
from mlpoc.runtime import environment
from mlpoc.runtime.contract import MODEL_NAME_PATTERN, Job, S3Uri, queue_for
from mlpoc.runtime.environment import RESOURCE_VARIABLES, UPLOAD_VARIABLES
from mlpoc.runtime.ledger import Ledger
from mlpoc.runtime.scaling import WorkerServices, nudger

logger = lambda_logs.logger("dataset_uploaded")
processor = BatchProcessor(event_type=EventType.SQS)

HEADER_BYTES = 64 * 1024
PREFIX = bucket_layout.DATASETS.path


# the variables the stack sets on this function, and what each holds
VARIABLES = {name: RESOURCE_VARIABLES[name] for name in UPLOAD_VARIABLES}


@dataclass(frozen=True)
class UploadSettings:
    data_bucket: str
    jobs_table: str
    train_queue_url: str
    predict_queue_url: str
    gpu_queue_url: str | None = None  # uploads never ask for a GPU

    @classmethod
    def from_env(cls) -> UploadSettings:
        found = environment.required(
            os.environ, VARIABLES, fix="The stack sets them on this function."
        )
        return cls(
            data_bucket=found["MLPOC_DATA_BUCKET"],
            jobs_table=found["MLPOC_JOBS_TABLE"],
            train_queue_url=found["MLPOC_TRAIN_QUEUE_URL"],
            predict_queue_url=found["MLPOC_PREDICT_QUEUE_URL"],
        )


@dataclass(frozen=True)
class Deps:
    settings: UploadSettings
    s3: Any
    sqs: Any
    ledger: Ledger
    nudge: Callable[[str], object] | None = None  # the scale-from-zero nudge (on AWS)


@functools.cache
def deps() -> Deps:
    """Clients are created on the first invocation, never at import."""
    settings = UploadSettings.from_env()
    config = Config(retries={"mode": "standard", "max_attempts": 10})
    services = WorkerServices.from_env(os.environ)
    return Deps(
        settings=settings,
        s3=boto3.client("s3", config=config),
        sqs=boto3.client("sqs", config=config),
        ledger=Ledger(boto3.client("dynamodb", config=config), settings.jobs_table),
        nudge=nudger(services, boto3.client("ecs", config=config) if services else None),
    )


def model_name(key: str) -> str | None:
    """``datasets/<model>/…/x.csv`` → model; ``datasets/x.csv`` → x (sanitised), or None."""
    rest = key[len(PREFIX) :] if key.startswith(PREFIX) else key
    candidate = rest.split("/", 1)[0] if "/" in rest else rest.rsplit(".", 1)[0]
    candidate = re.sub(r"[^a-z0-9_-]+", "-", candidate.lower()).strip("-_")[:64]
    return candidate if MODEL_NAME_PATTERN.match(candidate) else None


def read_header(s3: Any, bucket: str, key: str) -> list[str] | None:
    try:
        head = s3.get_object(Bucket=bucket, Key=key, Range=f"bytes=0-{HEADER_BYTES - 1}")
    except ClientError as error:
        if error.response["Error"]["Code"] in {"NoSuchKey", "404"}:
            return None  # deleted since the upload: nothing to do
        raise
    text = head["Body"].read().decode("utf-8-sig", errors="replace")
    first = text.splitlines()[0] if text else ""
    return [column.strip() for column in next(csv.reader(io.StringIO(first)), [])]


def on_upload(deps: Deps, bucket: str, key: str, sequencer: str) -> dict[str, Any]:
    """Turn one uploaded object into one recorded, enqueued job (or a recorded refusal)."""
    job_id = "upload-" + hashlib.sha256(f"{bucket}/{key}/{sequencer}".encode()).hexdigest()[:20]
    where = f"s3://{bucket}/{key}"
    model = model_name(key)
    header = read_header(deps.s3, bucket, key)
    if header is None:
        return {"job_id": job_id, "outcome": "gone"}
    if model is None or ("label" not in header and "id" not in header):
        reason = (
            f"{where}: cannot start a job. "
            + (
                "Name the folder after the model (datasets/<model>/<file>.csv, lowercase). "
                if model is None
                else ""
            )
            + (
                "The header needs a 'label' column (a training set) or an 'id' column "
                f"(a set to predict); found {header[:10]}. A table whose label has another "
                "name is trained by a job that names it: mlpoc train <model> <csv> --param "
                "label_column=<column>"
                if "label" not in header and "id" not in header
                else ""
            )
        )
        deps.ledger.reject(job_id, reason=reason, body=json.dumps({"upload": where}))
        logger.warning("upload.rejected", extra={"job_id": job_id, "reason": reason})
        return {"job_id": job_id, "outcome": "rejected", "reason": reason}
    job_type = "train" if "label" in header else "predict"
    job = Job(job_id=job_id, type=job_type, model=model, dataset=S3Uri(bucket, key))
    created = deps.ledger.create(job, source=where)
    queue = queue_for(job_type, deps.settings)
    # sent even when the record existed: a retry after a crash between the two must not lose
    # the job, and the workers' ledger turns a second copy into a no-op
    deps.sqs.send_message(QueueUrl=queue, MessageBody=job.to_json())
    if deps.nudge is not None:
        deps.nudge(job_type)
    logger.info(
        "upload.enqueued",
        extra={"job_id": job_id, "type": job_type, "model": model, "new": created},
    )
    return {"job_id": job_id, "outcome": "enqueued", "type": job_type, "model": model}


def record_handler(record: SQSRecord) -> None:
    notification = json.loads(record.body)  # not JSON: raise, retry, then the events DLQ
    if notification.get("Event") == "s3:TestEvent":
        logger.info("upload.test_event")
        return
    for entry in notification["Records"]:
        s3 = entry["s3"]
        on_upload(
            deps(),
            s3["bucket"]["name"],
            unquote_plus(s3["object"]["key"]),
            s3["object"].get("sequencer", ""),
        )


@logger.inject_lambda_context
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return process_partial_response(  # type: ignore[no-any-return]
        event=event, record_handler=record_handler, processor=processor, context=context
    )
