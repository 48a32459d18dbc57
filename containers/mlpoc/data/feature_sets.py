"""Feature sets: features kept outside the model, versioned, published apart from training and
looked up by entity key when a model predicts.

A feature set has a name, an entity key column and typed feature columns. A ``features`` job
(the train workers) publishes a file or a folder as a new **version**:

* an immutable snapshot, ``feature-sets/<set>/<version>.csv`` in the data bucket (the key
  column, then the feature columns, as published);
* the online items, one per entity in the features table: partition ``<set>#<version>``, sort
  the key, ``v`` the values as a JSON list in the version's column order;
* the version record in the models table, under partition ``features:<set>``, with the same
  counter, promotion pointer and rollback as a model's (:mod:`mlpoc.models.registry`), moved apart
  from any model's.

A train job names a version (``params.feature_set``, ``params.feature_version``: ``current``
by default, the promoted one at the time) and joins its snapshot to its CSV by key, so a model
version is trained on one fixed version: point-in-time correct by construction. The model
version records what it took (``feature_set``: set, version, key, columns and their types).

A model reads the version it was trained with, or the promoted version when that one still has
every column the model takes, with the same type (:mod:`mlpoc.data.feature_binding`);
otherwise it keeps its own and says why (``note``: ``/v1/health``, the models page). Realtime
requests by key read the online items in one ``BatchGetItem``; predict jobs by key join the
snapshot.

Old versions expire: each publish marks the online items of every version no longer needed
with ``expires_at`` (DynamoDB's TTL deletes them later). Needed are the new version, the
promoted one and the one a rollback would return to, and every version a model's promoted
version, or the version its rollback would return to, reads (:mod:`mlpoc.data.feature_expiry`).

This module holds the version records and their promotion; the table, its snapshot and the join
by key are :mod:`mlpoc.data.feature_snapshots`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from mlpoc.aws import bucket_layout, dynamo
from mlpoc.errors import JobFailed, RegistryError
from mlpoc.models.registry import FEATURES_NAMESPACE, Pointer, Registry, version_key
from mlpoc.runtime.contract import MODEL_NAME_PATTERN, VERSION_PATTERN, S3Uri
from mlpoc.schema import Column

PROMOTE = ("auto", "always", "never")
SHOWN = 5  # problems named in one sentence


@dataclass(frozen=True)
class FeatureVersion:
    name: str
    version: int
    key: str
    columns: tuple[Column, ...]  # name and type (no categories: they belong to a model)
    rows: int
    snapshot: str  # s3:// URI of the snapshot
    sha256: str  # of the snapshot
    job_id: str
    dataset: str
    created_at: float
    expires_at: float | None = None  # set when its online items were marked to expire

    @property
    def partition(self) -> str:
        return partition(self.name, self.version)

    def to_item(self) -> dict[str, Any]:
        return {
            "model": FEATURES_NAMESPACE + self.name,
            "version": version_key(self.version),
            "number": self.version,
            "key": self.key,
            "columns": [{"name": c.name, "type": c.type} for c in self.columns],
            "rows": self.rows,
            "snapshot": self.snapshot,
            "sha256": self.sha256,
            "job_id": self.job_id,
            "dataset": self.dataset,
            "created_at": self.created_at,
            **({"expires_at": self.expires_at} if self.expires_at else {}),
        }

    def to_json(self) -> dict[str, Any]:
        item = self.to_item()
        return {
            "set": self.name,
            "version": self.version,
            **{k: v for k, v in item.items() if k not in ("model", "version", "number")},
        }

    @classmethod
    def from_item(cls, item: Mapping[str, Any]) -> FeatureVersion:
        expires = item.get("expires_at")
        return cls(
            name=str(item["model"]).removeprefix(FEATURES_NAMESPACE),
            version=int(item["number"]),
            key=str(item["key"]),
            columns=tuple(Column(str(c["name"]), str(c["type"])) for c in item["columns"]),
            rows=int(item["rows"]),
            snapshot=str(item["snapshot"]),
            sha256=str(item["sha256"]),
            job_id=str(item["job_id"]),
            dataset=str(item["dataset"]),
            created_at=float(item["created_at"]),
            expires_at=float(expires) if expires is not None else None,
        )

    def refusal(self, wanted: Iterable[Mapping[str, Any]]) -> str | None:
        """Why a model that takes ``wanted`` (``[{name, type}]``) cannot read this version, or
        None when it can: every column there, with the same type, and its items kept."""
        types = {c.name: c.type for c in self.columns}
        problems = []
        for column in wanted:
            found = types.get(str(column["name"]))
            if found is None:
                problems.append(f"it has no column {column['name']!r}")
            elif found != column["type"]:
                problems.append(f"its {column['name']!r} is a {found}, not a {column['type']}")
        if self.expires_at is not None:
            problems.append("its online items are expiring")
        if not problems:
            return None
        return "; ".join(problems[:SHOWN]) + ("; …" if len(problems) > SHOWN else "")


def partition(name: str, version: int) -> str:
    """The features table's partition of one version's online items: ``<set>#<version>``."""
    return f"{name}#{version}"


def check_name(name: Any, where: str = "feature set") -> str:
    if not isinstance(name, str) or not MODEL_NAME_PATTERN.match(name):
        raise JobFailed(
            f"{where} must be 1-64 characters of lowercase letters, digits, - and _, starting "
            f"with a letter or digit; got {name!r}"
        )
    return name


class FeatureSets:
    """The versions and promotion pointer of every feature set (in the models table)."""

    def __init__(
        self, dynamodb: Any, table: str, *, clock: Callable[[], float] = time.time
    ) -> None:
        self._dynamodb = dynamodb
        self.table = table
        self.registry = Registry(dynamodb, table, clock=clock)

    @staticmethod
    def _partition(name: str) -> str:
        return FEATURES_NAMESPACE + name

    def pointer(self, name: str) -> Pointer | None:
        return self.registry.pointer(self._partition(name))

    def pointers(self) -> dict[str, Pointer]:
        """Every feature set's pointer, by set name."""
        found = self.registry.pointers(namespace=FEATURES_NAMESPACE)
        return {p.model.removeprefix(FEATURES_NAMESPACE): p for p in found}

    def allocate(self, name: str) -> int:
        return self.registry.allocate_version(self._partition(name))

    def get(self, name: str, version: int) -> FeatureVersion:
        item = self.registry.version_item(self._partition(name), version)
        if item is None:
            raise RegistryError(f"feature set {name!r} has no version {version}")
        return FeatureVersion.from_item(item)

    def resolve(self, name: str, spec: str) -> FeatureVersion:
        """``current`` (the promoted version) or a version number -> that version."""
        if spec != "current":
            return self.get(name, int(spec))
        missing = (
            f"feature set {name!r} has no promoted version: publish one "
            "(`mlpoc features publish`), or name a version"
        )
        return self.get(name, self.registry.promoted(self._partition(name), missing=missing))

    def versions(self, name: str) -> list[FeatureVersion]:
        items = self.registry.version_items(self._partition(name))
        return [FeatureVersion.from_item(item) for item in items]

    def put_request(self, version: FeatureVersion) -> dict[str, Any]:
        return self.registry.put_item_request(version.to_item(), version.job_id)

    def promote_request(
        self, name: str, version: int, *, expected: Pointer | None
    ) -> dict[str, Any]:
        return self.registry.promote_request(
            self._partition(name), version, None, expected=expected
        )

    def promote(self, name: str, version: int) -> Pointer:
        self._usable(name, version)
        return self.registry.move_pointer(self._partition(name), version, None)

    def rollback(self, name: str) -> Pointer:
        pointer = self.pointer(name)
        if pointer is None or pointer.promoted is None or not pointer.history:
            raise RegistryError(
                f"feature set {name!r} has no earlier promoted version to roll back to"
            )
        return self.registry.rollback(
            self._partition(name), metric_of=lambda v: self._usable(name, v)
        )

    def _usable(self, name: str, version: int) -> None:
        found = self.get(name, version)
        if found.expires_at is not None:
            raise RegistryError(
                f"feature set {name!r} v{version}: its online items were marked to expire, so "
                "it cannot be promoted again; publish its snapshot as a new version "
                f"({found.snapshot})"
            )

    def mark_expiring(self, name: str, version: int, at: float) -> None:
        self._dynamodb.update_item(
            TableName=self.table,
            Key={"model": {"S": self._partition(name)}, "version": {"S": version_key(version)}},
            UpdateExpression="SET expires_at = :at",
            ExpressionAttributeValues={":at": dynamo.value(at)},
        )


def version_spec(value: Any) -> str:
    spec = str(value) if isinstance(value, int) and not isinstance(value, bool) else value
    if not isinstance(spec, str) or not VERSION_PATTERN.match(spec):
        raise JobFailed(
            f"params.feature_version must be 'current' or a version number; got {value!r}"
        )
    return spec


def snapshot_uri(bucket: str, name: str, version: int) -> S3Uri:
    return S3Uri(bucket, bucket_layout.snapshot_key(name, version))
