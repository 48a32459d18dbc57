"""The default plugin: a scikit-learn classifier exported with skl2onnx.

``params``: ``estimator`` (``logistic_regression``, the default, or ``random_forest``),
``C`` and ``max_iter`` for the former, ``n_estimators`` and ``max_depth`` for the latter,
``seed``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from skl2onnx import to_onnx
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from mlpoc.errors import PluginError
from mlpoc.plugins import ExportedModel, trainer

ESTIMATORS = ("logistic_regression", "random_forest")
TARGET_OPSET = 17


def _number(params: Mapping[str, Any], name: str, default: float, kind: type, low: float) -> Any:
    value = params.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or value < low:
        raise PluginError(f"params.{name} must be a {kind.__name__} >= {low}; got {value!r}")
    if kind is int and int(value) != value:
        raise PluginError(f"params.{name} must be a whole number; got {value!r}")
    return kind(value)


def build(params: Mapping[str, Any]) -> Any:
    estimator = params.get("estimator", "logistic_regression")
    seed = _number(params, "seed", 0, int, 0)
    if estimator == "logistic_regression":
        return make_pipeline(
            StandardScaler(),
            LogisticRegression(
                C=_number(params, "C", 1.0, float, 1e-9),
                max_iter=_number(params, "max_iter", 1000, int, 1),
                random_state=seed,
            ),
        )
    if estimator == "random_forest":
        depth = params.get("max_depth")
        return RandomForestClassifier(
            n_estimators=_number(params, "n_estimators", 100, int, 1),
            max_depth=None if depth is None else _number(params, "max_depth", 0, int, 1),
            random_state=seed,
            n_jobs=1,
        )
    raise PluginError(f"params.estimator must be one of {list(ESTIMATORS)}; got {estimator!r}")


@trainer("sklearn", libraries=("scikit-learn", "skl2onnx", "onnx"))
def train_sklearn(x: np.ndarray, y: np.ndarray, params: Mapping[str, Any]) -> ExportedModel:
    model = build(params)
    model.fit(x, y)
    final = model.steps[-1][1] if hasattr(model, "steps") else model
    onnx_model = to_onnx(
        model,
        x[:1].astype(np.float32),
        options={id(final): {"zipmap": False}},
        target_opset=TARGET_OPSET,
    )
    return ExportedModel(
        onnx=onnx_model.SerializeToString(), classes=[str(c) for c in final.classes_]
    )
