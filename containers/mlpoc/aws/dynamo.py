"""Small helpers over the low-level DynamoDB client: typed items in, plain Python out."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from decimal import Decimal
from typing import Any

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from botocore.exceptions import ClientError

from mlpoc.aws import backoff
from mlpoc.errors import TransientError

_serializer = TypeSerializer()
_deserializer = TypeDeserializer()

BATCH_WRITE_LIMIT = 25


def _to_dynamo(value: Any) -> Any:
    if isinstance(value, float):
        return Decimal(repr(value))
    if isinstance(value, Mapping):
        return {k: _to_dynamo(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_to_dynamo(v) for v in value]
    return value


def _from_dynamo(value: Any) -> Any:
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, dict):
        return {k: _from_dynamo(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_from_dynamo(v) for v in value]
    if isinstance(value, set):
        return {_from_dynamo(v) for v in value}
    return value


def serialize(item: Mapping[str, Any]) -> dict[str, Any]:
    """Plain dict -> DynamoDB attribute-value map (floats become Decimals)."""
    return {k: _serializer.serialize(_to_dynamo(v)) for k, v in item.items() if v is not None}


def value(v: Any) -> dict[str, Any]:
    return _serializer.serialize(_to_dynamo(v))  # type: ignore[no-any-return]


def deserialize(item: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if item is None:
        return None
    return {k: _from_dynamo(_deserializer.deserialize(v)) for k, v in item.items()}


def items(read: Callable[..., Mapping[str, Any]], **request: Any) -> Iterator[dict[str, Any]]:
    """Every item of a Scan or Query (``read`` is ``client.scan`` or ``client.query``), page by
    page, deserialized."""
    while True:
        page = read(**request)
        for item in page["Items"]:
            yield deserialize(item) or {}
        if "LastEvaluatedKey" not in page:
            return
        request["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def partition(dynamodb: Any, table: str, key: str, value: str) -> Iterator[dict[str, Any]]:
    """Every item of one partition (``key`` = ``value``, a string), page by page."""
    return items(
        dynamodb.query,
        TableName=table,
        KeyConditionExpression="#p = :p",
        ExpressionAttributeNames={"#p": key},
        ExpressionAttributeValues={":p": {"S": value}},
    )


def is_conditional_failure(error: ClientError) -> bool:
    return bool(error.response["Error"]["Code"] == "ConditionalCheckFailedException")


def cancellation_codes(error: ClientError) -> list[str]:
    """The per-item reasons of a TransactionCanceledException ('None' where the item was fine)."""
    return [r.get("Code", "None") for r in error.response.get("CancellationReasons", [])]


class BatchWriter:
    """Buffered BatchWriteItem: 25 puts a call, UnprocessedItems retried with backoff.

    Puts may target several tables; a call carries up to 25 requests in all. Nothing is
    dropped: requests that are still unprocessed after ``max_retries`` raise TransientError, so
    the job goes back to the queue (the writes are idempotent puts).
    """

    def __init__(
        self,
        dynamodb: Any,
        *,
        max_retries: int = 8,
        policy: backoff.Backoff = backoff.BATCH_WRITE,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._dynamodb = dynamodb
        self._pending: list[tuple[str, dict[str, Any]]] = []
        self._max_retries = max_retries
        self._backoff = policy
        self._sleep = sleep
        self.calls = 0
        self.written = 0

    def put(self, table: str, item: Mapping[str, Any]) -> None:
        self._pending.append((table, {"PutRequest": {"Item": serialize(item)}}))
        if len(self._pending) >= BATCH_WRITE_LIMIT:
            self._flush_one(self._pending[:BATCH_WRITE_LIMIT])
            del self._pending[:BATCH_WRITE_LIMIT]

    def flush(self) -> None:
        while self._pending:
            self._flush_one(self._pending[:BATCH_WRITE_LIMIT])
            del self._pending[:BATCH_WRITE_LIMIT]

    def _flush_one(self, requests: list[tuple[str, dict[str, Any]]]) -> None:
        request_items: dict[str, list[dict[str, Any]]] = {}
        for table, request in requests:
            request_items.setdefault(table, []).append(request)
        total = len(requests)
        for attempt in range(self._max_retries + 1):
            self.calls += 1
            response = self._dynamodb.batch_write_item(RequestItems=request_items)
            unprocessed: dict[str, list[dict[str, Any]]] = response.get("UnprocessedItems") or {}
            left = sum(len(v) for v in unprocessed.values())
            self.written += total - left
            if not left:
                return
            total = left
            request_items = unprocessed
            if attempt < self._max_retries:
                self._sleep(self._backoff.step(attempt + 1))
        raise TransientError(
            f"{total} item(s) stayed unprocessed after {self._max_retries} retries of "
            "BatchWriteItem (table throttled); the job will be retried"
        )
