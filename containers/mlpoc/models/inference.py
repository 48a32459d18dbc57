"""Serving a registered version: verified download, one onnxruntime session, batched predict.

The predict worker and the API share this module, so a model is loaded and checked one way.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import onnxruntime as ort

from mlpoc.errors import ArtifactError
from mlpoc.models import artifacts, metrics
from mlpoc.models.registry import ModelVersion
from mlpoc.schema import CATEGORY, NUMBER, REGRESSION


@dataclass(frozen=True)
class Predictions:
    labels: list[str]  # a regression's values as text (the predictions table's ``label``)
    confidence: np.ndarray | None  # classification: float32 (rows,); regression: None
    values: np.ndarray | None = None  # regression: float64 (rows,)


INPUT_TYPES = {NUMBER: "tensor(float)", CATEGORY: "tensor(string)"}
CONTRACT = (
    "the plugin contract is one input per feature column, named as the column, [N, 1], "
    "float for numbers and string for categories (or, for a table of numbers only, one float "
    "[N, features] input)"
)


class OnnxModel:
    """A registered version in onnxruntime, fed its schema's columns."""

    def __init__(self, onnx_bytes: bytes, version: ModelVersion) -> None:
        options = ort.SessionOptions()
        # One request's worth of work is small: threads cost more than they give here, and the
        # worker/API already run one process per core.
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        name = f"model {version.model} v{version.version}"
        try:
            self._session = ort.InferenceSession(
                onnx_bytes, sess_options=options, providers=["CPUExecutionProvider"]
            )
        except Exception as error:  # onnxruntime raises its own untyped errors
            raise ArtifactError(f"{name} is not a loadable ONNX graph: {error}") from None
        self.version = version
        self.schema = version.schema
        inputs = {i.name: i.type for i in self._session.get_inputs()}
        wanted = {c.name: INPUT_TYPES[c.type] for c in self.schema.columns}
        if inputs == wanted:
            self._matrix: str | None = None
        elif len(inputs) == 1 and self.schema.numeric and "tensor(float)" in inputs.values():
            self._matrix = next(iter(inputs))
        else:
            raise ArtifactError(
                f"{name} takes {_some(inputs)}, its schema has {_some(wanted)}: {CONTRACT}"
            )
        regression = self.schema.task == REGRESSION
        floats = [
            o.name
            for o in self._session.get_outputs()
            if o.type == "tensor(float)" and (regression or len(o.shape) == 2)  # noqa: PLR2004
        ]
        if not floats:
            raise ArtifactError(
                f"{name} has no "
                + ("float output: a regression model outputs its values as a float tensor"
                   if regression else
                   "2-D float output: a classifier outputs class probabilities as a "
                   "[N, classes] float tensor")
            )  # fmt: skip
        self._output = floats[0]
        self._classes = np.array(version.classes, dtype=object)

    @property
    def features(self) -> list[str]:
        return self.version.features

    def feed(self, columns: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        if self._matrix is not None:
            matrix = np.column_stack([columns[f] for f in self.features]).astype(np.float32)
            return {self._matrix: matrix}
        return {name: np.asarray(values).reshape(-1, 1) for name, values in columns.items()}

    def output(self, columns: Mapping[str, np.ndarray]) -> np.ndarray:
        result = np.asarray(self._session.run([self._output], self.feed(columns))[0])
        rows = len(next(iter(columns.values())))
        if self.schema.task == REGRESSION:
            if result.size != rows:
                raise ArtifactError(
                    f"model {self.version.model} v{self.version.version} gave {result.shape} "
                    f"values for {rows} rows: a regression model outputs one value per row"
                )
            return result.reshape(rows).astype(np.float64)
        if result.shape != (rows, len(self._classes)):
            raise ArtifactError(
                f"model {self.version.model} v{self.version.version} gave probabilities of "
                f"shape {result.shape} for {rows} rows and {len(self._classes)} classes"
            )
        return result

    def predict(self, columns: Mapping[str, np.ndarray]) -> Predictions:
        out = self.output(columns)
        if self.schema.task == REGRESSION:
            return Predictions(labels=[value_text(v) for v in out], confidence=None, values=out)
        best = out.argmax(axis=1)
        return Predictions(
            labels=[str(c) for c in self._classes[best]],
            confidence=out[np.arange(len(best)), best].astype(np.float32),
        )


def value_text(value: float) -> str:
    """A regression value as the predictions table's ``label`` (6 significant digits)."""
    return f"{value:.6g}"


def _some(types: Mapping[str, str], shown: int = 6) -> str:
    items = [f"{k} ({v.removeprefix('tensor(').rstrip(')')})" for k, v in types.items()]
    return "[" + ", ".join(items[:shown]) + (", …" if len(items) > shown else "") + "]"


def load(s3: Any, bucket: str, version: ModelVersion) -> OnnxModel:
    """Download, verify the registered sha256, then (and only then) parse."""
    data = artifacts.read_verified(s3, bucket, version.artifact_key, version.sha256)
    return OnnxModel(data, version)


class ModelCache:
    """A few loaded versions per process, keyed by (model, version, sha256)."""

    def __init__(self, s3: Any, bucket: str, size: int = 4) -> None:
        self._s3 = s3
        self._bucket = bucket
        self._size = size
        self._items: OrderedDict[tuple[str, int, str], OnnxModel] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, version: ModelVersion) -> OnnxModel:
        key = (version.model, version.version, version.sha256)
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
        classifier = load(self._s3, self._bucket, version)
        with self._lock:
            self._items[key] = classifier
            while len(self._items) > self._size:
                self._items.popitem(last=False)
        return classifier


# -- a served model's metrics on rows: what the held-out scores are --------------------------------
class Rows(Protocol):
    """Rows with their truth, as a table's parsed training set holds them."""

    @property
    def columns(self) -> Mapping[str, np.ndarray]: ...

    @property
    def y(self) -> np.ndarray: ...


def score(model: OnnxModel, rows: Rows) -> dict[str, float]:
    """The model's metrics on ``rows``, computed by running its ONNX graph."""
    return evaluate(model, rows)[0]


def evaluate(model: OnnxModel, rows: Rows) -> tuple[dict[str, float], Predictions]:
    """The model's metrics on ``rows`` and its predictions, from running its ONNX graph."""
    predictions = model.predict(rows.columns)
    if predictions.values is not None:
        return metrics.regression(predictions.values, rows.y), predictions
    return metrics.classification(predictions.labels, rows.y), predictions
