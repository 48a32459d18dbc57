"""The bucket layout: every prefix of the data and model buckets, who may read or write it, and
the key builders. The one home of these facts:

* the service stack grants each runtime role exactly the prefixes listed here (``read_by``,
  ``written_by``), and its cdk-nag acknowledgments quote ``holds``;
* the data stack sends upload events for ``DATASETS`` only;
* the upload function, the artifact writer, the dataset builder and the CLI build their keys here;
* the job contract refuses a dataset outside the prefixes its worker may read.

Standard library only: the CDK app, the Lambda bundle, the workers and the API all import it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Bucket = Literal["data", "models"]
# The runtime roles of the service stack: the two workers' task roles, the API's instance role
# and the upload function's execution role. The operator (CLI, console) is not one of them.
RuntimeRole = Literal["train", "predict", "api", "upload"]
RUNTIME_ROLES: tuple[RuntimeRole, ...] = ("train", "predict", "api", "upload")
# The worker that runs each job type (a job's dataset must be readable by it).
WORKER_OF_JOB: dict[str, RuntimeRole] = {
    "train": "train",
    "predict": "predict",
    "monitor": "predict",
    "features": "train",
}
DATASET_SUFFIX = ".csv"


@dataclass(frozen=True)
class Prefix:
    bucket: Bucket
    path: str  # ends with "/"
    holds: str  # what lives there (also the reason in the grant's acknowledgment)
    read_by: tuple[RuntimeRole, ...]
    written_by: tuple[RuntimeRole, ...] = ()

    @property
    def pattern(self) -> str:
        """The object-key pattern a grant uses (``datasets/*``)."""
        return self.path + "*"

    def holds_key(self, key: str) -> bool:
        return key.startswith(self.path) and len(key) > len(self.path)


DATASETS = Prefix(
    "data",
    "datasets/",
    "datasets people upload; a .csv here starts a job through the upload event",
    read_by=("train", "predict", "api", "upload"),
)
INPUTS = Prefix(
    "data",
    "inputs/",
    "datasets the CLI uploads for a job it sends itself (no upload event, no second job)",
    read_by=("train", "predict", "api"),
)
DATASET_VERSIONS = Prefix(
    "data",
    "dataset-versions/",
    "training sets a train job over a folder builds: the promoted version's data, what is new "
    "and the corrections (with a manifest beside each)",
    read_by=("train",),
    written_by=("train",),
)
MODEL_ARTIFACTS = Prefix(
    "models",
    "models/",
    "model.onnx and metadata.json of every trained version (the train worker reads the live "
    "version's to score it on a candidate's held-out rows)",
    read_by=("train", "predict", "api"),
    written_by=("train",),
)
INPUT_SAMPLES = Prefix(
    "data",
    "input-samples/",
    "a bounded sample of the rows each model version was asked about (realtime requests from the "
    "API, predict jobs' rows from the predict worker), read by the monitor job; expires",
    read_by=("predict",),
    written_by=("api", "predict"),
)
MONITOR_REPORTS = Prefix(
    "models",
    "monitor/",
    "the monitor job's reports (drift per feature, realized accuracy) and each model's latest",
    read_by=("predict", "api"),
    written_by=("predict",),
)
FEATURE_SNAPSHOTS = Prefix(
    "data",
    "feature-sets/",
    "the immutable snapshot of every feature set version (a features job writes it; a train "
    "job joins the version it names, a predict job by key the version its model reads)",
    read_by=("train", "predict"),
    written_by=("train",),
)
PREFIXES: tuple[Prefix, ...] = (
    DATASETS,
    INPUTS,
    DATASET_VERSIONS,
    MODEL_ARTIFACTS,
    INPUT_SAMPLES,
    MONITOR_REPORTS,
    FEATURE_SNAPSHOTS,
)
SAMPLE_DAYS = 30


def readable_by(role: RuntimeRole, bucket: Bucket = "data") -> tuple[Prefix, ...]:
    return tuple(p for p in PREFIXES if p.bucket == bucket and role in p.read_by)


def dataset_prefixes(job_type: str) -> tuple[Prefix, ...]:
    """Where a job of this type may take its dataset from: what its worker may read."""
    return readable_by(WORKER_OF_JOB[job_type])


def dataset_key(model: str, filename: str) -> str:
    """An upload that starts a job: ``datasets/<model>/<file>.csv``."""
    return f"{DATASETS.path}{model}/{filename}"


def model_prefix(model: str) -> str:
    """A model's upload folder, ``datasets/<model>/``: what its scheduled retrain reads."""
    return f"{DATASETS.path}{model}/"


def input_key(model: str, stamp: str, filename: str) -> str:
    """A CLI upload: ``inputs/<model>/<stamp>-<file>``."""
    return f"{INPUTS.path}{model}/{stamp}-{filename}"


def dataset_version_key(model: str, job_id: str) -> str:
    """The dataset a train job over a folder builds: ``dataset-versions/<model>/<job>.csv``
    (one per job: a retried job rewrites its own)."""
    return f"{DATASET_VERSIONS.path}{model}/{job_id}{DATASET_SUFFIX}"


def artifact_prefix(model: str, version: int) -> str:
    """One trained version's folder: ``models/<model>/<version>``."""
    return f"{MODEL_ARTIFACTS.path}{model}/{version}"


def sample_folder(model: str) -> str:
    """A model's input samples: ``input-samples/<model>/`` (a monitor job's default dataset)."""
    return f"{INPUT_SAMPLES.path}{model}/"


def sample_key(model: str, version: int, stamp: str, token: str) -> str:
    """One sample (an API flush, a predict job's rows):
    ``input-samples/<model>/<version>/<stamp>-<token>.csv``."""
    return f"{sample_folder(model)}{version}/{stamp}-{token}{DATASET_SUFFIX}"


def report_key(model: str, stamp: str, job_id: str) -> str:
    """One monitor report: ``monitor/<model>/reports/<stamp>-<job>.json``."""
    return f"{MONITOR_REPORTS.path}{model}/reports/{stamp}-{job_id}.json"


def latest_report_key(model: str) -> str:
    """A model's newest monitor report (each run rewrites it): ``monitor/<model>/latest.json``."""
    return f"{MONITOR_REPORTS.path}{model}/latest.json"


def snapshot_key(name: str, version: int) -> str:
    """One feature set version's snapshot: ``feature-sets/<set>/<version>.csv``."""
    return f"{FEATURE_SNAPSHOTS.path}{name}/{version}{DATASET_SUFFIX}"
