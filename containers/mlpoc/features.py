"""Feature sets: features kept outside the model, versioned, published apart from training and
looked up by entity key when a model predicts.

A feature set has a name, an entity key column and typed feature columns. A ``features`` job
(the train workers) publishes a file or a folder as a new **version**:

* an immutable snapshot, ``feature-sets/<set>/<version>.csv`` in the data bucket (the key
  column, then the feature columns, as published);
* the online items, one per entity in the features table: partition ``<set>#<version>``, sort
  the key, ``v`` the values as a JSON list in the version's column order;
* the version record in the models table, under partition ``features:<set>``, with the same
  counter, promotion pointer and rollback as a model's (:mod:`mlpoc.registry`), moved apart
  from any model's.

A train job names a version (``params.feature_set``, ``params.feature_version``: ``current``
by default, the promoted one at the time) and joins its snapshot to its CSV by key, so a model
version is trained on one fixed version: point-in-time correct by construction. The model
version records what it took (``feature_set``: set, version, key, columns and their types).

A model reads the version it was trained with, or the promoted version when that one still has
every column the model takes, with the same type (:func:`binding`); otherwise it keeps its own
and says why (``note``: ``/v1/health``, the models page). Realtime requests by key read the
online items in one ``BatchGetItem``; predict jobs by key join the snapshot.

Old versions expire: each publish marks the online items of every version no longer needed
with ``expires_at`` (DynamoDB's TTL deletes them later). Needed are the new version, the
promoted one and the one a rollback would return to, and every version a model's promoted
version, or the version its rollback would return to, reads.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from mlpoc import backoff, datasets, dynamo, layout
from mlpoc.contracts import MODEL_NAME_PATTERN, VERSION_PATTERN, S3Uri
from mlpoc.errors import DatasetError, JobFailed, RegistryError, TransientError
from mlpoc.registry import FEATURES_NAMESPACE, ModelVersion, Pointer, Registry, version_key
from mlpoc.schema import CATEGORY, Column, infer, is_missing, number, problem, refuse

# BatchGetItem reads at most 100 keys a call: a realtime request by key fits in one
MAX_KEYS = 100
LOOKUP_ATTEMPTS = 4
KEEP_DAYS = 7.0  # how long a superseded version's items live after they are marked
MAX_KEEP_DAYS = 365.0
PROMOTE = ("auto", "always", "never")
SHOWN = 5


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


# -- publishing ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Table:
    """A feature set file (or folder), checked: unique keys, typed columns."""

    key: str
    columns: tuple[Column, ...]
    keys: list[str]
    cells: list[list[str]]  # per row, the feature cells as published (stripped)

    def snapshot(self) -> str:
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow([self.key, *(c.name for c in self.columns)])
        writer.writerows([k, *row] for k, row in zip(self.keys, self.cells, strict=True))
        return out.getvalue()

    def values(self, row: int) -> str:
        """One row's online value: a JSON list, numbers as numbers, missing as null."""
        out: list[Any] = []
        for column, cell in zip(self.columns, self.cells[row], strict=True):
            if is_missing(cell):
                out.append(None)
            elif column.type == CATEGORY:
                out.append(cell)
            else:
                out.append(number(cell))
        return json.dumps(out, separators=(",", ":"), allow_nan=False)


def parse_table(parts: Sequence[tuple[str, str]], key: str, ignore: Sequence[str] = ()) -> Table:
    """The files of one publish (``(where, text)``, the same columns in each) as one table."""
    header: list[str] | None = None
    rows: list[list[str]] = []
    origin: list[tuple[str, int]] = []  # each row's file and line
    for where, text in parts:
        found, found_rows = datasets.table(text, where)
        if header is None:
            header = found
            if key not in header:
                raise DatasetError(
                    f"{where} has no key column {key!r}; columns found: "
                    f"{', '.join(header[:10])}. Name the entity key with params.key"
                )
        elif set(found) != set(header):
            raise DatasetError(
                f"{where} has other columns than {parts[0][0]} (a feature set's files share "
                f"their columns): {sorted(set(found) ^ set(header))[:10]}"
            )
        at = [found.index(h) for h in header]
        rows.extend([row[i] for i in at] for row in found_rows)
        origin.extend((where, line) for line in range(2, len(found_rows) + 2))
    if header is None:
        raise DatasetError("no CSV to publish")
    k = header.index(key)
    keys = [row[k].strip() for row in rows]
    problems = []
    blank = [i for i, value in enumerate(keys) if not value or len(value) > datasets.MAX_ID_CHARS]
    if blank:
        too_long = f"keys are empty or over {datasets.MAX_ID_CHARS} characters"
        problems.append(problem(key, [origin[i][1] for i in blank], too_long))
    seen: dict[str, int] = {}
    twice = []
    for i, value in enumerate(keys):
        if value and value in seen:
            twice.append(f"{value!r} ({origin[seen[value]][0]} line {origin[seen[value]][1]}, "
                         f"{origin[i][0]} line {origin[i][1]})")  # fmt: skip
        seen.setdefault(value, i)
    if twice:
        problems.append(f"{len(twice)} key(s) appear twice: {'; '.join(twice[:3])}")
    where = parts[0][0] if len(parts) == 1 else f"{parts[0][0]} and {len(parts) - 1} more"
    refuse(where, problems, "A feature set holds one row per entity key: fix those rows")
    names = [h for h in header if h != key and h not in ignore]
    if not names:
        raise DatasetError(f"{where} has no feature columns besides the key {key!r}")
    at = [header.index(n) for n in names]
    cells = [[row[i].strip() for i in at] for row in rows]
    columns = infer(names, [[row[j] for row in cells] for j in range(len(names))], where)
    return Table(key=key, columns=columns, keys=keys, cells=cells)


@dataclass(frozen=True)
class Snapshot:
    """One version's snapshot, indexed by key (what a train or predict job joins)."""

    version: FeatureVersion
    names: list[str]
    rows: dict[str, list[str]]

    @classmethod
    def read(cls, s3: Any, version: FeatureVersion) -> Snapshot:
        uri = S3Uri.parse(version.snapshot)
        text = datasets.fetch(s3, uri)
        digest = hashlib.sha256(text.encode()).hexdigest()
        if digest != version.sha256:
            raise DatasetError(
                f"the snapshot of feature set {version.name} v{version.version} ({uri}) does "
                "not match the sha256 recorded when it was published: it was changed; publish "
                "the data again as a new version"
            )
        header, rows = datasets.table(text, str(uri))
        k = header.index(version.key)
        names = [h for h in header if h != version.key]
        at = [header.index(n) for n in names]
        return cls(version, names, {row[k]: [row[i] for i in at] for row in rows})


@dataclass(frozen=True)
class Joined:
    text: str
    rows: int  # rows kept
    unmatched: int  # rows dropped: their key is not in the version
    examples: list[str] = field(default_factory=list)  # some of those keys

    def summary(self) -> dict[str, Any]:
        return {
            "rows": self.rows,
            "unknown_keys": self.unmatched,
            **({"unknown_examples": self.examples} if self.examples else {}),
        }


def join(text: str, where: str, snapshot: Snapshot, *, keep_key: bool) -> Joined:
    """``text`` with the snapshot's columns, by key. A cell the CSV fills itself wins (a
    correction keeps the features it was served with); a row without a key keeps its own cells;
    a row whose key the version lacks is dropped and counted. ``keep_key``: keep the key column
    (a predict job's, or a train job's id column); else it is not a feature and goes."""
    version = snapshot.version
    header, rows = datasets.table(text, where)
    if version.key not in header:
        raise DatasetError(
            f"{where} has no column {version.key!r}, the key of feature set {version.name} "
            f"v{version.version}; columns found: {', '.join(header[:10])}"
        )
    k = header.index(version.key)
    inline = {name: header.index(name) for name in snapshot.names if name in header}
    added = [name for name in snapshot.names if name not in inline]
    place = {name: i for i, name in enumerate(snapshot.names)}
    kept = [i for i, h in enumerate(header) if keep_key or i != k]
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([*(header[i] for i in kept), *added])
    unmatched, count = 0, 0
    examples: list[str] = []
    for row in rows:
        entity = row[k].strip()
        if not entity:  # its own cells only (a correction, built from what was served)
            writer.writerow([*(row[i] for i in kept), *("" for _ in added)])
            count += 1
            continue
        values = snapshot.rows.get(entity)
        if values is None:
            unmatched += 1
            if len(examples) < SHOWN:
                examples.append(entity)
            continue
        merged = list(row)
        for name, i in inline.items():
            if is_missing(merged[i]):
                merged[i] = values[place[name]]
        writer.writerow([*(merged[i] for i in kept), *(values[place[n]] for n in added)])
        count += 1
    if not count:
        raise DatasetError(
            f"none of the {len(rows)} rows of {where} has a key in feature set {version.name} "
            f"v{version.version} (keys such as {', '.join(map(repr, examples[:3]))}): publish "
            "those entities, or name another version"
        )
    return Joined(out.getvalue(), count, unmatched, examples)


def record(bound: FeatureVersion, joined: Joined, columns: Iterable[Column]) -> dict[str, Any]:
    """What a model version keeps of the feature set it was trained with: the set's columns it
    takes, with the types it took them as."""
    mine = {c.name for c in bound.columns}
    return {
        "name": bound.name,
        "version": bound.version,
        "key": bound.key,
        "columns": [{"name": c.name, "type": c.type} for c in columns if c.name in mine],
        "rows": joined.rows,
        "unknown_keys": joined.unmatched,
    }


def version_spec(value: Any) -> str:
    spec = str(value) if isinstance(value, int) and not isinstance(value, bool) else value
    if not isinstance(spec, str) or not VERSION_PATTERN.match(spec):
        raise JobFailed(
            f"params.feature_version must be 'current' or a version number; got {value!r}"
        )
    return spec


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


def snapshot_uri(bucket: str, name: str, version: int) -> S3Uri:
    return S3Uri(bucket, layout.snapshot_key(name, version))
