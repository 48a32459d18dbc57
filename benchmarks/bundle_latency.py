"""The Beanstalk bundle under load: realtime p99 through nginx against the API direct, and the
containers' memory, measured in one run.

    make images && .venv/bin/python benchmarks/bundle_latency.py [--requests N]

The bundle's compose file and proxy template run under Docker Compose v2 as on the instance
(nginx on port 80, the API on 127.0.0.1:8000, both on the host's network), against an embedded
moto with digits v1 trained. The load: POST /v1/predict, one row, keep-alive connections at
concurrency 1 and 8, first straight to the API (the baseline, same containers, same run), then
through nginx. Each request through nginx carries its own X-Forwarded-For address, so the
per-client rate limit (20 a second) does not answer 429 to a load that is one client here.
Memory is `docker stats` of each container after the load. The goal: p99 <= 10 ms at 8 through
nginx; and the bundle's memory decides the default instance type (docs/performance.md).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from mlpoc.paths import CHECKOUT

ROOT = CHECKOUT
sys.path.insert(0, str(ROOT))

import boto3
from benchmarks.api_latency import load_test, percentile, wait_until_up

from mlpoc import plugins
from stacks.constructs.api import BUNDLE_FILES
from tests.support.aws_stack import EmbeddedMoto, Stack, create_stack
from tests.support.containers import IMAGES_FILE, Images, compose_command, write_env_file
from tests.support.pipeline import prepare

KEY = "benchmark-key-0123456789-abcdefghijklmn"
ORIGIN = "benchmark-origin-" + "o" * 40
API_PORT, PROXY_PORT = 8000, 80


def load(port: int, concurrency: int, requests: int, *, proxied: bool) -> list[float]:
    """The realtime benchmark's load, with CloudFront's origin header (and, through nginx, a
    client address of its own for every request: see the module's text)."""

    def headers() -> bytes:
        forwarded = b""
        if proxied:
            address = ".".join(str(random.randint(1, 254)) for _ in range(4))
            forwarded = b"X-Forwarded-For: " + address.encode() + b"\r\n"
        return b"X-Origin-Verify: " + ORIGIN.encode() + b"\r\n" + forwarded

    return load_test(port, concurrency, requests, key=KEY, headers=headers)


def memory(docker: str, project: str) -> dict[str, str]:
    done = subprocess.run(  # noqa: S603 - the Docker client make images recorded
        [docker, "stats", "--no-stream", "--format", "{{.Name}}\t{{.MemUsage}}"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    rows = [line.split("\t") for line in done.stdout.splitlines() if line.startswith(project)]
    return {name.removeprefix(project + "-").split("-")[0]: usage for name, usage in rows}


def bundle_env(stack: Stack, endpoint: str, images: Images, healthd: Path) -> dict[str, str]:
    secrets = boto3.client("secretsmanager", region_name="us-east-1", endpoint_url=endpoint)
    key = secrets.create_secret(Name="bench-api-key", SecretString=KEY)["ARN"]
    origin = secrets.create_secret(Name="bench-origin", SecretString=ORIGIN)["ARN"]
    return {
        **stack.env(),
        "AWS_REGION": "us-east-1",
        "MLPOC_IMAGE": images.api,
        "MLPOC_API_KEY_SECRET_ARN": key,
        "MLPOC_ORIGIN_SECRET_ARN": origin,
        "MLPOC_API_DOCS": "off",
        "MLPOC_LOG_LEVEL": "WARNING",
        "MLPOC_PROXY_IMAGE": images.proxy,
        "MLPOC_HEALTHD_LOGS": str(healthd),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=2000)
    args = parser.parse_args()
    if not IMAGES_FILE.exists():
        raise SystemExit("no images: run `make images` first")
    images = Images(**json.loads(IMAGES_FILE.read_text()))
    logging.getLogger("mlpoc").setLevel(logging.WARNING)
    plugins.load()
    workdir = Path(tempfile.mkdtemp(prefix="mlpoc-bundle-"))
    for source, target in BUNDLE_FILES.items():  # what the bundle asset holds
        (workdir / target).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(ROOT / source, workdir / target)
    project = "mlpoc-bench"
    compose = [
        *compose_command(images), "--project-name", project,
        "--project-directory", str(workdir), "-f", str(workdir / "docker-compose.yml"),
    ]  # fmt: skip
    with EmbeddedMoto() as endpoint:
        stack = prepare(create_stack(endpoint))
        write_env_file(workdir / ".env", bundle_env(stack, endpoint, images, workdir / "healthd"))
        up = [*compose, "up", "--detach", "--wait"]
        subprocess.run(up, check=True, capture_output=True)  # noqa: S603 - compose, our bundle
        try:
            wait_until_up(PROXY_PORT)
            load(API_PORT, 1, 200, proxied=False)  # warm-up: loads the model
            rows = []
            for concurrency in (1, 8):
                for port, proxied in ((API_PORT, False), (PROXY_PORT, True)):
                    latencies = load(port, concurrency, args.requests, proxied=proxied)
                    p50, p99 = percentile(latencies, 0.5), percentile(latencies, 0.99)
                    rows.append((concurrency, "nginx" if proxied else "direct", p50, p99))
            used = memory(images.docker, project)
        finally:
            down = [*compose, "down", "--timeout", "20"]
            subprocess.run(down, check=False, capture_output=True)  # noqa: S603
            shutil.rmtree(workdir, ignore_errors=True)
    print(f"bundle on {images.bases} bases; {args.requests} requests per row")
    print(f"{'concurrency':>11} {'path':>7} {'p50 ms':>8} {'p99 ms':>8}  goal p99 <= 10 ms at 8")
    direct = {}
    for concurrency, path, p50, p99 in rows:
        ratio = ""
        if path == "direct":
            direct[concurrency] = p99
        else:
            ratio = f"  ({p99 / direct[concurrency]:.2f}x direct)"
        print(f"{concurrency:>11} {path:>7} {p50:>8.2f} {p99:>8.2f}{ratio}")
    for name, usage in sorted(used.items()):
        print(f"memory {name:>6}: {usage}")


if __name__ == "__main__":
    os.environ.setdefault("AWS_EC2_METADATA_DISABLED", "true")
    main()
