"""Submitting a job: the one way every producer (API, CLI, upload function) records, enqueues
and, on AWS, starts a worker for it (the scale-from-zero nudge, :mod:`mlpoc.runtime.scaling`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from mlpoc.errors import JobRejected, Refused
from mlpoc.runtime.contract import Job, QueueUrls, queue_for, queue_of
from mlpoc.runtime.ledger import Ledger

# called with the job's queue (its type) once the job is sent: raises its service from zero
Nudge = Callable[[str], object]


def submit(
    ledger: Ledger,
    sqs: Any,
    *,
    queue_url: str,
    job: Job,
    source: str,
    nudge: Nudge | None = None,
) -> bool:
    """Record the job QUEUED, send it, nudge its service; False (nothing sent) when its id
    exists already."""
    if not ledger.create(job, source=source):
        return False
    sqs.send_message(QueueUrl=queue_url, MessageBody=job.to_json())
    if nudge is not None:
        nudge(queue_of(job))
    return True


def enqueue(
    ledger: Ledger,
    sqs: Any,
    urls: QueueUrls,
    job: Job,
    *,
    source: str,
    nudge: Nudge | None = None,
) -> None:
    """Submit the job to the queue that carries it; a :class:`Refused` ``conflict`` when its id
    exists already, ``no_gpu_pool`` for a GPU job on a stack without the pool."""
    try:
        queue_url = queue_for(queue_of(job), urls)
    except JobRejected as rejected:
        raise Refused("no_gpu_pool", rejected.reason) from None
    if not submit(ledger, sqs, queue_url=queue_url, job=job, source=source, nudge=nudge):
        raise Refused("conflict", f"job {job.job_id!r} exists already")
