"""What a job's handler sees of the worker loop: the job, its ledger record, the clients, and
the one way to finish it (:meth:`JobContext.commit`)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import ClientError

from mlpoc import dynamo
from mlpoc.aws import Clients
from mlpoc.contracts import Job, parse_job, queue_for
from mlpoc.errors import CommitConflict, LeaseLost
from mlpoc.events import Event
from mlpoc.ledger import Ledger, followup_message
from mlpoc.settings import Settings

log = logging.getLogger("mlpoc.worker")


@dataclass
class JobContext:
    """What a handler sees of the loop: the job, the clients, and the way to commit."""

    job: Job
    record: Mapping[str, Any]
    worker_id: str
    receive_count: int
    settings: Settings
    clients: Clients
    ledger: Ledger
    lease_lost: threading.Event = field(default_factory=threading.Event)
    committed: bool = False
    followups: list[Job] = field(default_factory=list)

    @property
    def attempt(self) -> int:
        return int(self.record.get("attempts", 1))

    def check_lease(self) -> None:
        """Raise LeaseLost if the heartbeat found another worker owns the job now."""
        if self.lease_lost.is_set():
            raise LeaseLost(self.job.job_id)

    def note(self, **fields: Any) -> None:
        self.ledger.note(self.job.job_id, worker_id=self.worker_id, **fields)

    def commit(
        self,
        result: Mapping[str, Any],
        *,
        extra: Iterable[Mapping[str, Any]] = (),
        followups: Iterable[Job] = (),
    ) -> None:
        """Mark the job SUCCEEDED, atomically with ``extra`` transaction items (registry writes,
        follow-up jobs' QUEUED records), and only while this worker holds the lease."""
        self.check_lease()
        followups = list(followups)
        items = [
            *extra,
            *({"Put": self.ledger.create_request(f, source=self.job.job_id)} for f in followups),
        ]
        if followups:
            result = {**result, "followups": [f.job_id for f in followups]}
        request = self.ledger.commit_request(
            self.job.job_id, worker_id=self.worker_id, result=result
        )
        if not items:
            self.ledger.commit(self.job.job_id, worker_id=self.worker_id, result=result)
        else:
            try:
                self.clients.dynamodb.transact_write_items(
                    TransactItems=[{"Update": request}, *items]
                )
            except ClientError as error:
                if error.response["Error"]["Code"] != "TransactionCanceledException":
                    raise
                codes = dynamo.cancellation_codes(error)
                if codes and codes[0] == "ConditionalCheckFailed":
                    raise LeaseLost(self.job.job_id) from None
                raise CommitConflict(codes[1:]) from None
        self.committed = True
        self.followups = followups


Handler = Callable[[JobContext], None]


def send_followups(sqs: Any, settings: Settings, jobs: Sequence[Job]) -> None:
    """Send a committed job's follow-ups (their QUEUED records were part of the commit)."""
    for job in jobs:
        sqs.send_message(QueueUrl=queue_for(job.type, settings), MessageBody=job.to_json())
        log.info(Event.JOB_FOLLOWUP_SENT, extra={"followup_job_id": job.job_id})


def resend_followups(
    sqs: Any, settings: Settings, ledger: Ledger, record: Mapping[str, Any]
) -> None:
    """Resend a finished job's follow-ups that may not have gone out (a crash in between)."""
    result = record.get("result") or {}
    for job_id in result.get("followups", []):
        body = followup_message(ledger.get(job_id) or {})
        if body is not None:
            job = parse_job(body, data_bucket=settings.data_bucket)
            sqs.send_message(QueueUrl=queue_for(job.type, settings), MessageBody=body)
            log.info(Event.JOB_FOLLOWUP_RESENT, extra={"followup_job_id": job_id})
