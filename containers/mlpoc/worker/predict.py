"""The predict job: resolve the version, verify and load it, predict in chunks, store results.

A dataset over ``shard_bytes`` (``params.shard_bytes`` or ``MLPOC_SHARD_BYTES``), or a prefix of
CSVs, is not run here: it is split into shard jobs pinned to the resolved version, which any
predict worker runs (:mod:`mlpoc.data.shards`).

Each row becomes one item of the predictions table ``{model, item_id, version, label,
confidence, job_id, ...}``; rows below the review threshold (``params.review_threshold``, else
the version's own, else ``MLPOC_REVIEW_THRESHOLD``: :mod:`mlpoc.worker.thresholds`) also carry
``review`` and their features, which puts them in the annotation queue. Writes are idempotent
puts in BatchWriteItem calls of 25.

A version trained with a feature set (:mod:`mlpoc.data.feature_sets`) takes rows by key: the CSV
holds
the key column (and any inline features), and the snapshot of the feature set version the
model reads is joined to it. Rows whose key that version lacks are not predicted; the result
counts them (``unknown_keys``) and names a few.
"""

from __future__ import annotations

import json
import math
import time
from typing import Any

import numpy as np

from mlpoc.aws.clients import Clients
from mlpoc.aws.dynamo import BatchWriter
from mlpoc.data import datasets, feature_binding, feature_sets, feature_snapshots, shards
from mlpoc.models.inference import ModelCache
from mlpoc.models.registry import ModelVersion, Registry
from mlpoc.quality import input_samples
from mlpoc.runtime.environment import Settings
from mlpoc.worker.context import JobContext
from mlpoc.worker.monitor import MonitorHandler
from mlpoc.worker.thresholds import review_threshold

NO_ROWS = datasets.PredictionSet(ids=[], columns={})
# Above this many features, review items keep no copy of their features (item size limit).
MAX_REVIEW_FEATURES = 4_096


def _cell(value: Any) -> Any:
    if isinstance(value, str):
        return value or None  # a missing category
    number = float(value)
    if math.isnan(number):
        return None
    return int(number) if number.is_integer() else round(number, 6)


def _feature_list(columns: dict[str, np.ndarray], row: int) -> str:
    """One row's features for the annotation queue (null: missing), in the schema's order."""
    return json.dumps([_cell(values[row]) for values in columns.values()])


class PredictHandler:
    """The predict worker's jobs: predict jobs, and monitor jobs (:mod:`mlpoc.worker.monitor`),
    which share its model cache."""

    def __init__(self, settings: Settings, clients: Clients) -> None:
        self.cache = ModelCache(clients.s3, settings.model_bucket)
        self.monitor = MonitorHandler(self.cache)
        self.snapshots: dict[tuple[str, int], feature_snapshots.Snapshot] = {}  # immutable: kept

    def _rows(
        self, ctx: JobContext, version: ModelVersion, text: str, where: str
    ) -> tuple[datasets.PredictionSet, dict[str, Any]]:
        """The rows to predict: ``text``, joined with the feature set version the model reads
        when it reads one (and what the join did, for the result)."""
        sets = feature_sets.FeatureSets(ctx.clients.dynamodb, ctx.settings.models_table)
        bound = feature_binding.binding(sets, version)
        if bound is None:
            return datasets.parse_prediction(text, where, version.schema), {}
        cached = (bound.name, bound.version)
        if cached not in self.snapshots:
            self.snapshots[cached] = feature_snapshots.Snapshot.read(
                ctx.clients.s3, sets.get(bound.name, bound.version)
            )
        joined = feature_snapshots.join(text, where, self.snapshots[cached], keep_key=True)
        return (
            datasets.parse_prediction(joined.text, where, version.schema),
            {"features": {**bound.to_json(), **joined.summary()}},
        )

    def __call__(self, ctx: JobContext) -> None:
        if ctx.job.type == "monitor":
            self.monitor(ctx)
            return
        job, settings, clients = ctx.job, ctx.settings, ctx.clients
        version = Registry(clients.dynamodb, settings.models_table).resolve(job.model, job.version)
        threshold = review_threshold(job.params, version, settings.review_threshold)
        if job.shard is not None:
            text, lines = shards.read_shard(clients.s3, job.dataset, job.shard)
            where = f"{job.dataset} ({job.shard}, bytes {job.shard.start}-{job.shard.end})"
            owner = job.shard.parent
        else:
            shard_bytes = shards.shard_bytes_for(job, settings.shard_bytes)
            size = None if job.over_prefix else datasets.size_of(clients.s3, job.dataset)
            if size is None or size > shard_bytes:
                pieces = shards.plan(clients.s3, job.dataset, shard_bytes)
                ctx.split(shards.shard_jobs(job, pieces, version.version))
                return
            text, lines = datasets.fetch(clients.s3, job.dataset, size), 1
            where, owner = str(job.dataset), job.job_id
        classifier = self.cache.get(version)
        data, by_key = self._rows(ctx, version, text, where) if lines else (NO_ROWS, {})
        writer = BatchWriter(clients.dynamodb)
        keep_features = len(version.features) <= MAX_REVIEW_FEATURES
        now = round(time.time(), 3)
        for_review = 0
        chunk = settings.predict_chunk_rows
        ids = data.ids
        for start in range(0, len(ids), chunk):
            ctx.check_lease()
            rows = data.rows(start, start + chunk)
            predictions = classifier.predict(rows)
            for offset, label in enumerate(predictions.labels):
                item: dict[str, Any] = {
                    "model": job.model,
                    "item_id": ids[start + offset],
                    "version": version.version,
                    "label": label,
                    "job_id": owner,
                    "dataset": str(job.dataset),
                    "predicted_at": now,
                }
                if predictions.values is not None:  # regression: a value, no confidence
                    item["value"] = round(float(predictions.values[offset]), 6)
                else:
                    assert predictions.confidence is not None  # noqa: S101 - a classifier's
                    confidence = float(predictions.confidence[offset])
                    item["confidence"] = round(confidence, 6)
                    if confidence < threshold:
                        for_review += 1
                        item["review"] = job.model
                        if keep_features:
                            item["features"] = _feature_list(rows, offset)
                writer.put(settings.predictions_table, item)
        writer.flush()
        input_samples.keep_job_rows(
            clients.s3,
            settings.data_bucket,
            version,
            data,
            limit=settings.sample_rows,
            job_id=job.job_id,
        )
        result = {
            "model_version": version.version,
            "rows": len(ids),
            "for_review": for_review,
            "batch_write_calls": writer.calls,
            **by_key,
        }
        if job.shard is None:
            ctx.commit(result)
            return
        ctx.commit(
            result,
            extra=[
                {
                    "Update": ctx.ledger.shard_done_request(
                        job.shard.parent,
                        index=job.shard.index,
                        rows=len(ids),
                        for_review=for_review,
                    )
                }
            ],
        )
        ctx.ledger.finish_parent(job.shard.parent)
