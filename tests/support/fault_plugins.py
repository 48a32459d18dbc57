"""Training plugins that misbehave on purpose, loaded by the workers under test through
``MLPOC_PLUGINS`` — the same seam a team uses for its own framework.

* ``slow``: sleeps ``params.sleep_seconds`` then trains the default model (long jobs, kills);
* ``crash``: always raises an unexpected error (a bug: the job fails at once);
* ``unreachable``: always raises ConnectionError (a service it needs is down: retried until
  the queue's last receive, then the dead-letter queue);
* ``bad_onnx``: returns bytes that are not an ONNX model.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from mlpoc.plugins import ExportedModel, TrainingData, get, trainer


@trainer("slow", libraries=("scikit-learn",))
def train_slow(data: TrainingData, params: Mapping[str, Any]) -> ExportedModel:
    time.sleep(float(params.get("sleep_seconds", 5)))
    return get("sklearn").train(data, {})


@trainer("crash")
def train_crash(data: TrainingData, params: Mapping[str, Any]) -> ExportedModel:
    raise RuntimeError("boom: the plugin crashed")


@trainer("unreachable")
def train_unreachable(data: TrainingData, params: Mapping[str, Any]) -> ExportedModel:
    raise ConnectionError("the feature service did not answer")


@trainer("bad_onnx")
def train_bad_onnx(data: TrainingData, params: Mapping[str, Any]) -> ExportedModel:
    return ExportedModel(onnx=b"not an onnx graph", classes=[str(c) for c in sorted(set(data.y))])
