"""What a job's handler sees of the worker loop: the job, its ledger record, the clients, and
the two ways to finish it: :meth:`JobContext.commit`, or :meth:`JobContext.split` into shard
jobs that finish it (:mod:`mlpoc.data.shards`)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import ClientError

from mlpoc.aws import dynamo
from mlpoc.aws.clients import Clients
from mlpoc.aws.log_events import Event
from mlpoc.data.shards import shard_job_id
from mlpoc.errors import CommitConflict, LeaseLost
from mlpoc.runtime.contract import Job, parse_job, queue_for, queue_of
from mlpoc.runtime.environment import Settings
from mlpoc.runtime.job_records import Status, followup_message, is_split
from mlpoc.runtime.ledger import Ledger

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
    split_into: int | None = None

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

    def split(self, shards: Sequence[Job]) -> None:
        """Hand the job to its shard jobs: record how many, record and send each (again only
        if never run), then give up the lease. The last shard to finish marks the job done."""
        self.check_lease()
        self.note(shards_total=len(shards))
        pending = [
            shard for shard in shards if self.ledger.create_shard(shard, source=self.job.job_id)
        ]
        queue_url = queue_for("predict", self.settings)
        for start in range(0, len(pending), 10):
            entries = [
                {"Id": str(i), "MessageBody": shard.to_json()}
                for i, shard in enumerate(pending[start : start + 10])
            ]
            response = self.clients.sqs.send_message_batch(QueueUrl=queue_url, Entries=entries)
            if response.get("Failed"):
                raise RuntimeError(f"SQS refused shard messages: {response['Failed']}")
        self.check_lease()
        if not self.ledger.hand_off(self.job.job_id, worker_id=self.worker_id):
            raise LeaseLost(self.job.job_id)
        self.ledger.finish_parent(self.job.job_id)  # every shard may be done already
        self.committed = True
        self.split_into = len(shards)
        log.info(Event.JOB_SPLIT, extra={"shards": len(shards), "sent": len(pending)})


Handler = Callable[[JobContext], None]


def send_followups(sqs: Any, settings: Settings, jobs: Sequence[Job]) -> None:
    """Send a committed job's follow-ups (their QUEUED records were part of the commit)."""
    for job in jobs:
        sqs.send_message(QueueUrl=queue_for(queue_of(job), settings), MessageBody=job.to_json())
        log.info(Event.JOB_FOLLOWUP_SENT, extra={"followup_job_id": job.job_id})


def resend_followups(
    sqs: Any, settings: Settings, ledger: Ledger, record: Mapping[str, Any]
) -> None:
    """Finish what a crash may have cut short after a job's commit: resend its follow-ups (or,
    for a split job, its shards) that never went out; count a finished shard on its parent."""
    if is_split(record):
        _resend_shards(sqs, settings, ledger, record)
        return
    parent = record.get("parent")  # a shard's record names its split job
    if isinstance(parent, str) and record.get("status") == Status.SUCCEEDED.value:
        ledger.finish_parent(parent)
    result = record.get("result") or {}
    for job_id in result.get("followups", []):
        body = followup_message(ledger.get(job_id) or {})
        if body is not None:
            job = parse_job(body, data_bucket=settings.data_bucket, sources=settings.sources)
            sqs.send_message(QueueUrl=queue_for(queue_of(job), settings), MessageBody=body)
            log.info(Event.JOB_FOLLOWUP_RESENT, extra={"followup_job_id": job_id})


def _resend_shards(sqs: Any, settings: Settings, ledger: Ledger, record: Mapping[str, Any]) -> None:
    """A split job's message came again: send the shards still QUEUED (their first send may
    have been lost), and finish the job if its last shard's own finish was cut short."""
    for index in range(int(record["shards_total"])):
        shard_id = shard_job_id(str(record["job_id"]), index)
        body = followup_message(ledger.get(shard_id) or {})
        if body is not None:
            sqs.send_message(QueueUrl=queue_for("predict", settings), MessageBody=body)
            log.info(Event.JOB_FOLLOWUP_RESENT, extra={"followup_job_id": shard_id})
    ledger.finish_parent(str(record["job_id"]))
