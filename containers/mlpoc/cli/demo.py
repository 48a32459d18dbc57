"""``mlpoc demo``: the whole loop on scikit-learn's digits, against the local stack.

Upload a training set (the upload function starts the training job), upload a set to predict
(pre-computed predictions), ask the realtime API, correct a few low-confidence answers on the
annotation queue, retrain on base + corrections, promote, check drift, and then serve by key:
publish the images as a feature set, train a model that reads it, and ask for one image by its
key alone.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from mlpoc.aws import bucket_layout
from mlpoc.cli import ops
from mlpoc.cli.target import Deployment
from mlpoc.data import digits
from mlpoc.errors import DemoError, TargetError

MODEL = "digits"
FEATURE_SET = "images"  # the digits as a feature set keyed by image (digits.feature_set_csv)
BY_KEY = "digits-by-key"  # a model trained on keys and labels, joined with that set
TRAIN_ROWS = slice(0, 1400)  # 1,400 labelled images to train on (20 % held out for metrics)
PREDICT_ROWS = slice(1400, None)  # the other 397 to pre-compute predictions for
CORRECTIONS = 5
JOB_TIMEOUT = 120.0
UPLOAD_TIMEOUT = 30.0
Step = Callable[[str, str], None]  # (step, status) -> None: progress for the CLI


class Api:
    """The API over HTTP, as any client would call it (X-API-Key header, JSON)."""

    def __init__(self, url: str, key: str) -> None:
        self.url = url.rstrip("/")
        self.key = key

    def call(self, method: str, path: str, body: Any = None) -> Any:
        request = urllib.request.Request(  # noqa: S310 - the local API's http URL
            self.url + path,
            method=method,
            data=None if body is None else json.dumps(body).encode(),
            headers={"X-API-Key": self.key, "Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
                return json.loads(response.read() or b"null")
        except urllib.error.HTTPError as error:
            raise DemoError(
                f"{method} {path} answered {error.code}: {error.read()[:300]!r}"
            ) from None


@dataclass
class DemoResult:
    jobs: list[dict[str, Any]] = field(default_factory=list)
    realtime: list[dict[str, Any]] = field(default_factory=list)
    realtime_ms: float = 0.0
    corrections: list[dict[str, Any]] = field(default_factory=list)
    promoted: int | None = None
    auto_promoted: bool = False
    predictions_stored: int = 0
    summary: list[ops.ModelSummary] = field(default_factory=list)
    monitor: dict[str, Any] | None = None  # the monitor job's report
    by_key: dict[str, Any] | None = None  # one realtime prediction by entity key


def upload_job(dep: Deployment, key: str, body: str, step: Step, name: str) -> str:
    """Upload under datasets/ like a user would; the job the upload function recorded."""
    bucket = dep.output("DataBucketName")
    dep.client("s3").put_object(Bucket=bucket, Key=key, Body=body.encode())
    step(name, "waiting for the upload event")
    uri = f"s3://{bucket}/{key}"
    ledger = dep.ledger()
    deadline = time.monotonic() + UPLOAD_TIMEOUT
    while time.monotonic() < deadline:
        for record in ledger.recent(limit=1000):
            if record.get("dataset") == uri:
                return str(record["job_id"])
        time.sleep(0.3)
    raise DemoError(
        f"no job was started for {uri} within {UPLOAD_TIMEOUT:.0f} s: see the upload log"
    )


def finish(dep: Deployment, job_id: str, step: Step, name: str) -> dict[str, Any]:
    record = ops.wait_for(
        dep,
        [job_id],
        timeout=JOB_TIMEOUT,
        on_poll=lambda records: step(name, str(records[job_id].get("status", "?"))),
    )[job_id]
    if record["status"] != "SUCCEEDED":
        raise DemoError(f"job {job_id} {record['status']}: {record.get('reason', '')}")
    return record


def run(dep: Deployment, api: Api, step: Step) -> DemoResult:
    """``step(name, status)`` reports progress; returns what the summary shows."""
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
    result = loop(dep, api, step, stamp)
    by_key(dep, api, step, stamp, result)
    return result


def loop(dep: Deployment, api: Api, step: Step, stamp: str) -> DemoResult:
    """Train, predict, correct, retrain, promote and monitor the digits model."""
    result = DemoResult()

    name = "train v1 on 1,400 labelled digits"
    step(name, "uploading")
    train_csv = digits.training_csv(TRAIN_ROWS)
    train_id = upload_job(
        dep, bucket_layout.dataset_key(MODEL, f"train-{stamp}.csv"), train_csv, step, name
    )
    result.jobs.append(finish(dep, train_id, step, name))

    name = "pre-compute predictions for 397 digits"
    step(name, "uploading")
    score_csv = digits.prediction_csv(PREDICT_ROWS)
    predict_id = upload_job(
        dep, bucket_layout.dataset_key(MODEL, f"score-{stamp}.csv"), score_csv, step, name
    )
    predicted = finish(dep, predict_id, step, name)
    result.jobs.append(predicted)
    result.predictions_stored = int(predicted.get("result", {}).get("rows", 0))

    step("realtime predictions", "POST /v1/predict")
    x, y = digits.digits(slice(1790, 1797))
    rows = [dict(zip(digits.FEATURES, map(float, r), strict=True)) for r in x]
    started = time.perf_counter()
    answer = api.call("POST", "/v1/predict", {"model": MODEL, "rows": rows})
    result.realtime_ms = (time.perf_counter() - started) * 1000
    result.realtime = [
        {**p, "truth": str(t)} for p, t in zip(answer["predictions"], y, strict=True)
    ]

    name = f"correct {CORRECTIONS} low-confidence answers"
    step(name, "reading the review queue")
    queue = api.call("GET", f"/v1/annotations/{MODEL}?limit={CORRECTIONS}")["items"]
    _, truth = digits.digits()
    for item in queue[:CORRECTIONS]:
        label = str(truth[int(str(item["item_id"]).removeprefix("digit-"))])
        api.call("POST", f"/v1/annotations/{MODEL}", {"item_id": item["item_id"], "label": label})
        result.corrections.append({**item, "corrected_to": label})
        step(name, f"{len(result.corrections)} corrected")
    if not result.corrections:
        raise DemoError("the review queue was empty: no prediction fell below the threshold")

    name = "retrain v2 on base set + corrections"
    step(name, "submitting")
    retrain = api.call("POST", f"/v1/annotations/{MODEL}/retrain")
    retrained = finish(dep, retrain["job_id"], step, name)
    result.jobs.append(retrained)
    new_version = int(retrained["result"]["model_version"])
    result.auto_promoted = bool(retrained["result"].get("promoted"))

    step(f"promote v{new_version}", f"POST /v1/models/{MODEL}/promote")
    promoted = api.call("POST", f"/v1/models/{MODEL}/promote", {"version": new_version})
    result.promoted = int(promoted["promoted"])
    result.summary = ops.models(dep, MODEL)
    if result.promoted != new_version:
        raise TargetError(f"promotion of v{new_version} did not take: v{result.promoted} is live")

    name = "monitor: drift of the recent inputs, realized accuracy"
    step(name, "submitting")
    job = ops.submit(
        dep,
        job_type="monitor",
        model=MODEL,
        dataset=ops.sample_folder(dep, MODEL),
        params={"window_hours": 1},
        job_id=f"demo-monitor-{stamp}",
    )
    result.jobs.append(finish(dep, job.job_id, step, name))
    result.monitor = ops.latest_report(dep, MODEL)
    return result


def by_key(dep: Deployment, api: Api, step: Step, stamp: str, result: DemoResult) -> None:
    """Features outside the model: publish the images as a feature set (a features job),
    train a model on keys and labels joined with it, and predict one image by its key."""
    bucket = dep.output("DataBucketName")
    s3 = dep.client("s3")
    name = f"publish feature set {FEATURE_SET} (1,797 images by key)"
    step(name, "uploading")
    key = bucket_layout.input_key(FEATURE_SET, stamp, "images.csv")
    s3.put_object(Bucket=bucket, Key=key, Body=digits.feature_set_csv().encode())
    job = ops.submit(
        dep,
        job_type="features",
        model=FEATURE_SET,
        dataset=f"s3://{bucket}/{key}",
        params={"key": "image"},
        job_id=f"demo-features-{stamp}",
    )
    result.jobs.append(finish(dep, job.job_id, step, name))

    name = f"train {BY_KEY} on keys and labels only"
    step(name, "uploading")
    key = bucket_layout.input_key(BY_KEY, stamp, "train.csv")
    s3.put_object(Bucket=bucket, Key=key, Body=digits.keyed_csv(TRAIN_ROWS, labels=True).encode())
    job = ops.submit(
        dep,
        job_type="train",
        model=BY_KEY,
        dataset=f"s3://{bucket}/{key}",
        params={"feature_set": FEATURE_SET},
        job_id=f"demo-by-key-{stamp}",
    )
    result.jobs.append(finish(dep, job.job_id, step, name))

    step("realtime prediction by key", "POST /v1/predict")
    wanted = digits.image_key(1796)
    started = time.perf_counter()
    answer = api.call("POST", "/v1/predict", {"model": BY_KEY, "keys": [wanted]})
    _, truth = digits.digits()
    result.by_key = {
        **answer["predictions"][0],
        "model": BY_KEY,
        "truth": str(truth[1796]),
        "features": answer["features"],
        "ms": (time.perf_counter() - started) * 1000,
    }
