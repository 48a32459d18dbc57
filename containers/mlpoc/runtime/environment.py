"""Runtime configuration, read only from environment variables: the one parser for the workers,
the API and the Lambda functions, and the settings every runtime role reads.

The same names are set by the CDK task definitions on AWS and by local mode on a laptop, so a
worker cannot tell (and need not know) where it runs. A missing or malformed variable raises
:class:`~mlpoc.errors.SettingsError` at start-up with one sentence that names the variable, what
it should hold and where its value comes from.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from mlpoc.errors import SettingsError
from mlpoc.runtime.contract import QUEUE_OUTPUTS, SOURCES_OUTPUT, S3Uri, parse_sources, queue_for


# -- the one parser: a missing or malformed variable is one sentence ---------------------------
def required(env: Mapping[str, str], described: Mapping[str, str], *, fix: str) -> dict[str, str]:
    """The values of every variable in ``described`` (name -> what it is), or one error that
    names all the missing ones and says how to set them (``fix``)."""
    missing = [name for name in described if not env.get(name)]
    if missing:
        listed = "; ".join(f"{name} ({described[name]})" for name in missing)
        raise SettingsError(f"missing environment variable(s): {listed}. {fix}")
    return {name: env[name] for name in described}


def integer(env: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(
            f"{name} must be a whole number from {low} to {high}; got {raw!r}"
        ) from None
    if not low <= value <= high:
        raise SettingsError(f"{name} must be a whole number from {low} to {high}; got {value}")
    return value


def number(env: Mapping[str, str], name: str, default: float, low: float, high: float) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(
            f"{name} must be a number from {low:g} to {high:g}; got {raw!r}"
        ) from None
    if not low <= value <= high:  # NaN fails both comparisons
        raise SettingsError(f"{name} must be a number from {low:g} to {high:g}; got {raw!r}")
    return value


def switch(env: Mapping[str, str], name: str, *, default: bool) -> bool:
    raw = env.get(name, "").strip().lower()
    if not raw:
        return default
    if raw not in {"on", "off"}:
        raise SettingsError(f"{name} must be on or off; got {raw!r}")
    return raw == "on"


def listed(env: Mapping[str, str], name: str) -> tuple[str, ...]:
    """A comma-separated list, blanks dropped."""
    return tuple(part.strip() for part in env.get(name, "").split(",") if part.strip())


# -- the settings --------------------------------------------------------------------------------
# "gpu": the GPU pool's worker, a train worker on the GPU queue (locally: a CPU stand-in)
Role = Literal["train", "predict", "gpu", "api"]
DEFAULT_SHARD_BYTES = 16 * 1024 * 1024
MIN_SHARD_BYTES = 1_024
MAX_DATASET_BYTES = 512 * 1024 * 1024  # what one worker reads of one dataset (or one shard)


# name -> (what it is, the stack output that holds it): the error message says both, and the CLI
# reads the outputs it needs (and `mlpoc outputs --env` prints the variables) from this table
RESOURCES: dict[str, tuple[str, str]] = {
    "MLPOC_DATA_BUCKET": ("the data bucket name", "DataBucketName"),
    "MLPOC_MODEL_BUCKET": ("the model bucket name", "ModelBucketName"),
    "MLPOC_JOBS_TABLE": ("the jobs ledger table name", "JobsTableName"),
    "MLPOC_MODELS_TABLE": ("the model registry table name", "ModelsTableName"),
    "MLPOC_PREDICTIONS_TABLE": ("the predictions table name", "PredictionsTableName"),
    "MLPOC_ANNOTATIONS_TABLE": ("the annotations table name", "AnnotationsTableName"),
    "MLPOC_FEATURES_TABLE": ("the online feature table name", "FeaturesTableName"),
    "MLPOC_TRAIN_QUEUE_URL": ("the train queue URL", QUEUE_OUTPUTS["train"]),
    "MLPOC_PREDICT_QUEUE_URL": ("the predict queue URL", QUEUE_OUTPUTS["predict"]),
}
RESOURCE_VARIABLES: dict[str, str] = {
    name: f"{what} (stack output {output})" for name, (what, output) in RESOURCES.items()
}
RESOURCE_OUTPUTS: dict[str, str] = {name: output for name, (_, output) in RESOURCES.items()}
# set only on a stack with the GPU pool (mlpoc:gpu): the GPU queue's URL (stack output
# GpuQueueUrl)
GPU_QUEUE_VARIABLE = "MLPOC_GPU_QUEUE_URL"
# set only on a stack with mlpoc:sources: the other accounts' folders datasets may come from
# (stack output SourcePrefixes), comma-separated s3:// URIs
SOURCES_VARIABLE = "MLPOC_SOURCES"
# what the upload function reads (it records a job and sends it; the stack sets just these)
UPLOAD_VARIABLES = (
    "MLPOC_DATA_BUCKET",
    "MLPOC_JOBS_TABLE",
    "MLPOC_TRAIN_QUEUE_URL",
    "MLPOC_PREDICT_QUEUE_URL",
)


@dataclass(frozen=True, kw_only=True)
class Settings:
    role: Role
    data_bucket: str
    model_bucket: str
    jobs_table: str
    models_table: str
    predictions_table: str
    annotations_table: str
    features_table: str
    train_queue_url: str
    predict_queue_url: str
    # The GPU pool's queue; None on a stack without the pool (mlpoc:gpu off).
    gpu_queue_url: str | None
    # Folders of other accounts that datasets may come from (mlpoc:sources); () for none.
    sources: tuple[S3Uri, ...]
    # How many messages one receive asks for. A heavy training job may want 1.
    prefetch: int
    # Long-poll wait; 20 s is SQS's maximum and the cheapest idle loop.
    wait_seconds: int
    # Visibility timeout and ledger lease; 0 means "read the queue's own setting".
    visibility_seconds: int
    # After SIGTERM, how long a running job may go on before it is released.
    stop_grace_seconds: float
    # Predictions below this confidence are queued for annotation.
    review_threshold: float
    # Rows per onnxruntime call in the predict worker.
    predict_chunk_rows: int
    # A predict dataset larger than this is split into shard jobs of about this size.
    shard_bytes: int
    # Extra plugin modules to import (comma-separated dotted paths).
    plugins: tuple[str, ...]
    log_level: str
    # Rows of each predict job (or shard) kept in input-samples/ for the monitor (0: none).
    sample_rows: int = 1_000
    # The monitor job: a feature drifts above this PSI; the inputs drift when more than
    # ``drift_share`` of the features do; realized accuracy under ``min_realized`` alerts (0: off).
    drift_psi: float = 0.2
    drift_share: float = 0.3
    min_realized: float = 0.0
    # The alerts topic the monitor job publishes to (None: alerts only in its report and log).
    alerts_topic_arn: str | None = None

    @property
    def queue_url(self) -> str:
        """The queue this worker consumes."""
        return queue_for(self.role, self)

    @property
    def has_gpu_pool(self) -> bool:
        return bool(self.gpu_queue_url)

    @classmethod
    def from_env(cls, role: Role, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        found = required(
            env,
            RESOURCE_VARIABLES,
            fix="Set them from the stack outputs, or run the worker through `mlpoc local up`.",
        )
        if role == "gpu" and not env.get(GPU_QUEUE_VARIABLE):
            raise SettingsError(
                f"{GPU_QUEUE_VARIABLE} is not set: the GPU worker consumes the GPU queue (stack "
                f"output {QUEUE_OUTPUTS['gpu']}, on a stack deployed with mlpoc:gpu true)"
            )
        return cls(
            role=role,
            data_bucket=found["MLPOC_DATA_BUCKET"],
            model_bucket=found["MLPOC_MODEL_BUCKET"],
            jobs_table=found["MLPOC_JOBS_TABLE"],
            models_table=found["MLPOC_MODELS_TABLE"],
            predictions_table=found["MLPOC_PREDICTIONS_TABLE"],
            annotations_table=found["MLPOC_ANNOTATIONS_TABLE"],
            features_table=found["MLPOC_FEATURES_TABLE"],
            train_queue_url=found["MLPOC_TRAIN_QUEUE_URL"],
            predict_queue_url=found["MLPOC_PREDICT_QUEUE_URL"],
            gpu_queue_url=env.get(GPU_QUEUE_VARIABLE) or None,
            sources=_sources(env),
            prefetch=integer(env, "MLPOC_PREFETCH", 10 if role == "predict" else 1, 1, 10),
            wait_seconds=integer(env, "MLPOC_WAIT_SECONDS", 20, 0, 20),
            visibility_seconds=integer(env, "MLPOC_VISIBILITY_SECONDS", 0, 0, 43_200),
            stop_grace_seconds=number(env, "MLPOC_STOP_GRACE_SECONDS", 25.0, 0.0, 7_200.0),
            review_threshold=number(env, "MLPOC_REVIEW_THRESHOLD", 0.8, 0.0, 1.0),
            predict_chunk_rows=integer(env, "MLPOC_PREDICT_CHUNK_ROWS", 2_000, 1, 1_000_000),
            shard_bytes=integer(
                env, "MLPOC_SHARD_BYTES", DEFAULT_SHARD_BYTES, MIN_SHARD_BYTES, MAX_DATASET_BYTES
            ),
            plugins=listed(env, "MLPOC_PLUGINS"),
            log_level=env.get("MLPOC_LOG_LEVEL", "INFO").upper(),
            sample_rows=integer(env, "MLPOC_SAMPLE_ROWS", 1_000, 0, 100_000),
            drift_psi=number(env, "MLPOC_DRIFT_PSI", 0.2, 0.001, 10.0),
            drift_share=number(env, "MLPOC_DRIFT_SHARE", 0.3, 0.001, 1.0),
            min_realized=number(env, "MLPOC_MIN_REALIZED_ACCURACY", 0.0, 0.0, 1.0),
            alerts_topic_arn=env.get("MLPOC_ALERTS_TOPIC_ARN") or None,
        )


def _sources(env: Mapping[str, str]) -> tuple[S3Uri, ...]:
    try:
        return parse_sources(env.get(SOURCES_VARIABLE, ""))
    except ValueError as error:
        raise SettingsError(
            f"{SOURCES_VARIABLE} must be comma-separated s3://bucket/prefix/ folders (stack "
            f"output {SOURCES_OUTPUT}): {error}"
        ) from None
