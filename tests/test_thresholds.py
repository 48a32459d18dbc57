"""The review threshold a predict job applies: its own, else its model version's, else the
worker's default; a bad one is refused with its name."""

from __future__ import annotations

from typing import Any

import pytest

from mlpoc.errors import JobFailed
from mlpoc.models.registry import ModelVersion
from mlpoc.worker.thresholds import review_threshold


def version(**extra: Any) -> ModelVersion:
    return ModelVersion(
        model="m", version=1, sha256="0" * 64, artifact_key="k", metadata_key="k",
        features=["a"], classes=["x", "y"], metrics={"accuracy": 1.0}, job_id="j",
        dataset="s3://b/datasets/m/a.csv", plugin="sklearn", created_at=0.0, extra=extra,
    )  # fmt: skip


def test_the_job_wins_then_the_version_then_the_default() -> None:
    assert review_threshold({"review_threshold": 0.3}, version(review_threshold=0.6), 0.8) == 0.3
    assert review_threshold({}, version(review_threshold=0.6), 0.8) == 0.6
    assert review_threshold({}, version(), 0.8) == 0.8
    assert review_threshold({"review_threshold": 0}, version(), 0.8) == 0.0  # 0 is a value


@pytest.mark.parametrize("bad", [1.5, -0.1, "high", True, None])
def test_a_threshold_outside_0_to_1_is_refused_by_name(bad: Any) -> None:
    with pytest.raises(JobFailed, match=r"^params\.review_threshold must be from 0 to 1; got "):
        review_threshold({"review_threshold": bad}, version(), 0.8)
