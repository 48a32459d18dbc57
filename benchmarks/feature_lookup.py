"""Realtime predictions by key: what the feature lookup adds to POST /v1/predict.

    .venv/bin/python benchmarks/feature_lookup.py [--requests N]

The API runs in its own process (uvicorn, one worker, as in the container) and the load comes
from this one over keep-alive HTTP connections on loopback, 8 at a time. The model
``digits-by-key`` was trained on the ``images`` feature set (64 pixels and a category); each
request asks for one image, either by key (the API reads its features with a BatchGetItem off
the event loop, shared with the requests that arrive while one is in flight) or with the same
features inline, interleaved in the same run. Four DynamoDBs:

* **in process**: moto inside the API's own process (``mock_aws``): no socket between the API
  and its store, but moto's handling of each call runs under the API's interpreter lock;
* **kit only**: the same, but BatchGetItem answered from a dict in the API's process, in
  DynamoDB's response shape: what is left is the kit's own work (the thread hand-off, the JSON
  of the item, the rows), the floor a real DynamoDB's network time adds to;
* **stand-in**: BatchGetItem through botocore over loopback HTTP to a process that answers at
  once from memory: the kit's work plus botocore's and a socket round trip, what a deployed
  API adds to DynamoDB's own time;
* **moto server**: moto in a process of its own, over loopback HTTP (what local mode runs).

It prints, for each: p50 and p99 of a request by key and inline, what the key adds at p99, and
the lookup's own time (a request's wait for its features, timed inside the API) and its share
of a request by key, and how many BatchGetItem calls a request cost (concurrent requests share
one: mlpoc.api.lookups). Goal: the lookup adds at most 2 ms at p99 in process.
"""

from __future__ import annotations

import argparse
import atexit
import http.client
import http.server
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from mlpoc.paths import CHECKOUT

sys.path.insert(0, str(CHECKOUT))

import boto3
import uvicorn
from benchmarks.api_latency import load_test, percentile, wait_until_up
from fastapi import FastAPI
from moto import mock_aws

from mlpoc import plugins
from mlpoc.api.app import create_app
from mlpoc.api.settings import ApiSettings
from mlpoc.data import digits, feature_sets, feature_snapshots
from tests.support.aws_stack import FAKE_CREDENTIALS, REGION, Stack, create_stack
from tests.support.enforced import moto_process
from tests.support.pipeline import run_job, scan

KEY = "benchmark-key-0123456789"
CONCURRENCY = 8
IMAGES = range(1500, 1564)
LOOKUPS = "/bench/lookups"  # the serving process's own route: the lookups' timings
MEMORY = "memory"  # the serving process's DynamoDB answers lookups from a dict (Memory)
STAND_IN = "stand-in"  # its lookups go over HTTP to a process that answers at once (StandIn)


def prepare(stack: Stack) -> None:
    """images v1 (promoted) and digits-by-key v1 trained on it."""
    s3 = stack.clients().s3
    s3.put_object(Bucket=stack.data_bucket, Key="inputs/images/v1.csv",
                  Body=digits.feature_set_csv().encode())  # fmt: skip
    run_job(stack, {"job_id": "images-1", "type": "features", "model": "images",
                    "dataset": f"s3://{stack.data_bucket}/inputs/images/v1.csv",
                    "params": {"key": "image"}})  # fmt: skip
    s3.put_object(Bucket=stack.data_bucket, Key="datasets/k/train.csv",
                  Body=digits.keyed_csv(slice(0, 1500), labels=True).encode())  # fmt: skip
    run_job(stack, {"job_id": "by-key-1", "type": "train", "model": "digits-by-key",
                    "dataset": f"s3://{stack.data_bucket}/datasets/k/train.csv",
                    "params": {"feature_set": "images"}})  # fmt: skip


def bodies(stack: Stack) -> dict[str, list[bytes]]:
    """One request per image: by key, and with the same features inline."""
    sets = feature_sets.FeatureSets(stack.clients().dynamodb, stack.models_table)
    snapshot = feature_snapshots.Snapshot.read(stack.clients().s3, sets.get("images", 1))
    found: dict[str, list[bytes]] = {"key": [], "inline": []}
    for i in IMAGES:
        key = digits.image_key(i)
        row = {
            n: (float(c) if n != "ink" else c)
            for n, c in zip(snapshot.names, snapshot.rows[key], strict=True)
        }
        found["key"].append(json.dumps({"model": "digits-by-key", "keys": [key]}).encode())
        found["inline"].append(json.dumps({"model": "digits-by-key", "rows": [row]}).encode())
    return found


class StandIn(http.server.BaseHTTPRequestHandler):
    """DynamoDB's BatchGetItem over HTTP, answered at once from a JSON file of the features
    table's items: a store with no cost of its own, in a process of its own."""

    items: dict[tuple[str, str], Any] = {}  # noqa: RUF012 - set once by stand_in()
    table = ""
    disable_nagle_algorithm = True  # headers and body are two writes: no 40 ms delayed ACK

    def do_POST(self) -> None:
        request = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        keys = request["RequestItems"][self.table]["Keys"]
        found = [self.items.get((k["set"]["S"], k["key"]["S"])) for k in keys]
        body = json.dumps(
            {"Responses": {self.table: [i for i in found if i]}, "UnprocessedKeys": {}}
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/x-amz-json-1.0")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_: Any) -> None:
        return


def stand_in(port: int, path: str) -> None:
    saved = json.loads(Path(path).read_text())
    StandIn.table = saved["table"]
    StandIn.items = {(i["set"]["S"], i["key"]["S"]): i for i in saved["items"]}
    StandIn.protocol_version = "HTTP/1.1"  # keep-alive, as DynamoDB's endpoint
    http.server.ThreadingHTTPServer(("127.0.0.1", port), StandIn).serve_forever()


class Routed:
    """A DynamoDB client that sends BatchGetItem to ``lookups`` and every other call to moto."""

    def __init__(self, dynamodb: Any, lookups: Any) -> None:
        self._dynamodb = dynamodb
        self.batch_get_item = lookups.batch_get_item

    def __getattr__(self, name: str) -> Any:
        return getattr(self._dynamodb, name)


class Memory:
    """A DynamoDB client whose BatchGetItem answers from a dict of the features table, in the
    response's own shape, and which passes every other call to moto: what is left of a lookup is
    the kit's own work (the thread hand-off, the item's JSON, the rows)."""

    def __init__(self, dynamodb: Any, stack: Stack) -> None:
        self._dynamodb = dynamodb
        self._table = stack.features_table
        self._items = {
            (i["set"]["S"], i["key"]["S"]): i for i in scan(dynamodb, stack.features_table)
        }

    def batch_get_item(self, RequestItems: dict[str, Any]) -> dict[str, Any]:
        keys = RequestItems[self._table]["Keys"]
        found = [self._items.get((k["set"]["S"], k["key"]["S"])) for k in keys]
        return {"Responses": {self._table: [i for i in found if i]}, "UnprocessedKeys": {}}

    def __getattr__(self, name: str) -> Any:
        return getattr(self._dynamodb, name)


def start_stand_in(dynamodb: Any, stack: Stack) -> Any:
    """The stand-in in its own process, with the features table's items; a botocore client of
    it (the same client settings as the kit's)."""
    path = Path(tempfile.mkdtemp()) / "items.json"
    path.write_text(json.dumps({"table": stack.features_table,
                                "items": scan(dynamodb, stack.features_table)}))  # fmt: skip
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])
    process = subprocess.Popen(  # noqa: S603 - this script, on the port it chose
        [sys.executable, __file__, "--stand-in", str(port), "--items", str(path)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    atexit.register(process.terminate)  # uvicorn returns at SIGTERM: the stand-in goes too
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                break
        time.sleep(0.1)
    session = boto3.session.Session(region_name=REGION)
    return session.client("dynamodb", endpoint_url=f"http://127.0.0.1:{port}")


def serve(port: int, endpoint: str) -> None:
    """The serving process: the stack (in moto in this process when ``endpoint`` is empty),
    the model, and the API on ``port``, its lookups timed."""
    in_process = endpoint in ("", MEMORY, STAND_IN)
    if in_process:
        mock_aws().start()
    plugins.load()
    stack = create_stack(None if in_process else endpoint)
    prepare(stack)
    clients = stack.clients()
    if endpoint == MEMORY:
        clients.dynamodb = Memory(clients.dynamodb, stack)
    if endpoint == STAND_IN:
        clients.dynamodb = Routed(clients.dynamodb, start_stand_in(clients.dynamodb, stack))
    settings = ApiSettings.from_env({**stack.env(), "MLPOC_API_KEY": KEY, "MLPOC_SAMPLE_RATE": "0"})
    app: FastAPI = create_app(settings, clients, start_poller=False)
    lookups = app.state.services.lookups
    timings: list[float] = []  # each request's wait for its features (its share of a call)
    get = lookups.get

    async def timed(*args: Any) -> Any:
        started = time.perf_counter()
        try:
            return await get(*args)
        finally:
            timings.append(time.perf_counter() - started)

    lookups.get = timed

    @app.get(LOOKUPS, include_in_schema=False)
    def lookup_stats(reset: bool = False) -> dict[str, Any]:
        answer = {
            "timings": list(timings),
            "calls": lookups.calls,
            "bodies": {k: [b.decode() for b in v] for k, v in bodies(stack).items()},
        }
        if reset:
            timings.clear()
            lookups.calls = 0
        return answer

    uvicorn.run(app, host="127.0.0.1", port=port, log_config=None, access_log=False,
                loop="uvloop", http="httptools")  # fmt: skip


def measure(endpoint: str, requests: int) -> dict[str, float]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])
    env = {
        **{k: v for k, v in os.environ.items() if k in ("PATH", "HOME")},
        **FAKE_CREDENTIALS,
        "PYTHONPATH": str(CHECKOUT),
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
        "MLPOC_LOG_LEVEL": "WARNING",
    }
    server = subprocess.Popen(  # noqa: S603 - this script, with the ports it chose
        [sys.executable, __file__, "--serve", str(port), "--endpoint", endpoint],
        env=env, cwd=CHECKOUT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        wait_until_up(port, timeout=300)
        sent = stats(port, reset=True)["bodies"]
        payloads = {kind: [b.encode() for b in sent[kind]] for kind in ("key", "inline")}
        for sent_bodies in payloads.values():  # warm: the model loads, the thread pool starts
            load_test(port, CONCURRENCY, 200, key=KEY, payloads=sent_bodies)
        stats(port, reset=True)
        runs: dict[str, list[float]] = {"key": [], "inline": []}
        for _ in range(2):  # interleaved, so a drift of the machine hits both
            for kind in runs:
                runs[kind] += load_test(
                    port, CONCURRENCY, requests // 2, key=KEY, payloads=payloads[kind]
                )
        found = stats(port)
        timings, calls = found["timings"], found["calls"]
    finally:
        server.terminate()
        server.wait(30)
    return {
        "key_p50": percentile(runs["key"], 0.5),
        "key_p99": percentile(runs["key"], 0.99),
        "inline_p50": percentile(runs["inline"], 0.5),
        "inline_p99": percentile(runs["inline"], 0.99),
        "lookup_p50": percentile(timings, 0.5),
        "lookup_p99": percentile(timings, 0.99),
        "share": sum(timings) / sum(runs["key"]),
        "calls": calls / len(runs["key"]),
    }


def stats(port: int, *, reset: bool = False) -> dict[str, Any]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    connection.request("GET", LOOKUPS + ("?reset=true" if reset else ""),
                       headers={"X-API-Key": KEY})  # fmt: skip
    found: dict[str, Any] = json.loads(connection.getresponse().read())
    return found


def report(name: str, found: dict[str, float]) -> None:
    added = found["key_p99"] - found["inline_p99"]
    print(
        f"{name:<12} by key p50 {found['key_p50']:6.2f} ms  p99 {found['key_p99']:6.2f} ms | "
        f"inline p50 {found['inline_p50']:6.2f} ms  p99 {found['inline_p99']:6.2f} ms | "
        f"p99 added {added:+6.2f} ms ({found['key_p99'] / found['inline_p99']:.2f}x) | "
        f"lookup p50 {found['lookup_p50']:.2f} ms p99 {found['lookup_p99']:.2f} ms, "
        f"{found['share']:.0%} of a request by key, {found['calls']:.2f} BatchGetItem a request"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=2000, help="per kind and store")
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--endpoint", default="", help=argparse.SUPPRESS)
    parser.add_argument("--stand-in", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--items", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.stand_in:
        stand_in(args.stand_in, args.items)
        return
    if args.serve:
        serve(args.serve, args.endpoint)
        return
    print(f"POST /v1/predict over HTTP, one image a request, concurrency {CONCURRENCY}, "
          f"{args.requests} requests per kind")  # fmt: skip
    in_process = measure("", args.requests)
    memory = measure(MEMORY, args.requests)
    standing = measure(STAND_IN, args.requests)
    with moto_process(covered=False) as endpoint:
        server = measure(endpoint, args.requests)
    report("in process", in_process)
    report("kit only", memory)
    report("stand-in", standing)
    report("moto server", server)
    for name, found in (
        ("in process (moto in the API)", in_process),
        ("kit only", memory),
        ("stand-in over HTTP", standing),
    ):
        added = found["key_p99"] - found["inline_p99"]
        verdict = "met" if added <= 2 else "NOT met"
        print(f"goal: the lookup adds at most 2 ms at p99, {name}: {verdict} ({added:+.2f} ms)")


if __name__ == "__main__":
    main()
