"""Workers as real subprocesses (``python -m mlpoc.worker``), and waiting on the ledger."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from mlpoc.paths import CHECKOUT
from mlpoc.runtime.ledger import Ledger
from tests.support.aws_stack import Stack

ROOT = CHECKOUT
T = TypeVar("T")


@dataclass
class WorkerProcess:
    role: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def lines(self) -> list[dict[str, Any]]:
        entries = []
        for line in self.log_path.read_text().splitlines():
            try:
                entries.append(json.loads(line))
            except json.JSONDecodeError:
                continue
        return entries

    def events(self, name: str) -> list[dict[str, Any]]:
        return [e for e in self.lines() if e.get("event") == name]

    def terminate(self, timeout: float = 15) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=timeout)

    def kill(self) -> None:
        self.process.kill()
        self.process.wait(timeout=10)


def start_worker(
    role: str,
    stack: Stack,
    log_dir: Path,
    *,
    endpoint: str | None = None,
    covered: bool = False,
    **env: str,
) -> WorkerProcess:
    """``python -m mlpoc.worker ROLE`` against the stack. ``covered``: measured by coverage.
    Most tests leave it off: the loop's code is measured in-process (test_worker_units,
    test_request_counts), and a traced worker spends seconds importing scikit-learn and ONNX;
    the tests of what only a process does (signals, the entry point) turn it on."""
    environment = {
        "PATH": os.environ.get("PATH", ""),
        "PYTHONPATH": str(ROOT),
        "HOME": os.environ.get("HOME", str(ROOT)),
        # never pick up a developer's real AWS profile
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
        "MLPOC_WAIT_SECONDS": "1",
        "MLPOC_PLUGINS": "tests.support.fault_plugins",
        **{k: v for k, v in os.environ.items() if covered and k.startswith("COVERAGE")},
        **stack.env(endpoint),
        **env,
    }
    count = len(list(log_dir.glob(f"{role}-*.log")))
    log_path = log_dir / f"{role}-{count}.log"
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            [sys.executable, "-m", "mlpoc.worker", role],
            env=environment,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
        )
    return WorkerProcess(role=role, process=process, log_path=log_path)


def wait_for(
    probe: Callable[[], T | None], *, timeout: float = 60, interval: float = 0.2, what: str = ""
) -> T:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = probe()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what or probe}")


def wait_for_status(
    ledger: Ledger, job_id: str, statuses: set[str], timeout: float = 60
) -> dict[str, Any]:
    def probe() -> dict[str, Any] | None:
        record = ledger.get(job_id)
        return record if record and record.get("status") in statuses else None

    return wait_for(probe, timeout=timeout, what=f"job {job_id} to reach {statuses}")
