"""The job message contract: the one JSON shape every producer and worker agrees on.

A job message is the SQS body. Version 1:

    {"schema": 1, "job_id": "train-2024-01-01-a", "type": "train", "model": "digits",
     "dataset": "s3://<data bucket>/datasets/digits/a.csv", "version": "current", "params": {}}

Parsing never raises anything but :class:`JobRejected`, whose ``reason`` is a sentence a
person can act on and whose ``job_id`` is set when the body carried a usable one (so the
ledger can record the failure under the sender's own id).
"""

from __future__ import annotations

import dataclasses
import json
import re
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from mlpoc.aws import bucket_layout
from mlpoc.errors import JobRejected

SCHEMA_VERSION = 1
SUPPORTED_SCHEMAS = frozenset({SCHEMA_VERSION})
MAX_MESSAGE_BYTES = 256 * 1024
JOB_TYPES = ("train", "predict", "monitor", "features")

JOB_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")
MODEL_NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
VERSION_PATTERN = re.compile(r"^(current|[1-9][0-9]{0,8})$")
S3_URI_PATTERN = re.compile(r"^s3://(?P<bucket>[a-z0-9][a-z0-9.-]{1,61}[a-z0-9])/(?P<key>.+)$")

KNOWN_FIELDS = frozenset(
    {"schema", "job_id", "type", "model", "dataset", "version", "params", "shard", "resources"}
)
RESOURCES = ("cpu", "gpu")
SHARD_FIELDS = frozenset({"parent", "index", "total", "header", "start", "end"})

JobType = Literal["train", "predict", "monitor", "features"]

# The queue that carries each kind of job, by the stack output that holds its URL: one per job
# type, and the GPU pool's for train jobs with "resources": "gpu" (only with mlpoc:gpu on).
QUEUE_OUTPUTS: dict[str, str] = {
    "train": "TrainQueueUrl",
    "predict": "PredictQueueUrl",
    "gpu": "GpuQueueUrl",
}
# The queue of each job type (a monitor job runs on the predict workers: it reads what they do;
# a features job, which publishes a feature set version, on the train workers: they write)
QUEUE_OF_TYPE: dict[str, str] = {
    "train": "train",
    "predict": "predict",
    "monitor": "predict",
    "features": "train",
}
NO_GPU_POOL = (
    'this stack has no GPU pool, so a job with "resources": "gpu" cannot run: deploy the pool '
    '(set "mlpoc:gpu": true in cdk.json, or -c mlpoc:gpu=true), or leave "resources" out to '
    "train on the CPU workers"
)
# The data stack's output listing the folders of other accounts datasets may come from
# (mlpoc:sources), comma-separated s3:// URIs; absent when there are none.
SOURCES_OUTPUT = "SourcePrefixes"
# The message attribute a worker sets on a message it copies to the dead-letter queue: why.
REASON_ATTRIBUTE = "mlpoc-reason"


class QueueUrls(Protocol):
    """Anything that knows the job queues' URLs (the workers', the API's, a function's
    settings); the GPU queue's is None on a stack without the GPU pool."""

    @property
    def train_queue_url(self) -> str: ...

    @property
    def predict_queue_url(self) -> str: ...

    @property
    def gpu_queue_url(self) -> str | None: ...


def queue_for(queue: str, urls: QueueUrls) -> str:
    """The URL of ``queue`` (``train``, ``predict`` or ``gpu``; see :func:`queue_of`): the one
    place that says so. A :class:`JobRejected` for the GPU queue of a stack without one."""
    if queue == "train":
        return urls.train_queue_url
    if queue == "predict":
        return urls.predict_queue_url
    if queue == "gpu":
        if not urls.gpu_queue_url:
            raise JobRejected(NO_GPU_POOL)
        return urls.gpu_queue_url
    raise ValueError(f"no queue {queue!r}: one of {', '.join(QUEUE_OUTPUTS)}")


def queue_of(job: Job) -> str:
    """The queue that carries ``job``: its type's, or the GPU pool's for a GPU train job."""
    return "gpu" if job.resources == "gpu" else QUEUE_OF_TYPE[job.type]


def misrouted(job: Job, consumed: str, *, gpu_pool: bool) -> str | None:
    """Why a worker consuming queue ``consumed`` must not run ``job``, or None when it may.
    The GPU pool's worker also runs CPU train jobs (a GPU trains what a CPU does)."""
    wanted = queue_of(job)
    if wanted == consumed or (consumed == "gpu" and job.type == "train"):
        return None
    if wanted == "gpu":
        if not gpu_pool:
            return NO_GPU_POOL
        return (
            'a job with "resources": "gpu" belongs on the GPU queue (stack output '
            f"{QUEUE_OUTPUTS['gpu']}); POST /v1/jobs and `mlpoc train --gpu` send it there"
        )
    return f"a {job.type} job belongs on the {wanted} queue, not the {consumed} queue"


@dataclass(frozen=True)
class S3Uri:
    bucket: str
    key: str

    def __str__(self) -> str:
        return f"s3://{self.bucket}/{self.key}"

    @classmethod
    def parse(cls, uri: str) -> S3Uri:
        match = S3_URI_PATTERN.match(uri)
        if match is None:
            raise ValueError(f"{uri!r} is not an s3://bucket/key URI")
        return cls(bucket=match["bucket"], key=match["key"])


@dataclass(frozen=True)
class Shard:
    """The part of a sharded predict job one shard job runs: the lines of ``dataset`` that begin
    in the byte range ``[start, end)``, read with the header in ``[0, header)``. Written by the
    predict worker that split the parent job (:mod:`mlpoc.data.shards`), never by a person."""

    parent: str
    index: int  # 0-based
    total: int
    header: int  # bytes of the header line, its newline included
    start: int
    end: int

    def to_message(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def __str__(self) -> str:
        return f"shard {self.index + 1} of {self.total}"

    @classmethod
    def parse(cls, value: Any, job_id: str) -> Shard:
        if not isinstance(value, dict) or set(value) != SHARD_FIELDS:
            raise JobRejected(f"shard must be an object with {sorted(SHARD_FIELDS)}", job_id)
        numbers = {k: v for k, v in value.items() if k != "parent"}
        if any(isinstance(v, bool) or not isinstance(v, int) or v < 0 for v in numbers.values()):
            raise JobRejected(f"shard: {sorted(numbers)} must be whole numbers >= 0", job_id)
        parent = value["parent"]
        if not isinstance(parent, str) or not JOB_ID_PATTERN.match(parent):
            raise JobRejected(f"shard.parent must be a job id; got {parent!r}", job_id)
        shard = cls(parent=parent, **numbers)
        if not (shard.index < shard.total and shard.header <= shard.start <= shard.end):
            raise JobRejected(
                f"shard: needs index < total and header <= start <= end; got {shard.to_message()}",
                job_id,
            )
        return shard


@dataclass(frozen=True)
class Job:
    job_id: str
    type: JobType
    model: str
    dataset: S3Uri
    version: str = "current"
    params: dict[str, Any] = field(default_factory=dict)
    schema: int = SCHEMA_VERSION
    shard: Shard | None = None
    resources: str = "cpu"  # "gpu": the GPU pool's queue (train jobs only)

    @property
    def over_prefix(self) -> bool:
        """A job over a folder (``s3://bucket/datasets/batch/``): a predict job predicts every
        CSV in it, a train job builds its dataset version from it."""
        return self.dataset.key.endswith("/")

    def to_message(self) -> dict[str, Any]:
        message = {
            "schema": self.schema,
            "job_id": self.job_id,
            "type": self.type,
            "model": self.model,
            "dataset": str(self.dataset),
            "version": self.version,
            "params": self.params,
        }
        if self.shard is not None:
            message["shard"] = self.shard.to_message()
        if self.resources != "cpu":
            message["resources"] = self.resources
        return message

    def to_json(self) -> str:
        body = json.dumps(self.to_message(), separators=(",", ":"), sort_keys=True)
        if len(body.encode()) > MAX_MESSAGE_BYTES:
            raise JobRejected(
                f"the job message is {len(body.encode())} bytes, over SQS's "
                f"{MAX_MESSAGE_BYTES} bytes: put large parameters in a file in the data "
                "bucket and pass its key in params",
                self.job_id,
            )
        return body


def _load_object(raw: bytes) -> dict[str, Any]:
    if len(raw) > MAX_MESSAGE_BYTES:
        raise JobRejected(
            f"the message is {len(raw)} bytes, over SQS's limit of {MAX_MESSAGE_BYTES}: put "
            "large parameters in a file in the data bucket and pass its key in params"
        )
    try:
        message = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise JobRejected(f"the message body is not JSON ({error})") from None
    if not isinstance(message, dict):
        raise JobRejected(f"the message body must be a JSON object, not {type(message).__name__}")
    return message


def _schema(message: dict[str, Any], job_id: str) -> int:
    schema = message.get("schema")
    if isinstance(schema, bool) or not isinstance(schema, int):
        raise JobRejected(
            f"schema must be an integer version (this worker reads {SCHEMA_VERSION})", job_id
        )
    if schema not in SUPPORTED_SCHEMAS:
        raise JobRejected(
            f"schema {schema} is not supported; this worker reads schema "
            f"{sorted(SUPPORTED_SCHEMAS)}: upgrade the worker or send schema {SCHEMA_VERSION}",
            job_id,
        )
    unknown = sorted(set(message) - KNOWN_FIELDS)
    if unknown:
        raise JobRejected(
            f"unknown field(s) {unknown}; schema {schema} has {sorted(KNOWN_FIELDS)}", job_id
        )
    return schema


def parse_sources(text: str) -> tuple[S3Uri, ...]:
    """The source folders from their comma-separated form (env MLPOC_SOURCES, output
    SourcePrefixes); a ValueError names a malformed one."""
    sources = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        uri = S3Uri.parse(part)
        if not uri.key.endswith("/"):
            raise ValueError(f"{part!r} is not a folder (s3://bucket/prefix/)")
        sources.append(uri)
    return tuple(sources)


def dataset_refusal(
    uri: S3Uri, job_type: str, data_bucket: str, sources: tuple[S3Uri, ...] = ()
) -> str | None:
    """Why ``uri`` cannot be the dataset of a ``job_type`` job, or None when it can: a key under
    the prefixes of the data bucket its worker may read, or under a source folder of another
    account (mlpoc:sources)."""
    if uri.bucket != data_bucket:
        if not any(uri.bucket == s.bucket and uri.key.startswith(s.key) for s in sources):
            shared = ", ".join(str(s) for s in sources)
            return (
                f"dataset must be inside the data bucket {data_bucket!r}"
                + (f" or a shared folder ({shared})" if shared else "")
                + f"; got {uri} (another account's data is read only from the folders in "
                "mlpoc:sources)"
            )
        return _shape_refusal(uri)
    prefixes = bucket_layout.dataset_prefixes(job_type)
    if not any(p.holds_key(uri.key) for p in prefixes):
        names = ", ".join(p.path for p in prefixes)
        return (
            f"a {job_type} job's dataset must be under {names} of the data bucket (what the "
            f"{job_type} worker may read); got key {uri.key!r}"
        )
    return _shape_refusal(uri)


def _shape_refusal(uri: S3Uri) -> str | None:
    # a folder: a predict job predicts every CSV in it; a train job trains on the promoted
    # version's data plus what is new in it (mlpoc.data.dataset_versions)
    if uri.key.endswith("/") or uri.key.lower().endswith(bucket_layout.DATASET_SUFFIX):
        return None
    return f"dataset must be a .csv object or a folder ending in /; got key {uri.key!r}"


def _dataset(
    message: dict[str, Any],
    job_id: str,
    job_type: str,
    data_bucket: str,
    sources: tuple[S3Uri, ...],
) -> S3Uri:
    dataset = message.get("dataset")
    if not isinstance(dataset, str):
        raise JobRejected("dataset must be an s3:// URI string", job_id)
    try:
        uri = S3Uri.parse(dataset)
    except ValueError as error:
        raise JobRejected(f"dataset: {error}", job_id) from None
    refusal = dataset_refusal(uri, job_type, data_bucket, sources)
    if refusal is not None:
        raise JobRejected(refusal, job_id)
    return uri


def parse_job(body: str | bytes, *, data_bucket: str, sources: tuple[S3Uri, ...] = ()) -> Job:
    """Validate one SQS body against the contract; raise JobRejected with a readable reason."""
    message = _load_object(body.encode() if isinstance(body, str) else body)

    job_id = message.get("job_id")
    if not isinstance(job_id, str) or not JOB_ID_PATTERN.match(job_id):
        raise JobRejected(
            "job_id must be 1-128 characters of letters, digits and ._:- "
            f"starting with a letter or digit; got {job_id!r}"
        )
    schema = _schema(message, job_id)

    job_type = message.get("type")
    if job_type not in JOB_TYPES:
        raise JobRejected(f"type must be one of {list(JOB_TYPES)}; got {job_type!r}", job_id)

    model = message.get("model")
    if not isinstance(model, str) or not MODEL_NAME_PATTERN.match(model):
        raise JobRejected(
            "model must be 1-64 characters of lowercase letters, digits, - and _, "
            f"starting with a letter or digit; got {model!r}",
            job_id,
        )
    dataset = _dataset(message, job_id, job_type, data_bucket, sources)

    version = message.get("version", "current")
    if isinstance(version, int) and not isinstance(version, bool):
        version = str(version)
    if not isinstance(version, str) or not VERSION_PATTERN.match(version):
        raise JobRejected(
            f"version must be 'current' or a positive integer; got {version!r}", job_id
        )

    params = message.get("params", {})
    if not isinstance(params, dict):
        raise JobRejected(f"params must be a JSON object; got {type(params).__name__}", job_id)

    resources = message.get("resources", "cpu")
    if resources not in RESOURCES:
        raise JobRejected(f"resources must be one of {list(RESOURCES)}; got {resources!r}", job_id)
    if resources == "gpu" and job_type != "train":
        raise JobRejected(
            'resources "gpu" is for train jobs: the GPU pool trains, and predictions run on '
            "the predict workers",
            job_id,
        )

    shard = None
    if "shard" in message:
        shard = Shard.parse(message["shard"], job_id)
        if job_type != "predict" or dataset.key.endswith("/"):
            raise JobRejected("shard: only a predict job over one .csv object has shards", job_id)

    return Job(
        job_id=job_id,
        type=job_type,
        model=model,
        dataset=dataset,
        version=version,
        params=params,
        schema=schema,
        shard=shard,
        resources=resources,
    )
