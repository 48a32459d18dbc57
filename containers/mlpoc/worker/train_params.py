"""A train job's own parameters (the rest of ``params`` is the plugin's): the held-out share, the
promotion policy, what to predict next, the review threshold, and what a retrain over a folder
inherits from the live version."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mlpoc.data import dataset_versions
from mlpoc.errors import (
    JobFailed,
)
from mlpoc.runtime.contract import Job, S3Uri, dataset_refusal
from mlpoc.runtime.schedules import PROMOTE_POLICIES
from mlpoc.schema import TABLE_PARAMS
from mlpoc.worker.thresholds import check_threshold

# the train job's own parameters; every other key of params is the plugin's
KIT_PARAMS = frozenset(
    {
        "plugin",
        "origin",
        "promote",
        "test_size",
        "then_predict",
        "review_threshold",
        "metric",
        "min_improvement",
        "feature_set",
        "feature_version",
        *TABLE_PARAMS,
    }
)


def job_options(
    job: Job, data_bucket: str, sources: tuple[S3Uri, ...] = ()
) -> tuple[float, str, S3Uri | None]:
    params = job.params
    test_size = params.get("test_size", 0.2)
    if (
        isinstance(test_size, bool)
        or not isinstance(test_size, int | float)
        or not (
            0.05 <= test_size <= 0.5  # noqa: PLR2004
        )
    ):
        raise JobFailed(f"params.test_size must be a number from 0.05 to 0.5; got {test_size!r}")
    seed = params.get("seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise JobFailed(f"params.seed must be a whole number >= 0; got {seed!r}")
    promote = params.get("promote", "auto")
    if promote not in PROMOTE_POLICIES:
        raise JobFailed(f"params.promote must be one of {list(PROMOTE_POLICIES)}; got {promote!r}")
    then_predict = params.get("then_predict")
    uri = None
    if then_predict is not None:
        try:
            uri = S3Uri.parse(str(then_predict))
        except ValueError as error:
            raise JobFailed(f"params.then_predict: {error}") from None
        refusal = dataset_refusal(uri, "predict", data_bucket, sources)
        if refusal is not None:
            raise JobFailed(f"params.then_predict: {refusal}")
    return float(test_size), promote, uri


def plugin_params(
    params: Mapping[str, Any], built: dataset_versions.Built | None
) -> dict[str, Any]:
    """What the plugin is given: the job's params; over a folder, when the job names no
    parameter of the plugin's and no other plugin, the promoted version's parameters first."""
    own = {k for k in params if k not in KIT_PARAMS}
    if built is None or own or "plugin" in params:
        return dict(params)
    return {**built.base_params, **params}


def review_threshold(
    params: Mapping[str, Any], built: dataset_versions.Built | None
) -> dict[str, float]:
    """The version's own review threshold (``params.review_threshold``, 0-1): its predictions
    below it go to the review queue unless a predict job names another. A train job over a
    folder keeps the live version's when it names none."""
    threshold = params.get("review_threshold")
    if threshold is None:
        inherited = built.base_threshold if built is not None else None
        return {} if inherited is None else {"review_threshold": inherited}
    return {"review_threshold": check_threshold(threshold)}
