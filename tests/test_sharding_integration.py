"""A sharded predict job run by several predict workers as real processes, one of them killed
mid-shard: every row is stored exactly once and the parent finishes once."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path
from typing import Any

import pytest

from mlpoc.data import digits
from mlpoc.runtime.ledger import Ledger
from tests.support import pipeline
from tests.support.aws_stack import create_stack
from tests.support.workers import WorkerProcess, start_worker, wait_for, wait_for_status

pytestmark = pytest.mark.integration

ROWS = 10_000
SHARD_BYTES = 150_000  # the 10,000-row CSV is about 1.5 MB: 11 shards


def running_shard(
    ledger: Ledger, parent: str, workers: list[WorkerProcess]
) -> tuple[dict[str, Any], WorkerProcess] | None:
    """A shard of ``parent`` that one of ``workers`` holds right now (RUNNING under its lease)."""
    for record in ledger.recent(100, shards=True):
        if record.get("parent") != parent or record.get("status") != "RUNNING":
            continue
        for worker in workers:
            if f"-{worker.process.pid}-" in str(record.get("lease_owner")):
                return record, worker
    return None


def kill_mid_shard(
    ledger: Ledger, parent: str, workers: list[WorkerProcess]
) -> tuple[str, WorkerProcess]:
    """SIGKILL a worker while it holds a shard it has not committed; the shard and the worker.

    The worker is frozen first (SIGSTOP) and the shard read again: a frozen process sends
    nothing, so a shard still RUNNING under its lease then is one it never finished."""

    def frozen_mid_shard() -> tuple[str, WorkerProcess] | None:
        held = running_shard(ledger, parent, workers)
        if held is None:
            return None
        record, worker = held
        os.kill(worker.process.pid, signal.SIGSTOP)
        again = ledger.get(record["job_id"]) or {}
        if again.get("status") == "RUNNING" and again.get("lease_owner") == record["lease_owner"]:
            return str(record["job_id"]), worker
        os.kill(worker.process.pid, signal.SIGCONT)  # it finished in between: try again
        return None

    shard_id, victim = wait_for(frozen_mid_shard, timeout=60, interval=0.02, what="a shard mid-run")
    victim.kill()
    return shard_id, victim


def test_a_sharded_job_survives_a_worker_killed_mid_shard(
    moto_endpoint: str, log_dir: Path
) -> None:
    # GIVEN a promoted model, a 10,000-row CSV, and three predict workers taking one shard at
    # a time (a killed worker's shard is visible again after 3 s)
    stack = create_stack(moto_endpoint, visibility_seconds=3)
    pipeline.train(stack, "train-1")
    clients = stack.clients()
    key = "datasets/batch/10k.csv"
    clients.s3.put_object(Bucket=stack.data_bucket, Key=key, Body=digits.batch_csv(ROWS).encode())
    ledger = Ledger(clients.dynamodb, stack.jobs_table)
    workers = [start_worker("predict", stack, log_dir, MLPOC_PREFETCH="1") for _ in range(3)]
    try:
        for worker in workers:  # all polling before the job is sent: each can take shards
            wait_for(lambda w=worker: w.events("worker.started"), timeout=120, what="a worker")
        # WHEN a predict job over it is sent, and a worker dies mid-shard
        body = {"schema": 1, "job_id": "batch-10k", "type": "predict", "model": "digits",
                "dataset": f"s3://{stack.data_bucket}/{key}",
                "params": {"shard_bytes": SHARD_BYTES, "review_threshold": 0}}  # fmt: skip
        clients.sqs.send_message(QueueUrl=stack.predict_queue_url, MessageBody=json.dumps(body))
        killed, victim = kill_mid_shard(ledger, "batch-10k", workers)
        parent = wait_for_status(ledger, "batch-10k", {"SUCCEEDED", "FAILED"}, timeout=120)
    finally:
        for worker in workers:
            if worker.process.poll() is None:
                assert worker.terminate() == 0

    # THEN the parent succeeded once, with at least 8 shards, each counted once
    assert parent["status"] == "SUCCEEDED", parent
    assert parent["shards_total"] >= 8
    # (review_threshold 0: nothing is queued for review)
    assert parent["result"] == {"shards": parent["shards_total"], "rows": ROWS, "for_review": 0}
    # AND the killed worker's shard was taken over and finished on its second attempt
    record = ledger.get(killed)
    assert record is not None
    assert (record["status"], record["attempts"]) == ("SUCCEEDED", 2)
    # AND every row is stored exactly once, under the parent's job id
    # (counted by the table: moto takes seconds to hand back 10,000 items, not to count them)
    request: dict[str, Any] = {
        "TableName": stack.predictions_table,
        "Select": "COUNT",
        "KeyConditionExpression": "#model = :model",
        "ExpressionAttributeNames": {"#model": "model"},
        "ExpressionAttributeValues": {":model": {"S": "digits"}},
    }
    stored = 0
    while True:
        page = clients.dynamodb.query(**request)
        stored += page["Count"]
        if "LastEvaluatedKey" not in page:
            break
        request["ExclusiveStartKey"] = page["LastEvaluatedKey"]
    assert stored == ROWS
    sample = [{"model": {"S": "digits"}, "item_id": {"S": f"row-{i}"}} for i in range(0, ROWS, 100)]
    got = clients.dynamodb.batch_get_item(RequestItems={stack.predictions_table: {"Keys": sample}})[
        "Responses"
    ][stack.predictions_table]
    assert len(got) == len(sample)
    assert {i["job_id"]["S"] for i in got} == {"batch-10k"}
    # AND at least two workers ran shards to the end (the victim's SIGKILL lost it nothing)
    finishers = [
        w for w in workers if any(".shard-" in e["job_id"] for e in w.events("job.succeeded"))
    ]
    assert len(finishers) >= 2
    assert victim.process.returncode == -signal.SIGKILL
