"""Serving a registered version: verified download, one onnxruntime session, batched predict.

The predict worker and the API share this module, so a model is loaded and checked one way.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import numpy as np
import onnxruntime as ort

from mlpoc import artifacts
from mlpoc.errors import ArtifactError
from mlpoc.registry import ModelVersion


@dataclass(frozen=True)
class Predictions:
    labels: list[str]
    confidence: np.ndarray  # float32 (rows,)


class OnnxClassifier:
    def __init__(self, onnx_bytes: bytes, version: ModelVersion) -> None:
        options = ort.SessionOptions()
        # One request's worth of work is small: threads cost more than they give here, and the
        # worker/API already run one process per core.
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        try:
            self._session = ort.InferenceSession(
                onnx_bytes, sess_options=options, providers=["CPUExecutionProvider"]
            )
        except Exception as error:  # onnxruntime raises its own untyped errors
            raise ArtifactError(
                f"model {version.model} v{version.version} is not a loadable ONNX graph: {error}"
            ) from None
        inputs = self._session.get_inputs()
        if len(inputs) != 1:
            raise ArtifactError(
                f"model {version.model} v{version.version} has {len(inputs)} inputs; "
                "the plugin contract is one float32 [N, features] input"
            )
        self._input = inputs[0].name
        probability_outputs = [
            o.name
            for o in self._session.get_outputs()
            if o.type == "tensor(float)" and len(o.shape) == 2  # noqa: PLR2004
        ]
        if not probability_outputs:
            raise ArtifactError(
                f"model {version.model} v{version.version} has no 2-D float output; the plugin "
                "contract is class probabilities as a [N, classes] float tensor"
            )
        self._output = probability_outputs[0]
        self.version = version
        self._classes = np.array(version.classes, dtype=object)

    @property
    def features(self) -> list[str]:
        return self.version.features

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        result = self._session.run([self._output], {self._input: np.asarray(x, np.float32)})
        return np.asarray(result[0])

    def predict(self, x: np.ndarray) -> Predictions:
        proba = self.predict_proba(x)
        best = proba.argmax(axis=1)
        return Predictions(
            labels=[str(c) for c in self._classes[best]],
            confidence=proba[np.arange(len(best)), best].astype(np.float32),
        )


def load(s3: Any, bucket: str, version: ModelVersion) -> OnnxClassifier:
    """Download, verify the registered sha256, then (and only then) parse."""
    data = artifacts.read_verified(s3, bucket, version.artifact_key, version.sha256)
    return OnnxClassifier(data, version)


class ModelCache:
    """A few loaded versions per process, keyed by (model, version, sha256)."""

    def __init__(self, s3: Any, bucket: str, size: int = 4) -> None:
        self._s3 = s3
        self._bucket = bucket
        self._size = size
        self._items: OrderedDict[tuple[str, int, str], OnnxClassifier] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, version: ModelVersion) -> OnnxClassifier:
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
