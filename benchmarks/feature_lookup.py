"""Realtime predictions by key: what the feature lookup adds to POST /v1/predict.

    .venv/bin/python benchmarks/feature_lookup.py [--requests N]

The API app runs in this process (its ASGI app, driven by 8 concurrent clients on one asyncio
loop: the API's own event loop and thread pool, no HTTP stack in between). The model
``digits-by-key`` was trained on the ``images`` feature set (64 pixels and a category); each
request asks for one image, either by key (the API reads its features with one BatchGetItem,
off the event loop) or with its features inline (the same values). Two stores, measured in the
same run:

* **in process**: moto's DynamoDB in this process (``mock_aws``), so the lookup's cost is the
  kit's own: botocore's request and response, the item's JSON, the thread hand-off;
* **moto server**: moto over loopback HTTP, as local mode runs it (a DynamoDB round trip).

It prints, for each: p50 and p99 of the whole request by key and inline, the p99 the key adds,
and the lookup's share of the time of a request by key (timed inside the API). Goal: the
lookup adds at most 2 ms at p99 in process.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from mlpoc.paths import CHECKOUT

sys.path.insert(0, str(CHECKOUT))

import httpx
from moto import mock_aws

from mlpoc import features, plugins, samples
from mlpoc.api import routes
from mlpoc.api.app import create_app
from mlpoc.api.settings import ApiSettings
from tests.support.aws_stack import EmbeddedMoto, Stack, create_stack
from tests.support.pipeline import run_job

KEY = "benchmark-key-0123456789"
CONCURRENCY = 8
IMAGES = range(1500, 1564)


def prepare(stack: Stack) -> None:
    """images v1 (promoted) and digits-by-key v1 trained on it."""
    s3 = stack.clients().s3
    s3.put_object(Bucket=stack.data_bucket, Key="inputs/images/v1.csv",
                  Body=samples.feature_set_csv().encode())  # fmt: skip
    run_job(stack, {"job_id": "images-1", "type": "features", "model": "images",
                    "dataset": f"s3://{stack.data_bucket}/inputs/images/v1.csv",
                    "params": {"key": "image"}})  # fmt: skip
    s3.put_object(Bucket=stack.data_bucket, Key="datasets/k/train.csv",
                  Body=samples.keyed_csv(slice(0, 1500), labels=True).encode())  # fmt: skip
    run_job(stack, {"job_id": "by-key-1", "type": "train", "model": "digits-by-key",
                    "dataset": f"s3://{stack.data_bucket}/datasets/k/train.csv",
                    "params": {"feature_set": "images"}})  # fmt: skip


def bodies(stack: Stack) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """One request per image: by key, and with the same features inline."""
    sets = features.FeatureSets(stack.clients().dynamodb, stack.models_table)
    snapshot = features.Snapshot.read(stack.clients().s3, sets.get("images", 1))
    by_key, inline = [], []
    for i in IMAGES:
        key = samples.image_key(i)
        cells = snapshot.rows[key]
        row: dict[str, Any] = {
            n: (float(c) if n != "ink" else c) for n, c in zip(snapshot.names, cells, strict=True)
        }
        by_key.append({"model": "digits-by-key", "keys": [key]})
        inline.append({"model": "digits-by-key", "rows": [row]})
    return by_key, inline


@contextmanager
def timed_lookups(into: list[float]) -> Iterator[None]:
    """Time every lookup the API makes (the route calls it through the features module)."""
    original = features.lookup

    def timed(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            into.append(time.perf_counter() - started)

    routes.predictions.features.lookup = timed  # type: ignore[attr-defined]
    try:
        yield
    finally:
        routes.predictions.features.lookup = original  # type: ignore[attr-defined]


def load(app: Any, payloads: list[dict[str, Any]], requests: int) -> list[float]:
    latencies: list[float] = []

    async def client(offset: int, count: int) -> None:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as http:
            for i in range(count):
                started = time.perf_counter()
                answer = await http.post(
                    "/v1/predict",
                    json=payloads[(offset + i) % len(payloads)],
                    headers={"X-API-Key": KEY},
                )
                latencies.append(time.perf_counter() - started)
                if answer.status_code != 200:
                    raise RuntimeError(answer.text)

    async def run() -> None:
        each = requests // CONCURRENCY
        await asyncio.gather(*(client(c * 5, each) for c in range(CONCURRENCY)))

    asyncio.run(run())
    return latencies


def ms(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


def measure(stack: Stack, requests: int) -> dict[str, float]:
    prepare(stack)
    by_key, inline = bodies(stack)
    settings = ApiSettings.from_env({**stack.env(), "MLPOC_API_KEY": KEY, "MLPOC_SAMPLE_RATE": "0"})
    app = create_app(settings, stack.clients(), start_poller=False)
    lookups: list[float] = []
    load(app, by_key, 200)  # warm: the model loads, the thread pool starts
    load(app, inline, 200)
    keyed_runs: list[float] = []
    inline_runs: list[float] = []
    with timed_lookups(lookups):
        for _ in range(2):  # interleaved, so drift of the machine hits both
            keyed_runs += load(app, by_key, requests // 2)
            inline_runs += load(app, inline, requests // 2)
    keyed_total = sum(keyed_runs)
    return {
        "key_p50": ms(keyed_runs, 0.5),
        "key_p99": ms(keyed_runs, 0.99),
        "inline_p50": ms(inline_runs, 0.5),
        "inline_p99": ms(inline_runs, 0.99),
        "lookup_p50": ms(lookups, 0.5),
        "lookup_p99": ms(lookups, 0.99),
        "share": sum(lookups) / keyed_total if keyed_total else 0.0,
    }


def report(name: str, found: dict[str, float]) -> None:
    added = found["key_p99"] - found["inline_p99"]
    print(
        f"{name:<12} by key p50 {found['key_p50']:6.2f} ms  p99 {found['key_p99']:6.2f} ms | "
        f"inline p50 {found['inline_p50']:6.2f} ms  p99 {found['inline_p99']:6.2f} ms | "
        f"p99 added {added:+5.2f} ms ({found['key_p99'] / found['inline_p99']:.2f}x) | "
        f"lookup p50 {found['lookup_p50']:.2f} ms p99 {found['lookup_p99']:.2f} ms, "
        f"{found['share']:.0%} of a request by key"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=2000, help="per kind and store")
    args = parser.parse_args()
    plugins.load()
    print(f"POST /v1/predict, one image a request, concurrency {CONCURRENCY}, "
          f"{args.requests} requests per kind")  # fmt: skip
    with mock_aws():
        in_process = measure(create_stack(None), args.requests)
    with EmbeddedMoto() as endpoint:
        server = measure(create_stack(endpoint), args.requests)
    report("in process", in_process)
    report("moto server", server)
    added = in_process["key_p99"] - in_process["inline_p99"]
    verdict = "met" if added <= 2 else "NOT met"
    print(f"goal: the lookup adds at most 2 ms at p99 in process: {verdict} ({added:+.2f} ms)")


if __name__ == "__main__":
    main()
