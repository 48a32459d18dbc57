"""The ``lightgbm`` plugin: gradient-boosted trees for a table of numbers and categories.

The worked example of docs/bring-your-own-model.md. One scikit-learn pipeline, exported to one
ONNX graph, so that what the worker evaluates is what the API serves:

* missing numbers are imputed with the training median;
* categories are one-hot encoded (a missing one is its own category, one never seen encodes as
  all zeros);
* then LightGBM's ``LGBMClassifier`` or ``LGBMRegressor``, converted by onnxmltools.

``params``: ``n_estimators`` (100), ``learning_rate`` (0.1), ``num_leaves`` (31),
``min_child_samples`` (20), ``seed`` (0).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from lightgbm import LGBMClassifier, LGBMRegressor
from onnxmltools.convert.lightgbm.operator_converters.LightGbm import convert_lightgbm
from skl2onnx import to_onnx, update_registered_converter
from skl2onnx.common.shape_calculator import (
    calculate_linear_classifier_output_shapes,
    calculate_linear_regressor_output_shapes,
)
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder

from mlpoc.plugins import (
    CATEGORY,
    NUMBER,
    REGRESSION,
    ExportedModel,
    PluginError,
    TrainingData,
    trainer,
)

TARGET_OPSET = {"": 17, "ai.onnx.ml": 3}

update_registered_converter(
    LGBMClassifier,
    "LightGbmLGBMClassifier",
    calculate_linear_classifier_output_shapes,
    convert_lightgbm,
    options={"nocl": [True, False], "zipmap": [True, False, "columns"]},
)
update_registered_converter(
    LGBMRegressor,
    "LightGbmLGBMRegressor",
    calculate_linear_regressor_output_shapes,
    convert_lightgbm,
    options={"split": None},
)


def _positive(params: Mapping[str, Any], name: str, default: float, kind: type) -> Any:
    value = params.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise PluginError(f"params.{name} must be a number > 0; got {value!r}")
    if kind is int and int(value) != value:
        raise PluginError(f"params.{name} must be a whole number; got {value!r}")
    return kind(value)


def build(data: TrainingData, params: Mapping[str, Any]) -> Pipeline:
    booster = LGBMRegressor if data.task == REGRESSION else LGBMClassifier
    model = booster(
        n_estimators=_positive(params, "n_estimators", 100, int),
        learning_rate=_positive(params, "learning_rate", 0.1, float),
        num_leaves=_positive(params, "num_leaves", 31, int),
        min_child_samples=_positive(params, "min_child_samples", 20, int),
        random_state=int(params.get("seed", 0)),
        n_jobs=1,
        verbose=-1,
    )
    numbers = [c.name for c in data.schema.columns if c.type == NUMBER]
    categories = [c.name for c in data.schema.columns if c.type == CATEGORY]
    encode = ColumnTransformer(
        [
            *([("numbers", SimpleImputer(strategy="median", keep_empty_features=True), numbers)]
              if numbers else []),
            *([("categories", OneHotEncoder(handle_unknown="ignore"), categories)]
              if categories else []),
        ]
    )  # fmt: skip
    return Pipeline([("columns", encode), ("model", model)])


@trainer("lightgbm", libraries=("lightgbm", "onnxmltools", "skl2onnx"))
def train_lightgbm(data: TrainingData, params: Mapping[str, Any]) -> ExportedModel:
    pipeline = build(data, params).fit(data.frame, data.y)
    model = pipeline.steps[-1][1]
    options = {} if data.task == REGRESSION else {id(model): {"zipmap": False}}
    graph = to_onnx(
        pipeline, initial_types=data.onnx_inputs(), options=options, target_opset=TARGET_OPSET
    )
    classes = [] if data.task == REGRESSION else [str(c) for c in model.classes_]
    return ExportedModel(onnx=graph.SerializeToString(), classes=classes)
