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


@pytest.mark.parametrize(
    ("key", "held"),
    [
        ("datasets/", False),  # the folder itself is no object in it
        ("datasets/a", True),
        ("datasets/digits/a.csv", True),
        ("datasets", False),
        ("inputs/datasets/a.csv", False),
        ("Datasets/a.csv", False),
        ("", False),
    ],
)
def test_a_prefix_holds_the_keys_under_it_but_not_itself(key: str, held: bool) -> None:
    assert bucket_layout.DATASETS.holds_key(key) is held


def test_each_prefix_is_granted_by_the_pattern_of_its_path() -> None:
    assert {p.path: p.pattern for p in bucket_layout.PREFIXES} == {
        "datasets/": "datasets/*",
        "inputs/": "inputs/*",
        "dataset-versions/": "dataset-versions/*",
        "models/": "models/*",
        "input-samples/": "input-samples/*",
        "monitor/": "monitor/*",
        "feature-sets/": "feature-sets/*",
    }


@pytest.mark.parametrize(
    ("built", "key", "prefix"),
    [
        (bucket_layout.dataset_key("digits", "a.csv"), "datasets/digits/a.csv", "datasets/"),
        (bucket_layout.model_prefix("digits"), "datasets/digits/", "datasets/"),
        (
            bucket_layout.input_key("digits", "20261129T100000", "a.csv"),
            "inputs/digits/20261129T100000-a.csv",
            "inputs/",
        ),
        (
            bucket_layout.dataset_version_key("digits", "job-1"),
            "dataset-versions/digits/job-1.csv",
            "dataset-versions/",
        ),
        (bucket_layout.artifact_prefix("digits", 3), "models/digits/3", "models/"),
        (bucket_layout.sample_folder("digits"), "input-samples/digits/", "input-samples/"),
        (
            bucket_layout.sample_key("digits", 3, "20261129T100000", "ab12"),
            "input-samples/digits/3/20261129T100000-ab12.csv",
            "input-samples/",
        ),
        (
            bucket_layout.report_key("digits", "20261129T100000", "monitor-1"),
            "monitor/digits/reports/20261129T100000-monitor-1.json",
            "monitor/",
        ),
        (bucket_layout.latest_report_key("digits"), "monitor/digits/latest.json", "monitor/"),
        (bucket_layout.snapshot_key("shop", 2), "feature-sets/shop/2.csv", "feature-sets/"),
    ],
)
def test_each_key_builder_builds_exactly_its_documented_key(
    built: str, key: str, prefix: str
) -> None:
    assert built == key
    (holder,) = [p for p in bucket_layout.PREFIXES if p.holds_key(built)]
    assert holder.path == prefix


def test_a_models_samples_lie_in_its_sample_folder_and_nowhere_else() -> None:
    key = bucket_layout.sample_key("churn", 1, "s", "t")
    assert key.startswith(bucket_layout.sample_folder("churn"))
    assert not key.startswith(bucket_layout.sample_folder("digits"))


@pytest.mark.parametrize(
    ("role", "bucket", "paths"),
    [
        ("train", "data", ["datasets/", "inputs/", "dataset-versions/", "feature-sets/"]),
        ("predict", "data", ["datasets/", "inputs/", "input-samples/", "feature-sets/"]),
        ("api", "data", ["datasets/", "inputs/"]),
        ("upload", "data", ["datasets/"]),
        ("train", "models", ["models/"]),
        ("predict", "models", ["models/", "monitor/"]),
        ("api", "models", ["models/", "monitor/"]),
        ("upload", "models", []),
    ],
)
def test_each_role_reads_exactly_these_prefixes_of_each_bucket(
    role: bucket_layout.RuntimeRole, bucket: bucket_layout.Bucket, paths: list[str]
) -> None:
    assert [p.path for p in bucket_layout.readable_by(role, bucket)] == paths


def test_the_data_bucket_is_the_one_read_unless_another_is_named() -> None:
    assert bucket_layout.readable_by("upload") == (bucket_layout.DATASETS,)


@pytest.mark.parametrize(
    ("job_type", "paths"),
    [
        ("train", ["datasets/", "inputs/", "dataset-versions/", "feature-sets/"]),
        ("features", ["datasets/", "inputs/", "dataset-versions/", "feature-sets/"]),
        ("predict", ["datasets/", "inputs/", "input-samples/", "feature-sets/"]),
        ("monitor", ["datasets/", "inputs/", "input-samples/", "feature-sets/"]),
    ],
)
def test_a_jobs_dataset_comes_from_what_its_worker_reads_in_the_data_bucket(
    job_type: str, paths: list[str]
) -> None:
    assert [p.path for p in bucket_layout.dataset_prefixes(job_type)] == paths


def test_a_job_type_without_a_worker_has_no_dataset_prefixes() -> None:
    with pytest.raises(KeyError, match="evaluate"):
        bucket_layout.dataset_prefixes("evaluate")
