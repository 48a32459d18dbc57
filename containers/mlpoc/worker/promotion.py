"""The promotion decision: a candidate's metrics as the API will run it (its ONNX graph in
onnxruntime), the live version scored on the same held-out rows, and whether the candidate
wins under the job's policy (``params.promote``, ``params.min_improvement``)."""

from __future__ import annotations

import dataclasses
from typing import Any

from mlpoc import plugins
from mlpoc.data import datasets
from mlpoc.data.held_out import Split
from mlpoc.errors import (
    ArtifactError,
)
from mlpoc.models import inference, metrics
from mlpoc.models.inference import OnnxModel, Predictions, evaluate, score
from mlpoc.models.registry import ModelVersion, Pointer
from mlpoc.worker.context import JobContext


def run_as_served(
    plugin: plugins.Plugin,
    exported: plugins.ExportedModel,
    version: ModelVersion,
    held_out: datasets.TrainingSet,
) -> tuple[OnnxModel, dict[str, float], Predictions]:
    """The plugin's ONNX graph in onnxruntime, checked against the contract, and its metrics and
    predictions on the held-out rows, as the API will run it; a graph that breaks the contract
    or fails on those rows fails the job at once (it would on every retry)."""
    try:
        served = OnnxModel(exported.onnx, version)
        return served, *evaluate(served, held_out)
    except Exception as error:
        raise plugins.PluginCrashed(
            f"the ONNX model of the plugin {plugin.name!r}, run by onnxruntime,", error
        ) from error


@dataclasses.dataclass(frozen=True)
class Comparison:
    """The candidate and the live version on the same held-out rows (or why they were not)."""

    live: int
    metric: str
    rows: int = 0
    candidate: float | None = None
    live_score: float | None = None
    why_not: str | None = None

    def to_json(self) -> dict[str, Any]:
        if self.why_not is not None:
            return {"live": self.live, "metric": self.metric, "not_compared": self.why_not}
        return {
            "live": self.live,
            "metric": self.metric,
            "rows": self.rows,
            "candidate": self.candidate,
            "live_score": self.live_score,
        }


def compare(
    ctx: JobContext, live: ModelVersion, candidate: OnnxModel, held: Split, metric: str
) -> Comparison:
    """Score ``live`` and the candidate on the held-out rows of both: the candidate's held-out
    rows that also fall under the live version's own test_size."""
    refusal = live.schema.accepts(candidate.schema)
    if refusal is not None:
        return Comparison(live.version, metric, why_not=f"v{live.version}: {refusal}")
    share = (live.extra.get("held_out") or {}).get("share")  # none: trained on a random split
    rows = held.test.take(held.shares < float(share)) if share is not None else held.test
    if len(rows.y) == 0:
        return Comparison(live.version, metric, why_not="no held-out rows in common")
    try:  # S3's own errors propagate: the job is retried
        served = inference.load(ctx.clients.s3, ctx.settings.model_bucket, live)
    except ArtifactError as error:  # the live version's own fault, not the candidate's
        return Comparison(live.version, metric, why_not=str(error))
    try:
        live_metrics = score(served, rows)
    except Exception as error:  # onnxruntime's own errors on rows the live graph refuses
        return Comparison(
            live.version, metric, why_not=f"v{live.version} failed on these rows: {error}"
        )
    return Comparison(
        live.version,
        metric,
        rows=len(rows.y),
        candidate=score(candidate, rows)[metric],
        live_score=live_metrics[metric],
    )


def should_promote(
    mode: str, pointer: Pointer | None, comparison: Comparison | None, least: float = 0.0
) -> bool:
    if mode == "never":
        return False
    if mode == "always" or pointer is None or pointer.promoted is None:
        return True
    if comparison is None or comparison.candidate is None or comparison.live_score is None:
        return False
    return metrics.better(comparison.metric, comparison.candidate, comparison.live_score, least)
