"""The train job: CSV -> plugin -> ONNX -> held-out metrics -> artifact -> registry (+ promotion).

``params`` (all optional): ``plugin`` (default ``sklearn``) and that plugin's own parameters;
the table's ``label_column``, ``id_column``, ``ignore_columns`` and ``task`` (:mod:`mlpoc.schema`);
``test_size`` (0.05-0.5, default 0.2): the share of rows held out; ``seed`` (the plugin's);
``promote``: ``auto`` (default: promote when the new version beats the promoted one on
``metric`` by more than ``min_improvement`` (:mod:`mlpoc.metrics`), both scored on the same
held-out rows, or when none is promoted), ``always`` or ``never``; ``then_predict``: an
``s3://`` CSV in the data bucket to pre-compute predictions for with the new version once it is
promoted; ``origin`` (``schedule`` or ``retrain``): kept on the version (``mlpoc models`` shows
it); ``review_threshold`` (0-1): the version's default for its predict jobs;
``feature_set`` and ``feature_version`` (``current``: the promoted one): the feature set version
whose snapshot is joined to the CSV by its key column before training (:mod:`mlpoc.features`).

**The held-out rows** are chosen per row, not at random: a row is held out when the hash of its
id (``id_column``), or of its feature cells, falls under ``test_size``. The same row is on the
same side in every version, so a retrain on more data never trains on rows an earlier version
was tested on, and the live version can be scored on the candidate's held-out rows: the rows
held out from both. Both scores are recorded (``compared``) and decide ``auto`` promotion;
a live version that cannot take the new table (another task, a column it needs is gone or
changed type) is not compared, and the candidate is not promoted automatically.

A dataset that is a folder (``s3://…/datasets/digits/``) is built first (:mod:`mlpoc.builds`):
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
import hashlib
import importlib.metadata
import json
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import numpy as np

import mlpoc
from mlpoc import artifacts, builds, datasets, features, inference, metrics, plugins, runs
from mlpoc.artifacts import ArtifactKeys
from mlpoc.contracts import Job, S3Uri, dataset_refusal
from mlpoc.errors import (
    ArtifactError,
    CommitConflict,
    DatasetError,
    JobFailed,
    RegistryError,
    TransientError,
)
from mlpoc.events import Event
from mlpoc.inference import OnnxModel, Predictions
from mlpoc.registry import ModelVersion, Pointer, Registry
from mlpoc.schedules import PROMOTE_POLICIES
from mlpoc.schema import CLASSIFICATION, REGRESSION, TABLE_PARAMS, Column, Layout
from mlpoc.worker.context import JobContext
from mlpoc.worker.publish import handle_features
from mlpoc.worker.thresholds import NO_REVIEW, check_threshold

log = logging.getLogger("mlpoc.worker")

MIN_ROWS = 10
COMMIT_ATTEMPTS = 5
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
# a schema bigger than this is kept whole in the version's metadata.json, and in the registry
# item without the categories seen (an item holds at most 400 KB)
SCHEMA_ITEM_BYTES = 64_000


def _options(
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


def held_out_share(key: str) -> float:
    """Where a row falls in [0, 1): held out when under ``test_size`` (the same in every run)."""
    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big") / 2**64


@dataclasses.dataclass(frozen=True)
class Split:
    train: datasets.TrainingSet
    test: datasets.TrainingSet
    shares: np.ndarray  # each held-out row's share (rows under another version's size too)


def split(data: datasets.TrainingSet, test_size: float) -> Split:
    rows = len(data.y)
    if rows < MIN_ROWS:
        raise DatasetError(f"the dataset has {rows} rows; training needs at least {MIN_ROWS}")
    if data.schema.task == CLASSIFICATION:
        classes = np.unique(data.y)
        if len(classes) < 2:  # noqa: PLR2004
            raise DatasetError(
                f"the label column has one class ({classes[0]!r}); it needs two or more"
            )
    shares = np.array([held_out_share(key) for key in data.keys])
    held = shares < test_size
    if not held.any() or held.all():
        raise DatasetError(
            f"none of the {rows} rows fell on the {'held-out' if not held.any() else 'training'} "
            f"side at test_size {test_size} (rows are assigned by their id or content, and "
            "identical rows go together): add rows, or change test_size"
        )
    train = data.take(~held)
    if data.schema.task == CLASSIFICATION and len(np.unique(train.y)) < 2:  # noqa: PLR2004
        raise DatasetError("the training rows hold one class: add rows of the other classes")
    return Split(train=train, test=data.take(held), shares=shares[held])


def _plugin_params(params: Mapping[str, Any], built: builds.Built | None) -> dict[str, Any]:
    """What the plugin is given: the job's params; over a folder, when the job names no
    parameter of the plugin's and no other plugin, the promoted version's parameters first."""
    own = {k for k in params if k not in KIT_PARAMS}
    if built is None or own or "plugin" in params:
        return dict(params)
    return {**built.base_params, **params}


def _review_threshold(params: Mapping[str, Any], built: builds.Built | None) -> dict[str, float]:
    """The version's own review threshold (``params.review_threshold``, 0-1): its predictions
    below it go to the review queue unless a predict job names another. A train job over a
    folder keeps the live version's when it names none."""
    threshold = params.get("review_threshold")
    if threshold is None:
        inherited = built.base_threshold if built is not None else None
        return {} if inherited is None else {"review_threshold": inherited}
    return {"review_threshold": check_threshold(threshold)}


def score(model: OnnxModel, rows: datasets.TrainingSet) -> dict[str, float]:
    """The model's metrics on ``rows``, computed by running its ONNX graph."""
    return evaluate(model, rows)[0]


def evaluate(model: OnnxModel, rows: datasets.TrainingSet) -> tuple[dict[str, float], Predictions]:
    """The model's metrics on ``rows`` and its predictions, from running its ONNX graph."""
    predictions = model.predict(rows.columns)
    if predictions.values is not None:
        return metrics.regression(predictions.values, rows.y), predictions
    return metrics.classification(predictions.labels, rows.y), predictions


def _served(
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


def _schema_item(schema: dict[str, Any]) -> dict[str, Any]:
    if len(json.dumps(schema)) <= SCHEMA_ITEM_BYTES:
        return schema
    return {
        **schema,
        "columns": [{k: v for k, v in c.items() if k != "categories"} for c in schema["columns"]],
        "categories_in": "metadata.json",
    }


def _feature_set(ctx: JobContext, built: builds.Built | None) -> features.Snapshot | None:
    """The snapshot of the feature set version the job joins: ``params.feature_set`` (over a
    folder, the live version's set by default) at ``params.feature_version``."""
    params = ctx.job.params
    name = params.get("feature_set", built.base_feature_set if built else None)
    if name is None:
        if "feature_version" in params:
            raise JobFailed("params.feature_version needs params.feature_set")
        return None
    name = features.check_name(name, "params.feature_set")
    spec = features.version_spec(params.get("feature_version", "current"))
    sets = features.FeatureSets(ctx.clients.dynamodb, ctx.settings.models_table)
    try:
        version = sets.resolve(name, spec)
    except RegistryError as error:
        raise JobFailed(str(error)) from None
    if version.expires_at is not None:
        raise JobFailed(
            f"feature set {name} v{version.version}: its online items are expiring, so a model "
            "trained on it could not be served; name a version that is kept"
        )
    return features.Snapshot.read(ctx.clients.s3, version)


def _join_features(
    ctx: JobContext, built: builds.Built | None, text: str, where: str, layout: Layout
) -> tuple[str, Callable[[Iterable[Column]], dict[str, Any]] | None]:
    """The table joined with its feature set version's snapshot, and how to record what the
    model took from it (None: no feature set)."""
    snapshot = _feature_set(ctx, built)
    if snapshot is None:
        return text, None
    key = snapshot.version.key
    joined = features.join(text, where, snapshot, keep_key=key == layout.id)
    return joined.text, lambda columns: features.record(snapshot.version, joined, columns)


def handle_train(ctx: JobContext) -> None:
    if ctx.job.type == "features":
        handle_features(ctx)
        return
    job, settings, clients = ctx.job, ctx.settings, ctx.clients
    test_size, promote_mode, then_predict = _options(job, settings.data_bucket, settings.sources)
    registry = Registry(clients.dynamodb, settings.models_table)
    dataset, text, built, default_plugin = job.dataset, None, None, plugins.DEFAULT_PLUGIN
    if job.over_prefix:  # a folder: build the dataset version (mlpoc.builds)
        outcome = builds.build(clients, settings, job, registry)
        if isinstance(outcome, builds.NothingNew):
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
    params = _plugin_params(job.params, built)
    layout = built.layout if built else Layout.from_params(job.params)
    if layout.task == REGRESSION and "review_threshold" in job.params:
        raise JobFailed(NO_REVIEW)
    threshold = _review_threshold(job.params, built)  # refused before any training, not after
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
            "schema": _schema_item(schema),
            "plugin_params": {k: v for k, v in params.items() if k not in KIT_PARAMS},
            "promotion": {"metric": metric, "min_improvement": least},
            "held_out": {"by": "id" if layout.id else "row", "share": test_size},
            **threshold,
            "train_rows": len(held.train.y),
            "test_rows": len(held.test.y),
            "run": runs.index_item(keys.metadata, read),
            **({"origin": origin} if (origin := builds.origin_of(job)) else {}),
            **({"inputs": built.inputs, "folder": str(job.dataset)} if built else {}),
            **({"feature_set": taken(data.schema.columns)} if taken else {}),
        },
    )
    # Metrics of the ONNX graph itself: what is recorded is what will be served.
    served, scores, held_out = _served(plugin, exported, version, held.test)
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
        {**_metadata(version, plugin, params, train_seconds), "schema": schema, "run": run},
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
    _register(
        ctx,
        registry,
        version,
        Candidate(served, held, promote_mode, least),
        then_predict=then_predict,
        summary=summary,
    )


@dataclasses.dataclass(frozen=True)
class Candidate:
    served: OnnxModel
    held: Split
    mode: str  # params.promote
    least: float  # params.min_improvement


def _register(
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


def _metadata(
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
