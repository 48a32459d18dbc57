"""What the operator commands do, as functions of a :class:`Deployment` (the CLI prints)."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlpoc.aws import bucket_layout
from mlpoc.cli.target import Deployment
from mlpoc.errors import JobRejected, TargetError
from mlpoc.models import runs as runs_module
from mlpoc.models.registry import ModelVersion, Pointer
from mlpoc.runtime import submission
from mlpoc.runtime.contract import (
    MODEL_NAME_PATTERN,
    NO_GPU_POOL,
    QUEUE_OUTPUTS,
    REASON_ATTRIBUTE,
    SOURCES_OUTPUT,
    Job,
    JobType,
    S3Uri,
    parse_job,
    parse_sources,
    queue_of,
)
from mlpoc.runtime.environment import GPU_QUEUE_VARIABLE, RESOURCE_OUTPUTS
from mlpoc.runtime.job_records import TERMINAL
from mlpoc.runtime.scaling import CLUSTER_OUTPUT, SERVICE_OUTPUTS, WorkerServices, nudger
from mlpoc.runtime.schedules import SCHEDULES_OUTPUT, fire

# operator-facing queue name -> (queue output, dead-letter queue output)
QUEUES = {
    "train": ("TrainQueueUrl", "TrainDeadLetterQueueUrl"),
    "predict": ("PredictQueueUrl", "PredictDeadLetterQueueUrl"),
    "events": ("EventsQueueUrl", "EventsDeadLetterQueueUrl"),
    "gpu": ("GpuQueueUrl", "GpuDeadLetterQueueUrl"),  # a stack with the GPU pool (mlpoc:gpu)
}


def queue_urls(dep: Deployment, queue: str) -> tuple[str, str]:
    """A queue's URL and its DLQ's; the GPU queue's only on a stack with the pool."""
    source, dead = QUEUES[queue]
    if queue == "gpu" and dead not in dep.outputs:
        raise TargetError("this stack has no GPU pool (mlpoc:gpu), so it has no GPU dead letters")
    return dep.output(source), dep.output(dead)


def dataset_uri(dep: Deployment, model: str, dataset: str) -> S3Uri:
    """An s3:// URI as given, or a local CSV uploaded to the data bucket first."""
    if dataset.startswith("s3://"):
        try:
            return S3Uri.parse(dataset)
        except ValueError as error:
            raise TargetError(str(error)) from None
    path = Path(dataset)
    if not path.is_file():
        raise TargetError(f"{dataset} is neither an s3:// URI nor a file on this machine")
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
    # under inputs/, not datasets/: an upload there would start a second job
    uri = S3Uri(dep.output("DataBucketName"), bucket_layout.input_key(model, stamp, path.name))
    dep.client("s3").put_object(Bucket=uri.bucket, Key=uri.key, Body=path.read_bytes())
    return uri


def submit(
    dep: Deployment,
    *,
    job_type: JobType,
    model: str,
    dataset: str,
    version: str = "current",
    params: dict[str, Any] | None = None,
    job_id: str | None = None,
    gpu: bool = False,
) -> Job:
    if not MODEL_NAME_PATTERN.match(model):
        raise TargetError(
            f"model name {model!r} is not valid: lowercase letters, digits, '-' and '_', "
            "starting with a letter or digit"
        )
    message = {
        "schema": 1,
        "job_id": job_id or f"cli-{job_type}-{uuid.uuid4().hex[:12]}",
        "type": job_type,
        "model": model,
        "dataset": str(dataset_uri(dep, model, dataset)),
        "version": version,
        "params": params or {},
        **({"resources": "gpu"} if gpu else {}),
    }
    try:
        job = parse_job(
            json.dumps(message), data_bucket=dep.output("DataBucketName"), sources=sources(dep)
        )
    except JobRejected as rejected:
        raise TargetError(f"not a valid job: {rejected.reason}") from None
    queue_output = QUEUE_OUTPUTS[queue_of(job)]
    if queue_output not in dep.outputs and queue_of(job) == "gpu":
        raise TargetError(NO_GPU_POOL)
    queue = dep.output(queue_output)
    nudge = nudger(worker_services(dep), dep.client("ecs"))
    submitted = submission.submit(
        dep.ledger(), dep.client("sqs"), queue_url=queue, job=job, source="cli", nudge=nudge
    )
    if not submitted:
        raise TargetError(f"a job with id {job.job_id!r} exists already; pick another --job-id")
    return job


@dataclass(frozen=True)
class ScheduleInfo:
    name: str
    model: str
    expression: str
    input: str  # the job it sends, with the scheduler's context attributes still in it


def schedules(dep: Deployment) -> list[ScheduleInfo]:
    """The stack's schedules (mlpoc:schedules): from the local state, or EventBridge Scheduler."""
    if dep.local_schedules is not None:
        return [
            ScheduleInfo(s["name"], s["model"], s["expression"], s["input"])
            for s in dep.local_schedules
        ]
    names = [n for n in dep.outputs.get(SCHEDULES_OUTPUT, "").split(",") if n]
    scheduler = dep.client("scheduler")
    found = []
    for name in names:
        schedule = scheduler.get_schedule(Name=name)
        text = schedule["Target"]["Input"]
        found.append(
            ScheduleInfo(name, json.loads(text)["model"], schedule["ScheduleExpression"], text)
        )
    return found


def run_schedule(dep: Deployment, model: str) -> Job:
    """Fire ``model``'s retrain schedule now: its job, as the scheduler would send it, recorded
    and queued (its job id carries ``manual-…`` where the scheduler's execution id goes)."""
    found = {s.model: s for s in schedules(dep) if json.loads(s.input)["type"] == "train"}
    if model not in found:
        listed = ", ".join(found) or "none (set mlpoc:schedules in cdk.json and deploy)"
        raise TargetError(f"no schedule for model {model!r}; schedules: {listed}")
    # a run of its own: not a scheduled time, so never a duplicate of the schedule's runs
    body = fire(found[model].input, scheduled=f"manual-{uuid.uuid4().hex[:12]}")
    try:
        job = parse_job(body, data_bucket=dep.output("DataBucketName"), sources=sources(dep))
    except JobRejected as rejected:
        raise TargetError(f"the schedule's job is not valid: {rejected.reason}") from None
    submission.submit(
        dep.ledger(),
        dep.client("sqs"),
        queue_url=dep.output(QUEUE_OUTPUTS["train"]),
        job=job,
        source=f"schedule run ({found[model].name})",
        nudge=nudger(worker_services(dep), dep.client("ecs")),
    )
    return job


def sources(dep: Deployment) -> tuple[S3Uri, ...]:
    """The other accounts' folders the stack reads datasets from (mlpoc:sources)."""
    return parse_sources(dep.outputs.get(SOURCES_OUTPUT, ""))


def worker_services(dep: Deployment) -> WorkerServices | None:
    """The worker services behind the queues, from the service stack's outputs (on AWS; local
    mode's workers are processes that always poll: no nudge)."""
    if dep.endpoint is not None or CLUSTER_OUTPUT not in dep.outputs:
        return None
    return WorkerServices(
        dep.output(CLUSTER_OUTPUT),
        {q: dep.outputs[o] for q, o in SERVICE_OUTPUTS.items() if o in dep.outputs},
    )


def environment(dep: Deployment) -> dict[str, str]:
    """Variables for a shell: the resource names, and locally the endpoint and the operator's
    keys (the admin identity local mode created in moto)."""
    env = {name: dep.output(output) for name, output in RESOURCE_OUTPUTS.items()}
    if QUEUE_OUTPUTS["gpu"] in dep.outputs:  # a stack with the GPU pool
        env[GPU_QUEUE_VARIABLE] = dep.outputs[QUEUE_OUTPUTS["gpu"]]
    # AWS_DEFAULT_REGION too: AWS CLI v1 and older SDKs read only that one
    env["AWS_REGION"] = env["AWS_DEFAULT_REGION"] = dep.region
    if dep.endpoint is not None and dep.local_credentials is not None:
        env.update(dep.local_credentials.env())
        env.update(AWS_ENDPOINT_URL=dep.endpoint, MLPOC_API_KEY=dep.api_key())
    if dep.api_url:
        env["MLPOC_API_URL"] = dep.api_url
    return env


def wait_for(
    dep: Deployment,
    job_ids: list[str],
    *,
    timeout: float,
    on_poll: Callable[[dict[str, dict[str, Any]]], None] = lambda _: None,
) -> dict[str, dict[str, Any]]:
    """Poll the ledger until every job is SUCCEEDED or FAILED; TargetError on timeout."""
    ledger = dep.ledger()
    deadline = time.monotonic() + timeout
    while True:
        records = {job_id: ledger.get(job_id) or {"status": "UNKNOWN"} for job_id in job_ids}
        on_poll(records)
        if all(r.get("status") in TERMINAL for r in records.values()):
            return records
        if time.monotonic() > deadline:
            late = [j for j, r in records.items() if r.get("status") not in TERMINAL]
            raise TargetError(f"still not finished after {timeout:.0f} s: {', '.join(late)}")
        time.sleep(0.5)


def duration(record: dict[str, Any]) -> float | None:
    if "finished_at" in record and "started_at" in record:
        return float(record["finished_at"]) - float(record["started_at"])
    return None


@dataclass(frozen=True)
class ModelSummary:
    model: str
    pointer: Pointer | None
    versions: list[ModelVersion]


def models(dep: Deployment, name: str | None = None) -> list[ModelSummary]:
    registry = dep.registry()
    if name is not None:
        versions = registry.versions(name)
        if not versions:
            raise TargetError(f"no model {name!r}: train one with `mlpoc train {name} <csv>`")
        return [ModelSummary(name, registry.pointer(name), versions)]
    return [ModelSummary(p.model, p, registry.versions(p.model)) for p in registry.pointers()]


@dataclass(frozen=True)
class Run:
    """A version and its metadata.json: the run record (``None``: trained before run records
    were kept) and the libraries it was trained with."""

    version: ModelVersion
    metadata: dict[str, Any]

    @property
    def record(self) -> dict[str, Any] | None:
        found: dict[str, Any] | None = self.metadata.get("run")
        return found

    @property
    def libraries(self) -> dict[str, str]:
        return {str(k): str(v) for k, v in (self.metadata.get("libraries") or {}).items()}


def runs(dep: Deployment, name: str, numbers: list[int]) -> list[Run]:
    """Versions of ``name`` with their run records, read from beside their artifacts."""
    registry, s3 = dep.registry(), dep.client("s3")
    bucket = dep.output("ModelBucketName")
    found = []
    for number in numbers:
        version = registry.get(name, number)
        metadata = runs_module.metadata(s3, bucket, version)
        if metadata is None:
            raise TargetError(
                f"{name} v{number}: its metadata s3://{bucket}/{version.metadata_key} is gone "
                "(deleted or expired); the registry item is all that is left of it"
            )
        found.append(Run(version, metadata))
    return found


@dataclass(frozen=True)
class DeadLetter:
    message_id: str
    job_id: str | None
    reason: str
    receives: int
    body: str


def _dead_letter(message: dict[str, Any]) -> DeadLetter:
    try:
        body = json.loads(message["Body"])
    except ValueError:
        body = None
    job_id = body.get("job_id") if isinstance(body, dict) else None
    attributes = message.get("MessageAttributes", {})
    reason = attributes.get(REASON_ATTRIBUTE, {}).get("StringValue") or (
        "moved by SQS after the queue's maximum receives (the worker gave up or crashed)"
    )
    return DeadLetter(
        message_id=message["MessageId"],
        job_id=str(job_id) if job_id else None,
        reason=reason,
        receives=int(message.get("Attributes", {}).get("ApproximateReceiveCount", 0)),
        body=message["Body"],
    )


def dlq_show(dep: Deployment, queue: str, *, peek: int = 10) -> tuple[int, list[DeadLetter]]:
    """How many messages wait in the DLQ, and up to ``peek`` of them (left visible)."""
    sqs = dep.client("sqs")
    _, url = queue_urls(dep, queue)
    count = int(
        sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"])[
            "Attributes"
        ]["ApproximateNumberOfMessages"]
    )
    if count == 0 or peek == 0:
        return count, []
    messages = sqs.receive_message(
        QueueUrl=url,
        MaxNumberOfMessages=min(10, peek),
        VisibilityTimeout=0,
        AttributeNames=["ApproximateReceiveCount"],
        MessageAttributeNames=["All"],
    ).get("Messages", [])
    return count, [_dead_letter(m) for m in messages]


def dlq_redrive(dep: Deployment, queue: str) -> list[DeadLetter]:
    """Move every message of the DLQ back to its queue, making its job claimable again."""
    sqs = dep.client("sqs")
    source, dead = queue_urls(dep, queue)
    ledger = dep.ledger() if queue != "events" else None
    moved: list[DeadLetter] = []
    while True:
        messages = sqs.receive_message(
            QueueUrl=dead,
            MaxNumberOfMessages=10,
            VisibilityTimeout=60,
            WaitTimeSeconds=1,
            AttributeNames=["ApproximateReceiveCount"],
            MessageAttributeNames=["All"],
        ).get("Messages", [])
        if not messages:
            return moved
        for message in messages:
            letter = _dead_letter(message)
            if ledger is not None and letter.job_id:
                ledger.requeue(
                    letter.job_id, reason=f"redriven from the DLQ after: {letter.reason}"
                )
            attributes = {
                k: v
                for k, v in message.get("MessageAttributes", {}).items()
                if k != REASON_ATTRIBUTE
            }
            sqs.send_message(
                QueueUrl=source, MessageBody=message["Body"], MessageAttributes=attributes
            )
            sqs.delete_message(QueueUrl=dead, ReceiptHandle=message["ReceiptHandle"])
            moved.append(letter)


def sample_folder(dep: Deployment, model: str) -> str:
    """The model's input samples (a monitor job's default dataset)."""
    return str(S3Uri(dep.output("DataBucketName"), bucket_layout.sample_folder(model)))


def latest_report(dep: Deployment, model: str) -> dict[str, Any] | None:
    """The model's latest monitor report (None: no monitor job has run)."""
    return runs_module.read_json(
        dep.client("s3"), dep.output("ModelBucketName"), bucket_layout.latest_report_key(model)
    )
