"""The monitor job: are a model's recent inputs still like its training data, and do the
corrections people make agree with its held-out score (:mod:`mlpoc.quality.monitoring`).

It runs on the predict workers (the predict queue). Its ``dataset`` says what "recent" is:

* the model's sample folder, ``input-samples/<model>/`` (what the scheduler and ``mlpoc monitor
  run`` send): every sample written in the last ``params.window_hours`` (168), grouped by the
  version that served it, at most :data:`MAX_ROWS` rows per version, newest first;
* any other CSV or folder the predict worker may read: those rows, against ``version``.

For each version it predicts the recent rows with the version itself (the prediction scores
drift too), and compares inputs and scores with the version's reference profile, recorded in its
run record. It reads the corrections for realized accuracy, writes the report to
``monitor/<model>/reports/`` and ``monitor/<model>/latest.json`` in the model bucket, and
publishes each alert to the alerts topic (the notifier posts it to Slack).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mlpoc.aws import bucket_layout
from mlpoc.aws.log_events import MONITOR_SOURCE
from mlpoc.data import datasets
from mlpoc.data.corrections import corrections
from mlpoc.errors import DatasetError, JobFailed
from mlpoc.models import runs
from mlpoc.models.inference import ModelCache
from mlpoc.models.registry import ModelVersion, Registry
from mlpoc.quality import input_samples, monitoring
from mlpoc.runtime.contract import S3Uri
from mlpoc.worker.context import JobContext

log = logging.getLogger("mlpoc.worker")

WINDOW_HOURS = 168
MAX_WINDOW_HOURS = 24 * 90
MAX_ROWS = 20_000  # recent rows per version (PSI over deciles is steady long before this)
SUBJECT = "mlpoc monitor"


@dataclass
class Recent:
    """The recent rows of one version, and where they came from."""

    version: ModelVersion
    parts: list[datasets.PredictionSet]  # one per object read
    skipped: list[str] = field(default_factory=list)  # samples that could not be read, and why

    @property
    def rows(self) -> int:
        return sum(len(p.ids) for p in self.parts)

    def columns(self) -> dict[str, np.ndarray]:
        names = [c.name for c in self.version.schema.columns]
        if not self.parts:
            return {}
        return {n: np.concatenate([p.columns[n] for p in self.parts]) for n in names}


def _window_hours(params: Mapping[str, Any]) -> float:
    value = params.get("window_hours", WINDOW_HOURS)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise JobFailed(f"params.window_hours must be a number of hours; got {value!r}")
    if not 0 < value <= MAX_WINDOW_HOURS:
        raise JobFailed(f"params.window_hours must be in (0, {MAX_WINDOW_HOURS}]; got {value}")
    return float(value)


class MonitorHandler:
    def __init__(self, cache: ModelCache) -> None:
        self.cache = cache

    def __call__(self, ctx: JobContext) -> None:
        job, settings, clients = ctx.job, ctx.settings, ctx.clients
        try:
            thresholds = monitoring.Thresholds.from_params(
                job.params,
                monitoring.Thresholds(
                    psi=settings.drift_psi,
                    share=settings.drift_share,
                    min_realized=settings.min_realized or None,
                ),
            )
        except ValueError as error:
            raise JobFailed(str(error)) from None
        registry = Registry(clients.dynamodb, settings.models_table)
        now = time.time()
        hours = _window_hours(job.params)
        if job.dataset.key == bucket_layout.sample_folder(job.model):
            recent = self._samples(ctx, registry, since=now - hours * 3600)
            window: dict[str, Any] = {"hours": hours, "since": round(now - hours * 3600, 3)}
        else:
            recent = self._given(ctx, registry)
            window = {"dataset": str(job.dataset)}
        versions = []
        for found in sorted(recent.values(), key=lambda r: -r.version.version):
            ctx.check_lease()
            versions.append(self._version(ctx, found, thresholds))
        realized = monitoring.realized(
            corrections(clients.dynamodb, settings.annotations_table, job.model),
            registry.versions(job.model),
        )
        said = monitoring.alerts(job.model, versions, realized, thresholds)
        report = {
            "model": job.model,
            "job_id": job.job_id,
            "created_at": round(now, 3),
            "window": window,
            "thresholds": thresholds.to_json(),
            "versions": versions,
            "realized": realized,
            "alerts": said,
        }
        key = bucket_layout.report_key(job.model, input_samples.stamp(now), job.job_id)
        body = json.dumps(report, separators=(",", ":")).encode()
        for target in (key, bucket_layout.latest_report_key(job.model)):
            clients.s3.put_object(
                Bucket=settings.model_bucket, Key=target, Body=body, ContentType="application/json"
            )
        published = self._alert(ctx, said) if said else 0
        ctx.commit(
            {
                "report": f"s3://{settings.model_bucket}/{key}",
                "versions": [v["version"] for v in versions],
                "rows": sum(v["rows"] for v in versions),
                "drifting_versions": [v["version"] for v in versions if v["drift"]],
                "alerts": len(said),
                "published": published,
            }
        )

    def _samples(self, ctx: JobContext, registry: Registry, *, since: float) -> dict[int, Recent]:
        job, clients = ctx.job, ctx.clients
        folder = S3Uri(ctx.settings.data_bucket, bucket_layout.sample_folder(job.model))
        listed = datasets.listed_csvs(clients.s3, folder)
        objects = [o for o in listed if o["LastModified"].timestamp() >= since]
        objects.sort(key=lambda o: o["LastModified"], reverse=True)
        recent: dict[int, Recent] = {}
        for found in objects:
            number = found["Key"][len(folder.key) :].split("/", 1)[0]
            if not number.isdigit():
                continue
            if int(number) not in recent:
                recent[int(number)] = Recent(registry.get(job.model, int(number)), [])
            try:
                self._add(ctx, recent[int(number)], S3Uri(folder.bucket, found["Key"]))
            except DatasetError as error:  # one bad sample (put there by hand?) is not the job
                recent[int(number)].skipped.append(str(error)[:300])
        return recent

    def _given(self, ctx: JobContext, registry: Registry) -> dict[int, Recent]:
        job = ctx.job
        version = registry.resolve(job.model, job.version)
        found = Recent(version, [])
        keys = (
            [
                S3Uri(job.dataset.bucket, o["Key"])
                for o in datasets.listed_csvs(ctx.clients.s3, job.dataset)
            ]
            if job.over_prefix
            else [job.dataset]
        )
        for uri in keys:
            self._add(ctx, found, uri)
        return {version.version: found}

    def _add(self, ctx: JobContext, found: Recent, uri: S3Uri) -> None:
        if found.rows >= MAX_ROWS:
            return
        ctx.check_lease()
        data = datasets.parse_prediction(
            datasets.fetch(ctx.clients.s3, uri), str(uri), found.version.schema
        )
        keep = min(len(data.ids), MAX_ROWS - found.rows)
        found.parts.append(datasets.PredictionSet(data.ids[:keep], data.rows(0, keep)))

    def _version(
        self, ctx: JobContext, found: Recent, thresholds: monitoring.Thresholds
    ) -> dict[str, Any]:
        version = found.version
        head: dict[str, Any] = {"version": version.version, "objects": len(found.parts)}
        if found.skipped:
            head["skipped"] = found.skipped
        metadata = runs.metadata(ctx.clients.s3, ctx.settings.model_bucket, version)
        profile = ((metadata or {}).get("run") or {}).get("profile")
        if not profile:
            return {
                **head,
                "rows": found.rows,
                "judged": False,
                "why": "the version has no reference profile (trained before run records were "
                "kept, or its metadata.json is gone): retrain to monitor it",
                "drifting": [],
                "share": 0.0,
                "drift": False,
            }
        columns = found.columns()
        predictions = self.cache.get(version).predict(columns) if found.rows else None
        return {**head, **monitoring.drift(profile, columns, predictions, thresholds)}

    def _alert(self, ctx: JobContext, said: list[str]) -> int:
        topic = ctx.settings.alerts_topic_arn
        if not topic:
            log.warning("monitor.alert_unsent", extra={"alerts": said, "why": "no topic"})
            return 0
        message = json.dumps(
            {
                "source": MONITOR_SOURCE,
                "model": ctx.job.model,
                "job_id": ctx.job.job_id,
                "alerts": said,
            }
        )
        ctx.clients.sns.publish(TopicArn=topic, Subject=SUBJECT, Message=message)
        return 1
