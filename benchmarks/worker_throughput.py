"""Worker throughput and inference latency, each against a baseline measured in the same run.

    make bench        (or: .venv/bin/python benchmarks/worker_throughput.py [--jobs N] [--rows N])

1. jobs/s of the batch consumer (prefetch 10, batched deletes) vs a one-message-at-a-time
   consumer (prefetch 1), same loop, same ledger writes, same embedded moto server;
2. predictions/s written with BatchWriteItem (25 a call) vs one put_item per row;
3. single-row predict latency of the served ONNX graph (onnxruntime) vs the scikit-learn model
   it was exported from, for the default logistic regression and for a random forest.

Absolute numbers depend on the machine and on moto (an emulator, slower than DynamoDB/SQS);
the ratios are the point. Nothing here touches a real AWS account.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from moto.server import ThreadedMotoServer

from mlpoc import plugins, samples
from mlpoc.dynamo import BatchWriter, serialize
from mlpoc.inference import OnnxClassifier
from mlpoc.plugins.sklearn import build
from mlpoc.registry import ModelVersion
from mlpoc.settings import Settings
from mlpoc.worker.loop import JobContext, Worker
from tests.support import moto_patches
from tests.support.aws_stack import FAKE_CREDENTIALS, Stack, create_stack


def echo(ctx: JobContext) -> None:
    ctx.commit({"echo": ctx.job.job_id})


def enqueue(stack: Stack, count: int) -> None:
    sqs = stack.clients().sqs
    for start in range(0, count, 10):
        sqs.send_message_batch(
            QueueUrl=stack.predict_queue_url,
            Entries=[
                {
                    "Id": str(i),
                    "MessageBody": json.dumps(
                        {
                            "schema": 1,
                            "job_id": f"job-{start + i}",
                            "type": "predict",
                            "model": "digits",
                            "dataset": f"s3://{stack.data_bucket}/d.csv",
                        }
                    ),
                }
                for i in range(min(10, count - start))
            ],
        )


def consume(endpoint: str, jobs: int, prefetch: int) -> float:
    stack = create_stack(endpoint)
    enqueue(stack, jobs)
    settings = replace(Settings.from_env("predict", stack.env()), prefetch=prefetch, wait_seconds=0)
    worker = Worker(settings=settings, clients=stack.clients(), handler=echo)
    worker.start()
    started = time.perf_counter()
    done = 0
    while done < jobs:
        done += worker.process_batch().succeeded
    return jobs / (time.perf_counter() - started)


def write_rate(endpoint: str, rows: int, batched: bool) -> float:
    stack = create_stack(endpoint)
    dynamodb = stack.clients().dynamodb
    items = [
        {"model": "digits", "item_id": f"row-{i}", "version": 1, "label": str(i % 10),
         "confidence": 0.9, "job_id": "bench"}
        for i in range(rows)
    ]  # fmt: skip
    started = time.perf_counter()
    if batched:
        writer = BatchWriter(dynamodb)
        for item in items:
            writer.put(stack.predictions_table, item)
        writer.flush()
    else:
        for item in items:
            dynamodb.put_item(TableName=stack.predictions_table, Item=serialize(item))
    return rows / (time.perf_counter() - started)


def latency_us(predict: object, row: np.ndarray, repeats: int) -> float:
    call = predict  # a callable taking one row
    for _ in range(50):
        call(row)  # type: ignore[operator]
    timings = []
    for _ in range(repeats):
        started = time.perf_counter()
        call(row)  # type: ignore[operator]
        timings.append(time.perf_counter() - started)
    return statistics.median(timings) * 1e6


def single_row(estimator: str, repeats: int) -> tuple[float, float]:
    x, y = samples.digits()
    x = x.astype(np.float32)
    labels = y.astype(str)
    params = {"estimator": estimator}
    model = build(params).fit(x, labels)
    exported = plugins.get("sklearn").train(x, labels, params)
    version = ModelVersion(
        model="bench", version=1, sha256="", artifact_key="", metadata_key="",
        features=samples.FEATURES, classes=exported.classes, metrics={}, job_id="bench",
        dataset="", plugin="sklearn", created_at=0.0,
    )  # fmt: skip
    classifier = OnnxClassifier(exported.onnx, version)
    row = x[:1]
    sk = latency_us(model.predict_proba, row, repeats)
    ort = latency_us(classifier.predict, row, repeats)
    return sk, ort


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=300)
    parser.add_argument("--rows", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=2000)
    args = parser.parse_args()

    os.environ.update(FAKE_CREDENTIALS)
    os.environ.pop("AWS_PROFILE", None)
    os.environ["AWS_CONFIG_FILE"] = os.environ["AWS_SHARED_CREDENTIALS_FILE"] = os.devnull
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    logging.getLogger("mlpoc").setLevel(logging.WARNING)
    moto_patches.apply()
    plugins.load()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"

    rows: list[tuple[str, str, float, str, float]] = []
    one = consume(endpoint, args.jobs, prefetch=1)
    batch = consume(endpoint, args.jobs, prefetch=10)
    rows.append((f"jobs/s, {args.jobs}-job backlog", "prefetch 1", one, "prefetch 10", batch))
    single = write_rate(endpoint, args.rows, batched=False)
    batched = write_rate(endpoint, args.rows, batched=True)
    rows.append((f"predictions/s, {args.rows} rows", "put_item", single, "BatchWriteItem", batched))
    server.stop()
    for estimator in ("logistic_regression", "random_forest"):
        sk, ort = single_row(estimator, args.repeats)
        # latency: lower is better, so the ratio is baseline / candidate
        rows.append((f"1-row predict µs, {estimator}", "scikit-learn", sk, "onnxruntime", ort))

    print(f"{'measure':<38} {'baseline':>22} {'mlpoc':>24} {'ratio':>7}")
    for name, base_name, base, cand_name, cand in rows:
        ratio = base / cand if "µs" in name else cand / base
        print(
            f"{name:<38} {base_name:>12} {base:>9.1f} {cand_name:>14} {cand:>9.1f} {ratio:>6.1f}x"
        )


if __name__ == "__main__":
    main()
