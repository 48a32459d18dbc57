"""The default plugin: a scikit-learn model exported with skl2onnx, preprocessing included.

``params``: ``estimator``: for classification ``logistic_regression`` (the default; ``C``,
``max_iter``) or ``random_forest`` (``n_estimators``, ``max_depth``); for regression ``ridge``
(the default; ``alpha``) or ``random_forest``; and ``seed``.

Inside the ONNX graph, before the estimator: missing numbers are imputed with the training
median; categories are one-hot encoded (a missing one is its own category, ``""``; one never
seen in training encodes as all zeros). A table of numbers only gets one float matrix input;
a table with categories one input per column.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from skl2onnx import to_onnx
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from mlpoc.errors import PluginError
from mlpoc.plugins import ExportedModel, TrainingData, trainer
from mlpoc.schema import CATEGORY, NUMBER, REGRESSION, Schema

ESTIMATORS = {
    "classification": ("logistic_regression", "random_forest"),
    "regression": ("ridge", "random_forest"),
}
LINEAR = ("logistic_regression", "ridge")
TARGET_OPSET = {"": 17, "ai.onnx.ml": 3}


def _number(params: Mapping[str, Any], name: str, default: float, kind: type, low: float) -> Any:
    value = params.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or value < low:
        raise PluginError(f"params.{name} must be a {kind.__name__} >= {low}; got {value!r}")
    if kind is int and int(value) != value:
        raise PluginError(f"params.{name} must be a whole number; got {value!r}")
    return kind(value)


def estimator(params: Mapping[str, Any], task: str) -> Any:
    choices = ESTIMATORS[task]
    name = params.get("estimator", choices[0])
    seed = _number(params, "seed", 0, int, 0)
    if name not in choices:
        raise PluginError(
            f"params.estimator must be one of {list(choices)} for {task}; got {name!r}"
        )
    if name == "logistic_regression":
        return LogisticRegression(
            C=_number(params, "C", 1.0, float, 1e-9),
            max_iter=_number(params, "max_iter", 1000, int, 1),
            random_state=seed,
        )
    if name == "ridge":
        return Ridge(alpha=_number(params, "alpha", 1.0, float, 0.0))
    depth = params.get("max_depth")
    forest = RandomForestRegressor if task == REGRESSION else RandomForestClassifier
    return forest(
        n_estimators=_number(params, "n_estimators", 100, int, 1),
        max_depth=None if depth is None else _number(params, "max_depth", 0, int, 1),
        random_state=seed,
        n_jobs=1,
    )


def _numbers(scale: bool) -> Pipeline:
    imputer = SimpleImputer(strategy="median", keep_empty_features=True)
    return make_pipeline(imputer, StandardScaler()) if scale else make_pipeline(imputer)


def build(params: Mapping[str, Any], schema: Schema) -> Pipeline:
    """The preprocessing and the estimator, as one pipeline (one ONNX graph)."""
    model = estimator(params, schema.task)
    scale = params.get("estimator", ESTIMATORS[schema.task][0]) in LINEAR
    if schema.numeric:
        return Pipeline([("numbers", _numbers(scale)), ("model", model)])
    numbers = [c.name for c in schema.columns if c.type == NUMBER]
    categories = [c.name for c in schema.columns if c.type == CATEGORY]
    encoder = ColumnTransformer(
        [
            *([("numbers", _numbers(scale), numbers)] if numbers else []),
            ("categories", OneHotEncoder(handle_unknown="ignore"), categories),
        ]
    )
    return Pipeline([("columns", encoder), ("model", model)])


@trainer("sklearn", libraries=("scikit-learn", "skl2onnx", "onnx"))
def train_sklearn(data: TrainingData, params: Mapping[str, Any]) -> ExportedModel:
    pipeline = build(params, data.schema)
    numeric = data.schema.numeric
    pipeline.fit(data.matrix if numeric else data.frame, data.y)
    final = pipeline.steps[-1][1]
    options = {} if data.task == REGRESSION else {id(final): {"zipmap": False}}
    onnx_model = (
        to_onnx(pipeline, data.matrix[:1], options=options, target_opset=TARGET_OPSET)
        if numeric
        else to_onnx(
            pipeline,
            initial_types=data.onnx_inputs(),
            options=options,
            target_opset=TARGET_OPSET,
        )
    )
    classes = [] if data.task == REGRESSION else [str(c) for c in final.classes_]
    return ExportedModel(onnx=onnx_model.SerializeToString(), classes=classes)
