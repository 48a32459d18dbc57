"""The SQS worker loop shared by the train and predict workers.

One call of :meth:`Worker.process_batch` is one long poll: receive up to ``prefetch`` messages,
run their jobs one after another, then delete the finished ones in one batched call. While a
batch is held, a heartbeat thread extends the visibility of every held message and the ledger
lease of the running job, and the task is protected from ECS scale-in.

Failure policy, per message:

* breaks the job contract → FAILED in the ledger (if it has a job id), copied to the DLQ with
  the reason, deleted;
* already SUCCEEDED/FAILED (a redelivery) → deleted, nothing redone;
* claimed by another worker's live lease → left alone (it comes back after the timeout);
* the job raises :class:`~mlpoc.errors.JobFailed` → FAILED with the reason, deleted;
* any other exception → RETRYABLE and back on the queue after a backoff; on the queue's last
  receive → FAILED ("gave up after N attempts") and left for SQS to move to the DLQ;
* SIGTERM → stop polling, let the running job finish within the grace period, else release it
  (RETRYABLE, visible again at once); unstarted messages are released at once; exit 0.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from mlpoc import backoff, dynamo, logs
from mlpoc.aws import Clients
from mlpoc.contracts import REASON_ATTRIBUTE, Job, parse_job, queue_for
from mlpoc.errors import CommitConflict, JobFailed, JobRejected, LeaseLost, access_denied
from mlpoc.events import Event
from mlpoc.ledger import ClaimOutcome, Ledger, followup_message
from mlpoc.settings import Settings
from mlpoc.worker.protection import TaskProtection

log = logging.getLogger("mlpoc.worker")

SQS_BATCH_LIMIT = 10


@dataclass
class BatchResult:
    received: int = 0
    succeeded: int = 0
    failed: int = 0
    duplicates: int = 0
    retried: int = 0
    rejected: int = 0
    busy: int = 0
    released: int = 0


@dataclass
class Received:
    message_id: str
    receipt: str
    body: str
    receive_count: int
    sent_at: float


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


class _Stop(Exception):
    """The grace period after SIGTERM ran out with a job still running."""


class Worker:
    def __init__(
        self,
        *,
        settings: Settings,
        clients: Clients,
        handler: Handler,
        worker_id: str | None = None,
        protection: TaskProtection | None = None,
    ) -> None:
        self.settings = settings
        self.clients = clients
        self.handler = handler
        self.worker_id = worker_id or f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.ledger = Ledger(clients.dynamodb, settings.jobs_table)
        self.protection = protection or TaskProtection.from_env()
        self.queue_url = settings.queue_url
        self.visibility = settings.visibility_seconds
        self.max_receive_count: int | None = None
        self.dlq_url: str | None = None
        self.abandoned = False
        self._stopping = threading.Event()
        self._stop_deadline: float | None = None
        self._held: dict[str, Received] = {}
        self._lock = threading.Lock()
        self._current: JobContext | None = None
        self._heartbeat: threading.Thread | None = None
        self._holding = threading.Event()
        self._receive_failures = 0
        self._started = False

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> None:
        """Read the queue's visibility timeout and redrive policy (two calls, once)."""
        if self._started:
            return
        attributes = self.clients.sqs.get_queue_attributes(
            QueueUrl=self.queue_url, AttributeNames=["VisibilityTimeout", "RedrivePolicy"]
        )["Attributes"]
        if not self.visibility:
            self.visibility = int(attributes.get("VisibilityTimeout", 30))
        redrive = attributes.get("RedrivePolicy")
        if redrive:
            policy = json.loads(redrive)
            self.max_receive_count = int(policy["maxReceiveCount"])
            arn = str(policy["deadLetterTargetArn"]).split(":")
            self.dlq_url = self.clients.sqs.get_queue_url(
                QueueName=arn[5], QueueOwnerAWSAccountId=arn[4]
            )["QueueUrl"]
        self._heartbeat = threading.Thread(target=self._beat, name="heartbeat", daemon=True)
        self._heartbeat.start()
        self._started = True
        log.info(
            Event.WORKER_STARTED,
            extra={
                "worker_id": self.worker_id,
                "queue_url": self.queue_url,
                "visibility_seconds": self.visibility,
                "max_receive_count": self.max_receive_count,
                "prefetch": self.settings.prefetch,
            },
        )

    def request_stop(self) -> None:
        """What SIGTERM does: stop polling; the running job gets the grace period."""
        if not self._stopping.is_set():
            self._stop_deadline = time.monotonic() + self.settings.stop_grace_seconds
            self._stopping.set()
            log.info(
                Event.WORKER_STOPPING, extra={"grace_seconds": self.settings.stop_grace_seconds}
            )

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    def run(self) -> None:
        self.start()
        failures = 0
        while not self.stopping:
            try:
                self.process_batch()
                failures = 0
            except _Stop:
                self.abandoned = True
                break
            except Exception:
                # e.g. DynamoDB unreachable after botocore's retries: the held messages come
                # back after their visibility timeout; keep the process, back off, poll again
                failures += 1
                delay = backoff.POLL.step(failures)
                log.exception(Event.BATCH_FAILED, extra={"retry_in_s": delay})
                self._stopping.wait(delay)
        self._holding.clear()
        log.info(Event.WORKER_STOPPED, extra={"worker_id": self.worker_id})

    # -- one long poll -----------------------------------------------------------------------
    def process_batch(self) -> BatchResult:
        self.start()
        result = BatchResult()
        messages = self._receive()
        if not messages:
            return result
        result.received = len(messages)
        with self._lock:
            self._held = {m.message_id: m for m in messages}
        self._holding.set()
        self.protection.set(enabled=True)
        deletes: list[Received] = []
        releases: list[tuple[Received, int]] = []
        index = 0
        try:
            for index, message in enumerate(messages):
                if self.stopping:
                    # not started: give them back at once, untouched in the ledger
                    unstarted = [(m, 0) for m in messages[index:]]
                    self._change_visibility(unstarted)
                    result.released += len(unstarted)
                    break
                action = self._handle(message, result)
                if action == "delete":
                    deletes.append(message)
                elif isinstance(action, int):
                    releases.append((message, action))
        except _Stop:
            # the running job was released by _run_handler; the unstarted ones go back too
            rest = messages[index + 1 :]
            self._change_visibility([(m, 0) for m in rest])
            result.released += len(rest) + 1
            raise
        finally:
            self._delete(deletes)
            self._change_visibility(releases)
            with self._lock:
                self._held = {}
            self._holding.clear()
            self.protection.set(enabled=False)
        return result

    def _receive(self) -> list[Received]:
        try:
            response = self.clients.sqs.receive_message(
                QueueUrl=self.queue_url,
                MaxNumberOfMessages=self.settings.prefetch,
                WaitTimeSeconds=self.settings.wait_seconds,
                MessageSystemAttributeNames=["ApproximateReceiveCount", "SentTimestamp"],
            )
        except (ClientError, BotoCoreError) as error:
            # botocore already retried; back off before the next poll instead of spinning
            self._receive_failures += 1
            delay = backoff.POLL.step(self._receive_failures)
            log.warning(Event.RECEIVE_FAILED, extra={"error": str(error), "retry_in_s": delay})
            self._stopping.wait(delay)
            return []
        self._receive_failures = 0
        return [
            Received(
                message_id=m["MessageId"],
                receipt=m["ReceiptHandle"],
                body=m["Body"],
                receive_count=int(m.get("Attributes", {}).get("ApproximateReceiveCount", 1)),
                sent_at=int(m.get("Attributes", {}).get("SentTimestamp", 0)) / 1000,
            )
            for m in response.get("Messages", [])
        ]

    # -- one message -------------------------------------------------------------------------
    def _handle(self, message: Received, result: BatchResult) -> str | int | None:
        """Run one message; return "delete", a visibility timeout to release with, or None."""
        try:
            job = parse_job(message.body, data_bucket=self.settings.data_bucket)
        except JobRejected as rejected:
            self._reject(message, rejected)
            result.rejected += 1
            return "delete"

        with logs.bound(job_id=job.job_id, job_type=job.type, model=job.model):
            claim = self.ledger.claim(
                job, worker_id=self.worker_id, lease_seconds=self.visibility, body=message.body
            )
            if claim.outcome is ClaimOutcome.DONE:
                log.info(Event.JOB_DUPLICATE, extra={"status": claim.record.get("status")})
                self._resend_followups(claim.record)
                result.duplicates += 1
                return "delete"
            if claim.outcome is ClaimOutcome.BUSY:
                log.info(Event.JOB_BUSY, extra={"lease_owner": claim.record.get("lease_owner")})
                result.busy += 1
                return None
            return self._execute(job, claim.record, message, result)

    def _execute(
        self, job: Job, record: Mapping[str, Any], message: Received, result: BatchResult
    ) -> str | int | None:
        ctx = JobContext(
            job=job,
            record=record,
            worker_id=self.worker_id,
            receive_count=message.receive_count,
            settings=self.settings,
            clients=self.clients,
            ledger=self.ledger,
        )
        clock = logs.Stopwatch()
        log.info(
            Event.JOB_STARTED,
            extra={
                "attempt": ctx.attempt,
                "receive_count": message.receive_count,
                "queued_ms": int((time.time() - message.sent_at) * 1000)
                if message.sent_at
                else None,
            },
        )
        error = self._run_handler(ctx, message)
        if ctx.committed:  # the job is SUCCEEDED, whatever its handler did afterwards
            if error is not None:
                log.warning(Event.JOB_ERROR_AFTER_COMMIT, exc_info=error)
            self._send_followups(ctx.followups)
            log.info(Event.JOB_SUCCEEDED, extra={"duration_ms": clock.ms, "attempt": ctx.attempt})
            result.succeeded += 1
            return "delete"
        if error is None:
            error = RuntimeError("the handler returned without committing a result")
        if isinstance(error, LeaseLost):
            log.warning(Event.JOB_LEASE_LOST, extra={"duration_ms": clock.ms})
            result.busy += 1
            return None
        if isinstance(error, JobFailed):
            if self.ledger.fail(job.job_id, worker_id=self.worker_id, reason=str(error)):
                log.info(Event.JOB_FAILED, extra={"duration_ms": clock.ms, "reason": str(error)})
                result.failed += 1
                return "delete"
            return None  # lease lost meanwhile: the owner decides
        reason = f"{type(error).__name__}: {error}"
        denied = access_denied(error)
        if denied is not None:
            # a grant missing from the role (stacks/constructs/access.py), or a key outside the
            # bucket layout: say so loudly, in words that name the role, action and resource
            log.error(Event.JOB_ACCESS_DENIED, extra={"reason": denied})
        last = (
            self.max_receive_count is not None and message.receive_count >= self.max_receive_count
        )
        if last:
            self.ledger.fail(
                job.job_id,
                worker_id=self.worker_id,
                reason=f"gave up after {message.receive_count} attempts; last error: {reason}. "
                "The message is in the dead-letter queue: fix the cause, then redrive it",
            )
            log.error(Event.JOB_GAVE_UP, extra={"duration_ms": clock.ms, "reason": reason})
            result.failed += 1
            return 0  # visible at once, so SQS moves it to the DLQ on the next receive
        self.ledger.release(job.job_id, worker_id=self.worker_id, reason=reason)
        delay = round(backoff.JOB.step(message.receive_count))
        log.warning(
            Event.JOB_RETRYING,
            extra={"duration_ms": clock.ms, "reason": reason, "retry_in_s": delay},
            exc_info=error,
        )
        result.retried += 1
        return delay

    def _run_handler(self, ctx: JobContext, message: Received) -> BaseException | None:
        """Run the handler in a thread so SIGTERM's grace period can be enforced around it."""
        outcome: list[BaseException | None] = []
        context = logs.current()

        def target() -> None:
            with logs.bound(**context):
                try:
                    self.handler(ctx)
                    outcome.append(None)
                except BaseException as error:
                    outcome.append(error)

        thread = threading.Thread(target=target, name=f"job-{ctx.job.job_id}", daemon=True)
        with self._lock:
            self._current = ctx
        thread.start()
        try:
            while thread.is_alive():
                thread.join(0.1)
                if thread.is_alive() and self._grace_over():
                    released = self.ledger.release(
                        ctx.job.job_id,
                        worker_id=self.worker_id,
                        reason="the worker was stopped (SIGTERM) before the job finished; "
                        "it will run again",
                    )
                    self._change_visibility([(message, 0)])
                    with self._lock:
                        self._held.pop(message.message_id, None)
                    log.warning(Event.JOB_RELEASED_ON_STOP, extra={"ledger_released": released})
                    raise _Stop
        finally:
            with self._lock:
                self._current = None
        return outcome[0]

    def _grace_over(self) -> bool:
        return self._stop_deadline is not None and time.monotonic() >= self._stop_deadline

    # -- rejected messages and follow-ups ----------------------------------------------------
    def _reject(self, message: Received, rejected: JobRejected) -> None:
        if rejected.job_id:
            self.ledger.reject(rejected.job_id, reason=rejected.reason, body=message.body)
        log.error(
            Event.JOB_REJECTED,
            extra={
                "job_id": rejected.job_id,
                "reason": rejected.reason,
                "to_dlq": bool(self.dlq_url),
            },
        )
        if self.dlq_url:
            # keep the body for inspection: nothing is lost, and the DLQ alarm tells a person
            self.clients.sqs.send_message(
                QueueUrl=self.dlq_url,
                MessageBody=message.body,
                MessageAttributes={
                    REASON_ATTRIBUTE: {"DataType": "String", "StringValue": rejected.reason[:1000]}
                },
            )

    def _send_followups(self, jobs: Sequence[Job]) -> None:
        for job in jobs:
            self.clients.sqs.send_message(
                QueueUrl=queue_for(job.type, self.settings), MessageBody=job.to_json()
            )
            log.info(Event.JOB_FOLLOWUP_SENT, extra={"followup_job_id": job.job_id})

    def _resend_followups(self, record: Mapping[str, Any]) -> None:
        """Resend a finished job's follow-ups that may not have gone out (a crash in between)."""
        result = record.get("result") or {}
        for job_id in result.get("followups", []):
            followup = self.ledger.get(job_id)
            body = followup_message(followup or {})
            if body is not None:
                job = parse_job(body, data_bucket=self.settings.data_bucket)
                self.clients.sqs.send_message(
                    QueueUrl=queue_for(job.type, self.settings), MessageBody=body
                )
                log.info(Event.JOB_FOLLOWUP_RESENT, extra={"followup_job_id": job_id})

    # -- SQS batch calls ---------------------------------------------------------------------
    def _delete(self, messages: Sequence[Received]) -> None:
        for start in range(0, len(messages), SQS_BATCH_LIMIT):
            chunk = messages[start : start + SQS_BATCH_LIMIT]
            try:
                response = self.clients.sqs.delete_message_batch(
                    QueueUrl=self.queue_url,
                    Entries=[
                        {"Id": str(i), "ReceiptHandle": m.receipt} for i, m in enumerate(chunk)
                    ],
                )
            except (ClientError, BotoCoreError) as error:
                # the jobs are finished in the ledger: redeliveries are recognised and deleted
                log.warning(Event.DELETE_FAILED, extra={"error": str(error)})
                continue
            for failure in response.get("Failed", []):
                # the job is finished in the ledger; a redelivery is recognised and deleted then
                log.warning(Event.DELETE_FAILED, extra={"failure": failure})

    def _change_visibility(self, changes: Sequence[tuple[Received, int]]) -> None:
        for start in range(0, len(changes), SQS_BATCH_LIMIT):
            chunk = changes[start : start + SQS_BATCH_LIMIT]
            try:
                response = self.clients.sqs.change_message_visibility_batch(
                    QueueUrl=self.queue_url,
                    Entries=[
                        {"Id": str(i), "ReceiptHandle": m.receipt, "VisibilityTimeout": seconds}
                        for i, (m, seconds) in enumerate(chunk)
                    ],
                )
            except (ClientError, BotoCoreError) as error:
                log.warning(Event.VISIBILITY_FAILED, extra={"error": str(error)})
                continue
            for failure in response.get("Failed", []):
                log.warning(Event.VISIBILITY_FAILED, extra={"failure": failure})

    # -- heartbeat ---------------------------------------------------------------------------
    @property
    def heartbeat_interval(self) -> float:
        return max(0.5, self.visibility / 3)

    def _beat(self) -> None:
        while True:
            self._holding.wait()
            # sleep one interval, but wake early if the batch is released
            deadline = time.monotonic() + self.heartbeat_interval
            while time.monotonic() < deadline and self._holding.is_set():
                time.sleep(min(0.1, max(0.0, deadline - time.monotonic())))
            if not self._holding.is_set():
                continue
            try:
                self.beat_once()
            except Exception:  # a failed beat must not kill the thread; the next one retries
                log.exception(Event.HEARTBEAT_FAILED)

    def beat_once(self) -> None:
        with self._lock:
            held = list(self._held.values())
            current = self._current
        self._change_visibility([(m, self.visibility) for m in held])
        if current is not None and not self.ledger.heartbeat(
            current.job.job_id, worker_id=self.worker_id, lease_seconds=self.visibility
        ):
            current.lease_lost.set()
            log.warning(Event.JOB_LEASE_LOST_ON_HEARTBEAT, extra={"job_id": current.job.job_id})
        self.protection.renew()
