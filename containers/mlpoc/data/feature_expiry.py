"""Expiry of feature set versions: each publish marks the online items of every version no longer
needed with ``expires_at`` (DynamoDB's TTL deletes them later).

Needed are the new version, the promoted one and the one a rollback would return to, and every
version a model's promoted version, or the version its rollback would return to, reads."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mlpoc.aws import dynamo
from mlpoc.data.feature_binding import binding, trained_with
from mlpoc.data.feature_sets import FeatureSets
from mlpoc.errors import JobFailed, RegistryError
from mlpoc.models.registry import Registry

KEEP_DAYS = 7.0  # how long a superseded version's items live after they are marked


MAX_KEEP_DAYS = 365.0


def keep_days(params: Mapping[str, Any]) -> float:
    value = params.get("keep_days", KEEP_DAYS)
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not (0 <= value <= MAX_KEEP_DAYS)
    ):
        raise JobFailed(f"params.keep_days must be a number from 0 to {MAX_KEEP_DAYS:g}; got "
                        f"{value!r}")  # fmt: skip
    return float(value)


def needed(sets: FeatureSets, registry: Registry, name: str) -> set[int]:
    """The versions of ``name`` whose online items must stay: the promoted one and the one a
    rollback returns to, and those of every model's promoted version and its rollback target."""
    keep: set[int] = set()
    pointer = sets.pointer(name)  # read once, for every model's binding too
    if pointer is not None and pointer.promoted is not None:
        keep.update([pointer.promoted, *pointer.history[-1:]])
    for model in registry.pointers():
        if model.promoted is None:
            continue
        for served in {model.promoted, *model.history[-1:]}:
            try:
                version = registry.get(model.model, served)
            except RegistryError:
                continue
            trained = trained_with(version)
            if trained is None or trained["name"] != name:
                continue
            keep.add(int(trained["version"]))
            found = binding(sets, version, pointer)
            if found is not None:
                keep.add(found.version)
    return keep


def expire(
    dynamodb: Any,
    table: str,
    sets: FeatureSets,
    name: str,
    keep: set[int],
    *,
    at: float,
    writer: Any,
) -> list[int]:
    """Mark the online items of every version of ``name`` outside ``keep`` to expire at
    ``at`` (each item is put again with ``expires_at``), then the version itself."""
    marked = []
    for version in sets.versions(name):
        if version.version in keep or version.expires_at is not None:
            continue
        for item in dynamo.partition(dynamodb, table, "set", version.partition):
            writer.put(table, {**item, "expires_at": int(at)})
        writer.flush()
        sets.mark_expiring(name, version.version, at)
        marked.append(version.version)
    return marked
