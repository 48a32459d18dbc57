"""Held-out metrics of a served (ONNX) model, and which of two scores is better.

Classification: ``accuracy`` and ``macro_f1`` (higher is better). Regression: ``rmse`` and
``mae`` (lower is better) and ``r2`` (higher is better). A model is promoted on one of them
(``params.metric``, default ``accuracy`` or ``rmse``) by at least ``params.min_improvement``.
"""

from __future__ import annotations

import numpy as np

from mlpoc.errors import JobFailed
from mlpoc.schema import CLASSIFICATION, REGRESSION

METRICS = {
    CLASSIFICATION: ("accuracy", "macro_f1"),
    REGRESSION: ("rmse", "mae", "r2"),
}
DEFAULT = {CLASSIFICATION: "accuracy", REGRESSION: "rmse"}
LOWER_IS_BETTER = frozenset({"rmse", "mae"})
DIGITS = 6


def classification(predicted: list[str], truth: np.ndarray) -> dict[str, float]:
    """Accuracy and macro-averaged F1 (over the classes of the truth and the predictions)."""
    pred = np.asarray(predicted, dtype=object)
    truth = np.asarray(truth, dtype=object)
    scores = []
    for c in sorted({*pred.tolist(), *truth.tolist()}):
        tp = int(np.sum((pred == c) & (truth == c)))
        fp = int(np.sum((pred == c) & (truth != c)))
        fn = int(np.sum((pred != c) & (truth == c)))
        scores.append(2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0)
    return {
        "accuracy": round(float(np.mean(pred == truth)), DIGITS),
        "macro_f1": round(float(np.mean(scores)), DIGITS),
    }


def regression(predicted: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """RMSE, MAE and R² (R² is 0 when the truth is constant and the predictions match it)."""
    error = np.asarray(predicted, np.float64) - np.asarray(truth, np.float64)
    spread = float(np.sum((truth - np.mean(truth)) ** 2))
    residual = float(np.sum(error**2))
    return {
        "rmse": round(float(np.sqrt(np.mean(error**2))), DIGITS),
        "mae": round(float(np.mean(np.abs(error))), DIGITS),
        "r2": round(1.0 - residual / spread if spread else 0.0, DIGITS),
    }


def check(task: str, metric: object, min_improvement: object) -> tuple[str, float]:
    """The promotion metric and minimum improvement a train job names, checked."""
    name = DEFAULT[task] if metric is None else metric
    if name not in METRICS[task]:
        raise JobFailed(
            f"params.metric must be one of {list(METRICS[task])} for {task}; got {name!r}"
        )
    least = 0.0 if min_improvement is None else min_improvement
    if isinstance(least, bool) or not isinstance(least, int | float) or least < 0:
        raise JobFailed(f"params.min_improvement must be a number >= 0; got {least!r}")
    return str(name), float(least)


def better(metric: str, candidate: float, live: float, min_improvement: float = 0.0) -> bool:
    """Whether ``candidate`` beats ``live`` on ``metric`` by more than ``min_improvement``
    (ties keep the live version)."""
    gain = live - candidate if metric in LOWER_IS_BETTER else candidate - live
    return gain > min_improvement
