"""The train job: CSV -> plugin -> ONNX -> held-out metrics -> artifact -> registry (+ promotion).

``params`` (all optional): ``plugin`` (default ``sklearn``) and that plugin's own parameters;
the table's ``label_column``, ``id_column``, ``ignore_columns`` and ``task`` (:mod:`mlpoc.schema`);
``test_size`` (0.05-0.5, default 0.2): the share of rows held out; ``seed`` (the plugin's);
``promote``: ``auto`` (default: promote when the new version beats the promoted one on
``metric`` by more than ``min_improvement`` (:mod:`mlpoc.models.metrics`), both scored on the same
held-out rows, or when none is promoted), ``always`` or ``never``; ``then_predict``: an
``s3://`` CSV in the data bucket to pre-compute predictions for with the new version once it is
promoted; ``origin`` (``schedule`` or ``retrain``): kept on the version (``mlpoc models`` shows
it); ``review_threshold`` (0-1): the version's default for its predict jobs;
``feature_set`` and ``feature_version`` (``current``: the promoted one): the feature set version
whose snapshot is joined to the CSV by its key column before training
(:mod:`mlpoc.data.feature_sets`).

**The held-out rows** are chosen per row, not at random: a row is held out when the hash of its
id (``id_column``), or of its feature cells, falls under ``test_size``. The same row is on the
same side in every version, so a retrain on more data never trains on rows an earlier version
was tested on, and the live version can be scored on the candidate's held-out rows: the rows
held out from both. Both scores are recorded (``compared``) and decide ``auto`` promotion;
a live version that cannot take the new table (another task, a column it needs is gone or
changed type) is not compared, and the candidate is not promoted automatically.

A dataset that is a folder (``s3://…/datasets/digits/``) is built first
(:mod:`mlpoc.data.dataset_versions`):
the promoted version's data, the new CSVs in the folder, every correction; with nothing new the
job ends SUCCEEDED with ``"outcome": "nothing new"``. The plugin defaults to the promoted
version's, and so do its parameters when the job names none of its own (a retrain or a
scheduled run trains the live model's configuration again, not the plugin's defaults). Each
version records its plugin's parameters (``plugin_params``), and so the feature set: a retrain
reads the live version's set, at the version promoted at its time.

The train workers also run ``features`` jobs (:mod:`mlpoc.worker.publish`).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Iterable
from typing import Any

from mlpoc import plugins
from mlpoc.data import dataset_versions, datasets, feature_sets, feature_snapshots
from mlpoc.data.held_out import split
from mlpoc.errors import (
    JobFailed,
    RegistryError,
)
from mlpoc.models import artifacts, metrics, runs
from mlpoc.models.artifacts import ArtifactKeys
from mlpoc.models.registry import ModelVersion, Registry
from mlpoc.schema import REGRESSION, Column, Layout
from mlpoc.worker.context import JobContext
from mlpoc.worker.promotion import run_as_served
from mlpoc.worker.publish import handle_features
from mlpoc.worker.registration import Candidate, register, schema_item, version_metadata
from mlpoc.worker.thresholds import NO_REVIEW
from mlpoc.worker.train_params import KIT_PARAMS, job_options, plugin_params, review_threshold

log = logging.getLogger("mlpoc.worker")


def handle_train(ctx: JobContext) -> None:
    if ctx.job.type == "features":
        handle_features(ctx)
        return
    job, settings, clients = ctx.job, ctx.settings, ctx.clients
    test_size, promote_mode, then_predict = job_options(job, settings.data_bucket, settings.sources)
    registry = Registry(clients.dynamodb, settings.models_table)
    dataset, text, built, default_plugin = job.dataset, None, None, plugins.DEFAULT_PLUGIN
    if job.over_prefix:  # a folder: build the dataset version (mlpoc.data.dataset_versions)
        outcome = dataset_versions.build(clients, settings, job, registry)
        if isinstance(outcome, dataset_versions.NothingNew):
            ctx.commit(
                {
                    "outcome": "nothing new",
                    "reason": outcome.reason,
                    "base_version": outcome.base_version,
                }
            )
            log.info("train.nothing_new", extra={"reason": outcome.reason})
            return
        built, dataset, text = outcome, outcome.uri, outcome.text
        default_plugin = outcome.base_plugin or default_plugin  # as the promoted version was
        ctx.check_lease()
    plugin = plugins.get(str(job.params.get("plugin", default_plugin)))
    params = plugin_params(job.params, built)
    layout = built.layout if built else Layout.from_params(job.params)
    if layout.task == REGRESSION and "review_threshold" in job.params:
        raise JobFailed(NO_REVIEW)
    threshold = review_threshold(job.params, built)  # refused before any training, not after
    inherited = built.base_promotion if built else {}
    metric, least = metrics.check(
        layout.task,
        job.params.get("metric", inherited.get("metric")),
        job.params.get("min_improvement", inherited.get("min_improvement")),
    )

    started = time.monotonic()
    version_id = None
    if text is None:
        text, version_id = datasets.fetch_versioned(clients.s3, dataset)
    read = runs.DataIdentity.of(str(dataset), text, version_id, built.inputs if built else None)
    text, taken = _join_features(ctx, built, text, str(dataset), layout)
    data = datasets.parse_training(text, str(dataset), layout)
    held = split(data, test_size)
    exported = plugins.run_train(plugin, plugins.TrainingData.of(held.train), params)
    train_seconds = round(time.monotonic() - started, 3)
    ctx.check_lease()

    # One version number per job, kept across retries: a redelivered job overwrites its own
    # artifact instead of leaving an orphan version behind.
    number = ctx.record.get("model_version")
    if number is None:
        number = registry.allocate_version(job.model)
        ctx.note(model_version=number)
    number = int(number)
    keys = ArtifactKeys.of(job.model, number)
    schema = data.schema.to_json()
    version = ModelVersion(
        model=job.model,
        version=number,
        sha256=artifacts.sha256(exported.onnx),
        artifact_key=keys.onnx,
        metadata_key=keys.metadata,
        features=data.features,
        classes=exported.classes,
        metrics={},
        job_id=job.job_id,
        dataset=str(dataset),
        plugin=plugin.name,
        created_at=time.time(),
        extra={
            "schema": schema_item(schema),
            "plugin_params": {k: v for k, v in params.items() if k not in KIT_PARAMS},
            "promotion": {"metric": metric, "min_improvement": least},
            "held_out": {"by": "id" if layout.id else "row", "share": test_size},
            **threshold,
            "train_rows": len(held.train.y),
            "test_rows": len(held.test.y),
            "run": runs.index_item(keys.metadata, read),
            **({"origin": origin} if (origin := dataset_versions.origin_of(job)) else {}),
            **({"inputs": built.inputs, "folder": str(job.dataset)} if built else {}),
            **({"feature_set": taken(data.schema.columns)} if taken else {}),
        },
    )
    # Metrics of the ONNX graph itself: what is recorded is what will be served.
    served, scores, held_out = run_as_served(plugin, exported, version, held.test)
    version = dataclasses.replace(version, metrics=scores)
    run = {
        "evaluation": runs.evaluation(held_out, held.test.y),
        "data": {**read.to_json(), "rows": len(data.y)},
        "profile": runs.profile(data.schema, held.train.columns, held_out),
    }
    artifacts.write(
        clients.s3,
        settings.model_bucket,
        keys,
        exported.onnx,
        {**version_metadata(version, plugin, params, train_seconds), "schema": schema, "run": run},
    )
    ctx.check_lease()

    summary = {
        "task": layout.task,
        "metric": metric,
        "metrics": scores,
        "sha256": version.sha256,
        "artifact": f"s3://{settings.model_bucket}/{keys.onnx}",
        "train_seconds": train_seconds,
        **({"dataset": str(dataset), "built": built.summary()} if built else {}),
        **({"feature_set": version.extra["feature_set"]} if "feature_set" in version.extra else {}),
    }
    register(
        ctx,
        registry,
        version,
        Candidate(served, held, promote_mode, least),
        then_predict=then_predict,
        summary=summary,
    )


# -- the feature set a train job joins ------------------------------------------------------------
def _feature_set(
    ctx: JobContext, built: dataset_versions.Built | None
) -> feature_snapshots.Snapshot | None:
    """The snapshot of the feature set version the job joins: ``params.feature_set`` (over a
    folder, the live version's set by default) at ``params.feature_version``."""
    params = ctx.job.params
    name = params.get("feature_set", built.base_feature_set if built else None)
    if name is None:
        if "feature_version" in params:
            raise JobFailed("params.feature_version needs params.feature_set")
        return None
    name = feature_sets.check_name(name, "params.feature_set")
    spec = feature_sets.version_spec(params.get("feature_version", "current"))
    sets = feature_sets.FeatureSets(ctx.clients.dynamodb, ctx.settings.models_table)
    try:
        version = sets.resolve(name, spec)
    except RegistryError as error:
        raise JobFailed(str(error)) from None
    if version.expires_at is not None:
        raise JobFailed(
            f"feature set {name} v{version.version}: its online items are expiring, so a model "
            "trained on it could not be served; name a version that is kept"
        )
    return feature_snapshots.Snapshot.read(ctx.clients.s3, version)


def _join_features(
    ctx: JobContext, built: dataset_versions.Built | None, text: str, where: str, layout: Layout
) -> tuple[str, Callable[[Iterable[Column]], dict[str, Any]] | None]:
    """The table joined with its feature set version's snapshot, and how to record what the
    model took from it (None: no feature set)."""
    snapshot = _feature_set(ctx, built)
    if snapshot is None:
        return text, None
    key = snapshot.version.key
    joined = feature_snapshots.join(text, where, snapshot, keep_key=key == layout.id)
    return joined.text, lambda columns: feature_snapshots.record(snapshot.version, joined, columns)
