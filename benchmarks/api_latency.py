"""Realtime predict latency over HTTP: p50/p99 of POST /v1/predict at concurrency 1 and 8.

    make bench        (or: .venv/bin/python benchmarks/api_latency.py [--requests N])

The API runs as its own process (`python -m mlpoc.api`, uvicorn, one worker), exactly as in the
container; the load comes from this process over keep-alive HTTP connections on loopback. Two
models, measured in the same run: the digits classifier (64 numbers, one float matrix input)
and the worked example (LightGBM on penguins: text columns and missing values, one input per
column, imputation and one-hot encoding inside the graph). Next to them: the in-process predict
time of each (onnxruntime, one row), the floor the HTTP numbers add to, and the example's
ratio to the digits model. Goal on a 2-core machine: p99 under 20 ms at concurrency 8.

Then the cost of the monitor's sample of realtime requests (mlpoc.quality.input_samples): the
digits model
again with sampling off (the runs above) and with every request sampled and the sample written
to S3 every second (the worst case: the default samples 10 % and writes once a minute), as a
ratio of p50 and p99 measured in the same run.
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import logging
import os
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable

import numpy as np

from mlpoc.paths import CHECKOUT

ROOT = CHECKOUT
sys.path.insert(0, str(ROOT))


import math
from typing import Any

from palmerpenguins import load_penguins

from mlpoc import plugins
from mlpoc.data import digits
from mlpoc.models.inference import load
from mlpoc.models.registry import Registry
from tests.support.aws_stack import EmbeddedMoto, Stack, create_stack
from tests.support.pipeline import prepare, run_job

KEY = "benchmark-key-0123456789"
EXAMPLE = "penguins"
EXAMPLE_PARAMS = {"plugin": "lightgbm", "label_column": "species", "ignore_columns": ["year"]}


def digits_rows() -> list[dict[str, Any]]:
    x, _ = digits.digits()
    return [{n: float(v) for n, v in zip(digits.FEATURES, x[i], strict=True)} for i in range(64)]


def penguin_rows() -> list[dict[str, Any]]:
    """Penguins as a client sends them: text, and null where the table has a blank."""
    table = load_penguins().drop(columns=["species", "year"])
    rows = table.to_dict(orient="records")
    return [
        {k: None if isinstance(v, float) and math.isnan(v) else v for k, v in row.items()}
        for row in rows[:64]
    ]


def bodies(model: str) -> list[bytes]:
    rows = digits_rows() if model == "digits" else penguin_rows()
    return [json.dumps({"model": model, "rows": [row]}).encode() for row in rows]


def train_example(stack: Stack) -> None:
    key = "datasets/penguins/penguins.csv"
    text = load_penguins().to_csv(index=False)
    stack.clients().s3.put_object(Bucket=stack.data_bucket, Key=key, Body=text.encode())
    run_job(
        stack,
        {"job_id": "train-penguins", "type": "train", "model": EXAMPLE,
         "dataset": f"s3://{stack.data_bucket}/{key}", "params": EXAMPLE_PARAMS},
    )  # fmt: skip


def wait_until_up(port: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            connection.request("GET", "/healthz")
            if connection.getresponse().status == 200:
                return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError("the API did not come up")


def load_test(
    port: int,
    concurrency: int,
    requests: int,
    *,
    key: str = KEY,
    headers: Callable[[], bytes] = lambda: b"",
    model: str = "digits",
    payloads: list[bytes] | None = None,
) -> list[float]:
    """``concurrency`` keep-alive connections driven by one asyncio loop (no client threads
    competing for the GIL: what is measured is the server, not the load generator).
    ``headers``: extra header lines for each request (``b"Name: value\r\n"``); ``payloads``:
    the bodies to send (default: ``model``'s rows, one a request)."""
    payloads = payloads or bodies(model)

    def request(payload: bytes) -> bytes:
        return (
            b"POST /v1/predict HTTP/1.1\r\nHost: 127.0.0.1\r\nX-API-Key: " + key.encode()
            + b"\r\n" + headers() + b"Content-Type: application/json\r\nContent-Length: "
            + str(len(payload)).encode() + b"\r\n\r\n" + payload
        )  # fmt: skip

    latencies: list[float] = []

    async def exchange(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, raw: bytes
    ) -> None:
        writer.write(raw)
        await writer.drain()
        head = await reader.readuntil(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 200"):
            raise RuntimeError(head.split(b"\r\n")[0].decode())
        lowered = head.lower()
        if b"content-length:" in lowered:
            length = int(lowered.split(b"content-length:")[1].split(b"\r\n")[0])
            await reader.readexactly(length)
        else:  # chunked (a proxy may re-chunk)
            while (size := int((await reader.readuntil(b"\r\n")).strip(), 16)) > 0:
                await reader.readexactly(size + 2)
            await reader.readuntil(b"\r\n")

    async def connection(offset: int, count: int) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        for i in range(count):
            raw = request(payloads[(offset + i) % len(payloads)])
            started = time.perf_counter()
            try:
                await exchange(reader, writer, raw)
            except asyncio.IncompleteReadError:
                # nginx closes a keep-alive connection after 1,000 requests: open another and
                # time the request again from there
                writer.close()
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
                started = time.perf_counter()
                await exchange(reader, writer, raw)
            latencies.append(time.perf_counter() - started)
        writer.close()
        await writer.wait_closed()

    async def run() -> None:
        per_connection = requests // concurrency
        await asyncio.gather(*(connection(i * 7, per_connection) for i in range(concurrency)))

    asyncio.run(run())
    return latencies


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


def in_process_ms(stack: Stack, model: str) -> float:
    """The floor: median time of one row through onnxruntime in this process."""
    clients = stack.clients()
    version = Registry(clients.dynamodb, stack.models_table).resolve(model, "current")
    classifier = load(clients.s3, stack.model_bucket, version)
    one = (digits_rows() if model == "digits" else penguin_rows())[3]  # penguin 3: blanks
    row = {
        c.name: np.array([one[c.name]], dtype=np.float32)
        if c.type == "number"
        else np.array([one[c.name] or ""], dtype=object)
        for c in version.schema.columns
    }
    for c in version.schema.columns:
        if c.type == "number" and one[c.name] is None:
            row[c.name][0] = np.nan
    for _ in range(200):
        classifier.predict(row)
    timings = []
    for _ in range(2000):
        started = time.perf_counter()
        classifier.predict(row)
        timings.append(time.perf_counter() - started)
    return statistics.median(timings) * 1000


def over_http(
    stack: Stack,
    requests: int,
    *,
    models: tuple[str, ...] = ("digits", EXAMPLE),
    sample_rate: float = 0.0,
) -> list[tuple[str, int, float, float, float]]:
    """(model, concurrency, p50 ms, p99 ms, req/s) against `python -m mlpoc.api` in its own
    process, the models one after the other; ``sample_rate``: the share of requests sampled
    for the monitor (written every second)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])
    env = {
        **{k: v for k, v in os.environ.items() if k in ("PATH", "HOME")},
        **stack.env(),
        "PYTHONPATH": str(ROOT),
        "MLPOC_API_KEY": KEY,
        "MLPOC_API_PORT": str(port),
        "MLPOC_LOG_LEVEL": "WARNING",
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
        "MLPOC_SAMPLE_RATE": str(sample_rate),
        "MLPOC_SAMPLE_FLUSH_SECONDS": "1",
        "MLPOC_SAMPLE_MAX_ROWS": "100000",
    }
    api = subprocess.Popen(
        [sys.executable, "-m", "mlpoc.api"], env=env, cwd=ROOT,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        wait_until_up(port)
        rows = []
        for model in models:
            load_test(port, 1, 200, model=model)  # warm-up: loads the model
            for concurrency in (1, 8):
                latencies = load_test(port, concurrency, requests, model=model)
                rate = len(latencies) / sum(latencies) * concurrency
                p50, p99 = percentile(latencies, 0.5), percentile(latencies, 0.99)
                rows.append((model, concurrency, p50, p99, rate))
        return rows
    finally:
        api.terminate()
        api.wait(10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=2000)
    args = parser.parse_args()
    logging.getLogger("mlpoc").setLevel(logging.WARNING)
    plugins.load()
    with EmbeddedMoto() as endpoint:
        stack = prepare(create_stack(endpoint))
        train_example(stack)
        floors = {model: in_process_ms(stack, model) for model in ("digits", EXAMPLE)}
        rows = over_http(stack, args.requests)
        sampled = over_http(stack, args.requests, models=("digits",), sample_rate=1.0)
        written = sum(
            page.get("KeyCount", 0)
            for page in stack.clients()
            .s3.get_paginator("list_objects_v2")
            .paginate(Bucket=stack.data_bucket, Prefix="input-samples/digits/")
        )
    for model, floor in floors.items():
        print(f"in-process predict, 1 row (onnxruntime), {model}: {floor:.3f} ms (median)")
    print(
        f"{'model':>9} {'concurrency':>11} {'p50 ms':>8} {'p99 ms':>8} {'req/s':>8}"
        "  goal p99 < 20 ms at 8"
    )
    for model, concurrency, p50, p99, rate in rows:
        print(f"{model:>9} {concurrency:>11} {p50:>8.2f} {p99:>8.2f} {rate:>8.0f}")
    baseline = {c: p99 for m, c, _, p99, _ in rows if m == "digits"}
    example = {c: p99 for m, c, _, p99, _ in rows if m == EXAMPLE}
    print(
        f"{EXAMPLE} p99 / digits p99 (same run): "
        + ", ".join(f"{example[c] / baseline[c]:.2f}x at {c}" for c in sorted(baseline))
    )
    print(f"every request sampled for the monitor ({written} sample objects written):")
    for model, concurrency, p50, p99, rate in sampled:
        base = next(r for r in rows if r[0] == model and r[1] == concurrency)
        print(
            f"{model:>9} {concurrency:>11} {p50:>8.2f} {p99:>8.2f} {rate:>8.0f}"
            f"  p50 {p50 / base[2]:.2f}x, p99 {p99 / base[3]:.2f}x of sampling off"
        )


if __name__ == "__main__":
    main()
