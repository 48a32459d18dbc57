"""A train job's run record: how the version did, on what data, and what its inputs looked like.

Written into the version's ``metadata.json`` beside the artifact (``run``), and indexed in the
registry item (``extra["run"]``: the record's key, the data's hash, row counts):

* ``evaluation``: on the held-out rows, from the ONNX graph as served. Classification: per class
  precision, recall, F1 and support, and the confusion matrix (rows: the truth, columns: the
  prediction, in ``labels`` order). Regression: a summary of the residuals (prediction - truth).
* ``data``: the identity of what was read: the URI, the S3 object version, the sha256 of the
  text read (UTF-8), the rows; for a folder, the digest of its inputs
  (``mlpoc.data.dataset_versions``).
* ``profile``: the reference for drift. Per numeric feature, the training rows' deciles (bin
  edges) and the share of rows in each bin and missing; per categorical feature, the share of
  each category (the most frequent :data:`MOST_CATEGORIES`, the rest as one) and missing; and
  the held-out predictions: the confidence in fixed bins (classification) or deciles of the
  values (regression). Population stability (PSI) against a later sample needs nothing else.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from botocore.exceptions import ClientError

from mlpoc.models.inference import Predictions
from mlpoc.models.registry import ModelVersion
from mlpoc.schema import CATEGORY, Schema

DIGITS = 6
DECILES = np.linspace(0.1, 0.9, 9)
CONFIDENCE_EDGES = [round(x, 1) for x in np.linspace(0.1, 0.9, 9)]  # 10 bins over [0, 1]
MOST_CATEGORIES = 50
OTHER = "(other)"


@dataclass(frozen=True)
class DataIdentity:
    """What a train job read: enough to say whether two versions saw the same data."""

    uri: str
    sha256: str
    version_id: str | None = None
    inputs: str | None = None  # a folder's inputs digest

    @classmethod
    def of(
        cls, uri: str, text: str, version_id: str | None = None, inputs: str | None = None
    ) -> DataIdentity:
        """``text``'s identity: its sha256 (of the text as read, UTF-8), and where it came from."""
        digest = hashlib.sha256(text.encode()).hexdigest()
        return cls(uri=uri, sha256=digest, version_id=version_id, inputs=inputs)

    def to_json(self) -> dict[str, Any]:
        return {
            "uri": self.uri,
            "sha256": self.sha256,
            **({"version_id": self.version_id} if self.version_id else {}),
            **({"inputs": self.inputs} if self.inputs else {}),
        }


def _round(values: Sequence[float] | np.ndarray) -> list[float]:
    return [round(float(v), DIGITS) for v in values]


def classification(predicted: Sequence[str], truth: np.ndarray) -> dict[str, Any]:
    """Per-class precision/recall/F1/support and the confusion matrix (truth by prediction)."""
    pred = np.asarray(predicted, dtype=object)
    true = np.asarray(truth, dtype=object)
    labels = sorted({*pred.tolist(), *true.tolist()})
    index = {label: i for i, label in enumerate(labels)}
    matrix = np.zeros((len(labels), len(labels)), dtype=np.int64)
    np.add.at(matrix, ([index[t] for t in true], [index[p] for p in pred]), 1)
    per_class = {}
    for i, label in enumerate(labels):
        tp = int(matrix[i, i])
        predicted_as = int(matrix[:, i].sum())
        support = int(matrix[i, :].sum())
        precision = tp / predicted_as if predicted_as else 0.0
        recall = tp / support if support else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        per_class[str(label)] = {
            "precision": round(precision, DIGITS),
            "recall": round(recall, DIGITS),
            "f1": round(f1, DIGITS),
            "support": support,
        }
    return {
        "per_class": per_class,
        "confusion": {"labels": [str(x) for x in labels], "matrix": matrix.tolist()},
    }


def regression(values: np.ndarray, truth: np.ndarray) -> dict[str, Any]:
    """The residuals (prediction - truth): mean, spread, quantiles, the largest miss."""
    residual = np.asarray(values, np.float64) - np.asarray(truth, np.float64)
    names = ("p5", "p25", "p50", "p75", "p95")
    quantiles = _round(np.quantile(residual, [0.05, 0.25, 0.5, 0.75, 0.95]))
    return {
        "residuals": {
            "mean": round(float(residual.mean()), DIGITS),
            "std": round(float(residual.std()), DIGITS),
            "quantiles": dict(zip(names, quantiles, strict=True)),
            "max_abs": round(float(np.abs(residual).max()), DIGITS),
        }
    }


def evaluation(predictions: Predictions, truth: np.ndarray) -> dict[str, Any]:
    if predictions.values is not None:
        return regression(predictions.values, truth)
    return classification(predictions.labels, truth)


def numeric_profile(values: np.ndarray, edges: Sequence[float] | None = None) -> dict[str, Any]:
    """Deciles of the filled values as bin edges (or the given ``edges``), the share of the
    filled rows per bin (len(edges) + 1 bins), and the share of missing rows."""
    values = np.asarray(values, np.float64)
    filled = values[~np.isnan(values)]
    if edges is None:
        edges = np.unique(np.quantile(filled, DECILES)).tolist() if len(filled) else []
    counts = np.bincount(np.searchsorted(edges, filled, side="right"), minlength=len(edges) + 1)
    return {
        "edges": _round(edges),
        "shares": _round(counts / max(len(filled), 1)),
        "missing": round(1 - len(filled) / max(len(values), 1), DIGITS),
    }


def category_profile(values: np.ndarray, categories: Sequence[str] | None = None) -> dict[str, Any]:
    """The share of each category among the filled rows (the given ``categories``, else the most
    frequent :data:`MOST_CATEGORIES`; every other value as :data:`OTHER`), and of missing rows."""
    values = np.asarray(values, dtype=object)
    filled = values[values != ""]
    names, counts = np.unique(filled.astype(str), return_counts=True)
    found = dict(zip(names.tolist(), counts.tolist(), strict=True))
    if categories is None:
        categories = [n for n, _ in sorted(found.items(), key=lambda x: (-x[1], x[0]))]
        categories = sorted(categories[:MOST_CATEGORIES])
    total = max(len(filled), 1)
    shares = {c: round(found.get(c, 0) / total, DIGITS) for c in categories}
    rest = total - sum(found.get(c, 0) for c in categories) if len(filled) else 0
    return {
        "shares": {**shares, OTHER: round(rest / total, DIGITS)},
        "missing": round(1 - len(filled) / max(len(values), 1), DIGITS),
    }


def output_profile(predictions: Predictions) -> dict[str, Any]:
    if predictions.values is not None:
        return {"value": numeric_profile(predictions.values)}
    confidence = predictions.confidence if predictions.confidence is not None else np.ones(0)
    return {
        "confidence": numeric_profile(confidence, CONFIDENCE_EDGES),
        "label": category_profile(np.asarray(predictions.labels, dtype=object)),
    }


def profile(
    schema: Schema, columns: Mapping[str, np.ndarray], held_out: Predictions
) -> dict[str, Any]:
    """The drift reference: each feature of the training rows, and the held-out predictions."""
    features = {
        c.name: (
            {"type": CATEGORY, **category_profile(columns[c.name])}
            if c.type == CATEGORY
            else {"type": c.type, **numeric_profile(columns[c.name])}
        )
        for c in schema.columns
    }
    return {"features": features, "output": output_profile(held_out)}


def index_item(record_key: str, data: DataIdentity) -> dict[str, Any]:
    """What the registry item keeps of the run record (the record itself is in S3)."""
    return {"record": record_key, "data_sha256": data.sha256}


def read_json(s3: Any, bucket: str, key: str) -> dict[str, Any] | None:
    """A JSON object the kit wrote to a bucket; None when it is not there (deleted, expired or
    never written)."""
    try:
        body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    except ClientError as error:
        if error.response["Error"]["Code"] not in {"NoSuchKey", "404"}:
            raise
        return None
    found: dict[str, Any] = json.loads(body)
    return found


def metadata(s3: Any, bucket: str, version: ModelVersion) -> dict[str, Any] | None:
    """The version's metadata.json (its run record under ``run``); None when it is gone."""
    return read_json(s3, bucket, version.metadata_key)
