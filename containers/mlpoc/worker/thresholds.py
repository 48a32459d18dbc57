"""The review threshold: predictions whose confidence is below it go to the review queue.

Where it comes from, first found: the predict job's ``params.review_threshold``; the model
version's own (``params.review_threshold`` of the train job that made it, kept by a retrain);
the worker's ``MLPOC_REVIEW_THRESHOLD`` (0.8). A binary model's confidence never drops below
0.5, a ten-class model's can fall to 0.1: one global number fits no team's model.

A regression model has no review queue: its ONNX graph gives a point estimate and no calibrated
uncertainty, so any threshold would send arbitrary rows to review. A review threshold named for
one is refused rather than ignored.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mlpoc.errors import JobFailed
from mlpoc.models.registry import ModelVersion
from mlpoc.schema import REGRESSION

NO_REVIEW = (
    "a regression model has no review queue (it gives a value, not a confidence): "
    "drop params.review_threshold"
)


def check_threshold(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not (0 <= value <= 1):
        raise JobFailed(f"params.review_threshold must be from 0 to 1; got {value!r}")
    return float(value)


def review_threshold(params: Mapping[str, Any], version: ModelVersion, default: float) -> float:
    """The threshold a predict job applies (see the module's text); 0 for a regression."""
    if version.task == REGRESSION:
        if "review_threshold" in params:
            raise JobFailed(NO_REVIEW)
        return 0.0
    if "review_threshold" in params:
        return check_threshold(params["review_threshold"])
    own = version.extra.get("review_threshold")
    return default if own is None else check_threshold(own)
