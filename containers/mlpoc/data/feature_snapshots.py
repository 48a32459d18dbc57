"""A feature set version's table: parsing a published file, its immutable snapshot, and the join of
a snapshot to a training CSV by key (inline cells win; unknown keys are dropped and counted)."""

from __future__ import annotations

import csv
import hashlib
import io
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from mlpoc.data import datasets
from mlpoc.data.feature_sets import SHOWN, FeatureVersion
from mlpoc.errors import DatasetError
from mlpoc.runtime.contract import S3Uri
from mlpoc.schema import CATEGORY, Column, infer, is_missing, number, problem, refuse


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
