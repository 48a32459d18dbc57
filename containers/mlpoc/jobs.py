"""Submitting a job: the one way every producer (API, CLI) records and enqueues it."""

from __future__ import annotations

from typing import Any

from mlpoc.contracts import Job
from mlpoc.ledger import Ledger


def submit(ledger: Ledger, sqs: Any, *, queue_url: str, job: Job, source: str) -> bool:
    """Record the job QUEUED, then send it; False (nothing sent) when its id exists already."""
    if not ledger.create(job, source=source):
        return False
    sqs.send_message(QueueUrl=queue_url, MessageBody=job.to_json())
    return True
