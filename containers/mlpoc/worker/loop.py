"""The SQS worker loop shared by the train and predict workers.

One call of :meth:`Worker.process_batch` is one long poll: receive up to ``prefetch`` messages,
run their jobs one after another, then delete the finished ones in one batched call. While a
batch is held, a heartbeat (:mod:`~mlpoc.worker.heartbeat`) extends the visibility of every held
message and the ledger lease of the running job, and the task is protected from ECS scale-in.

What becomes of each job and its message is ruled by :func:`mlpoc.worker.decide.decide` (the
README's "bad or unlucky job" table); the SQS calls are in :mod:`mlpoc.worker.queue`. SIGTERM
stops the polling: the running job may finish within the grace period, else it is released
(RETRYABLE, visible again at once); unstarted messages are released at once; exit 0.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from mlpoc.aws import backoff, logs
from mlpoc.aws.clients import Clients
from mlpoc.aws.log_events import Event
from mlpoc.errors import JobRejected
from mlpoc.runtime.contract import Job, misrouted, parse_job
from mlpoc.runtime.environment import Settings
from mlpoc.runtime.ledger import ClaimOutcome, Ledger
from mlpoc.worker.context import Handler, JobContext, resend_followups, send_followups
from mlpoc.worker.decide import Outcome, decide
from mlpoc.worker.heartbeat import Heartbeat
from mlpoc.worker.protection import TaskProtection
from mlpoc.worker.queue import JobQueue, Received

log = logging.getLogger("mlpoc.worker")


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
        self.queue = JobQueue(clients.sqs, self.queue_url)
        self.visibility = settings.visibility_seconds
        self.max_receive_count: int | None = None
        self.dlq_url: str | None = None
        self.abandoned = False
        self._stopping = threading.Event()
        self._stop_deadline: float | None = None
        self._held: dict[str, Received] = {}
        self._lock = threading.Lock()
        self._current: JobContext | None = None
        self._heartbeat: Heartbeat | None = None
        self._receive_failures = 0
        self._started = False

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> None:
        """Read the queue's visibility timeout and redrive policy (two calls, once)."""
        if self._started:
            return
        redrive = self.queue.redrive()
        self.visibility = self.visibility or redrive.visibility_seconds
        self.max_receive_count, self.dlq_url = redrive.max_receive_count, redrive.dlq_url
        self._heartbeat = Heartbeat(self.beat_once, self.heartbeat_interval)
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
        if self._heartbeat is not None:
            self._heartbeat.release()
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
        assert self._heartbeat is not None  # noqa: S101 - start() made it
        self._heartbeat.hold()
        self.protection.set(enabled=True)
        deletes: list[Received] = []
        releases: list[tuple[Received, int]] = []
        index = 0
        try:
            for index, message in enumerate(messages):
                if self.stopping:
                    # not started: give them back at once, untouched in the ledger
                    unstarted = [(m, 0) for m in messages[index:]]
                    self.queue.change_visibility(unstarted)
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
            self.queue.change_visibility([(m, 0) for m in rest])
            result.released += len(rest) + 1
            raise
        finally:
            self.queue.delete(deletes)
            self.queue.change_visibility(releases)
            with self._lock:
                self._held = {}
            self._heartbeat.release()
            self.protection.set(enabled=False)
        return result

    def _receive(self) -> list[Received]:
        try:
            messages = self.queue.receive(
                max_messages=self.settings.prefetch, wait_seconds=self.settings.wait_seconds
            )
        except (ClientError, BotoCoreError) as error:
            # botocore already retried; back off before the next poll instead of spinning
            self._receive_failures += 1
            delay = backoff.POLL.step(self._receive_failures)
            log.warning(Event.RECEIVE_FAILED, extra={"error": str(error), "retry_in_s": delay})
            self._stopping.wait(delay)
            return []
        self._receive_failures = 0
        return messages

    # -- one message -------------------------------------------------------------------------
    def _handle(self, message: Received, result: BatchResult) -> str | int | None:
        """Run one message; return "delete", a visibility timeout to release with, or None."""
        try:
            job = parse_job(
                message.body,
                data_bucket=self.settings.data_bucket,
                sources=self.settings.sources,
            )
            refusal = misrouted(job, self.settings.role, gpu_pool=self.settings.has_gpu_pool)
            if refusal is not None:
                raise JobRejected(refusal, job.job_id)
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
                resend_followups(self.clients.sqs, self.settings, self.ledger, claim.record)
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
        ruling = decide(
            committed=ctx.committed,
            error=error,
            receive_count=message.receive_count,
            max_receive_count=self.max_receive_count,
        )
        took = {"duration_ms": clock.ms}
        if ruling.outcome is Outcome.SUCCEEDED:
            if error is not None:
                log.warning(Event.JOB_ERROR_AFTER_COMMIT, exc_info=error)
            send_followups(self.clients.sqs, self.settings, ctx.followups)
            if ctx.split_into is None:  # a split job is done when its shards are
                log.info(Event.JOB_SUCCEEDED, extra={**took, "attempt": ctx.attempt})
            result.succeeded += 1
            return "delete"
        if ruling.outcome is Outcome.UNCHANGED:  # the lease was lost: the owner decides
            log.warning(Event.JOB_LEASE_LOST, extra=took)
            result.busy += 1
            return None
        reason = str(ruling.reason)
        if ruling.outcome is Outcome.FAILED:
            if self.ledger.fail(job.job_id, worker_id=self.worker_id, reason=reason):
                self._fail_parent(job, reason)
                log.info(Event.JOB_FAILED, extra={**took, "reason": reason})
                result.failed += 1
                return "delete"
            return None  # lease lost meanwhile: the owner decides
        if ruling.access_denied is not None:
            # a grant missing from the role (stacks/constructs/access.py), or a key outside the
            # bucket layout: say so loudly, in words that name the role, action and resource
            log.error(Event.JOB_ACCESS_DENIED, extra={"reason": ruling.access_denied})
        if ruling.outcome is Outcome.GAVE_UP:
            if self.ledger.fail(job.job_id, worker_id=self.worker_id, reason=reason):
                self._fail_parent(job, reason)
            log.error(Event.JOB_GAVE_UP, extra={**took, "reason": reason})
            result.failed += 1
            return 0
        self.ledger.release(job.job_id, worker_id=self.worker_id, reason=reason)
        log.warning(
            Event.JOB_RETRYING,
            extra={**took, "reason": reason, "retry_in_s": ruling.release_after},
            exc_info=error,
        )
        result.retried += 1
        return ruling.release_after

    def _fail_parent(self, job: Job, reason: str) -> None:
        """A shard that failed for good fails its parent, naming the shard."""
        if job.shard is not None:
            self.ledger.fail_parent(
                job.shard.parent,
                shard=job.shard.index,
                reason=f"{job.shard} ({job.job_id}) failed: {reason}",
            )

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
                    self.queue.change_visibility([(message, 0)])
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

    # -- rejected messages ----------------------------------------------------
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
            self.queue.copy_to_dlq(self.dlq_url, message.body, rejected.reason)

    # -- heartbeat ---------------------------------------------------------------------------
    @property
    def heartbeat_interval(self) -> float:
        return max(0.5, self.visibility / 3)

    def beat_once(self) -> None:
        with self._lock:
            held = list(self._held.values())
            current = self._current
        self.queue.change_visibility([(m, self.visibility) for m in held])
        if current is not None and not self.ledger.heartbeat(
            current.job.job_id, worker_id=self.worker_id, lease_seconds=self.visibility
        ):
            current.lease_lost.set()
            log.warning(Event.JOB_LEASE_LOST_ON_HEARTBEAT, extra={"job_id": current.job.job_id})
        self.protection.renew()
