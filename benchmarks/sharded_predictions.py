"""Sharded batch predictions: one predict worker against N, on the same job, in the same run.

    make bench    (or: .venv/bin/python benchmarks/sharded_predictions.py [--rows N] [--workers N])

A promoted digits model and one CSV of ``--rows`` rows; the same sharded predict job (shards of
``--shard-bytes``) is run by 1 predict worker process, then by ``--workers`` of them, each time
against a fresh stack in the same embedded moto server. The clock runs from the job's send to
its parent record's SUCCEEDED (the workers are started, and warm, before it). Rows/s, and the
ratio N/1.

On this kit's AWS deployment the workers are Fargate tasks and the limit is the predict
service's maximum task count (``mlpoc:worker_max_tasks``). Here every worker and the emulator
share one machine: the ratio is bounded by its cores and by moto, a single server process.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from mlpoc.paths import CHECKOUT

sys.path.insert(0, str(CHECKOUT))  # for tests.support

from mlpoc import plugins
from mlpoc.data import digits
from mlpoc.runtime.ledger import Ledger
from tests.support import pipeline
from tests.support.aws_stack import EmbeddedMoto, create_stack
from tests.support.workers import start_worker, wait_for, wait_for_status


def run(endpoint: str, rows: int, workers: int, shard_bytes: int, logs: Path) -> tuple[float, int]:
    """Seconds from send to SUCCEEDED, and the number of shards."""
    stack = create_stack(endpoint)
    pipeline.train(stack, "train-1")
    clients = stack.clients()
    key = "datasets/batch/rows.csv"
    clients.s3.put_object(Bucket=stack.data_bucket, Key=key, Body=digits.batch_csv(rows).encode())
    processes = [start_worker("predict", stack, logs, MLPOC_PREFETCH="1") for _ in range(workers)]
    try:
        for process in processes:  # warm: imported, polling
            wait_for(lambda p=process: p.events("worker.started"), timeout=60, what="a worker")
        body = {"schema": 1, "job_id": "bench", "type": "predict", "model": "digits",
                "dataset": f"s3://{stack.data_bucket}/{key}",
                "params": {"shard_bytes": shard_bytes, "review_threshold": 0}}  # fmt: skip
        ledger = Ledger(clients.dynamodb, stack.jobs_table)
        started = time.perf_counter()
        clients.sqs.send_message(QueueUrl=stack.predict_queue_url, MessageBody=json.dumps(body))
        record = wait_for_status(ledger, "bench", {"SUCCEEDED", "FAILED"}, timeout=900)
        took = time.perf_counter() - started
    finally:
        for process in processes:
            process.terminate()
    if record["status"] != "SUCCEEDED" or record["result"]["rows"] != rows:
        raise SystemExit(f"the job did not store every row: {record}")
    return took, int(record["shards_total"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--shard-bytes", type=int, default=200_000)
    args = parser.parse_args()
    plugins.load()
    with EmbeddedMoto() as endpoint, tempfile.TemporaryDirectory() as logs:
        one, shards = run(endpoint, args.rows, 1, args.shard_bytes, Path(logs))
        many, _ = run(endpoint, args.rows, args.workers, args.shard_bytes, Path(logs))
    print(f"{'measure':<44} {'1 worker':>10} {f'{args.workers} workers':>10} {'ratio':>7}")
    name = f"rows/s, {args.rows} rows in {shards} shards"
    base, cand = args.rows / one, args.rows / many
    print(f"{name:<44} {base:>10.0f} {cand:>10.0f} {cand / base:>6.1f}x")


if __name__ == "__main__":
    main()
