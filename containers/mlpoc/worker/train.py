"""The train job: CSV -> plugin -> ONNX -> held-out metrics -> artifact -> registry (+ promotion).

``params`` (all optional): ``plugin`` (default ``sklearn``) and that plugin's own parameters;
``test_size`` (0.05-0.5, default 0.2) and ``seed`` for the stratified held-out split;
``promote``: ``auto`` (default: promote when the new version beats the promoted one on
accuracy, or when none is promoted), ``always`` or ``never``; ``then_predict``: an ``s3://`` CSV
in the data bucket to pre-compute predictions for with the new version once it is promoted;
``origin`` (``schedule`` or ``retrain``): kept on the version (``mlpoc models`` shows it);
``review_threshold`` (0-1): the version's default for its predict jobs.

A dataset that is a folder (``s3://…/datasets/digits/``) is built first (:mod:`mlpoc.builds`):
the promoted version's data, the new CSVs in the folder, every correction; with nothing new the
job ends SUCCEEDED with ``"outcome": "nothing new"``. The plugin defaults to the promoted
version's, and so do its parameters when the job names none of its own (a retrain or a
scheduled run trains the live model's configuration again, not the plugin's defaults). Each
version records its plugin's parameters (``plugin_params``).
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import logging
import time
from collections.abc import Mapping
from typing import Any

import numpy as np
from sklearn.model_selection import train_test_split

import mlpoc
from mlpoc import artifacts, builds, datasets, plugins
from mlpoc.artifacts import ArtifactKeys
from mlpoc.contracts import Job, S3Uri, dataset_refusal
from mlpoc.errors import CommitConflict, DatasetError, JobFailed, TransientError
from mlpoc.events import Event
from mlpoc.inference import OnnxClassifier
from mlpoc.registry import PRIMARY_METRIC, ModelVersion, Pointer, Registry
from mlpoc.schedules import PROMOTE_POLICIES
from mlpoc.worker.context import JobContext
from mlpoc.worker.thresholds import check_threshold

log = logging.getLogger("mlpoc.worker")

MIN_ROWS = 10
COMMIT_ATTEMPTS = 5
# the train job's own parameters; every other key of params is the plugin's
KIT_PARAMS = frozenset(
    {"plugin", "origin", "promote", "test_size", "seed", "then_predict", "review_threshold"}
)


def evaluate(predicted: list[str], truth: np.ndarray, classes: list[str]) -> dict[str, float]:
    """Accuracy and macro-averaged F1 of the served (ONNX) model on the held-out rows."""
    pred = np.asarray(predicted, dtype=object)
    scores = []
    for c in classes:
        tp = int(np.sum((pred == c) & (truth == c)))
        fp = int(np.sum((pred == c) & (truth != c)))
        fn = int(np.sum((pred != c) & (truth == c)))
        scores.append(2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0)
    return {
        "accuracy": round(float(np.mean(pred == truth)), 6),
        "macro_f1": round(float(np.mean(scores)), 6),
    }


def _options(
    job: Job, data_bucket: str, sources: tuple[S3Uri, ...] = ()
) -> tuple[float, int, str, S3Uri | None]:
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
    return float(test_size), seed, promote, uri


def split(
    data: datasets.TrainingSet, test_size: float, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    if len(data.y) < MIN_ROWS:
        raise DatasetError(
            f"the dataset has {len(data.y)} rows; training needs at least {MIN_ROWS}"
        )
    classes, counts = np.unique(data.y, return_counts=True)
    if len(classes) < 2:  # noqa: PLR2004
        raise DatasetError(f"the label column has one class ({classes[0]!r}); it needs two or more")
    rare = [str(c) for c, n in zip(classes, counts, strict=True) if n < 2]  # noqa: PLR2004
    if rare:
        raise DatasetError(
            f"label(s) {rare[:10]} appear only once; each class needs at least 2 rows for a "
            "held-out split: add examples or drop those rows"
        )
    try:
        x_train, x_test, y_train, y_test = train_test_split(
            data.x, data.y, test_size=test_size, random_state=seed, stratify=data.y
        )
    except ValueError as error:  # test split too small to hold every class
        raise DatasetError(f"cannot make a stratified held-out split: {error}") from None
    return x_train, x_test, y_train, y_test


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


def _served_labels(
    plugin: plugins.Plugin,
    exported: plugins.ExportedModel,
    version: ModelVersion,
    x_test: np.ndarray,
) -> list[str]:
    """The held-out rows through the plugin's ONNX graph in onnxruntime, as the API will run
    it; a graph onnxruntime refuses fails the job at once (it would on every retry)."""
    try:
        return list(OnnxClassifier(exported.onnx, version).predict(x_test).labels)
    except Exception as error:
        raise plugins.PluginCrashed(
            f"the ONNX model of the plugin {plugin.name!r}, run by onnxruntime,", error
        ) from error


def should_promote(mode: str, metric: float, pointer: Pointer | None) -> bool:
    if mode == "never":
        return False
    if mode == "always" or pointer is None or pointer.promoted is None:
        return True
    return pointer.promoted_metric is None or metric > pointer.promoted_metric


def handle_train(ctx: JobContext) -> None:
    job, settings, clients = ctx.job, ctx.settings, ctx.clients
    test_size, seed, promote_mode, then_predict = _options(
        job, settings.data_bucket, settings.sources
    )
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
    threshold = _review_threshold(job.params, built)  # refused before any training, not after

    started = time.monotonic()
    if text is None:
        text = datasets.fetch(clients.s3, dataset)
    data = datasets.parse_training(text, str(dataset))
    x_train, x_test, y_train, y_test = split(data, test_size, seed)
    exported = plugins.run_train(plugin, x_train, y_train, params)
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
            "plugin_params": {k: v for k, v in params.items() if k not in KIT_PARAMS},
            **threshold,
            "train_rows": len(y_train),
            "test_rows": len(y_test),
            **({"origin": origin} if (origin := builds.origin_of(job)) else {}),
            **({"inputs": built.inputs, "folder": str(job.dataset)} if built else {}),
        },
    )
    # Metrics of the ONNX graph itself: what is recorded is what will be served.
    metrics = evaluate(_served_labels(plugin, exported, version, x_test), y_test, exported.classes)
    version = dataclasses.replace(version, metrics=metrics)
    artifacts.write(
        clients.s3,
        settings.model_bucket,
        keys,
        exported.onnx,
        _metadata(version, plugin, params, train_seconds),
    )
    ctx.check_lease()

    for _ in range(COMMIT_ATTEMPTS):
        pointer = registry.pointer(job.model)
        promote = should_promote(promote_mode, version.metric, pointer)
        extra: list[Mapping[str, Any]] = [{"Put": registry.put_version_request(version)}]
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
            "metrics": metrics,
            "sha256": version.sha256,
            "artifact": f"s3://{settings.model_bucket}/{keys.onnx}",
            "train_seconds": train_seconds,
            **({"dataset": str(dataset), "built": built.summary()} if built else {}),
        }
        try:
            ctx.commit(result, extra=extra, followups=followups)
        except CommitConflict as conflict:
            log.info(Event.TRAIN_COMMIT_CONFLICT, extra={"codes": conflict.codes})
            continue
        log.info(
            "train.registered",
            extra={"model_version": number, PRIMARY_METRIC: version.metric, "promoted": promote},
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
