"""The plugin seam: how a team brings its own framework without touching the worker loop.

A plugin is one function that trains on a table and returns the model as ONNX::

    from mlpoc.plugins import CATEGORY, ExportedModel, PluginError, TrainingData, trainer

    @trainer("lightgbm", libraries=("lightgbm", "onnxmltools"))
    def train_lightgbm(data: TrainingData, params):
        model = make_pipeline(encoder_for(data.schema), LGBMClassifier()).fit(data.frame, data.y)
        onnx_model = skl2onnx.to_onnx(model, initial_types=data.onnx_inputs(), ...)
        return ExportedModel(onnx=onnx_model.SerializeToString(), classes=data.classes(model))

``data.frame`` is a pandas DataFrame of the feature columns, typed as the schema says
(:mod:`mlpoc.schema`): numbers as float32 with NaN for a missing cell, categories as text with
``""`` for a missing cell. ``data.y`` holds the labels (text) or, for ``task: regression``,
the values (float64). The worker does everything else the same way for every plugin: it
splits the rows, evaluates **the ONNX artifact itself** on the held-out ones (so the recorded
metric is the served model's), writes it, registers it and decides promotion.

The ONNX contract: one input per feature column, named as the column, shape ``[N, 1]``,
``float`` for numbers and ``string`` for categories (``data.onnx_inputs()``); or, for a table
of numbers only, one float ``[N, features]`` input (features in the schema's order). A
classifier has a 2-D float output of class probabilities, columns in ``classes`` order; a
regressor a float output of one value per row. Other outputs are ignored. Imputation and
encoding happen **inside the graph**: what is evaluated is what is served.

A job picks its plugin with ``params.plugin`` (default ``sklearn``). Plugin modules are found
three ways: the built-ins here, installed packages that declare an ``mlpoc.plugins`` entry point
(what ``mlpoc plugin new`` scaffolds under ``containers/plugins/``), and the modules named in
``MLPOC_PLUGINS`` (comma-separated dotted paths).
"""

from __future__ import annotations

import importlib
import importlib.metadata
import os
import traceback
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from botocore.exceptions import BotoCoreError, ClientError

from mlpoc.data.datasets import TrainingSet
from mlpoc.errors import PluginError
from mlpoc.schema import CATEGORY, CLASSIFICATION, NUMBER, REGRESSION, Layout, Schema

# everything a plugin (and its test, with mlpoc.plugins.check) imports: one module to learn
__all__ = [
    "CATEGORY",
    "CLASSIFICATION",
    "NUMBER",
    "REGRESSION",
    "ExportedModel",
    "Layout",
    "PluginError",
    "TrainingData",
    "trainer",
]

BUILTIN_MODULES = ("mlpoc.plugins.sklearn",)
ENTRY_POINT_GROUP = "mlpoc.plugins"
DEFAULT_PLUGIN = "sklearn"


@dataclass(frozen=True)
class ExportedModel:
    onnx: bytes
    classes: list[str] = field(default_factory=list)  # a classifier's, in its output's order


@dataclass(frozen=True)
class TrainingData:
    """What a plugin trains on: the training rows (never the held-out ones)."""

    schema: Schema
    columns: dict[str, np.ndarray]
    y: np.ndarray

    @classmethod
    def of(cls, data: TrainingSet) -> TrainingData:
        return cls(schema=data.schema, columns=data.columns, y=data.y)

    @property
    def task(self) -> str:
        return self.schema.task

    @property
    def frame(self) -> Any:
        """The feature columns as a pandas DataFrame, in the schema's order."""
        import pandas as pd  # noqa: PLC0415 - the training stack only

        return pd.DataFrame({name: self.columns[name] for name in self.schema.features})

    @property
    def matrix(self) -> np.ndarray:
        """The features as one float32 matrix (a table of numbers only)."""
        if not self.schema.numeric:
            text = [c.name for c in self.schema.columns if c.type != NUMBER]
            raise PluginError(
                f"this plugin takes numbers only; the table has text column(s) {text[:5]}: "
                "use a plugin that encodes categories (the built-in sklearn does)"
            )
        return np.column_stack([self.columns[f] for f in self.schema.features]).astype(np.float32)

    def onnx_inputs(self) -> list[tuple[str, Any]]:
        """skl2onnx's ``initial_types`` for the contract's inputs (one per column)."""
        from skl2onnx.common.data_types import (  # noqa: PLC0415 - the training stack only
            FloatTensorType,
            StringTensorType,
        )

        return [
            (
                c.name,
                FloatTensorType([None, 1]) if c.type == NUMBER else StringTensorType([None, 1]),
            )
            for c in self.schema.columns
        ]


TrainFunction = Callable[[TrainingData, Mapping[str, Any]], ExportedModel]


@dataclass(frozen=True)
class Plugin:
    name: str
    train: TrainFunction
    libraries: tuple[str, ...]

    def library_versions(self) -> dict[str, str]:
        versions = {}
        for library in self.libraries:
            try:
                versions[library] = importlib.metadata.version(library)
            except importlib.metadata.PackageNotFoundError:
                versions[library] = "unknown"
        return versions


_REGISTRY: dict[str, Plugin] = {}
# what a plugin may raise that says nothing about its code or the data: retried like the
# worker's own calls (a framework that reaches a service, a machine short of memory)
TRANSIENT = (BotoCoreError, ClientError, ConnectionError, TimeoutError, MemoryError)
TRACE_FRAMES = 3


class PluginCrashed(PluginError):
    """A plugin raised on data that passed the worker's checks: it would raise again on every
    retry, so the job fails at once with the innermost frames of the traceback."""

    def __init__(self, what: str, error: BaseException) -> None:
        frames = traceback.extract_tb(error.__traceback__)[-TRACE_FRAMES:]
        where = " <- ".join(f"{f.filename}:{f.lineno} in {f.name}" for f in reversed(frames))
        super().__init__(
            f"{what} raised {type(error).__name__}: {error}"
            + (f" (at {where})" if where else "")
            + ". It would fail the same way on every retry: fix it, then send the job again"
        )


def run_train(plugin: Plugin, data: TrainingData, params: Mapping[str, Any]) -> ExportedModel:
    """``plugin.train``, with its failures classified: a :class:`PluginError` (parameters it
    refuses) as it is; :data:`TRANSIENT` errors unchanged (retried); anything else
    :class:`PluginCrashed` (the job fails at once instead of going round the queue)."""
    try:
        return plugin.train(data, params)
    except (PluginError, *TRANSIENT):
        raise
    except Exception as error:
        raise PluginCrashed(f"the plugin {plugin.name!r}", error) from error


def trainer(
    name: str, *, libraries: Iterable[str] = ()
) -> Callable[[TrainFunction], TrainFunction]:
    """Register ``function`` as the plugin ``name`` (the decorator a plugin module uses)."""

    def register(function: TrainFunction) -> TrainFunction:
        existing = _REGISTRY.get(name)
        if existing is not None and existing.train is not function:
            raise PluginError(f"two plugins are named {name!r}; rename one")
        _REGISTRY[name] = Plugin(name=name, train=function, libraries=tuple(libraries))
        return function

    return register


def load(extra_modules: Iterable[str] | None = None) -> None:
    """Import the built-in, configured (``extra_modules``, by default ``MLPOC_PLUGINS``) and
    installed plugin modules (idempotent)."""
    if extra_modules is None:
        listed = os.environ.get("MLPOC_PLUGINS", "")
        extra_modules = [m.strip() for m in listed.split(",") if m.strip()]
    for module in (*BUILTIN_MODULES, *extra_modules):
        try:
            importlib.import_module(module)
        except ImportError as error:
            raise PluginError(
                f"plugin module {module!r} (from MLPOC_PLUGINS) cannot be imported: {error}"
            ) from error
    for entry_point in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        try:
            entry_point.load()
        except ImportError as error:
            raise PluginError(
                f"the installed plugin {entry_point.name!r} ({entry_point.value}) cannot be "
                f"imported: {error}. Install its dependencies (make install)"
            ) from error


def names() -> list[str]:
    """The plugins this process has (after :func:`load`)."""
    return sorted(_REGISTRY)


def get(name: str) -> Plugin:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise PluginError(
            f"no training plugin named {name!r}; available: {sorted(_REGISTRY)}. "
            "Scaffold one with `mlpoc plugin new NAME`, install it (`make install`) and list it "
            "in mlpoc:plugins in cdk.json so the worker image carries it"
        ) from None
