"""Dataset CSVs: parsing and validation with errors that name the row and the column.

Train: a header, feature columns and ``label``. Predict: a header, ``id`` and (at least) the
feature columns the model was trained on, in any order. Values are numbers; labels and ids are
text.
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

from mlpoc.contracts import S3Uri
from mlpoc.errors import DatasetError
from mlpoc.settings import MAX_DATASET_BYTES

LABEL = "label"
ID = "id"
MAX_ID_CHARS = 512
# what S3 answers for a missing object (HEAD has no body, so no NoSuchKey)
NOT_FOUND = frozenset({"404", "NoSuchKey", "NotFound"})


@dataclass(frozen=True)
class TrainingSet:
    features: list[str]
    x: np.ndarray  # float32, (rows, features)
    y: np.ndarray  # str labels, (rows,)


@dataclass(frozen=True)
class PredictionSet:
    ids: list[str]
    x: np.ndarray  # float32, (rows, features) in the model's feature order


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
    size = size_of(s3, uri) if size is None else size
    if size > MAX_DATASET_BYTES:
        raise DatasetError(
            f"dataset {uri} is {size} bytes; the worker reads at most "
            f"{MAX_DATASET_BYTES} bytes: split it into several files (a predict job over a "
            "large CSV is sharded)"
        )
    data: bytes = s3.get_object(Bucket=uri.bucket, Key=uri.key)["Body"].read()
    try:
        return data.decode("utf-8-sig")
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


def _numbers(
    rows: list[list[str]], columns: Sequence[int], names: Sequence[str], where: str
) -> np.ndarray:
    x = np.empty((len(rows), len(columns)), dtype=np.float32)
    for r, row in enumerate(rows):
        for c, column in enumerate(columns):
            raw = row[column]
            try:
                number = float(raw)
            except ValueError:
                raise DatasetError(
                    f"{where}, line {r + 2}, column {names[c]!r}: {raw!r} is not a number"
                ) from None
            if not math.isfinite(number):
                raise DatasetError(
                    f"{where}, line {r + 2}, column {names[c]!r}: {raw!r} is not a finite "
                    "number: impute or drop missing values before uploading"
                )
            x[r, c] = number
    return x


def _some(names: Sequence[str], shown: int = 10) -> str:
    return ", ".join(names[:shown]) + (", …" if len(names) > shown else "")


def parse_training(text: str, where: str) -> TrainingSet:
    header, rows = table(text, where)
    if LABEL not in header:
        raise DatasetError(
            f"{where} has no {LABEL!r} column; a training CSV has feature columns and "
            f"{LABEL!r} (columns found: {_some(header)})"
        )
    features = [h for h in header if h not in (LABEL, ID)]
    if not features:
        raise DatasetError(f"{where} has no feature columns besides {LABEL!r}")
    label_at = header.index(LABEL)
    y = np.array([row[label_at].strip() for row in rows], dtype=object)
    if any(not label for label in y):
        line = next(i for i, label in enumerate(y) if not label) + 2
        raise DatasetError(f"{where}, line {line}: the label is empty")
    x = _numbers(rows, [header.index(f) for f in features], features, where)
    return TrainingSet(features=features, x=x, y=y.astype(str))


def parse_prediction(text: str, where: str, features: Sequence[str]) -> PredictionSet:
    header, rows = table(text, where)
    if ID not in header:
        raise DatasetError(
            f"{where} has no {ID!r} column; a prediction CSV has {ID!r} and features"
        )
    missing = [f for f in features if f not in header]
    if missing:
        raise DatasetError(
            f"{where} lacks feature column(s) the model was trained on: {_some(missing)}"
        )
    id_at = header.index(ID)
    ids = [row[id_at].strip() for row in rows]
    seen: set[str] = set()
    for line, item_id in enumerate(ids, start=2):
        if not item_id or len(item_id) > MAX_ID_CHARS:
            raise DatasetError(f"{where}, line {line}: id must be 1-{MAX_ID_CHARS} characters")
        if item_id in seen:
            raise DatasetError(f"{where}, line {line}: id {item_id!r} appears twice")
        seen.add(item_id)
    x = _numbers(rows, [header.index(f) for f in features], features, where)
    return PredictionSet(ids=ids, x=x)
