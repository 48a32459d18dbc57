"""The `mlpoc` command as a user runs it: a subprocess, and a `local up` kept running."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import boto3

from mlpoc.paths import CHECKOUT

ARTIFACTS = CHECKOUT / "test-artifacts"


def mlpoc(
    *args: str,
    state_dir: Path | None,
    timeout: float = 120,
    env: Mapping[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """``mlpoc ARGS`` (with ``--state-dir`` unless None: a command that takes none)."""
    where = [] if state_dir is None else ["--state-dir", str(state_dir)]
    return subprocess.run(
        [sys.executable, "-m", "mlpoc.cli", *args, *where],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env={**os.environ, "COLUMNS": "250", **(env or {})},
    )


@contextmanager
def local_up(
    state_dir: Path, assembly: Path, log_name: str, env: Mapping[str, str] | None = None
) -> Iterator[subprocess.Popen[str]]:
    """`mlpoc local up --assembly` until its state file exists; Ctrl-C (SIGINT) at the end.
    Its output is kept in test-artifacts/<log_name>; ``env`` is added to the shell's."""
    ARTIFACTS.mkdir(exist_ok=True)
    log_path = ARTIFACTS / log_name
    with log_path.open("w") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "mlpoc.cli", "local", "up", "--state-dir", str(state_dir),
             "--assembly", str(assembly)],
            stdout=log, stderr=subprocess.STDOUT, text=True, env={**os.environ, **(env or {})},
        )  # fmt: skip
        deadline = time.monotonic() + 120
        while not (state_dir / "local.json").exists():
            assert process.poll() is None, log_path.read_text()
            assert time.monotonic() < deadline, "local up did not come up in 120 s"
            time.sleep(0.5)
        try:
            yield process
        finally:
            if process.poll() is None:
                process.send_signal(signal.SIGINT)
                process.wait(timeout=60)


def uncovered_env(**extra: str) -> dict[str, str]:
    """This environment without coverage's variables, for a subprocess that runs none of our
    code worth measuring (cfn-lint, a synthesis): tracing it would only slow it down."""
    return {**{k: v for k, v in os.environ.items() if not k.startswith("COVERAGE")}, **extra}


def operator_client(service: str, outputs: Mapping[str, str]) -> Any:
    """A plain boto3 client of the local stack, as the operator (`mlpoc outputs --json`)."""
    return boto3.client(
        service,
        endpoint_url=outputs["AwsEndpointUrl"],
        region_name="us-east-1",
        aws_access_key_id=outputs["AwsAccessKeyId"],
        aws_secret_access_key=outputs["AwsSecretAccessKey"],
    )
