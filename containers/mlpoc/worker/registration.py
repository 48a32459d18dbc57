"""Registering a trained version: its artifact and metadata, its registry item (with the schema
kept small enough for an item), and its promotion in one transaction with the job's result."""

from __future__ import annotations

import dataclasses
import importlib.metadata
import json
import logging
from collections.abc import Mapping
from typing import Any

import mlpoc
from mlpoc import plugins
from mlpoc.aws.log_events import Event
from mlpoc.data.held_out import Split
from mlpoc.errors import (
    CommitConflict,
    TransientError,
)
from mlpoc.models.inference import OnnxModel
from mlpoc.models.registry import ModelVersion, Registry
from mlpoc.runtime.contract import Job, S3Uri
from mlpoc.worker.context import JobContext
from mlpoc.worker.promotion import Comparison, compare, should_promote

log = logging.getLogger("mlpoc.worker")


COMMIT_ATTEMPTS = 5


# a schema bigger than this is kept whole in the version's metadata.json, and in the registry
# item without the categories seen (an item holds at most 400 KB)
SCHEMA_ITEM_BYTES = 64_000


def schema_item(schema: dict[str, Any]) -> dict[str, Any]:
    if len(json.dumps(schema)) <= SCHEMA_ITEM_BYTES:
        return schema
    return {
        **schema,
        "columns": [{k: v for k, v in c.items() if k != "categories"} for c in schema["columns"]],
        "categories_in": "metadata.json",
    }


@dataclasses.dataclass(frozen=True)
class Candidate:
    served: OnnxModel
    held: Split
    mode: str  # params.promote
    least: float  # params.min_improvement


def register(
    ctx: JobContext,
    registry: Registry,
    version: ModelVersion,
    candidate: Candidate,
    *,
    then_predict: S3Uri | None,
    summary: dict[str, Any],
) -> None:
    """Register the version and, when it wins, promote it, in one transaction with the job's
    result; the live version is scored on the same rows again if the pointer moves."""
    job, number = ctx.job, version.version
    comparisons: dict[int, Comparison] = {}  # per live version: the pointer may move meanwhile
    for _ in range(COMMIT_ATTEMPTS):
        pointer = registry.pointer(job.model)
        live = pointer.promoted if pointer and pointer.promoted != number else None
        if live is not None and live not in comparisons:
            comparisons[live] = compare(
                ctx, registry.get(job.model, live), candidate.served, candidate.held,
                version.metric_name,
            )  # fmt: skip
        comparison = comparisons.get(live) if live is not None else None
        promote = should_promote(candidate.mode, pointer, comparison, candidate.least)
        recorded = dataclasses.replace(
            version,
            extra={**version.extra, **({"compared": comparison.to_json()} if comparison else {})},
        )
        extra: list[Mapping[str, Any]] = [{"Put": registry.put_version_request(recorded)}]
        if promote:
            extra.append(
                {
                    "Update": registry.promote_request(
                        job.model, number, version.metric, expected=pointer
                    )
                }
            )
        followups = []
        if then_predict is not None and promote:
            followups.append(
                Job(
                    job_id=f"{job.job_id}.predict",
                    type="predict",
                    model=job.model,
                    dataset=then_predict,
                    version=str(number),
                )
            )
        result = {
            "model_version": number,
            "promoted": promote,
            **summary,
            **({"compared": comparison.to_json()} if comparison else {}),
        }
        try:
            ctx.commit(result, extra=extra, followups=followups)
        except CommitConflict as conflict:
            log.info(Event.TRAIN_COMMIT_CONFLICT, extra={"codes": conflict.codes})
            continue
        log.info(
            "train.registered",
            extra={
                "model_version": number,
                version.metric_name: version.metric,
                "promoted": promote,
            },
        )
        return
    raise TransientError(
        f"the promotion pointer kept moving; gave up after {COMMIT_ATTEMPTS} tries"
    )


def version_metadata(
    version: ModelVersion, plugin: plugins.Plugin, params: Mapping[str, Any], train_seconds: float
) -> dict[str, Any]:
    return {
        **version.to_item(),
        "version": version.version,
        "params": dict(params),
        "train_seconds": train_seconds,
        "libraries": {
            **plugin.library_versions(),
            "onnxruntime": importlib.metadata.version("onnxruntime"),
            "mlpoc": mlpoc.__version__,
        },
    }
