"""Training plugins that misbehave on purpose, loaded by the workers under test through
``MLPOC_PLUGINS`` — the same seam a team uses for its own framework.

* ``slow``: sleeps ``params.sleep_seconds`` then trains the default model (long jobs, kills);
* ``crash``: always raises an unexpected error (a poison message).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import numpy as np

from mlpoc.plugins import ExportedModel, get, trainer


@trainer("slow", libraries=("scikit-learn",))
def train_slow(x: np.ndarray, y: np.ndarray, params: Mapping[str, Any]) -> ExportedModel:
    time.sleep(float(params.get("sleep_seconds", 5)))
    return get("sklearn").train(x, y, {})


@trainer("crash")
def train_crash(x: np.ndarray, y: np.ndarray, params: Mapping[str, Any]) -> ExportedModel:
    raise RuntimeError("boom: the plugin crashed")
