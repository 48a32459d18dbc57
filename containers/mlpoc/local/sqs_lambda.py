"""Run a Lambda handler behind an SQS queue the way Lambda's SQS event source mapping does.

``python sqs_lambda.py --asset DIR --handler handler.handler --queue-url URL --queue-arn ARN``

The function's code is imported from its synthesized asset directory (what Lambda would
unzip), so this file deliberately imports nothing from ``mlpoc``: the handler finds the copy
of the runtime bundled into its asset. Semantics kept from the event source mapping:

* long polls, gathering up to ``--batch-size`` messages for at most ``--window`` seconds;
* the event has Lambda's SQS shape (``Records`` with ``messageId``, ``receiptHandle``,
  ``body``, ``attributes``, ``messageAttributes``, ``md5OfBody``, ``eventSource``,
  ``eventSourceARN``, ``awsRegion``);
* a handler that raises, or runs past ``--timeout``, fails the whole batch: nothing is deleted
  and the messages come back after the visibility timeout (then the queue's DLQ);
* with ``--report-failures`` (``ReportBatchItemFailures``) the ids in ``batchItemFailures``
  stay on the queue and the rest are deleted; an unknown or empty id fails the whole batch.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import signal
import sys
import time
import uuid
from typing import Any

import boto3

log = logging.getLogger("mlpoc.local.sqs_lambda")
SQS_MAX_BATCH = 10
RECORD_ATTRIBUTES = (
    "ApproximateReceiveCount",
    "SentTimestamp",
    "SenderId",
    "ApproximateFirstReceiveTimestamp",
)


class LocalLambdaContext:
    """The attributes of Lambda's context object that handlers and Powertools read."""

    def __init__(self, name: str, region: str, timeout: float, memory: int) -> None:
        self.function_name = name
        self.function_version = "$LATEST"
        self.memory_limit_in_mb = memory
        self.invoked_function_arn = f"arn:aws:lambda:{region}:123456789012:function:{name}"
        self.aws_request_id = str(uuid.uuid4())
        self.log_group_name = f"/aws/lambda/{name}"
        self.log_stream_name = "local"
        self._deadline = time.monotonic() + timeout

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


def to_record(message: dict[str, Any], queue_arn: str, region: str) -> dict[str, Any]:
    attributes = message.get("Attributes", {})
    return {
        "messageId": message["MessageId"],
        "receiptHandle": message["ReceiptHandle"],
        "body": message["Body"],
        "attributes": {k: attributes[k] for k in RECORD_ATTRIBUTES if k in attributes},
        "messageAttributes": {
            name: {
                "stringValue": value.get("StringValue"),
                "binaryValue": value.get("BinaryValue"),
                "stringListValues": [],
                "binaryListValues": [],
                "dataType": value["DataType"],
            }
            for name, value in message.get("MessageAttributes", {}).items()
        },
        "md5OfBody": message["MD5OfBody"],
        "eventSource": "aws:sqs",
        "eventSourceARN": queue_arn,
        "awsRegion": region,
    }


def to_delete(
    records: list[dict[str, Any]], response: Any, *, report_failures: bool
) -> list[dict[str, Any]]:
    """Which records a successful invocation deletes."""
    if not report_failures or not isinstance(response, dict):
        return records
    failures = response.get("batchItemFailures") or []
    ids = {r["messageId"] for r in records}
    failed = {f.get("itemIdentifier") if isinstance(f, dict) else None for f in failures}
    if not failed <= ids:  # an empty or unknown identifier fails the whole batch
        return []
    return [r for r in records if r["messageId"] not in failed]


class Runner:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.region = os.environ.get("AWS_REGION", "us-east-1")
        self.sqs = boto3.session.Session().client("sqs")
        sys.path.insert(0, args.asset)
        module_name, function_name = args.handler.rsplit(".", 1)
        self.handler = getattr(importlib.import_module(module_name), function_name)
        self.stopping = False
        self.invoking = False

    def gather(self) -> list[dict[str, Any]]:
        messages: list[dict[str, Any]] = []
        deadline = 0.0  # the batching window starts with the first message, as in Lambda
        while not self.stopping and len(messages) < self.args.batch_size:
            wait = 20 if not messages else max(0, int(deadline - time.monotonic()))
            got = self.sqs.receive_message(
                QueueUrl=self.args.queue_url,
                MaxNumberOfMessages=min(SQS_MAX_BATCH, self.args.batch_size - len(messages)),
                WaitTimeSeconds=wait,
                AttributeNames=["All"],
                MessageAttributeNames=["All"],
            ).get("Messages", [])
            if got and not messages:
                deadline = time.monotonic() + self.args.window
            messages.extend(got)
            if messages and (not got or time.monotonic() >= deadline):
                break
        return messages

    def invoke(self, messages: list[dict[str, Any]]) -> int:
        records = [to_record(m, self.args.queue_arn, self.region) for m in messages]
        context = LocalLambdaContext(
            self.args.function_name, self.region, self.args.timeout, self.args.memory
        )
        started = time.monotonic()
        self.invoking = True
        try:
            response = self.handler({"Records": records}, context)
        except Exception:
            log.exception("invocation failed: the batch returns to the queue")
            return 0
        finally:
            self.invoking = False
        if time.monotonic() - started > self.args.timeout:
            log.error("invocation ran past its %s s timeout: the batch returns", self.args.timeout)
            return 0
        done = to_delete(records, response, report_failures=self.args.report_failures)
        if done:
            self.sqs.delete_message_batch(
                QueueUrl=self.args.queue_url,
                Entries=[
                    {"Id": str(i), "ReceiptHandle": r["receiptHandle"]} for i, r in enumerate(done)
                ],
            )
        return len(done)

    def run(self) -> None:
        while not self.stopping:
            messages = self.gather()
            if messages:
                self.invoke(messages)


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--asset", required=True)
    parser.add_argument("--handler", required=True)
    parser.add_argument("--function-name", required=True)
    parser.add_argument("--queue-url", required=True)
    parser.add_argument("--queue-arn", required=True)
    parser.add_argument("--batch-size", type=int, default=10)
    parser.add_argument("--window", type=int, default=0)
    parser.add_argument("--timeout", type=float, default=3)
    parser.add_argument("--memory", type=int, default=128)
    parser.add_argument("--report-failures", action="store_true")
    return parser.parse_args(argv)


def main(argv: list[str]) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    runner = Runner(parse(argv))

    def stop(*_: object) -> None:
        runner.stopping = True
        if not runner.invoking:  # idle in a long poll: received messages just come back later
            raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    runner.run()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
