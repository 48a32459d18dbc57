"""``mlpoc plugin check`` and ``mlpoc plugin new``: a plugin proven on a sample in seconds, before
any job is sent, and a new one scaffolded in the team's repository.

The check trains the plugin on the rows a train job would (the same parsing, the same held-out
split), then holds its ONNX graph to the contract the worker and the API hold it to, in
onnxruntime: the inputs match the table's schema, the output has one probability per class (or
one value per row), the classes are the labels it was trained on, and a row of missing values
and never-seen categories is answered. It reports the held-out metrics of the graph itself.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mlpoc import plugins
from mlpoc.data import datasets, digits
from mlpoc.data.held_out import split
from mlpoc.errors import ArtifactError, PluginError
from mlpoc.models.inference import OnnxModel, score
from mlpoc.models.registry import ModelVersion
from mlpoc.schema import CATEGORY, REGRESSION, Layout

NAME = re.compile(r"^[a-z][a-z0-9_]{1,30}$")
UNSEEN = "\x00never seen in training"


@dataclass(frozen=True)
class Report:
    plugin: str
    task: str
    train_rows: int
    test_rows: int
    seconds: float
    metrics: dict[str, float]
    inputs: list[str]
    classes: list[str]
    onnx_bytes: int


def check(
    name: str,
    text: str,
    where: str,
    *,
    layout: Layout | None = None,
    params: dict[str, Any] | None = None,
    test_size: float = 0.2,
) -> Report:
    """Train ``name`` on ``text`` and hold its ONNX graph to the contract; a PluginError says
    what broke it."""
    plugins.load()
    plugin = plugins.get(name)
    data = datasets.parse_training(text, where, layout or Layout())
    held = split(data, test_size)
    started = time.monotonic()
    exported = plugins.run_train(plugin, plugins.TrainingData.of(held.train), params or {})
    seconds = time.monotonic() - started
    version = ModelVersion(
        model="check",
        version=1,
        sha256="",
        artifact_key="",
        metadata_key="",
        features=data.features,
        classes=exported.classes,
        metrics={},
        job_id="check",
        dataset=where,
        plugin=name,
        created_at=time.time(),
        extra={"schema": data.schema.to_json()},
    )
    try:
        model = OnnxModel(exported.onnx, version)
        metrics = score(model, held.test)
        model.predict(_blank_row(data.schema))
    except ArtifactError as error:
        raise PluginError(f"the plugin {name!r} breaks the ONNX contract: {error}") from None
    except Exception as error:  # onnxruntime's own errors on a row the contract allows
        raise plugins.PluginCrashed(
            f"the ONNX model of {name!r}, run by onnxruntime,", error
        ) from error
    if data.schema.task != REGRESSION:
        trained = sorted({str(v) for v in held.train.y})
        if sorted(exported.classes) != trained:
            raise PluginError(
                f"the plugin {name!r} names classes {exported.classes[:10]}, but was trained on "
                f"{trained[:10]}: ExportedModel.classes lists the labels in the output's order"
            )
    return Report(
        plugin=name,
        task=data.schema.task,
        train_rows=len(held.train.y),
        test_rows=len(held.test.y),
        seconds=round(seconds, 3),
        metrics=metrics,
        inputs=data.features,
        classes=exported.classes,
        onnx_bytes=len(exported.onnx),
    )


def _blank_row(schema: Any) -> dict[str, np.ndarray]:
    """One row with every number missing and every category one never seen: a served model
    must answer it (the API and predict jobs let both through)."""
    return {
        c.name: np.array([UNSEEN], dtype=object)
        if c.type == CATEGORY
        else np.array([np.nan], dtype=np.float32)
        for c in schema.columns
    }


PYPROJECT = """\
# A model plugin: its own package, its own pinned dependencies. `make install` installs it into
# the kit's environment (local mode, the tests); listed in cdk.json's mlpoc:plugins, it is
# installed into the worker and GPU images. The API serves ONNX and never carries it.
[build-system]
requires = ["setuptools>=61"]
build-backend = "setuptools.build_meta"

[project]
name = "mlpoc-{dashed}"
version = "0.1.0"
description = "mlpoc plugin: {name}"
requires-python = ">=3.11"
# Pin what the plugin needs beyond the worker's own (scikit-learn, skl2onnx, onnx, pandas),
# e.g. "xgboost==3.2.0".
dependencies = []

[project.entry-points."mlpoc.plugins"]
{name} = "mlpoc_{name}"

[tool.setuptools]
packages = ["mlpoc_{name}"]
"""

MODULE = '''\
"""The ``{name}`` plugin. Replace the estimator with your own; keep the preprocessing inside
the pipeline, so that it is in the ONNX graph the API serves.

``data.frame``: the feature columns (numbers as float32 with NaN, categories as text with "");
``data.y``: the labels, or the values of a regression; ``data.schema``: names and types.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from skl2onnx import to_onnx
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import ExtraTreesClassifier, ExtraTreesRegressor
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder

from mlpoc.plugins import CATEGORY, NUMBER, REGRESSION, ExportedModel, TrainingData, trainer


@trainer("{name}", libraries=("scikit-learn", "skl2onnx"))
def train(data: TrainingData, params: Mapping[str, Any]) -> ExportedModel:
    numbers = [c.name for c in data.schema.columns if c.type == NUMBER]
    categories = [c.name for c in data.schema.columns if c.type == CATEGORY]
    steps = []
    if numbers:
        imputer = SimpleImputer(strategy="median", keep_empty_features=True)
        steps.append(("numbers", imputer, numbers))
    if categories:
        steps.append(("categories", OneHotEncoder(handle_unknown="ignore"), categories))
    regression = data.task == REGRESSION
    forest = ExtraTreesRegressor if regression else ExtraTreesClassifier
    model = forest(n_estimators=int(params.get("n_estimators", 100)), random_state=0, n_jobs=1)
    pipeline = Pipeline([("columns", ColumnTransformer(steps)), ("model", model)])
    pipeline.fit(data.frame, data.y)
    options = {{}} if regression else {{id(model): {{"zipmap": False}}}}
    graph = to_onnx(pipeline, initial_types=data.onnx_inputs(), options=options)
    classes = [] if regression else [str(c) for c in model.classes_]
    return ExportedModel(onnx=graph.SerializeToString(), classes=classes)
'''

TEST = '''\
"""The ``{name}`` plugin keeps the ONNX contract on a table with categories and blanks, for
both tasks (the check `mlpoc plugin check {name}` runs)."""

from __future__ import annotations

from mlpoc.plugins import Layout
from mlpoc.plugins.check import check, sample_table


def test_{name}_classifies_a_table_with_categories_and_blanks() -> None:
    text = sample_table("classification")
    report = check("{name}", text, "sample.csv", layout=Layout(id="id"))
    assert report.metrics["accuracy"] > 0.8
    assert "ink" in report.inputs  # the category column is an input of its own


def test_{name}_regresses() -> None:
    text = sample_table("regression")
    report = check("{name}", text, "sample.csv", layout=Layout(id="id", task="regression"))
    assert report.metrics["r2"] > 0.5
'''


def sample_table(task: str = "classification") -> str:
    """The small mixed table ``mlpoc plugin check`` trains on (numbers, a category, blanks, an
    id), as CSV text: for a plugin's own test."""
    return digits.check_csv(task)


def scaffold(name: str, root: Path) -> list[Path]:
    """Write ``root/<name>/`` (package, pyproject, test); refuse a bad or taken name."""
    if not NAME.match(name):
        raise PluginError(
            f"plugin name {name!r}: 2-31 characters, lowercase letters, digits and _, "
            "starting with a letter"
        )
    plugins.load()
    if name in plugins.names():
        raise PluginError(f"a plugin named {name!r} exists already: pick another name")
    folder = root / name
    if folder.exists():
        raise PluginError(f"{folder} exists already: pick another name or remove it")
    files = {
        folder / "pyproject.toml": PYPROJECT.format(name=name, dashed=name.replace("_", "-")),
        folder / f"mlpoc_{name}" / "__init__.py": MODULE.format(name=name),
        folder / f"test_mlpoc_{name}.py": TEST.format(name=name),
    }
    for path, text in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return list(files)
