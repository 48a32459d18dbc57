"""The bucket layout: every key the runtime builds lies in the prefix whose grants cover it."""

from __future__ import annotations

import pytest

from mlpoc.aws import bucket_layout
from mlpoc.models.artifacts import ArtifactKeys
from mlpoc.runtime.contract import S3Uri, dataset_refusal


def test_every_key_builder_writes_inside_its_own_prefix() -> None:
    assert bucket_layout.DATASETS.holds_key(bucket_layout.dataset_key("digits", "a.csv"))
    assert bucket_layout.INPUTS.holds_key(
        bucket_layout.input_key("digits", "20261129T100000", "a.csv")
    )
    version = bucket_layout.dataset_version_key("digits", "schedule-digits-d32c5kddcf5bb8c3")
    assert bucket_layout.DATASET_VERSIONS.holds_key(version)
    assert version.endswith(bucket_layout.DATASET_SUFFIX)
    keys = ArtifactKeys.of("digits", 3)
    assert bucket_layout.MODEL_ARTIFACTS.holds_key(keys.onnx)
    assert bucket_layout.MODEL_ARTIFACTS.holds_key(keys.metadata)
    assert keys.onnx == "models/digits/3/model.onnx"


def test_prefixes_do_not_overlap_and_end_with_a_slash() -> None:
    paths = [(p.bucket, p.path) for p in bucket_layout.PREFIXES]
    assert len(set(paths)) == len(paths)
    for bucket, path in paths:
        assert path.endswith("/")
        others = [o for b, o in paths if b == bucket and o != path]
        assert not any(path.startswith(o) or o.startswith(path) for o in others)


def test_only_the_train_worker_writes_dataset_versions_models_and_feature_sets() -> None:
    writers = {p.path: set(p.written_by) for p in bucket_layout.PREFIXES}
    assert writers == {
        "datasets/": set(),
        "inputs/": set(),
        "dataset-versions/": {"train"},
        "models/": {"train"},
        # the monitor's inputs (a sample of what was asked) and its reports
        "input-samples/": {"api", "predict"},
        "monitor/": {"predict"},
        # feature set snapshots: the features job, on the train workers
        "feature-sets/": {"train"},
    }


@pytest.mark.parametrize(
    ("job_type", "key", "refused"),
    [
        ("train", "datasets/digits/a.csv", False),
        ("train", "inputs/digits/a.csv", False),
        ("train", "dataset-versions/digits/a.csv", False),
        ("predict", "datasets/digits/a.csv", False),
        ("predict", "inputs/digits/a.csv", False),
        ("predict", "dataset-versions/digits/a.csv", True),  # training sets, not predict sets
        ("train", "models/digits/1/model.onnx", True),
        ("train", "a.csv", True),
    ],
)
def test_a_jobs_dataset_must_be_where_its_worker_may_read(
    job_type: str, key: str, refused: bool
) -> None:
    reason = dataset_refusal(S3Uri("data", key), job_type, "data")
    assert (reason is not None) == refused, reason
    # the worker that runs the job reads the prefix (the contract and the grants agree)
    worker = bucket_layout.WORKER_OF_JOB[job_type]
    readable = any(p.holds_key(key) for p in bucket_layout.readable_by(worker))
    assert readable == (not refused)
