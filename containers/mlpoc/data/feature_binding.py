"""Which feature set version a model version reads, and reading that version's online rows by key.

A model reads the promoted version when it still has every column the model takes, with the same
type (:func:`binding`); otherwise the version it was trained with, and says why. Realtime
requests by key read the online items in one ``BatchGetItem`` (:func:`fetch`)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from mlpoc.aws import backoff
from mlpoc.data.feature_sets import FeatureSets, partition
from mlpoc.errors import TransientError
from mlpoc.models.registry import ModelVersion, Pointer

# BatchGetItem reads at most 100 keys a call: a realtime request by key fits in one
MAX_KEYS = 100


LOOKUP_ATTEMPTS = 4


# -- what a model reads -----------------------------------------------------------------------
class Unread:
    """A pointer :func:`binding` reads itself (``None`` is a pointer read and not found)."""


UNREAD = Unread()


@dataclass(frozen=True)
class Binding:
    """The feature set version a model version reads, and where its columns are in the items."""

    name: str
    version: int  # the version read
    trained: int  # the version the model was trained with
    key: str
    names: tuple[str, ...]  # the set's columns the model takes
    positions: tuple[int, ...]  # their places in the version's value lists
    note: str | None = None  # why a promoted version is not read
    promoted: int | None = None  # the set's promoted version when this was decided

    @property
    def partition(self) -> str:
        return partition(self.name, self.version)

    def take(self, values: Sequence[Any]) -> list[Any]:
        """The model's columns of one item's values."""
        return [values[p] for p in self.positions]

    def to_json(self) -> dict[str, Any]:
        return {
            "set": self.name,
            "version": self.version,
            "trained_with": self.trained,
            "key": self.key,
            **({"note": self.note} if self.note else {}),
        }


def trained_with(version: ModelVersion) -> dict[str, Any] | None:
    """What a model version recorded of its feature set (None: it takes inline features)."""
    found = version.extra.get("feature_set")
    return dict(found) if found else None


def binding(
    sets: FeatureSets, model: ModelVersion, pointer: Pointer | Unread | None = UNREAD
) -> Binding | None:
    """The version ``model`` reads: the promoted one when it has every column the model takes,
    with the same type; else the one it was trained with (and the reason, in ``note``).
    ``pointer``: the set's pointer when the caller has read it already."""
    trained = trained_with(model)
    if trained is None:
        return None
    name, own = str(trained["name"]), int(trained["version"])
    wanted = list(trained["columns"])
    if isinstance(pointer, Unread):
        pointer = sets.pointer(name)
    chosen, note = None, None
    if pointer is not None and pointer.promoted is not None and pointer.promoted != own:
        promoted = sets.get(name, pointer.promoted)
        refusal = promoted.refusal(wanted)
        if refusal is None:
            chosen = promoted
        else:
            note = (
                f"feature set {name} v{promoted.version} is promoted, but {refusal}: model "
                f"{model.model} v{model.version} keeps reading v{own}, the version it was "
                "trained with (train it again to take the new version)"
            )
    chosen = chosen or sets.get(name, own)
    at = {c.name: i for i, c in enumerate(chosen.columns)}
    return Binding(
        name=name,
        version=chosen.version,
        trained=own,
        key=chosen.key,
        names=tuple(str(c["name"]) for c in wanted),
        positions=tuple(at[str(c["name"])] for c in wanted),
        note=note,
        promoted=pointer.promoted if pointer is not None else None,
    )


def fetch(
    dynamodb: Any,
    table: str,
    wanted: Sequence[tuple[str, str]],
    *,
    sleep: Callable[[float], None] = time.sleep,
) -> dict[tuple[str, str], list[Any]]:
    """The online values of ``(partition, key)`` pairs (at most :data:`MAX_KEYS` distinct, of
    any versions) as stored: one BatchGetItem, plus one per retry of the keys DynamoDB left
    unprocessed (throttling). Pairs not found are absent."""
    pairs = list(dict.fromkeys(wanted))
    if len(pairs) > MAX_KEYS:
        raise ValueError(f"at most {MAX_KEYS} keys a lookup; got {len(pairs)}")
    request: dict[str, Any] = {
        table: {
            "Keys": [{"set": {"S": p}, "key": {"S": k}} for p, k in pairs],
            "ProjectionExpression": "#s, #k, v",
            "ExpressionAttributeNames": {"#s": "set", "#k": "key"},
        }
    }
    found: dict[tuple[str, str], list[Any]] = {}
    for attempt in range(LOOKUP_ATTEMPTS):
        response = dynamodb.batch_get_item(RequestItems=request)
        for item in response["Responses"].get(table, ()):
            found[item["set"]["S"], item["key"]["S"]] = json.loads(item["v"]["S"])
        request = response.get("UnprocessedKeys") or {}
        if not request:
            return found
        sleep(backoff.BATCH_WRITE.step(attempt + 1))
    raise TransientError(
        f"DynamoDB left feature keys unprocessed {LOOKUP_ATTEMPTS} times (throttled); try again"
    )
