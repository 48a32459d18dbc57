"""The model registry: every version with its metrics and sha256, and one promotion pointer.

Items of the models table (partition ``model``, sort ``version``):

* ``v00000007`` — one per version: metrics, sha256 of ``model.onnx``, features, classes, the
  artifact's keys, the job and dataset it came from;
* ``@pointer`` — one per model: ``promoted`` (version number), ``promoted_metric``,
  ``history`` (earlier promoted versions, for rollback) and ``next_version`` (a counter).

Promotion and rollback are conditional updates of the pointer (compare-and-set on
``promoted``), so two writers can never both win.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import ClientError

from mlpoc.aws import dynamo
from mlpoc.errors import PointerMoved, RegistryError
from mlpoc.models import metrics
from mlpoc.schema import Schema

POINTER = "@pointer"
# Feature set versions live in this table too, under partition "features:<set>"
# (mlpoc.data.feature_sets):
# the same counter, pointer, promotion and rollback, kept apart from the models' listings.
FEATURES_NAMESPACE = "features:"
PRIMARY_METRIC = "accuracy"  # a classifier's default promotion metric (mlpoc.models.metrics)
MAX_HISTORY = 50


def version_key(version: int) -> str:
    return f"v{version:08d}"


@dataclass(frozen=True, kw_only=True)
class ModelVersion:
    model: str
    version: int
    sha256: str
    artifact_key: str
    metadata_key: str
    features: list[str]
    classes: list[str]
    metrics: dict[str, float]
    job_id: str
    dataset: str
    plugin: str
    created_at: float
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def schema(self) -> Schema:
        """Its table's schema (a version from before schemas: numbers, ``label``)."""
        raw = self.extra.get("schema")
        return Schema.from_json(raw) if raw else Schema.numbers(self.features)

    @property
    def task(self) -> str:
        return self.schema.task

    @property
    def metric_name(self) -> str:
        """What it is promoted on (``params.metric`` of its train job, else the task's)."""
        promotion = self.extra.get("promotion") or {}
        return str(promotion.get("metric") or metrics.DEFAULT[self.task])

    @property
    def metric(self) -> float:
        return float(self.metrics[self.metric_name])

    def to_item(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "version": version_key(self.version),
            "number": self.version,
            "sha256": self.sha256,
            "artifact_key": self.artifact_key,
            "metadata_key": self.metadata_key,
            "features": self.features,
            "classes": self.classes,
            "metrics": self.metrics,
            "job_id": self.job_id,
            "dataset": self.dataset,
            "plugin": self.plugin,
            "created_at": self.created_at,
            **self.extra,
        }

    @classmethod
    def from_item(cls, item: Mapping[str, Any]) -> ModelVersion:
        known = {
            "model",
            "version",
            "number",
            "sha256",
            "artifact_key",
            "metadata_key",
            "features",
            "classes",
            "metrics",
            "job_id",
            "dataset",
            "plugin",
            "created_at",
        }
        return cls(
            model=item["model"],
            version=int(item["number"]),
            sha256=item["sha256"],
            artifact_key=item["artifact_key"],
            metadata_key=item["metadata_key"],
            features=list(item["features"]),
            classes=[str(c) for c in item["classes"]],
            metrics={k: float(v) for k, v in item["metrics"].items()},
            job_id=item["job_id"],
            dataset=item["dataset"],
            plugin=item["plugin"],
            created_at=float(item["created_at"]),
            extra={k: v for k, v in item.items() if k not in known},
        )


@dataclass(frozen=True)
class Pointer:
    model: str
    promoted: int | None
    promoted_metric: float | None
    history: list[int]
    next_version: int


class Registry:
    def __init__(
        self, dynamodb: Any, table: str, *, clock: Callable[[], float] = time.time
    ) -> None:
        self._dynamodb = dynamodb
        self.table = table
        self._clock = clock

    @property
    def dynamodb(self) -> Any:
        return self._dynamodb

    def allocate_version(self, model: str) -> int:
        """The next version number of ``model`` (an atomic counter on the pointer item)."""
        response = self._dynamodb.update_item(
            TableName=self.table,
            Key=self._key(model, POINTER),
            UpdateExpression="ADD next_version :one",
            ExpressionAttributeValues={":one": {"N": "1"}},
            ReturnValues="UPDATED_NEW",
        )
        return int(response["Attributes"]["next_version"]["N"])

    def pointer(self, model: str) -> Pointer | None:
        item = dynamo.deserialize(
            self._dynamodb.get_item(
                TableName=self.table, Key=self._key(model, POINTER), ConsistentRead=True
            ).get("Item")
        )
        return None if item is None else _pointer(item)

    def pointers(self, *, namespace: str = "") -> list[Pointer]:
        """Every model's pointer, by model name (one scan of the registry table); with
        ``namespace`` (:data:`FEATURES_NAMESPACE`), the pointers under it instead."""
        found = dynamo.items(
            self._dynamodb.scan,
            TableName=self.table,
            FilterExpression=(
                "#v = :pointer AND "
                + ("begins_with(#m, :ns)" if namespace else "NOT begins_with(#m, :ns)")
            ),
            ExpressionAttributeNames={"#v": "version", "#m": "model"},
            ExpressionAttributeValues={
                ":pointer": {"S": POINTER},
                ":ns": {"S": namespace or FEATURES_NAMESPACE},
            },
        )
        return sorted((_pointer(item) for item in found), key=lambda p: p.model)

    def get(self, model: str, version: int) -> ModelVersion:
        item = self.version_item(model, version)
        if item is None:
            raise RegistryError(f"model {model!r} has no version {version}")
        return ModelVersion.from_item(item)

    def version_item(self, partition: str, version: int) -> dict[str, Any] | None:
        """One version's item of a partition (a model, or a feature set's), or None."""
        return dynamo.deserialize(
            self._dynamodb.get_item(
                TableName=self.table, Key=self._key(partition, version_key(version))
            ).get("Item")
        )

    def promoted(self, partition: str, *, missing: str) -> int:
        """The promoted version number, or a RegistryError saying ``missing``."""
        pointer = self.pointer(partition)
        if pointer is None or pointer.promoted is None:
            raise RegistryError(missing)
        return pointer.promoted

    def resolve(self, model: str, version: str) -> ModelVersion:
        """A version spec from a job ('current' or a number) -> the registered version."""
        if version != "current":
            return self.get(model, int(version))
        missing = f"model {model!r} has no promoted version: train it first, or name a version"
        return self.get(model, self.promoted(model, missing=missing))

    def versions(self, model: str) -> list[ModelVersion]:
        return [ModelVersion.from_item(item) for item in self.version_items(model)]

    def version_items(self, partition: str) -> Iterator[dict[str, Any]]:
        """Every version's item of a partition, oldest first."""
        return dynamo.items(
            self._dynamodb.query,
            TableName=self.table,
            KeyConditionExpression="#m = :m AND begins_with(#v, :prefix)",
            ExpressionAttributeNames={"#m": "model", "#v": "version"},
            ExpressionAttributeValues={":m": {"S": partition}, ":prefix": {"S": "v"}},
        )

    def put_version_request(self, version: ModelVersion) -> dict[str, Any]:
        return self.put_item_request(version.to_item(), version.job_id)

    def put_item_request(self, item: Mapping[str, Any], job_id: str) -> dict[str, Any]:
        """The Put of a version's item (in the job's commit)."""
        return {
            "TableName": self.table,
            "Item": dynamo.serialize(item),
            # a version number is never reused for a different job
            "ConditionExpression": "attribute_not_exists(version) OR job_id = :job",
            "ExpressionAttributeValues": {":job": {"S": job_id}},
        }

    def promote_request(
        self, model: str, version: int, metric: float | None, *, expected: Pointer | None
    ) -> dict[str, Any]:
        """Conditional pointer update: succeeds only if nobody promoted since ``expected``."""
        expected_promoted = expected.promoted if expected else None
        history = list(expected.history) if expected else []
        if expected_promoted is not None:
            history = [*history, expected_promoted][-MAX_HISTORY:]
        values: dict[str, Any] = {
            ":v": dynamo.value(version),
            ":metric": dynamo.value(metric),
            ":history": dynamo.value(history),
            ":now": dynamo.value(self._clock()),
        }
        if expected_promoted is None:
            condition = "attribute_not_exists(promoted)"
        else:
            condition = "promoted = :expected"
            values[":expected"] = dynamo.value(expected_promoted)
        return {
            "TableName": self.table,
            "Key": self._key(model, POINTER),
            "UpdateExpression": (
                "SET promoted = :v, promoted_metric = :metric, history = :history, "
                "promoted_at = :now"
            ),
            "ConditionExpression": condition,
            "ExpressionAttributeValues": values,
        }

    # -- operator actions --------------------------------------------------------------------
    def promote(self, model: str, version: int) -> Pointer:
        """Promote an existing version (the operator's explicit choice, metric or not)."""
        return self.move_pointer(model, version, self.get(model, version).metric)

    def move_pointer(self, model: str, version: int, metric: float | None) -> Pointer:
        """Point ``model`` (a partition of this table) at ``version``, whose existence the
        caller checked; the earlier promoted version goes on the history."""
        pointer = self.pointer(model)
        if pointer is not None and pointer.promoted == version:
            return pointer
        self._apply(self.promote_request(model, version, metric, expected=pointer))
        return self._required_pointer(model)

    def rollback(
        self, model: str, *, metric_of: Callable[[int], float | None] | None = None
    ) -> Pointer:
        """Re-promote the version that was promoted before the current one (``metric_of``
        checks it and gives its metric: a model version's by default)."""
        pointer = self.pointer(model)
        if pointer is None or pointer.promoted is None or not pointer.history:
            raise RegistryError(f"model {model!r} has no earlier promoted version to roll back to")
        previous = pointer.history[-1]
        metric = (metric_of or (lambda v: self.get(model, v).metric))(previous)
        self._apply(
            {
                "TableName": self.table,
                "Key": self._key(model, POINTER),
                "UpdateExpression": (
                    "SET promoted = :v, promoted_metric = :metric, history = :history, "
                    "promoted_at = :now"
                ),
                "ConditionExpression": "promoted = :expected",
                "ExpressionAttributeValues": {
                    ":v": dynamo.value(previous),
                    ":metric": dynamo.value(metric),
                    ":history": dynamo.value(pointer.history[:-1]),
                    ":expected": dynamo.value(pointer.promoted),
                    ":now": dynamo.value(self._clock()),
                },
            }
        )
        return self._required_pointer(model)

    def _apply(self, request: dict[str, Any]) -> None:
        try:
            self._dynamodb.update_item(**request)
        except ClientError as error:
            if dynamo.is_conditional_failure(error):
                raise PointerMoved(
                    f"the promoted version of {request['Key']['model']['S']!r} changed "
                    "meanwhile; look again and retry"
                ) from None
            raise

    def _required_pointer(self, model: str) -> Pointer:
        pointer = self.pointer(model)
        if pointer is None:  # pragma: no cover - the pointer was just written
            raise RegistryError(f"model {model!r} has no pointer")
        return pointer

    @staticmethod
    def _key(model: str, sort: str) -> dict[str, Any]:
        return {"model": {"S": model}, "version": {"S": sort}}


def _pointer(item: Mapping[str, Any]) -> Pointer:
    promoted = item.get("promoted")
    metric = item.get("promoted_metric")
    return Pointer(
        model=str(item["model"]),
        promoted=int(promoted) if promoted is not None else None,
        promoted_metric=float(metric) if metric is not None else None,
        history=[int(v) for v in item.get("history", [])],
        next_version=int(item.get("next_version", 0)),
    )
