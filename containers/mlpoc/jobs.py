"""Submitting a job: the one way every producer (API, CLI) records and enqueues it."""

from __future__ import annotations

from typing import Any

from mlpoc.contracts import Job, QueueUrls, queue_for
from mlpoc.errors import Refused
from mlpoc.ledger import Ledger


def submit(ledger: Ledger, sqs: Any, *, queue_url: str, job: Job, source: str) -> bool:
    """Record the job QUEUED, then send it; False (nothing sent) when its id exists already."""
    if not ledger.create(job, source=source):
        return False
    sqs.send_message(QueueUrl=queue_url, MessageBody=job.to_json())
    return True


def enqueue(ledger: Ledger, sqs: Any, urls: QueueUrls, job: Job, *, source: str) -> None:
    """Submit the job to the queue that carries its type; a :class:`Refused` ``conflict`` when
    its id exists already."""
    if not submit(ledger, sqs, queue_url=queue_for(job.type, urls), job=job, source=source):
        raise Refused("conflict", f"job {job.job_id!r} exists already")
