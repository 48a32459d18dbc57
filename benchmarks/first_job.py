"""Submit to job start on an idle stack: a worker already polling against one started at submit.

    make bench    (or: .venv/bin/python benchmarks/first_job.py [--rounds N])

Local mode runs every worker as a process that is always long-polling, so on a laptop a job on
an idle stack starts as soon as SQS hands it over. On AWS an idle service has no task: the submit
paths' nudge (``mlpoc.runtime.scaling``) starts one at once, and the job waits for that task to
start.
This measures both halves that can be measured here, in the same run, against the same embedded
moto server: submit → ``job.started`` with a polling worker (the warm path), and with a worker
process started at the submit (what the task's own start adds: Python, scikit-learn and
onnxruntime imports, the first poll). What only AWS adds, Fargate's placement and image pull, is
in the README's expectations, not here.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

from mlpoc.paths import CHECKOUT

sys.path.insert(0, str(CHECKOUT))  # for tests.support

from tests.support.aws_stack import EmbeddedMoto, Stack, create_stack
from tests.support.workers import WorkerProcess, start_worker, wait_for


def submit(stack: Stack, job_id: str) -> float:
    """A predict job (it fails at once: no model; the start is what is measured)."""
    body = {"schema": 1, "job_id": job_id, "type": "predict", "model": "digits",
            "dataset": f"s3://{stack.data_bucket}/datasets/digits/x.csv"}  # fmt: skip
    sent = time.time()
    stack.clients().sqs.send_message(QueueUrl=stack.predict_queue_url, MessageBody=json.dumps(body))
    return sent


def started_after(worker: WorkerProcess, job_id: str, sent: float) -> float:
    event = wait_for(
        lambda: next((e for e in worker.events("job.started") if e.get("job_id") == job_id), None),
        timeout=120,
        interval=0.02,
        what=f"{job_id} to start",
    )
    return float(event["ts"]) - sent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    warm: list[float] = []
    cold: list[float] = []
    with EmbeddedMoto() as endpoint, tempfile.TemporaryDirectory() as logs:
        stack = create_stack(endpoint)
        polling = start_worker("predict", stack, Path(logs), MLPOC_WAIT_SECONDS="20")
        wait_for(lambda: polling.events("worker.started"), timeout=120, what="the worker")
        try:
            for round_ in range(args.rounds):
                time.sleep(1)  # idle: the worker is inside a 20 s long poll
                warm.append(
                    started_after(polling, f"warm-{round_}", submit(stack, f"warm-{round_}"))
                )
        finally:
            polling.terminate()
        for round_ in range(args.rounds):
            sent = submit(stack, f"cold-{round_}")
            worker = start_worker("predict", stack, Path(logs))
            try:
                cold.append(started_after(worker, f"cold-{round_}", sent))
            finally:
                worker.terminate()
    base, cand = statistics.median(cold), statistics.median(warm)
    print(f"{'submit -> job.started, s (median)':<44} {'started':>10} {'polling':>10} {'ratio':>7}")
    print(f"{'worker process at submit vs already polling':<44} {base:>10.2f} {cand:>10.2f} "
          f"{base / cand:>6.0f}x")  # fmt: skip


if __name__ == "__main__":
    main()
