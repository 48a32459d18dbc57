"""Dataset CSVs: parsing and validation with errors that name the column and the lines.

Train: a header, feature columns and a label column (``label`` unless the job names another,
:mod:`mlpoc.schema`); the features are typed from the data. Predict: a header, the id column
and (at least) the feature columns the version was trained on, in any order, checked against
its schema. Problems are summarized per column: how many cells, and the first few lines.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from botocore.exceptions import ClientError

from mlpoc.aws import bucket_layout
from mlpoc.errors import DatasetError
from mlpoc.runtime.contract import S3Uri
from mlpoc.runtime.environment import MAX_DATASET_BYTES
from mlpoc.schema import (
    CATEGORY,
    ID,
    LABEL,
    REGRESSION,
    Column,
    Layout,
    Schema,
    infer,
    is_missing,
    number,
    problem,
    refuse,
)

__all__ = ["ID", "LABEL", "PredictionSet", "TrainingSet", "parse_prediction", "parse_training"]
MAX_ID_CHARS = 512
# what S3 answers for a missing object (HEAD has no body, so no NoSuchKey)
NOT_FOUND = frozenset({"404", "NoSuchKey", "NotFound"})


@dataclass(frozen=True)
class TrainingSet:
    schema: Schema
    columns: dict[str, np.ndarray]  # feature -> float32 (NaN: missing) or str ("": missing)
    y: np.ndarray  # str labels (classification) or float64 values (regression), (rows,)
    keys: list[str]  # each row's id, or its feature cells: what decides its held-out side

    @property
    def features(self) -> list[str]:
        return self.schema.features

    def take(self, rows: np.ndarray) -> TrainingSet:
        """The rows at ``rows`` (indices or a mask)."""
        index = np.flatnonzero(rows) if rows.dtype == bool else rows
        return TrainingSet(
            schema=self.schema,
            columns={name: values[index] for name, values in self.columns.items()},
            y=self.y[index],
            keys=[self.keys[i] for i in index],
        )


@dataclass(frozen=True)
class PredictionSet:
    ids: list[str]
    columns: dict[str, np.ndarray]  # the version's features, typed as its schema says

    def rows(self, start: int, stop: int) -> dict[str, np.ndarray]:
        return {name: values[start:stop] for name, values in self.columns.items()}


def listed_csvs(s3: Any, folder: S3Uri) -> list[dict[str, Any]]:
    """Every .csv object under ``folder`` (S3's listing entries: Key, Size, LastModified), page
    by page: what a predict job, a dataset build and a monitor job read of a folder."""
    found: list[dict[str, Any]] = []
    for page in s3.get_paginator("list_objects_v2").paginate(
        Bucket=folder.bucket, Prefix=folder.key
    ):
        found.extend(
            entry
            for entry in page.get("Contents", [])
            if entry["Key"].lower().endswith(bucket_layout.DATASET_SUFFIX)
        )
    return found


def size_of(s3: Any, uri: S3Uri) -> int:
    """The dataset object's size in bytes (one HEAD); a DatasetError when it does not exist."""
    try:
        head = s3.head_object(Bucket=uri.bucket, Key=uri.key)
    except ClientError as error:
        if error.response["Error"]["Code"] in NOT_FOUND:
            raise DatasetError(f"dataset {uri} does not exist: upload it first") from None
        raise
    return int(head["ContentLength"])


def fetch(s3: Any, uri: S3Uri, size: int | None = None) -> str:
    """The dataset's text; ``size`` when the caller read it already (no second HEAD)."""
    return fetch_versioned(s3, uri, size)[0]


def fetch_versioned(s3: Any, uri: S3Uri, size: int | None = None) -> tuple[str, str | None]:
    """The dataset's text and the S3 object version read (None: an unversioned bucket)."""
    size = size_of(s3, uri) if size is None else size
    if size > MAX_DATASET_BYTES:
        raise DatasetError(
            f"dataset {uri} is {size} bytes; the worker reads at most "
            f"{MAX_DATASET_BYTES} bytes: split it into several files (a predict job over a "
            "large CSV is sharded)"
        )
    response = s3.get_object(Bucket=uri.bucket, Key=uri.key)
    data: bytes = response["Body"].read()
    version_id = response.get("VersionId")
    try:
        return data.decode("utf-8-sig"), (None if version_id in (None, "null") else version_id)
    except UnicodeDecodeError as error:
        raise DatasetError(f"dataset {uri} is not UTF-8 text ({error})") from None


def table(text: str, where: str) -> tuple[list[str], list[list[str]]]:
    """A CSV's header and rows, or a DatasetError naming the line (any dataset's first step)."""
    reader = csv.reader(io.StringIO(text))
    try:
        header = [h.strip() for h in next(reader)]
    except StopIteration:
        raise DatasetError(f"{where} is empty: it needs a header line") from None
    except csv.Error as error:
        raise DatasetError(f"{where}: the header is not valid CSV ({error})") from None
    if len(set(header)) != len(header):
        dupes = sorted({h for h in header if header.count(h) > 1})
        raise DatasetError(f"{where}: duplicate column name(s) {dupes}")
    if any(not h for h in header):
        raise DatasetError(f"{where}: the header has an empty column name")
    rows: list[list[str]] = []
    try:
        for line_number, row in enumerate(reader, start=2):
            if not row:
                continue
            if len(row) != len(header):
                raise DatasetError(
                    f"{where}, line {line_number}: {len(row)} values for {len(header)} columns"
                )
            rows.append(row)
    except csv.Error as error:
        raise DatasetError(f"{where}: not valid CSV ({error})") from None
    if not rows:
        raise DatasetError(f"{where} has a header but no rows")
    return header, rows


def typed(
    column: Column, cells: Sequence[str], problems: list[str], first_line: int = 2
) -> np.ndarray:
    """One column's cells as the model takes them (float32 with NaN, or text with "");
    cells that are not numbers in a number column are added to ``problems``."""
    if column.type == CATEGORY:
        return np.array(["" if is_missing(c) else c.strip() for c in cells], dtype=object)
    values = np.empty(len(cells), dtype=np.float32)
    bad = []
    for r, cell in enumerate(cells):
        value = number(cell)
        if value is None:
            bad.append(r + first_line)
            value = math.nan
        values[r] = value
    if bad:
        problems.append(problem(column.name, bad, "cells are not numbers"))
    return values


def _some(names: Sequence[str], shown: int = 10) -> str:
    return ", ".join(names[:shown]) + (", …" if len(names) > shown else "")


def _labels(cells: list[str], layout: Layout, where: str) -> np.ndarray:
    blank = [line for line, cell in enumerate(cells, start=2) if is_missing(cell)]
    if layout.task == REGRESSION:
        values = [number(cell) for cell in cells]
        wrong = [line for line, v in enumerate(values, start=2) if v is None]
        refuse(
            where,
            [
                *([problem(layout.label, blank, "rows have no value")] if blank else []),
                *([problem(layout.label, wrong, "values are not numbers")] if wrong else []),
            ],
            "A regression label is a number in every row: fix or drop those rows",
        )
        return np.array(values, dtype=np.float64)
    refuse(
        where,
        [problem(layout.label, blank, "rows have no label")] if blank else [],
        "Label those rows or drop them",
    )
    return np.array([cell.strip() for cell in cells], dtype=object).astype(str)


def parse_training(text: str, where: str, layout: Layout | None = None) -> TrainingSet:
    layout = layout or Layout()
    header, rows = table(text, where)
    named = [c for c in (layout.label, layout.id) if c is not None and c not in header]
    if named:
        raise DatasetError(
            f"{where} has no column {named[0]!r}; columns found: {_some(header)}. Name the "
            "label column with params.label_column (and the id column with params.id_column)"
        )
    features = [h for h in header if h not in layout.skipped()]
    if not features:
        raise DatasetError(
            f"{where} has no feature columns besides {_some(sorted(layout.skipped()))}"
        )
    at = {name: header.index(name) for name in header}
    cells = {name: [row[at[name]] for row in rows] for name in header}
    y = _labels(cells[layout.label], layout, where)
    columns = infer(features, [cells[f] for f in features], where)
    schema = Schema(
        columns=columns, label=layout.label, task=layout.task, id=layout.id, ignored=layout.ignore
    )
    problems: list[str] = []
    typed_columns = {c.name: typed(c, cells[c.name], problems) for c in columns}
    if layout.id is not None:
        keys = _ids(cells[layout.id], where)
    else:
        keys = ["\x1f".join(row[at[f]].strip() for f in features) for row in rows]
    return TrainingSet(schema=schema, columns=typed_columns, y=y, keys=keys)


def _ids(cells: Sequence[str], where: str) -> list[str]:
    ids = [cell.strip() for cell in cells]
    seen: set[str] = set()
    for line, item_id in enumerate(ids, start=2):
        if not item_id or len(item_id) > MAX_ID_CHARS:
            raise DatasetError(f"{where}, line {line}: id must be 1-{MAX_ID_CHARS} characters")
        if item_id in seen:
            raise DatasetError(f"{where}, line {line}: id {item_id!r} appears twice")
        seen.add(item_id)
    return ids


def parse_prediction(text: str, where: str, schema: Schema) -> PredictionSet:
    """A CSV to predict: the schema's id column (``id`` unless the model was trained with
    another) and its feature columns, in any order; other columns are left alone."""
    header, rows = table(text, where)
    id_column = schema.id_column
    if id_column not in header:
        raise DatasetError(
            f"{where} has no {id_column!r} column; a prediction CSV has {id_column!r} and the "
            "model's feature columns"
        )
    missing = [f for f in schema.features if f not in header]
    if missing:
        raise DatasetError(
            f"{where} lacks feature column(s) the model was trained on: {_some(missing)}"
        )
    ids = _ids([row[header.index(id_column)] for row in rows], where)
    problems: list[str] = []
    columns = {
        c.name: typed(c, [row[header.index(c.name)] for row in rows], problems)
        for c in schema.columns
    }
    refuse(where, problems, "Fix those cells (leave a missing value empty)")
    return PredictionSet(ids=ids, columns=columns)
