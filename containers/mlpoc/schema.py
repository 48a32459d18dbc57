"""A table's schema: which column is the label, which the id, which are ignored, and the type of
every feature column, read from the data and recorded with each model version.

A feature column is a **number** when every filled cell parses as a finite number, else a
**category** (text). A cell is missing when it is empty or one of :data:`MISSING` (any case).
The model gets numbers as float32 with NaN for a missing cell, and categories as text with
``""`` for a missing cell, in training and in serving alike: a plugin handles both inside its
ONNX graph (the built-in one imputes the median and one-hot encodes).

The train job's table parameters (``params``): ``label_column`` (default ``label``),
``id_column`` (optional: the rows' ids, never a feature; it also decides the held-out split),
``ignore_columns`` (a list), and ``task``: ``classification`` (default) or ``regression``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from mlpoc.errors import DatasetError, JobFailed

NUMBER, CATEGORY = "number", "category"
CLASSIFICATION, REGRESSION = "classification", "regression"
TASKS = (CLASSIFICATION, REGRESSION)
MISSING = frozenset({"", "na", "n/a", "nan", "null", "none"})
LABEL = "label"
ID = "id"
MAX_CATEGORIES = 500  # distinct values of one category column (more: an id or free text)
ID_LIKE_ROWS = 50  # a text column whose every value differs, over this many rows, is an id
# the train job's parameters that shape the table (the worker's, not the plugin's)
TABLE_PARAMS = frozenset({"label_column", "id_column", "ignore_columns", "task"})
MAX_NAME = 256
MOSTLY_NUMBERS = 0.9  # a column this much numbers, with text in some cells, has typos
SHOWN_LINES = 5


def problem(column: str, lines: Sequence[int], what: str) -> str:
    """One column's problem in a CSV: how many cells, and the first few line numbers."""
    shown = ", ".join(str(n) for n in lines[:SHOWN_LINES]) + (
        ", …" if len(lines) > SHOWN_LINES else ""
    )
    return f"column {column!r}: {len(lines)} {what} (line{'s' if len(lines) > 1 else ''} {shown})"


def refuse(where: str, problems: Sequence[str], advice: str) -> None:
    """Raise one DatasetError for every column that has problems (nothing when none has)."""
    if problems:
        raise DatasetError(f"{where}: " + "; ".join(problems) + f". {advice}")


def is_missing(cell: str) -> bool:
    return cell.strip().lower() in MISSING


def number(cell: str) -> float | None:
    """The cell as a finite number; NaN when it is missing; None when it is not a number."""
    text = cell.strip()
    if text.lower() in MISSING:
        return math.nan
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


@dataclass(frozen=True)
class Column:
    name: str
    type: str  # NUMBER | CATEGORY
    categories: tuple[str, ...] = ()  # the values seen in training (categories only)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "type": self.type,
            **({"categories": list(self.categories)} if self.type == CATEGORY else {}),
        }


@dataclass(frozen=True)
class Layout:
    """What a train job says of its table (the parameters above), checked before any read."""

    label: str = LABEL
    id: str | None = None
    ignore: tuple[str, ...] = ()
    task: str = CLASSIFICATION

    @classmethod
    def from_params(cls, params: Mapping[str, Any], base: Schema | None = None) -> Layout:
        """The job's table parameters; over a folder (``base``: the live version's schema),
        the ones it does not name are the live version's."""
        inherited = (
            cls(label=base.label, id=base.id, ignore=base.ignored, task=base.task)
            if base is not None
            else cls()
        )
        label = params.get("label_column", inherited.label)
        id_column = params.get("id_column", inherited.id)
        ignore = params.get("ignore_columns", list(inherited.ignore))
        task = params.get("task", inherited.task)
        # a table has a label; the id column is optional (None: the rows have no id)
        for name, value in (("label_column", label), ("id_column", id_column)):
            if (value is not None or name == "label_column") and (
                not isinstance(value, str) or not 0 < len(value) <= MAX_NAME
            ):
                raise JobFailed(f"params.{name} must be a column name; got {value!r}")
        if not isinstance(ignore, list) or not all(isinstance(c, str) and c for c in ignore):
            raise JobFailed(f"params.ignore_columns must be a list of column names; got {ignore!r}")
        if task not in TASKS:
            raise JobFailed(f"params.task must be one of {list(TASKS)}; got {task!r}")
        if id_column == label or {label, id_column} & set(ignore):
            raise JobFailed(
                "params.label_column, params.id_column and params.ignore_columns must name "
                "different columns"
            )
        return cls(label=label, id=id_column, ignore=tuple(ignore), task=task)

    def skipped(self) -> set[str]:
        """Columns that are never features."""
        return {self.label, *([self.id] if self.id else []), *self.ignore}


@dataclass(frozen=True)
class Schema:
    columns: tuple[Column, ...]
    label: str = LABEL
    task: str = CLASSIFICATION
    id: str | None = None
    ignored: tuple[str, ...] = ()
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def features(self) -> list[str]:
        return [c.name for c in self.columns]

    def column(self, name: str) -> Column | None:
        return next((c for c in self.columns if c.name == name), None)

    @property
    def numeric(self) -> bool:
        return all(c.type == NUMBER for c in self.columns)

    @property
    def id_column(self) -> str:
        """The id column of a prediction CSV: the training table's, else ``id``."""
        return self.id or ID

    def accepts(self, other: Schema) -> str | None:
        """None when a model of this schema can predict rows of ``other`` (same task, each of
        its columns there with the same type); else why not."""
        if self.task != other.task:
            return f"it is a {self.task} model, the data is for {other.task}"
        if self.label != other.label:
            return f"it predicts {self.label!r}, the data's label is {other.label!r}"
        for column in self.columns:
            theirs = other.column(column.name)
            if theirs is None:
                return f"it needs the column {column.name!r}"
            if theirs.type != column.type:
                return f"it takes {column.name!r} as a {column.type}, the data has a {theirs.type}"
        return None

    def to_json(self) -> dict[str, Any]:
        return {
            "task": self.task,
            "label": self.label,
            **({"id": self.id} if self.id else {}),
            **({"ignored": list(self.ignored)} if self.ignored else {}),
            "columns": [c.to_json() for c in self.columns],
        }

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> Schema:
        return cls(
            columns=tuple(
                Column(
                    name=str(c["name"]),
                    type=str(c["type"]),
                    categories=tuple(str(v) for v in c.get("categories", ())),
                )
                for c in raw["columns"]
            ),
            label=str(raw.get("label", LABEL)),
            task=str(raw.get("task", CLASSIFICATION)),
            id=raw.get("id"),
            ignored=tuple(raw.get("ignored", ())),
        )

    @classmethod
    def numbers(cls, features: Sequence[str]) -> Schema:
        """The schema of a version recorded before schemas were: numeric columns, ``label``."""
        return cls(columns=tuple(Column(f, NUMBER) for f in features))


def infer(names: Sequence[str], cells: Sequence[Sequence[str]], where: str) -> tuple[Column, ...]:
    """Each column's type from its cells (``cells[c]``: column c, top to bottom)."""
    columns, problems = [], []
    for name, column in zip(names, cells, strict=True):
        filled = [cell.strip() for cell in column if not is_missing(cell)]
        if not filled:
            problems.append(f"column {name!r} is empty in every row")
            continue
        texts = [line for line, cell in enumerate(column, start=2) if number(cell) is None]
        if not texts:
            columns.append(Column(name, NUMBER))
            continue
        if (len(filled) - len(texts)) / len(filled) >= MOSTLY_NUMBERS:  # 9 in 10 is 0.9
            problems.append(problem(name, texts, "cells are not numbers in a column of numbers"))
            continue
        seen = sorted(set(filled))
        if len(seen) > MAX_CATEGORIES or (len(filled) > ID_LIKE_ROWS and len(seen) == len(filled)):
            problems.append(
                f"column {name!r} has {len(seen)} distinct text values in {len(filled)} rows "
                "(an id or free text, not a category: name it with params.id_column)"
            )
            continue
        columns.append(Column(name, CATEGORY, tuple(seen)))
    refuse(
        where,
        problems,
        "Fix those cells (a missing value may be left empty), or list the column in "
        "params.ignore_columns",
    )
    return tuple(columns)
