"""Sharded predict jobs in-process: the plan and the ranged reads (every line exactly once, at
any cut), the contract's shard field, and the parent's ledger record through a split, its shards
and their failures or re-deliveries."""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest
from moto import mock_aws
from rich.console import Console

from mlpoc.api.routes.jobs import public_job
from mlpoc.cli import render
from mlpoc.data import digits, shards
from mlpoc.errors import DatasetError, JobFailed, JobRejected
from mlpoc.runtime.contract import Job, S3Uri, Shard, parse_job
from mlpoc.runtime.environment import Settings
from mlpoc.runtime.job_records import shard_progress
from mlpoc.runtime.ledger import Ledger
from mlpoc.worker.context import JobContext
from mlpoc.worker.loop import Worker
from mlpoc.worker.predict import PredictHandler
from tests.support import pipeline
from tests.support.aws_stack import Stack, create_stack

BUCKET = "data-bucket"


@pytest.fixture
def s3() -> Iterator[Any]:
    with mock_aws():
        import boto3

        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket=BUCKET)
        yield client


def lines_of(s3: Any, key: str, shard_bytes: int) -> list[list[str]]:
    """Each shard's data lines, read the way a shard job reads them."""
    pieces = shards.plan(s3, S3Uri(BUCKET, key), shard_bytes)
    out = []
    for index, piece in enumerate(pieces):
        shard = Shard("p", index, len(pieces), piece.header, piece.start, piece.end)
        text, count = shards.read_shard(s3, S3Uri(BUCKET, piece.key), shard)
        body = text.splitlines()[1:]
        assert len([b for b in body if b.strip()]) == count
        out.append(body)
    return out


@pytest.mark.parametrize("ending", ["\n", "\r\n"])
@pytest.mark.parametrize("trailing_newline", [True, False])
def test_every_line_is_read_by_exactly_one_shard_at_any_cut(
    s3: Any, ending: str, trailing_newline: bool
) -> None:
    # GIVEN lines of very different lengths (some longer than a shard)
    rng = random.Random(7)  # noqa: S311 - test data, not a secret
    rows = [f"r{i}," + "x" * rng.choice([0, 1, 5, 40, 300, 2_000]) for i in range(150)]
    text = "id,f" + ending + ending.join(rows) + (ending if trailing_newline else "")
    s3.put_object(Bucket=BUCKET, Key="datasets/big.csv", Body=text.encode())
    for shard_bytes in (1_024, 1_500, 10_000, 1_000_000):
        # WHEN it is planned and read shard by shard
        per_shard = lines_of(s3, "datasets/big.csv", shard_bytes)
        # THEN the shards together hold every row once, in order
        assert [line for body in per_shard for line in body] == rows
        size = len(text.encode()) - len(("id,f" + ending).encode())
        assert len(per_shard) == max(1, -(-size // shard_bytes))


def test_a_prefix_is_planned_file_by_file(s3: Any) -> None:
    for name, count in (("a.csv", 10), ("b.csv", 3_000), ("notes.txt", 5)):
        body = "id,f\n" + "".join(f"{name}-{i},1\n" for i in range(count))
        s3.put_object(Bucket=BUCKET, Key=f"datasets/batch/{name}", Body=body.encode())
    pieces = shards.plan(s3, S3Uri(BUCKET, "datasets/batch/"), 8_192)
    assert pieces[0].key == "datasets/batch/a.csv"
    assert {p.key for p in pieces} == {"datasets/batch/a.csv", "datasets/batch/b.csv"}
    assert len(pieces) > 2  # the large file is cut into ranges too
    with pytest.raises(DatasetError, match=r"no \.csv object under"):
        shards.plan(s3, S3Uri(BUCKET, "datasets/empty/"), 8_192)


def test_a_file_with_a_header_only_or_no_line_break_is_refused(s3: Any) -> None:
    s3.put_object(Bucket=BUCKET, Key="datasets/h.csv", Body=b"id,f")
    with pytest.raises(DatasetError, match="has a header but no rows"):
        shards.plan(s3, S3Uri(BUCKET, "datasets/h.csv"), 1_024)


def test_shard_ids_are_stable_and_valid_for_the_longest_parent_id() -> None:
    assert shards.shard_job_id("p-1", 3) == "p-1.shard-0003"
    long_id = "j" * 128
    assert shards.shard_job_id(long_id, 999) == shards.shard_job_id(long_id, 999)
    assert len(shards.shard_job_id(long_id, 999)) <= 128
    assert shards.shard_job_id(long_id, 1) != shards.shard_job_id("j" * 127, 1)


SHARD = {"parent": "p", "index": 1, "total": 4, "header": 5, "start": 5, "end": 100}


def message(**changes: Any) -> str:
    body = {"schema": 1, "job_id": "p.shard-0001", "type": "predict", "model": "m",
            "dataset": f"s3://{BUCKET}/datasets/x.csv", "version": "1",
            "shard": SHARD}  # fmt: skip
    body.update(changes)
    return json.dumps({k: v for k, v in body.items() if v is not None})


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"shard": {"parent": "p"}}, "shard must be an object with"),
        ({"shard": {**SHARD, "index": 4}}, "needs index < total"),
        ({"shard": {**SHARD, "start": -1}}, "whole numbers >= 0"),
        ({"type": "train"}, "only a predict job over one .csv object has shards"),
        ({"dataset": f"s3://{BUCKET}/datasets/batch/"}, "only a predict job over one .csv"),
    ],
)
def test_the_contract_refuses_a_malformed_shard(changes: dict[str, Any], reason: str) -> None:
    with pytest.raises(JobRejected, match=reason):
        parse_job(message(**changes), data_bucket=BUCKET)


def test_a_folder_is_a_dataset_of_either_type_but_not_of_a_shard() -> None:
    prefix = f"s3://{BUCKET}/datasets/batch/"
    assert parse_job(message(dataset=prefix, shard=None), data_bucket=BUCKET).over_prefix
    # a train job over a folder builds its dataset version (tests/test_builds.py)
    assert parse_job(message(type="train", dataset=prefix, shard=None), data_bucket=BUCKET)
    with pytest.raises(JobRejected, match=r"only a predict job over one \.csv object has shards"):
        parse_job(message(dataset=prefix), data_bucket=BUCKET)


# -- the whole flow, in-process -------------------------------------------------------------------
@pytest.fixture
def stack() -> Iterator[Stack]:
    with mock_aws():
        stack = create_stack(None)
        pipeline.train(stack, "train-1")
        yield stack


def drain(stack: Stack, **changes: Any) -> list[Any]:
    """Run the predict queue dry with in-process workers; the batch results."""
    clients = stack.clients()
    settings = replace(
        Settings.from_env("predict", stack.env()), wait_seconds=0, prefetch=3, **changes
    )
    worker = Worker(settings=settings, clients=clients, handler=PredictHandler(settings, clients))
    results = []
    while (result := worker.process_batch()).received:
        results.append(result)
    return results


def send_predict(stack: Stack, job_id: str, key: str, **params: Any) -> None:
    body = {"schema": 1, "job_id": job_id, "type": "predict", "model": "digits",
            "dataset": f"s3://{stack.data_bucket}/{key}", "params": params}  # fmt: skip
    stack.clients().sqs.send_message(QueueUrl=stack.predict_queue_url, MessageBody=json.dumps(body))


def upload_rows(stack: Stack, key: str, rows: slice) -> int:
    text = digits.prediction_csv(rows)
    stack.clients().s3.put_object(Bucket=stack.data_bucket, Key=key, Body=text.encode())
    return rows.stop - rows.start


def stored(stack: Stack) -> list[dict[str, Any]]:
    return pipeline.scan(stack.clients().dynamodb, stack.predictions_table)


def test_a_large_csv_is_split_and_its_shards_finish_the_parent(stack: Stack) -> None:
    # GIVEN a 600-row CSV (about 100 KB) and shards of 16 KB
    rows = upload_rows(stack, "datasets/score.csv", slice(1000, 1600))
    send_predict(stack, "big", "datasets/score.csv", shard_bytes=16_384)
    # WHEN the predict queue is drained
    results = drain(stack)
    # THEN the parent is SUCCEEDED with every shard counted once and every row stored once
    ledger = Ledger(stack.clients().dynamodb, stack.jobs_table)
    parent = ledger.get("big")
    assert parent is not None
    assert parent["status"] == "SUCCEEDED"
    total = parent["shards_total"]
    assert total >= 6
    reviewed = sum(1 for item in stored(stack) if "review" in item)
    assert parent["result"] == {"shards": total, "rows": rows, "for_review": reviewed}
    assert shard_progress(parent) == f"{total}/{total}"
    items = stored(stack)
    assert len(items) == rows
    assert {i["job_id"]["S"] for i in items} == {"big"}
    assert sum(r.succeeded for r in results) == total + 1  # the parent's split and each shard
    shard = ledger.get(shards.shard_job_id("big", 0))
    assert shard is not None
    assert shard["source"] == "big"
    assert shard["result"]["model_version"] == 1


def test_a_small_csv_is_not_split(stack: Stack) -> None:
    rows = upload_rows(stack, "datasets/small.csv", slice(1000, 1100))
    send_predict(stack, "small", "datasets/small.csv")
    drain(stack)
    record = Ledger(stack.clients().dynamodb, stack.jobs_table).get("small")
    assert record is not None
    assert "shards_total" not in record
    assert record["result"]["rows"] == rows


def test_a_prefix_fans_out_by_file(stack: Stack) -> None:
    a = upload_rows(stack, "datasets/batch/a.csv", slice(1000, 1100))
    b = upload_rows(stack, "datasets/batch/b.csv", slice(1100, 1250))
    send_predict(stack, "batch", "datasets/batch/")
    drain(stack)
    parent = Ledger(stack.clients().dynamodb, stack.jobs_table).get("batch")
    assert parent is not None
    assert parent["status"] == "SUCCEEDED"
    assert (parent["result"]["shards"], parent["result"]["rows"]) == (2, a + b)
    assert len(stored(stack)) == a + b


def test_a_redelivered_parent_and_shards_duplicate_nothing(stack: Stack) -> None:
    # GIVEN a split job that finished
    rows = upload_rows(stack, "datasets/score.csv", slice(1000, 1400))
    send_predict(stack, "again", "datasets/score.csv", shard_bytes=16_384)
    drain(stack)
    ledger = Ledger(stack.clients().dynamodb, stack.jobs_table)
    before = ledger.get("again")
    assert before is not None
    # WHEN the parent's message and every shard's message come again
    send_predict(stack, "again", "datasets/score.csv", shard_bytes=16_384)
    for index in range(before["shards_total"]):
        shard = ledger.get(shards.shard_job_id("again", index))
        assert shard is not None
        stack.clients().sqs.send_message(
            QueueUrl=stack.predict_queue_url, MessageBody=shard["message"]
        )
    results = drain(stack)
    # THEN each is a duplicate: no work, no new rows, the counts unchanged
    assert sum(r.duplicates for r in results) == before["shards_total"] + 1
    assert sum(r.succeeded for r in results) == 0
    assert ledger.get("again") == before
    assert len(stored(stack)) == rows


def test_a_parent_redelivered_mid_split_resends_only_unsent_shards(stack: Stack) -> None:
    # GIVEN a parent split while its shards are still queued (nobody ran them)
    upload_rows(stack, "datasets/score.csv", slice(1000, 1400))
    send_predict(stack, "mid", "datasets/score.csv", shard_bytes=16_384)
    clients = stack.clients()
    settings = replace(Settings.from_env("predict", stack.env()), wait_seconds=0, prefetch=1)
    worker = Worker(settings=settings, clients=clients, handler=PredictHandler(settings, clients))
    assert worker.process_batch().succeeded == 1  # the split
    ledger = Ledger(clients.dynamodb, stack.jobs_table)
    parent = ledger.get("mid")
    assert parent is not None
    assert parent["status"] == "RUNNING"
    assert shard_progress(parent) == f"0/{parent['shards_total']}"
    # AND the lists show the parent with its progress, not its shards (unless asked)
    total = parent["shards_total"]
    assert [r["job_id"] for r in ledger.recent(50)] == ["mid", "train-1"]
    assert len(ledger.recent(50, shards=True)) == total + 2
    assert public_job(parent)["shards"] == {"done": 0, "total": total}
    console = Console(width=200, record=True)
    console.print(render.jobs_table(ledger.recent(50)))
    assert f"RUNNING 0/{total} shards" in console.export_text()
    # WHEN its message comes again (a crash before the delete)
    send_predict(stack, "mid", "datasets/score.csv", shard_bytes=16_384)
    drain(stack)
    # THEN the shards run once each (the resent ones are duplicates) and the parent finishes
    parent = ledger.get("mid")
    assert parent is not None
    assert parent["status"] == "SUCCEEDED"
    assert parent["result"]["rows"] == 400


def test_a_shard_that_fails_for_good_fails_its_parent_and_names_it(stack: Stack) -> None:
    # GIVEN a CSV whose third shard holds a row that is not a number
    text = digits.prediction_csv(slice(1000, 1400)).splitlines()
    text[300] = text[300].replace(",", ",oops,", 1).rsplit(",", 1)[0]
    stack.clients().s3.put_object(
        Bucket=stack.data_bucket, Key="datasets/bad.csv", Body=("\n".join(text) + "\n").encode()
    )
    send_predict(stack, "bad", "datasets/bad.csv", shard_bytes=16_384)
    drain(stack)
    parent = Ledger(stack.clients().dynamodb, stack.jobs_table).get("bad")
    assert parent is not None
    assert parent["status"] == "FAILED"
    assert parent["reason"].startswith("shard ")
    assert "(bad.shard-000" in parent["reason"]
    assert "column 'pixel_0': 1 cells are not numbers" in parent["reason"]


def test_a_parent_failed_by_a_shard_finishes_once_that_shard_succeeds_on_a_redrive(
    stack: Stack,
) -> None:
    # GIVEN a split job whose second shard failed (say, a bug since fixed)
    rows = upload_rows(stack, "datasets/score.csv", slice(1000, 1400))
    send_predict(stack, "revive", "datasets/score.csv", shard_bytes=16_384)
    clients = stack.clients()
    settings = replace(Settings.from_env("predict", stack.env()), wait_seconds=0, prefetch=3)
    handler = PredictHandler(settings, clients)

    def broken(ctx: JobContext) -> None:
        if ctx.job.shard is not None and ctx.job.shard.index == 1:
            raise JobFailed("a bug in the plugin")
        handler(ctx)

    worker = Worker(settings=settings, clients=clients, handler=broken)
    while worker.process_batch().received:
        pass
    ledger = Ledger(clients.dynamodb, stack.jobs_table)
    parent = ledger.get("revive")
    assert parent is not None
    assert (parent["status"], parent["failed_by_shard"]) == ("FAILED", 1)
    # WHEN the shard is made claimable and sent again (what `mlpoc dlq redrive` does)
    shard_id = shards.shard_job_id("revive", 1)
    shard = ledger.get(shard_id)
    assert shard is not None
    assert ledger.requeue(shard_id, reason="redriven after the fix")
    clients.sqs.send_message(QueueUrl=stack.predict_queue_url, MessageBody=shard["message"])
    drain(stack)
    # THEN the parent is whole: SUCCEEDED with every row
    parent = ledger.get("revive")
    assert parent is not None
    assert parent["status"] == "SUCCEEDED"
    assert (parent["result"]["shards"], parent["result"]["rows"]) == (parent["shards_total"], rows)
    assert "failed_by_shard" not in parent
    assert len(stored(stack)) == rows


def test_shard_bytes_is_validated() -> None:
    job = Job("j", "predict", "m", S3Uri(BUCKET, "datasets/x.csv"), params={"shard_bytes": 10})
    with pytest.raises(JobFailed, match=r"params\.shard_bytes must be a whole number >= 1024"):
        shards.shard_bytes_for(job, 1 << 20)
