"""The real dataset the kit ships with: scikit-learn's handwritten digits (1,797 8x8 images).

It is bundled inside scikit-learn (no download), which makes it the dataset of the demo, the
tests and the benchmarks. Each image becomes 64 columns ``pixel_0`` … ``pixel_63`` (0-16).
"""

from __future__ import annotations

import csv
import io
from functools import cache

import numpy as np
from sklearn.datasets import load_digits

FEATURES = [f"pixel_{i}" for i in range(64)]


@cache
def _digits() -> tuple[np.ndarray, np.ndarray]:
    bunch = load_digits()
    return bunch.data.astype(np.int64), bunch.target.astype(np.int64)


def digits(rows: slice | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(x, y) of the digits, optionally a slice of the rows."""
    x, y = _digits()
    if rows is None:
        return x, y
    return x[rows], y[rows]


def training_csv(rows: slice | None = None) -> str:
    """A training CSV: 64 feature columns and ``label``."""
    x, y = digits(rows)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([*FEATURES, "label"])
    writer.writerows([*map(int, row), int(label)] for row, label in zip(x, y, strict=True))
    return out.getvalue()


def prediction_csv(rows: slice | None = None, *, id_prefix: str = "digit-") -> str:
    """A prediction CSV: ``id`` and the 64 feature columns (ids are the row numbers)."""
    x, _ = digits(rows)
    start = 0 if rows is None or rows.start is None else rows.start
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["id", *FEATURES])
    writer.writerows([f"{id_prefix}{start + i}", *map(int, row)] for i, row in enumerate(x))
    return out.getvalue()


def batch_csv(rows: int, *, id_prefix: str = "row-") -> str:
    """A prediction CSV of ``rows`` rows (the digits over and over, ids ``row-0`` …): the large
    batch of the sharding test and benchmark."""
    x, _ = digits()
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["id", *FEATURES])
    writer.writerows([f"{id_prefix}{i}", *map(int, x[i % len(x)])] for i in range(rows))
    return out.getvalue()


INK = ("light", "medium", "heavy")


def check_csv(task: str = "classification", rows: int = 600) -> str:
    """A small table shaped the way teams have theirs, made from the digits (what
    ``mlpoc plugin check`` trains on when given no CSV): an ``id``; every second pixel, with
    every 7th cell left blank; ``ink``, a category (light, medium, heavy by the image's total
    ink; every 11th blank); and ``label``: the digit, or for ``regression`` the total ink."""
    x, y = digits(slice(0, rows))
    ink = x.sum(axis=1)
    edges = np.quantile(ink, [1 / 3, 2 / 3])
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    pixels = list(range(0, 64, 2))
    writer.writerow(["id", *(FEATURES[p] for p in pixels), "ink", "label"])
    for r in range(len(y)):
        cells = ["" if (r + p) % 7 == 0 else str(int(x[r, p])) for p in pixels]
        category = "" if r % 11 == 0 else INK[int(np.searchsorted(edges, ink[r]))]
        label = str(int(ink[r])) if task == "regression" else str(int(y[r]))
        writer.writerow([f"row-{r}", *cells, category, label])
    return out.getvalue()


def image_key(row: int) -> str:
    """The entity key of a digit in the ``images`` feature set: ``image-<row>``."""
    return f"image-{row}"


def feature_set_csv(rows: slice | None = None, *, shift: int = 0, ink_as: str = "category") -> str:
    """The digits as a feature set keyed by image: ``image``, the 64 pixels (each plus
    ``shift``, clipped to 16: a refreshed version of the same images) and ``ink`` (light,
    medium, heavy; ``ink_as="number"``: the total ink, a change of the column's type)."""
    x, _ = digits(rows)
    start = 0 if rows is None or rows.start is None else rows.start
    ink = x.sum(axis=1)
    edges = np.quantile(ink, [1 / 3, 2 / 3])
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["image", *FEATURES, "ink"])
    for r in range(len(x)):
        pixels = np.clip(x[r] + shift, 0, 16)
        kind = str(int(ink[r])) if ink_as == "number" else INK[int(np.searchsorted(edges, ink[r]))]
        writer.writerow([image_key(start + r), *map(int, pixels), kind])
    return out.getvalue()


def keyed_csv(rows: slice, *, labels: bool) -> str:
    """Rows by key: ``image`` and ``label`` (a train job joined with the feature set), or
    ``id`` and ``image`` (a predict job by key)."""
    _, y = digits(rows)
    start = rows.start or 0
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["image", "label"] if labels else ["id", "image"])
    for r in range(len(y)):
        key = image_key(start + r)
        writer.writerow([key, int(y[r])] if labels else [f"digit-{start + r}", key])
    return out.getvalue()
