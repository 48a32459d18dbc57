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
import logging
import statistics
import sys
import time
from dataclasses import replace

import numpy as np

from mlpoc.paths import CHECKOUT

sys.path.insert(0, str(CHECKOUT))  # for tests.support


from mlpoc import plugins
from mlpoc.aws.dynamo import BatchWriter, serialize
from mlpoc.data import digits
from mlpoc.data.datasets import parse_training
from mlpoc.models.inference import OnnxModel
from mlpoc.models.registry import ModelVersion
from mlpoc.plugins.sklearn import build
from mlpoc.runtime.environment import Settings
from mlpoc.worker.context import JobContext
from mlpoc.worker.loop import Worker
from tests.support.aws_stack import EmbeddedMoto, create_stack, send_jobs


def echo(ctx: JobContext) -> None:
    ctx.commit({"echo": ctx.job.job_id})


def consume(endpoint: str, jobs: int, prefetch: int) -> float:
    stack = create_stack(endpoint)
    send_jobs(stack, jobs)
    settings = replace(Settings.from_env("predict", stack.env()), prefetch=prefetch, wait_seconds=0)
    worker = Worker(settings=settings, clients=stack.clients(), handler=echo)
    worker.start()
    started = time.perf_counter()
    done = 0
    while done < jobs:
        done += worker.process_batch().succeeded
    return jobs / (time.perf_counter() - started)


def write_rate(endpoint: str, rows: int, batched: bool, rounds: int = 3) -> float:
    """Rows/s writing predictions, the best of ``rounds`` (each into a fresh table)."""
    items = [
        {"model": "digits", "item_id": f"row-{i}", "version": 1, "label": str(i % 10),
         "confidence": 0.9, "job_id": "bench"}
        for i in range(rows)
    ]  # fmt: skip
    best = 0.0
    for _ in range(rounds):
        stack = create_stack(endpoint)
        dynamodb = stack.clients().dynamodb
        started = time.perf_counter()
        if batched:
            writer = BatchWriter(dynamodb)
            for item in items:
                writer.put(stack.predictions_table, item)
            writer.flush()
        else:
            for item in items:
                dynamodb.put_item(TableName=stack.predictions_table, Item=serialize(item))
        best = max(best, rows / (time.perf_counter() - started))
    return best


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
    data = plugins.TrainingData.of(parse_training(digits.training_csv(), "digits.csv"))
    params = {"estimator": estimator}
    model = build(params, data.schema).fit(data.matrix, data.y)
    exported = plugins.get("sklearn").train(data, params)
    version = ModelVersion(
        model="bench", version=1, sha256="", artifact_key="", metadata_key="",
        features=digits.FEATURES, classes=exported.classes, metrics={}, job_id="bench",
        dataset="", plugin="sklearn", created_at=0.0,
        extra={"schema": data.schema.to_json()},
    )  # fmt: skip
    classifier = OnnxModel(exported.onnx, version)
    row = data.matrix[:1]
    columns = {name: values[:1] for name, values in data.columns.items()}
    sk = latency_us(model.predict_proba, row, repeats)
    ort = latency_us(classifier.predict, columns, repeats)
    return sk, ort


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=300)
    parser.add_argument("--rows", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=2000)
    args = parser.parse_args()

    logging.getLogger("mlpoc").setLevel(logging.WARNING)
    plugins.load()
    rows: list[tuple[str, str, float, str, float]] = []
    with EmbeddedMoto() as endpoint:
        one = consume(endpoint, args.jobs, prefetch=1)
        batch = consume(endpoint, args.jobs, prefetch=10)
        rows.append((f"jobs/s, {args.jobs}-job backlog", "prefetch 1", one, "prefetch 10", batch))
        single = write_rate(endpoint, args.rows, batched=False)
        batched = write_rate(endpoint, args.rows, batched=True)
        rows.append(
            (f"predictions/s, {args.rows} rows", "put_item", single, "BatchWriteItem", batched)
        )
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
