"""The plugin seam: how a team brings its own framework without touching the worker loop.

A plugin is one function that trains on a numeric matrix and returns the model as ONNX::

    from mlpoc.plugins import ExportedModel, trainer

    @trainer("lightgbm", libraries=("lightgbm", "onnxmltools"))
    def train_lightgbm(x, y, params):
        model = lightgbm.LGBMClassifier(**params.get("hyperparameters", {})).fit(x, y)
        onnx_model = onnxmltools.convert_lightgbm(model, initial_types=[...], zipmap=False)
        return ExportedModel(
            onnx=onnx_model.SerializeToString(), classes=[str(c) for c in model.classes_]
        )

The worker does everything else the same way for every plugin: it splits the data, evaluates
**the ONNX artifact itself** on the held-out rows (so the recorded metric is the served model's),
writes it, registers it and decides promotion. The ONNX graph takes one float32 input of shape
``[N, n_features]`` (features in the CSV's order) and has one 2-D float output with the class
probabilities, columns in ``classes`` order; other outputs (a label tensor) are ignored.

A job picks its plugin with ``params.plugin`` (default ``sklearn``). Plugin modules are found
three ways: the built-ins here, the modules named in ``MLPOC_PLUGINS`` (comma-separated dotted
paths), and installed packages that declare an ``mlpoc.plugins`` entry point.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import traceback
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from botocore.exceptions import BotoCoreError, ClientError

from mlpoc.errors import PluginError

BUILTIN_MODULES = ("mlpoc.plugins.sklearn",)
ENTRY_POINT_GROUP = "mlpoc.plugins"
DEFAULT_PLUGIN = "sklearn"


@dataclass(frozen=True)
class ExportedModel:
    onnx: bytes
    classes: list[str]


TrainFunction = Callable[[np.ndarray, np.ndarray, Mapping[str, Any]], ExportedModel]


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


def run_train(
    plugin: Plugin, x: np.ndarray, y: np.ndarray, params: Mapping[str, Any]
) -> ExportedModel:
    """``plugin.train``, with its failures classified: a :class:`PluginError` (parameters it
    refuses) as it is; :data:`TRANSIENT` errors unchanged (retried); anything else
    :class:`PluginCrashed` (the job fails at once instead of going round the queue)."""
    try:
        return plugin.train(x, y, params)
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


def load(extra_modules: Iterable[str] = ()) -> None:
    """Import the built-in, configured and installed plugin modules (idempotent)."""
    for module in (*BUILTIN_MODULES, *extra_modules):
        try:
            importlib.import_module(module)
        except ImportError as error:
            raise PluginError(
                f"plugin module {module!r} (from MLPOC_PLUGINS) cannot be imported: {error}"
            ) from error
    for entry_point in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        entry_point.load()


def get(name: str) -> Plugin:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise PluginError(
            f"no training plugin named {name!r}; available: {sorted(_REGISTRY)}. "
            "Add a module with @trainer and list it in MLPOC_PLUGINS"
        ) from None
