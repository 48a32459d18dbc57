"""The job message contract: what is accepted, and the reason given for what is not."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pytest

from mlpoc.errors import JobRejected
from mlpoc.runtime.contract import (
    MAX_MESSAGE_BYTES,
    NO_GPU_POOL,
    Job,
    S3Uri,
    Shard,
    dataset_refusal,
    misrouted,
    parse_job,
    parse_sources,
    queue_for,
    queue_of,
)

BUCKET = "mlpoc-data-abc"


def body(**changes: Any) -> str:
    message = {
        "schema": 1,
        "job_id": "train-1",
        "type": "train",
        "model": "digits",
        "dataset": f"s3://{BUCKET}/datasets/digits.csv",
        "version": "current",
        "params": {"C": 0.5},
    }
    message.update(changes)
    return json.dumps({k: v for k, v in message.items() if v is not ...})


def test_a_valid_message_round_trips() -> None:
    job = parse_job(body(), data_bucket=BUCKET)
    assert job == Job(
        job_id="train-1",
        type="train",
        model="digits",
        dataset=S3Uri(BUCKET, "datasets/digits.csv"),
        version="current",
        params={"C": 0.5},
    )
    assert parse_job(job.to_json(), data_bucket=BUCKET) == job


def test_version_and_params_have_defaults_and_integer_versions_are_accepted() -> None:
    job = parse_job(body(version=..., params=...), data_bucket=BUCKET)
    assert (job.version, job.params) == ("current", {})
    assert parse_job(body(version=3), data_bucket=BUCKET).version == "3"


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("not json", "not JSON"),
        ("[1, 2]", "must be a JSON object, not list"),
        (body(job_id=...), "job_id must be"),
        (body(job_id="has space"), "job_id must be"),
        (body(job_id="x" * 129), "job_id must be"),
    ],
)
def test_rejections_without_a_usable_job_id(raw: str, reason: str) -> None:
    with pytest.raises(JobRejected, match=reason) as caught:
        parse_job(raw, data_bucket=BUCKET)
    assert caught.value.job_id is None


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"schema": 2}, r"schema 2 is not supported; this worker reads schema \[1\]"),
        ({"schema": "1"}, "schema must be an integer"),
        ({"schema": True}, "schema must be an integer"),
        ({"extra": 1}, r"unknown field\(s\) \['extra'\]"),
        ({"type": "serve"}, r"type must be one of \['train', 'predict', 'monitor', 'features'\]"),
        ({"model": "Digits"}, "model must be 1-64 characters of lowercase"),
        ({"dataset": "datasets/x.csv"}, "is not an s3://bucket/key URI"),
        ({"dataset": 5}, "dataset must be an s3:// URI string"),
        ({"dataset": "s3://other-bucket/x.csv"}, "must be inside the data bucket"),
        ({"dataset": f"s3://{BUCKET}/datasets/x.parquet"}, "must be a .csv object"),
        (
            {"dataset": f"s3://{BUCKET}/x.csv"},
            "a train job's dataset must be under datasets/, inputs/, dataset-versions/, "
            r"feature-sets/ of the data bucket \(what the train worker may read\); got key 'x.csv'",
        ),
        (
            {"type": "predict", "dataset": f"s3://{BUCKET}/dataset-versions/m/a.csv"},
            "a predict job's dataset must be under datasets/, inputs/, input-samples/, "
            "feature-sets/ of the data bucket",
        ),
        ({"dataset": f"s3://{BUCKET}/datasets/"}, "must be under datasets/"),
        ({"version": "latest"}, "version must be 'current' or a positive integer"),
        ({"version": 0}, "version must be 'current' or a positive integer"),
        ({"params": [1]}, "params must be a JSON object; got list"),
    ],
)
def test_rejections_keep_the_job_id_for_the_ledger(changes: dict[str, Any], reason: str) -> None:
    with pytest.raises(JobRejected, match=reason) as caught:
        parse_job(body(**changes), data_bucket=BUCKET)
    assert caught.value.job_id == "train-1"


def test_oversized_messages_are_rejected_both_ways() -> None:
    with pytest.raises(JobRejected, match="over SQS's limit of 262144"):
        parse_job(body(params={"blob": "x" * MAX_MESSAGE_BYTES}), data_bucket=BUCKET)
    job = parse_job(body(), data_bucket=BUCKET)
    big = Job(**{**job.__dict__, "params": {"blob": "x" * MAX_MESSAGE_BYTES}})
    with pytest.raises(JobRejected, match="put large parameters in a file"):
        big.to_json()


# -- exact reasons: a reason says what to do, so its whole text is the contract ------------------
OUTSIDE = "(another account's data is read only from the folders in mlpoc:sources)"
PARTNERS = (S3Uri("partner-a", "exports/"), S3Uri("partner-b", "shared/"))


def rejection(raw: str | bytes, sources: tuple[S3Uri, ...] = ()) -> JobRejected:
    with pytest.raises(JobRejected) as caught:
        parse_job(raw, data_bucket=BUCKET, sources=sources)
    return caught.value


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        (
            {"job_id": "has space"},
            "job_id must be 1-128 characters of letters, digits and ._:- starting with a letter "
            "or digit; got 'has space'",
        ),
        (
            {"job_id": 7},
            "job_id must be 1-128 characters of letters, digits and ._:- starting with a letter "
            "or digit; got 7",
        ),
    ],
)
def test_a_bad_job_id_is_refused_with_the_whole_reason_and_no_id(
    changes: dict[str, Any], reason: str
) -> None:
    refused = rejection(body(**changes))
    assert (refused.reason, refused.job_id) == (reason, None)


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        (
            {"model": "Digits"},
            "model must be 1-64 characters of lowercase letters, digits, - and _, starting with "
            "a letter or digit; got 'Digits'",
        ),
        ({"dataset": 5}, "dataset must be an s3:// URI string"),
        (
            {"dataset": "s3://other-bucket/x.csv"},
            f"dataset must be inside the data bucket {BUCKET!r}; got s3://other-bucket/x.csv "
            + OUTSIDE,
        ),
        ({"version": True}, "version must be 'current' or a positive integer; got True"),
        ({"version": 2.0}, "version must be 'current' or a positive integer; got 2.0"),
        ({"resources": "tpu"}, "resources must be one of ['cpu', 'gpu']; got 'tpu'"),
        (
            {"type": "predict", "resources": "gpu"},
            'resources "gpu" is for train jobs: the GPU pool trains, and predictions run on the '
            "predict workers",
        ),
        (
            {"type": "monitor", "resources": "gpu"},
            'resources "gpu" is for train jobs: the GPU pool trains, and predictions run on the '
            "predict workers",
        ),
    ],
)
def test_a_refusal_gives_the_whole_reason_and_keeps_the_job_id(
    changes: dict[str, Any], reason: str
) -> None:
    refused = rejection(body(**changes))
    assert (refused.reason, refused.job_id) == (reason, "train-1")


# -- size: SQS's limit is inclusive ----------------------------------------------------------------
def padded_body(size: int) -> str:
    """A valid message of exactly ``size`` bytes (its params carry the padding)."""
    bare = len(body(params={"blob": ""}))
    return body(params={"blob": "x" * (size - bare)})


def test_a_message_of_exactly_the_limit_is_accepted() -> None:
    raw = padded_body(MAX_MESSAGE_BYTES)
    assert len(raw.encode()) == MAX_MESSAGE_BYTES
    assert parse_job(raw, data_bucket=BUCKET).job_id == "train-1"


def test_a_message_one_byte_over_the_limit_is_refused_before_parsing() -> None:
    refused = rejection(padded_body(MAX_MESSAGE_BYTES + 1))
    assert refused.reason == (
        "the message is 262145 bytes, over SQS's limit of 262144: put large parameters in a "
        "file in the data bucket and pass its key in params"
    )
    assert refused.job_id is None


def test_the_limit_counts_utf8_bytes_not_characters() -> None:
    # GIVEN a message under the limit in characters but over it in UTF-8 bytes
    raw = json.dumps(json.loads(body(params={"text": "é" * 200_000})), ensure_ascii=False)
    assert len(raw) < MAX_MESSAGE_BYTES < len(raw.encode())
    # WHEN it arrives as text THEN it is measured as SQS measures it, in bytes
    assert rejection(raw).reason.startswith(f"the message is {len(raw.encode())} bytes")


def test_a_body_may_arrive_as_bytes() -> None:
    assert parse_job(body().encode(), data_bucket=BUCKET) == parse_job(body(), data_bucket=BUCKET)


def a_job(**changes: Any) -> Job:
    fields: dict[str, Any] = {
        "job_id": "train-1",
        "type": "train",
        "model": "digits",
        "dataset": S3Uri(BUCKET, "datasets/digits.csv"),
    }
    return Job(**{**fields, **changes})


def test_to_json_is_compact_and_sorted() -> None:
    assert a_job(params={"C": 0.5}).to_json() == (
        '{"dataset":"s3://mlpoc-data-abc/datasets/digits.csv","job_id":"train-1",'
        '"model":"digits","params":{"C":0.5},"schema":1,"type":"train","version":"current"}'
    )


def test_to_json_allows_exactly_the_limit_and_refuses_one_byte_more() -> None:
    bare = len(a_job(params={"blob": ""}).to_json())
    fits = a_job(params={"blob": "x" * (MAX_MESSAGE_BYTES - bare)})
    assert len(fits.to_json().encode()) == MAX_MESSAGE_BYTES
    with pytest.raises(JobRejected) as caught:
        a_job(params={"blob": "x" * (MAX_MESSAGE_BYTES - bare + 1)}).to_json()
    assert caught.value.reason == (
        "the job message is 262145 bytes, over SQS's 262144 bytes: put large parameters in a "
        "file in the data bucket and pass its key in params"
    )
    assert caught.value.job_id == "train-1"


# -- to_message: optional fields appear only when they say something -------------------------------
SHARD = Shard(parent="predict-1", index=0, total=2, header=10, start=10, end=20)
SHARD_MESSAGE = {
    "parent": "predict-1",
    "index": 0,
    "total": 2,
    "header": 10,
    "start": 10,
    "end": 20,
}


def test_a_cpu_job_without_a_shard_leaves_both_fields_out() -> None:
    assert set(a_job().to_message()) == {
        "schema",
        "job_id",
        "type",
        "model",
        "dataset",
        "version",
        "params",
    }


def test_a_gpu_job_and_a_shard_job_carry_their_fields() -> None:
    assert a_job(resources="gpu").to_message()["resources"] == "gpu"
    shard_job = a_job(type="predict", shard=SHARD)
    assert shard_job.to_message()["shard"] == SHARD_MESSAGE
    assert "resources" not in shard_job.to_message()


@pytest.mark.parametrize(("index", "text"), [(0, "shard 1 of 2"), (1, "shard 2 of 2")])
def test_a_shard_is_named_from_one(index: int, text: str) -> None:
    assert str(Shard(parent="p", index=index, total=2, header=0, start=0, end=0)) == text


# -- resources -------------------------------------------------------------------------------------
def test_a_gpu_train_job_round_trips() -> None:
    job = parse_job(body(resources="gpu"), data_bucket=BUCKET)
    assert job.resources == "gpu"
    assert parse_job(job.to_json(), data_bucket=BUCKET) == job


@pytest.mark.parametrize("job_type", ["predict", "monitor", "features", "train"])
def test_a_cpu_job_of_any_type_is_accepted(job_type: str) -> None:
    job = parse_job(body(type=job_type, resources="cpu"), data_bucket=BUCKET)
    assert (job.type, job.resources) == (job_type, "cpu")


# -- shards ----------------------------------------------------------------------------------------
def shard_body(shard: Any, **changes: Any) -> str:
    return body(**{"type": "predict", "job_id": "predict-1-s0", "shard": shard, **changes})


def test_a_predict_job_over_one_csv_carries_its_shard() -> None:
    job = parse_job(shard_body(SHARD_MESSAGE), data_bucket=BUCKET)
    assert job.shard == SHARD
    assert parse_job(job.to_json(), data_bucket=BUCKET) == job


@pytest.mark.parametrize(
    "numbers",
    [
        {
            "index": 1,
            "total": 2,
            "header": 10,
            "start": 10,
            "end": 20,
        },  # last shard; header == start
        {"index": 0, "total": 1, "header": 0, "start": 5, "end": 5},  # empty range: start == end
    ],
)
def test_shard_boundaries_that_hold(numbers: dict[str, int]) -> None:
    job = parse_job(shard_body({"parent": "p", **numbers}), data_bucket=BUCKET)
    assert job.shard == Shard(parent="p", **numbers)


@pytest.mark.parametrize(
    "numbers",
    [
        {"index": 2, "total": 2, "header": 0, "start": 0, "end": 0},  # index == total
        {"index": 0, "total": 1, "header": 11, "start": 10, "end": 20},  # header > start
        {"index": 0, "total": 1, "header": 0, "start": 21, "end": 20},  # start > end
    ],
)
def test_shard_boundaries_that_break(numbers: dict[str, int]) -> None:
    refused = rejection(shard_body({"parent": "p", **numbers}))
    got = {"parent": "p", **numbers}
    assert refused.reason == (f"shard: needs index < total and header <= start <= end; got {got}")
    assert refused.job_id == "predict-1-s0"


FIELDS = "['end', 'header', 'index', 'parent', 'start', 'total']"
NUMBERS = "['end', 'header', 'index', 'start', 'total']"


@pytest.mark.parametrize(
    ("shard", "reason"),
    [
        ([1], f"shard must be an object with {FIELDS}"),
        (
            {k: v for k, v in SHARD_MESSAGE.items() if k != "end"},
            f"shard must be an object with {FIELDS}",
        ),
        ({**SHARD_MESSAGE, "extra": 1}, f"shard must be an object with {FIELDS}"),
        ({**SHARD_MESSAGE, "index": -1}, f"shard: {NUMBERS} must be whole numbers >= 0"),
        ({**SHARD_MESSAGE, "start": "10"}, f"shard: {NUMBERS} must be whole numbers >= 0"),
        ({**SHARD_MESSAGE, "total": True}, f"shard: {NUMBERS} must be whole numbers >= 0"),
        ({**SHARD_MESSAGE, "end": 2.5}, f"shard: {NUMBERS} must be whole numbers >= 0"),
        ({**SHARD_MESSAGE, "parent": 5}, "shard.parent must be a job id; got 5"),
        (
            {**SHARD_MESSAGE, "parent": "has space"},
            "shard.parent must be a job id; got 'has space'",
        ),
    ],
)
def test_a_malformed_shard_is_refused_with_its_reason(shard: Any, reason: str) -> None:
    refused = rejection(shard_body(shard))
    assert (refused.reason, refused.job_id) == (reason, "predict-1-s0")


@pytest.mark.parametrize(
    "changes",
    [
        {"type": "train"},
        {"type": "monitor"},
        {"dataset": f"s3://{BUCKET}/datasets/batch/"},
    ],
)
def test_only_a_predict_job_over_one_csv_has_shards(changes: dict[str, Any]) -> None:
    refused = rejection(shard_body(SHARD_MESSAGE, **changes))
    assert refused.reason == "shard: only a predict job over one .csv object has shards"
    assert refused.job_id == "predict-1-s0"


# -- datasets: folders, shared folders of other accounts -------------------------------------------
@pytest.mark.parametrize(
    ("job_type", "key"),
    [
        ("predict", "datasets/batch/"),
        ("train", "inputs/digits/"),
        ("train", "datasets/DIGITS.CSV"),
    ],
)
def test_a_folder_or_a_csv_in_any_case_is_a_dataset(job_type: str, key: str) -> None:
    job = parse_job(body(type=job_type, dataset=f"s3://{BUCKET}/{key}"), data_bucket=BUCKET)
    assert job.dataset == S3Uri(BUCKET, key)
    assert job.over_prefix is key.endswith("/")


@pytest.mark.parametrize("key", ["exports/x.csv", "exports/batch/"])
def test_a_dataset_in_a_shared_folder_is_accepted(key: str) -> None:
    job = parse_job(body(dataset=f"s3://partner-a/{key}"), data_bucket=BUCKET, sources=PARTNERS)
    assert job.dataset == S3Uri("partner-a", key)


@pytest.mark.parametrize(
    "uri",
    [
        S3Uri("partner-c", "exports/x.csv"),  # the folder's path, another bucket
        S3Uri("partner-a", "private/x.csv"),  # the folder's bucket, another path
    ],
)
def test_a_dataset_outside_every_shared_folder_is_refused(uri: S3Uri) -> None:
    assert dataset_refusal(uri, "train", BUCKET, PARTNERS) == (
        f"dataset must be inside the data bucket {BUCKET!r} or a shared folder "
        f"(s3://partner-a/exports/, s3://partner-b/shared/); got {uri} {OUTSIDE}"
    )


def test_a_shared_folder_dataset_must_still_be_a_csv_or_a_folder() -> None:
    refused = rejection(body(dataset="s3://partner-b/shared/x.parquet"), sources=PARTNERS)
    assert refused.reason == (
        "dataset must be a .csv object or a folder ending in /; got key 'shared/x.parquet'"
    )


def test_without_shared_folders_the_refusal_names_only_the_data_bucket() -> None:
    assert dataset_refusal(S3Uri("partner-a", "exports/x.csv"), "train", BUCKET) == (
        f"dataset must be inside the data bucket {BUCKET!r}; got s3://partner-a/exports/x.csv "
        + OUTSIDE
    )


# -- parse_sources ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "sources"),
    [
        ("", ()),
        (" , ,", ()),
        ("s3://partner-a/exports/", PARTNERS[:1]),
        (" s3://partner-a/exports/ ,, s3://partner-b/shared/ ", PARTNERS),
    ],
)
def test_sources_are_parsed_from_their_comma_separated_form(
    text: str, sources: tuple[S3Uri, ...]
) -> None:
    assert parse_sources(text) == sources


def test_a_source_that_is_not_a_folder_is_named() -> None:
    with pytest.raises(
        ValueError, match=r"^'s3://partner-a/x\.csv' is not a folder \(s3://bucket/prefix/\)$"
    ):
        parse_sources("s3://partner-b/shared/,s3://partner-a/x.csv")


def test_a_source_that_is_not_an_s3_uri_is_named() -> None:
    with pytest.raises(ValueError, match=r"^'partner-a/exports/' is not an s3://bucket/key URI$"):
        parse_sources("partner-a/exports/")


# -- routing: which queue carries a job, and which worker may run it -------------------------------
@dataclass(frozen=True)
class Urls:
    train_queue_url: str = "https://sqs/train"
    predict_queue_url: str = "https://sqs/predict"
    gpu_queue_url: str | None = "https://sqs/gpu"


@pytest.mark.parametrize(
    ("queue", "url"),
    [
        ("train", "https://sqs/train"),
        ("predict", "https://sqs/predict"),
        ("gpu", "https://sqs/gpu"),
    ],
)
def test_queue_for_gives_each_queues_url(queue: str, url: str) -> None:
    assert queue_for(queue, Urls()) == url


@pytest.mark.parametrize("gpu", [None, ""])
def test_queue_for_the_gpu_queue_of_a_stack_without_one_is_refused(gpu: str | None) -> None:
    with pytest.raises(JobRejected) as caught:
        queue_for("gpu", Urls(gpu_queue_url=gpu))
    assert caught.value.reason == NO_GPU_POOL
    assert queue_for("train", Urls(gpu_queue_url=gpu)) == "https://sqs/train"


def test_queue_for_an_unknown_queue_names_the_known_ones() -> None:
    with pytest.raises(ValueError, match=r"^no queue 'cpu': one of train, predict, gpu$"):
        queue_for("cpu", Urls())


@pytest.mark.parametrize(
    ("job_type", "resources", "queue"),
    [
        ("train", "cpu", "train"),
        ("features", "cpu", "train"),
        ("predict", "cpu", "predict"),
        ("monitor", "cpu", "predict"),
        ("train", "gpu", "gpu"),
    ],
)
def test_queue_of_each_job(job_type: str, resources: str, queue: str) -> None:
    assert queue_of(a_job(type=job_type, resources=resources)) == queue


@pytest.mark.parametrize(
    ("job_type", "resources", "consumed"),
    [
        ("train", "cpu", "train"),
        ("features", "cpu", "train"),
        ("predict", "cpu", "predict"),
        ("monitor", "cpu", "predict"),
        ("train", "gpu", "gpu"),
        ("train", "cpu", "gpu"),  # the GPU pool also trains what a CPU does
    ],
)
@pytest.mark.parametrize("gpu_pool", [True, False])
def test_a_worker_runs_the_jobs_of_its_queue(
    job_type: str, resources: str, consumed: str, gpu_pool: bool
) -> None:
    job = a_job(type=job_type, resources=resources)
    assert misrouted(job, consumed, gpu_pool=gpu_pool) is None


@pytest.mark.parametrize(
    ("job_type", "consumed"),
    [
        ("train", "predict"),
        ("features", "predict"),
        ("predict", "train"),
        ("predict", "gpu"),
        ("monitor", "gpu"),
    ],
)
def test_a_misrouted_cpu_job_names_its_queue(job_type: str, consumed: str) -> None:
    job = a_job(type=job_type)
    assert misrouted(job, consumed, gpu_pool=True) == (
        f"a {job_type} job belongs on the {queue_of(job)} queue, not the {consumed} queue"
    )


@pytest.mark.parametrize("consumed", ["train", "predict"])
def test_a_gpu_job_off_the_gpu_queue_says_where_it_belongs(consumed: str) -> None:
    job = a_job(resources="gpu")
    assert misrouted(job, consumed, gpu_pool=True) == (
        'a job with "resources": "gpu" belongs on the GPU queue (stack output GpuQueueUrl); '
        "POST /v1/jobs and `mlpoc train --gpu` send it there"
    )
    assert misrouted(job, consumed, gpu_pool=False) == NO_GPU_POOL
