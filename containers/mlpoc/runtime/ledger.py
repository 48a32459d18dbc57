"""The jobs ledger: one DynamoDB record per job whose status is the single truth about it.

    QUEUED ──claim──▶ RUNNING ──commit──▶ SUCCEEDED
       ▲                 │ ├──fail────▶ FAILED
       └──── RETRYABLE ◀─┘ ├─(lease expires: any worker may claim again)
                           └─split──▶ RUNNING, no lease, shards_total ──last shard──▶ SUCCEEDED
                                                                     └─a shard fails──▶ FAILED

Every transition after the claim is a conditional write that holds only while this worker owns
an unexpired lease, so a job succeeds at most once whatever SQS redelivers, and a worker that
lost its lease (paused, partitioned, killed) can never commit a result.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from mlpoc.aws import dynamo
from mlpoc.errors import LeaseLost
from mlpoc.runtime.contract import Job
from mlpoc.runtime.job_records import TERMINAL, Status, clip_reason, is_split


class ClaimOutcome(enum.Enum):
    CLAIMED = "claimed"  # this worker owns the job now
    DONE = "done"  # already SUCCEEDED or FAILED: the message is a duplicate
    BUSY = "busy"  # another worker holds a live lease


@dataclass(frozen=True)
class Claim:
    outcome: ClaimOutcome
    record: dict[str, Any]

    @property
    def attempts(self) -> int:
        return int(self.record.get("attempts", 0))


# Names used in every expression (several are DynamoDB reserved words).
_NAMES = {"#status": "status", "#type": "type", "#model": "model"}


def _lease_condition() -> str:
    return "#status = :running AND lease_owner = :me"


class Ledger:
    def __init__(
        self, dynamodb: Any, table: str, *, clock: Callable[[], float] = time.time
    ) -> None:
        self._dynamodb = dynamodb
        self.table = table
        self._clock = clock

    # -- producers ---------------------------------------------------------------------------
    def create(self, job: Job, *, source: str) -> bool:
        """Record a job as QUEUED before it is enqueued; False if the job id already exists."""
        try:
            self._dynamodb.put_item(**self.create_request(job, source=source))
        except ClientError as error:
            if dynamo.is_conditional_failure(error):
                return False
            raise
        return True

    def create_request(self, job: Job, *, source: str) -> dict[str, Any]:
        """The conditional Put that records a QUEUED job (also usable inside a transaction)."""
        now = self._clock()
        return {
            "TableName": self.table,
            "Item": dynamo.serialize(
                {
                    "job_id": job.job_id,
                    "status": Status.QUEUED.value,
                    "type": job.type,
                    "model": job.model,
                    "dataset": str(job.dataset),
                    "requested_version": job.version,
                    "message": job.to_json(),
                    "source": source,
                    "parent": job.shard.parent if job.shard is not None else None,
                    "attempts": 0,
                    "created_at": now,
                    "updated_at": now,
                }
            ),
            "ConditionExpression": "attribute_not_exists(job_id)",
        }

    # -- workers -----------------------------------------------------------------------------
    def claim(self, job: Job, *, worker_id: str, lease_seconds: float, body: str) -> Claim:
        """Take the job if it is QUEUED, RETRYABLE, unknown, or RUNNING under an expired lease.

        One UpdateItem either way: on success it returns the new record, on a failed condition
        DynamoDB hands back the current one, which tells a duplicate from a busy job.
        """
        now = self._clock()
        try:
            response = self._dynamodb.update_item(
                TableName=self.table,
                Key={"job_id": {"S": job.job_id}},
                UpdateExpression=(
                    "SET #status = :running, lease_owner = :me, lease_expires_at = :expires, "
                    "updated_at = :now, started_at = :now, "
                    "created_at = if_not_exists(created_at, :now), "
                    "#type = if_not_exists(#type, :type), #model = if_not_exists(#model, :model), "
                    "dataset = if_not_exists(dataset, :dataset), "
                    "requested_version = if_not_exists(requested_version, :version), "
                    "message = if_not_exists(message, :body), "
                    "#source = if_not_exists(#source, :source) "
                    "ADD attempts :one"
                ),
                ConditionExpression=(
                    "attribute_not_exists(job_id) OR #status IN (:queued, :retryable) "
                    "OR (#status = :running AND lease_expires_at < :now)"
                ),
                ExpressionAttributeNames={**_NAMES, "#source": "source"},
                ExpressionAttributeValues={
                    ":running": {"S": Status.RUNNING.value},
                    ":queued": {"S": Status.QUEUED.value},
                    ":retryable": {"S": Status.RETRYABLE.value},
                    ":me": {"S": worker_id},
                    ":expires": dynamo.value(now + lease_seconds),
                    ":now": dynamo.value(now),
                    ":type": {"S": job.type},
                    ":model": {"S": job.model},
                    ":dataset": {"S": str(job.dataset)},
                    ":version": {"S": job.version},
                    ":body": {"S": body},
                    ":source": {"S": "queue"},
                    ":one": {"N": "1"},
                },
                ReturnValues="ALL_NEW",
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except ClientError as error:
            if not dynamo.is_conditional_failure(error):
                raise
            record = dynamo.deserialize(error.response.get("Item")) or {}
            done = record.get("status") in TERMINAL or is_split(record)
            return Claim(ClaimOutcome.DONE if done else ClaimOutcome.BUSY, record)
        return Claim(ClaimOutcome.CLAIMED, dynamo.deserialize(response["Attributes"]) or {})

    def heartbeat(self, job_id: str, *, worker_id: str, lease_seconds: float) -> bool:
        """Extend the lease; False when it was lost (the job must not be committed)."""
        return self._conditional_update(
            job_id,
            worker_id,
            "SET lease_expires_at = :expires, updated_at = :now",
            {":expires": dynamo.value(self._clock() + lease_seconds)},
        )

    def note(self, job_id: str, *, worker_id: str, **fields: Any) -> None:
        """Record facts about a running job (e.g. the model version it allocated)."""
        sets = ", ".join(f"#f{i} = :f{i}" for i in range(len(fields)))
        ok = self._conditional_update(
            job_id,
            worker_id,
            f"SET {sets}, updated_at = :now",
            {f":f{i}": dynamo.value(v) for i, v in enumerate(fields.values())},
            {f"#f{i}": k for i, k in enumerate(fields)},
        )
        if not ok:
            raise LeaseLost(job_id)

    # -- sharded jobs (mlpoc.data.shards) ------------------------------------------------------
    def create_shard(self, job: Job, *, source: str) -> bool:
        """Record a shard QUEUED; True when it must be sent (new, or recorded but never run)."""
        try:
            self._dynamodb.put_item(
                **self.create_request(job, source=source),
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except ClientError as error:
            if not dynamo.is_conditional_failure(error):
                raise
            record = dynamo.deserialize(error.response.get("Item")) or {}
            return record.get("status") == Status.QUEUED.value
        return True

    def hand_off(self, job_id: str, *, worker_id: str) -> bool:
        """The split parent gives up its lease: it stays RUNNING until its shards finish it.
        True also when a fast shard finished (or failed) the parent first."""
        if self._conditional_update(
            job_id,
            worker_id,
            "SET updated_at = :now REMOVE lease_owner, lease_expires_at",
            {},
        ):
            return True
        record = self.get(job_id) or {}
        return record.get("status") in TERMINAL

    def shard_done_request(
        self, parent: str, *, index: int, rows: int, for_review: int
    ) -> dict[str, Any]:
        """The Update, in a shard's commit transaction, that counts the shard on its parent:
        adding to a set is idempotent, and the transaction makes the sums count once."""
        return {
            "TableName": self.table,
            "Key": {"job_id": {"S": parent}},
            "UpdateExpression": (
                "ADD shards_done :index, shards_rows :rows, shards_for_review :review "
                "SET updated_at = :now"
            ),
            "ConditionExpression": "attribute_exists(job_id)",
            "ExpressionAttributeValues": {
                ":index": {"NS": [str(index)]},
                ":rows": {"N": str(rows)},
                ":review": {"N": str(for_review)},
                ":now": dynamo.value(self._clock()),
            },
        }

    def finish_parent(self, parent: str) -> bool:
        """Mark a split parent SUCCEEDED once every shard is done; True when this call did.

        A parent that only its shards failed (``failed_by_shard``) finishes too: once the failed
        shard ran again and succeeded (``mlpoc dlq redrive`` after a fix), the job is whole."""
        record = self.get(parent) or {}
        total = record.get("shards_total")
        done = record.get("shards_done") or set()
        revivable = record.get("status") == Status.FAILED.value and "failed_by_shard" in record
        if total is None or len(done) < total:
            return False
        if record.get("status") != Status.RUNNING.value and not revivable:
            return False
        result = {
            "shards": total,
            "rows": record.get("shards_rows", 0),
            "for_review": record.get("shards_for_review", 0),
        }
        return self._update_if(
            parent,
            update=(
                "SET #status = :succeeded, #result = :result, finished_at = :now, "
                "updated_at = :now REMOVE lease_owner, lease_expires_at, reason, failed_by_shard"
            ),
            condition=(
                "(#status = :running OR (#status = :failed AND attribute_exists(failed_by_shard))) "
                "AND shards_total = :total AND size(shards_done) = :total"
            ),
            values={
                ":succeeded": {"S": Status.SUCCEEDED.value},
                ":running": {"S": Status.RUNNING.value},
                ":failed": {"S": Status.FAILED.value},
                ":total": dynamo.value(total),
                ":result": dynamo.value(result),
            },
            names={"#result": "result"},
        )

    def fail_parent(self, parent: str, *, shard: int, reason: str) -> bool:
        """A shard failed for good: its parent fails too (whoever holds it), with the reason."""
        return self._update_if(
            parent,
            update=(
                "SET #status = :failed, reason = :reason, failed_by_shard = :shard, "
                "finished_at = :now, updated_at = :now REMOVE lease_owner, lease_expires_at"
            ),
            condition="#status = :running",
            values={
                ":failed": {"S": Status.FAILED.value},
                ":running": {"S": Status.RUNNING.value},
                ":reason": {"S": clip_reason(reason)},
                ":shard": dynamo.value(shard),
            },
        )

    def commit_request(
        self, job_id: str, *, worker_id: str, result: Mapping[str, Any]
    ) -> dict[str, Any]:
        """The conditional Update that marks the job SUCCEEDED (alone or in a transaction)."""
        now = self._clock()
        return {
            "TableName": self.table,
            "Key": {"job_id": {"S": job_id}},
            "UpdateExpression": (
                "SET #status = :succeeded, #result = :result, finished_at = :now, "
                "updated_at = :now REMOVE lease_owner, lease_expires_at, reason"
            ),
            "ConditionExpression": _lease_condition(),
            "ExpressionAttributeNames": {"#status": "status", "#result": "result"},
            "ExpressionAttributeValues": {
                ":succeeded": {"S": Status.SUCCEEDED.value},
                ":running": {"S": Status.RUNNING.value},
                ":me": {"S": worker_id},
                ":result": dynamo.value(dict(result)),
                ":now": dynamo.value(now),
            },
        }

    def commit(self, job_id: str, *, worker_id: str, result: Mapping[str, Any]) -> None:
        try:
            self._dynamodb.update_item(
                **self.commit_request(job_id, worker_id=worker_id, result=result)
            )
        except ClientError as error:
            if dynamo.is_conditional_failure(error):
                raise LeaseLost(job_id) from None
            raise

    def fail(self, job_id: str, *, worker_id: str, reason: str) -> bool:
        """Mark a claimed job FAILED for good (bad dataset, tampered artifact, retries used up)."""
        return self._conditional_update(
            job_id,
            worker_id,
            "SET #status = :failed, reason = :reason, finished_at = :now, updated_at = :now "
            "REMOVE lease_owner, lease_expires_at",
            {":failed": {"S": Status.FAILED.value}, ":reason": {"S": clip_reason(reason)}},
        )

    def release(self, job_id: str, *, worker_id: str, reason: str) -> bool:
        """Give a claimed job back (RETRYABLE): shutdown, or a transient error to retry."""
        return self._conditional_update(
            job_id,
            worker_id,
            "SET #status = :retryable, reason = :reason, updated_at = :now "
            "REMOVE lease_owner, lease_expires_at",
            {":retryable": {"S": Status.RETRYABLE.value}, ":reason": {"S": clip_reason(reason)}},
        )

    def reject(self, job_id: str, *, reason: str, body: str) -> bool:
        """Record a message that broke the contract as FAILED, unless the job already finished."""
        return self._update_if(
            job_id,
            update=(
                "SET #status = :failed, reason = :reason, finished_at = :now, "
                "updated_at = :now, created_at = if_not_exists(created_at, :now), message = :body"
            ),
            condition="attribute_not_exists(job_id) OR #status IN (:queued, :retryable)",
            values={
                ":failed": {"S": Status.FAILED.value},
                ":queued": {"S": Status.QUEUED.value},
                ":retryable": {"S": Status.RETRYABLE.value},
                ":reason": {"S": clip_reason(reason)},
                ":body": {"S": body[:10_000]},
            },
        )

    def requeue(self, job_id: str, *, reason: str) -> bool:
        """Make a FAILED job (or one RUNNING under an expired lease) claimable again.

        A dead-letter redrive calls this before sending the message back: without it the
        workers would see a finished job and drop the message as a duplicate.
        """
        return self._update_if(
            job_id,
            update=(
                "SET #status = :retryable, reason = :reason, updated_at = :now "
                "REMOVE lease_owner, lease_expires_at, finished_at"
            ),
            condition="#status = :failed OR (#status = :running AND lease_expires_at < :now)",
            values={
                ":retryable": {"S": Status.RETRYABLE.value},
                ":failed": {"S": Status.FAILED.value},
                ":running": {"S": Status.RUNNING.value},
                ":reason": {"S": clip_reason(reason)},
            },
        )

    def _update_if(
        self,
        job_id: str,
        *,
        update: str,
        condition: str,
        values: dict[str, Any],
        names: Mapping[str, str] | None = None,
    ) -> bool:
        """One conditional UpdateItem (``:now`` is supplied); False when the condition fails."""
        try:
            self._dynamodb.update_item(
                TableName=self.table,
                Key={"job_id": {"S": job_id}},
                UpdateExpression=update,
                ConditionExpression=condition,
                ExpressionAttributeNames={"#status": "status", **(names or {})},
                ExpressionAttributeValues={**values, ":now": dynamo.value(self._clock())},
            )
        except ClientError as error:
            if dynamo.is_conditional_failure(error):
                return False
            raise
        return True

    # -- readers -----------------------------------------------------------------------------
    def get(self, job_id: str) -> dict[str, Any] | None:
        response = self._dynamodb.get_item(
            TableName=self.table, Key={"job_id": {"S": job_id}}, ConsistentRead=True
        )
        return dynamo.deserialize(response.get("Item"))

    # -- internals ---------------------------------------------------------------------------
    def recent(self, limit: int, *, shards: bool = False) -> list[dict[str, Any]]:
        """The newest ``limit`` records (a full scan: fine at a PoC's thousands of jobs); the
        shard jobs of split jobs only when asked (their parent shows their progress)."""
        records = [
            r
            for r in dynamo.items(self._dynamodb.scan, TableName=self.table)
            if shards or "parent" not in r
        ]
        records.sort(key=lambda r: float(r.get("created_at", 0)), reverse=True)
        return records[:limit]

    def _conditional_update(
        self,
        job_id: str,
        worker_id: str,
        update: str,
        values: Mapping[str, Any],
        names: Mapping[str, str] | None = None,
    ) -> bool:
        try:
            self._dynamodb.update_item(
                TableName=self.table,
                Key={"job_id": {"S": job_id}},
                UpdateExpression=update,
                ConditionExpression=_lease_condition(),
                ExpressionAttributeNames={"#status": "status", **(names or {})},
                ExpressionAttributeValues={
                    ":running": {"S": Status.RUNNING.value},
                    ":me": {"S": worker_id},
                    ":now": dynamo.value(self._clock()),
                    **values,
                },
            )
        except ClientError as error:
            if dynamo.is_conditional_failure(error):
                return False
            raise
        return True
