"""The held-out rows: which rows of a table a version is scored on, decided per row.

A row's share is a hash of its id (or of its cells when the table has none), so the assignment
is the same in every retrain: no later version trains on rows an earlier one was tested on, and
a candidate meets the live version on the same rows."""

from __future__ import annotations

import dataclasses
import hashlib

import numpy as np

from mlpoc.data import datasets
from mlpoc.errors import (
    DatasetError,
)
from mlpoc.schema import CLASSIFICATION

MIN_ROWS = 10  # fewer rows than this cannot be split and scored


def held_out_share(key: str) -> float:
    """Where a row falls in [0, 1): held out when under ``test_size`` (the same in every run)."""
    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big") / 2**64


@dataclasses.dataclass(frozen=True)
class Split:
    train: datasets.TrainingSet
    test: datasets.TrainingSet
    shares: np.ndarray  # each held-out row's share (rows under another version's size too)


def split(data: datasets.TrainingSet, test_size: float) -> Split:
    rows = len(data.y)
    if rows < MIN_ROWS:
        raise DatasetError(f"the dataset has {rows} rows; training needs at least {MIN_ROWS}")
    if data.schema.task == CLASSIFICATION:
        classes = np.unique(data.y)
        if len(classes) < 2:  # noqa: PLR2004
            raise DatasetError(
                f"the label column has one class ({classes[0]!r}); it needs two or more"
            )
    shares = np.array([held_out_share(key) for key in data.keys])
    held = shares < test_size
    if not held.any() or held.all():
        raise DatasetError(
            f"none of the {rows} rows fell on the {'held-out' if not held.any() else 'training'} "
            f"side at test_size {test_size} (rows are assigned by their id or content, and "
            "identical rows go together): add rows, or change test_size"
        )
    train = data.take(~held)
    if data.schema.task == CLASSIFICATION and len(np.unique(train.y)) < 2:  # noqa: PLR2004
        raise DatasetError("the training rows hold one class: add rows of the other classes")
    return Split(train=train, test=data.take(held), shares=shares[held])
