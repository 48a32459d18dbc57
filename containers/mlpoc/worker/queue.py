"""The worker's SQS queue: long-poll receives, batched deletes and visibility changes, and the
copy of a rejected message to the dead-letter queue. Batch calls that fail are logged, never
raised: the ledger already holds each job's outcome, so a message that comes back is
recognised and deleted then."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from mlpoc.aws.log_events import Event
from mlpoc.runtime.contract import REASON_ATTRIBUTE

log = logging.getLogger("mlpoc.worker")

SQS_BATCH_LIMIT = 10


@dataclass
class Received:
    """One received message."""

    message_id: str
    receipt: str
    body: str
    receive_count: int
    sent_at: float


@dataclass(frozen=True)
class Redrive:
    """What the queue's own settings say: its visibility timeout and its dead-letter queue."""

    visibility_seconds: int
    max_receive_count: int | None
    dlq_url: str | None


class JobQueue:
    def __init__(self, sqs: Any, url: str) -> None:
        self.sqs = sqs
        self.url = url

    def redrive(self) -> Redrive:
        """The visibility timeout and redrive policy (two calls; the worker makes them once)."""
        attributes = self.sqs.get_queue_attributes(
            QueueUrl=self.url, AttributeNames=["VisibilityTimeout", "RedrivePolicy"]
        )["Attributes"]
        visibility = int(attributes.get("VisibilityTimeout", 30))
        raw = attributes.get("RedrivePolicy")
        if not raw:
            return Redrive(visibility, None, None)
        policy = json.loads(raw)
        arn = str(policy["deadLetterTargetArn"]).split(":")
        dlq_url = self.sqs.get_queue_url(QueueName=arn[5], QueueOwnerAWSAccountId=arn[4])[
            "QueueUrl"
        ]
        return Redrive(visibility, int(policy["maxReceiveCount"]), dlq_url)

    def receive(self, *, max_messages: int, wait_seconds: int) -> list[Received]:
        """One long poll (raises what botocore raises after its own retries)."""
        response = self.sqs.receive_message(
            QueueUrl=self.url,
            MaxNumberOfMessages=max_messages,
            WaitTimeSeconds=wait_seconds,
            MessageSystemAttributeNames=["ApproximateReceiveCount", "SentTimestamp"],
        )
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

    def delete(self, messages: Sequence[Received]) -> None:
        for start in range(0, len(messages), SQS_BATCH_LIMIT):
            chunk = messages[start : start + SQS_BATCH_LIMIT]
            entries = [{"Id": str(i), "ReceiptHandle": m.receipt} for i, m in enumerate(chunk)]
            self._batch("delete_message_batch", entries, Event.DELETE_FAILED)

    def change_visibility(self, changes: Sequence[tuple[Received, int]]) -> None:
        for start in range(0, len(changes), SQS_BATCH_LIMIT):
            chunk = changes[start : start + SQS_BATCH_LIMIT]
            entries = [
                {"Id": str(i), "ReceiptHandle": m.receipt, "VisibilityTimeout": seconds}
                for i, (m, seconds) in enumerate(chunk)
            ]
            self._batch("change_message_visibility_batch", entries, Event.VISIBILITY_FAILED)

    def _batch(self, call: str, entries: list[dict[str, Any]], failed: Event) -> None:
        try:
            response = getattr(self.sqs, call)(QueueUrl=self.url, Entries=entries)
        except (ClientError, BotoCoreError) as error:
            log.warning(failed, extra={"error": str(error)})
            return
        for failure in response.get("Failed", []):
            log.warning(failed, extra={"failure": failure})

    def copy_to_dlq(self, dlq_url: str, body: str, reason: str) -> None:
        """Keep a rejected body for inspection, with why in the ``mlpoc-reason`` attribute."""
        self.sqs.send_message(
            QueueUrl=dlq_url,
            MessageBody=body,
            MessageAttributes={
                REASON_ATTRIBUTE: {"DataType": "String", "StringValue": reason[:1000]}
            },
        )
