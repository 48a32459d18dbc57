"""``mlpoc smoke``: after a deploy, prove the loop works end to end, then clean up after itself.

One model of its own (``smoke-<hex>``): a tiny digits set uploaded under ``inputs/`` and trained,
predictions stored for a few rows, the ledger read back; the API called through its public
address with the key (and refused without it); on AWS, a direct call to the instance (refused:
only CloudFront gets through) and one alarm sent to ALARM and back to OK, followed until the
notify function logs it (the alert path: alarm → topic → function). Everything it made is
deleted at the end (objects with all their versions, registry and prediction items, its ledger
records), whatever failed.
"""

from __future__ import annotations

import json
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from mlpoc.aws import bucket_layout, dynamo
from mlpoc.cli import ops
from mlpoc.cli.target import Deployment
from mlpoc.data import digits
from mlpoc.errors import TargetError

TRAIN_ROWS = slice(0, 300)
PREDICT_ROWS = slice(300, 310)
Progress = Callable[[str], None]


@dataclass(frozen=True)
class Step:
    name: str
    ok: bool | None  # None: does not apply to this target
    detail: str


@dataclass
class Smoke:
    dep: Deployment
    timeout: float
    progress: Progress = lambda _: None
    model: str = field(default_factory=lambda: f"smoke-{uuid.uuid4().hex[:6]}")
    jobs: list[str] = field(default_factory=list)
    steps: list[Step] = field(default_factory=list)

    def run(self) -> list[Step]:
        try:
            with self._step("train on a tiny dataset"):
                trained = self._job("train", digits.training_csv(TRAIN_ROWS))
                metrics = trained["result"]["metrics"]
                self._ok(
                    "train on a tiny dataset",
                    f"v{trained['result']['model_version']}, "
                    f"held-out accuracy {metrics['accuracy']:.3f}",
                )
            with self._step("predict and store"):
                predicted = self._job("predict", digits.prediction_csv(PREDICT_ROWS))
                self._ok("predict and store", f"{predicted['result']['rows']} predictions stored")
            with self._step("read the ledger"):
                records = {j: self.dep.ledger().get(j) for j in self.jobs}
                done = sorted(r["status"] for r in records.values() if r)
                self._ok("read the ledger", f"{len(records)} records: {', '.join(done)}")
            with self._step("API with the key"):
                self._api_with_key()
            with self._step("API without the key"):
                status = self._call(self._api_url() + "/v1/jobs", key=None)[0]
                if status != 401:  # noqa: PLR2004
                    raise SmokeFailed(f"answered {status}, not 401")
                self._ok("API without the key", "401 (refused)")
            self._instance_refuses()
            self._alert_path()
        finally:
            self.cleanup()
        return self.steps

    # -- steps -------------------------------------------------------------------------------
    def _job(self, job_type: str, csv: str) -> dict[str, Any]:
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / f"{job_type}.csv"
            path.write_text(csv)
            job = ops.submit(
                self.dep,
                job_type="train" if job_type == "train" else "predict",
                model=self.model,
                dataset=str(path),
                params={"promote": "always"} if job_type == "train" else None,
            )
        self.jobs.append(job.job_id)
        self.progress(f"{job_type} job {job.job_id} queued; waiting (a worker may scale from 0)")
        record = ops.wait_for(self.dep, [job.job_id], timeout=self.timeout)[job.job_id]
        if record.get("status") != "SUCCEEDED":
            raise SmokeFailed(f"job {job.job_id} {record.get('status')}: {record.get('reason')}")
        return record

    def _api_url(self) -> str:
        if not self.dep.api_url:
            raise SmokeFailed("the stacks have no ApiUrl output")
        return self.dep.api_url.rstrip("/")

    def _api_with_key(self) -> None:
        url = self._api_url()
        status, body = self._call(f"{url}/v1/jobs/{self.jobs[0]}", key=self.dep.api_key())
        if status != 200 or json.loads(body).get("status") != "SUCCEEDED":  # noqa: PLR2004
            raise SmokeFailed(f"GET /v1/jobs/{self.jobs[0]} answered {status}: {body[:200]!r}")
        row = dict.fromkeys(digits.FEATURES, 0.0)
        status, body = self._call(
            f"{url}/v1/predict", key=self.dep.api_key(), body={"model": self.model, "rows": [row]}
        )
        if status != 200:  # noqa: PLR2004
            raise SmokeFailed(f"POST /v1/predict answered {status}: {body[:200]!r}")
        self._ok("API with the key", f"{url}: the job's record and a realtime prediction")

    def _instance_refuses(self) -> None:
        name = "instance refuses direct calls"
        if self.dep.endpoint is not None:
            self.steps.append(Step(name, None, "no instance locally"))
            return
        with self._step(name):
            environment = self.dep.output("ApiEnvironmentName")
            found = self.dep.client("elasticbeanstalk").describe_environments(
                EnvironmentNames=[environment]
            )["Environments"]
            address = found[0]["EndpointURL"] if found else ""
            if not address:
                raise SmokeFailed(f"environment {environment} has no address")
            try:
                status = self._call(f"http://{address}/v1/jobs", key=self.dep.api_key())[0]
            except (urllib.error.URLError, TimeoutError, OSError) as error:
                self._ok(name, f"http://{address}: no connection ({error})")
                return
            if status != 403:  # noqa: PLR2004
                raise SmokeFailed(f"http://{address}/v1/jobs answered {status} around CloudFront")
            self._ok(name, f"http://{address}: 403 (no CloudFront origin header)")

    def _alert_path(self) -> None:
        name = "alarm reaches the notify function"
        if self.dep.endpoint is not None:
            self.steps.append(Step(name, None, "no alarms locally"))
            return
        with self._step(name):
            cloudwatch, logs = self.dep.client("cloudwatch"), self.dep.client("logs")
            alarm = self.dep.output("SmokeAlarmName")
            group = self.dep.output("NotifyLogGroup")
            since = int(time.time() * 1000)
            cloudwatch.set_alarm_state(
                AlarmName=alarm,
                StateValue="ALARM",
                StateReason="mlpoc smoke: proving the alert path",
            )
            try:
                deadline = time.monotonic() + 120
                while time.monotonic() < deadline:
                    events = logs.filter_log_events(
                        logGroupName=group, startTime=since, filterPattern=f'"{alarm}"'
                    ).get("events", [])
                    if events:
                        self._ok(name, f"{alarm} → topic → {group}")
                        return
                    time.sleep(5)
                raise SmokeFailed(
                    f"{alarm} went to ALARM but {group} logged nothing within 120 s: check the "
                    "topic's policy and the key policy (CloudWatch must be allowed)"
                )
            finally:
                cloudwatch.set_alarm_state(
                    AlarmName=alarm, StateValue="OK", StateReason="mlpoc smoke: done"
                )

    # -- cleanup -----------------------------------------------------------------------------
    def cleanup(self) -> None:
        """Delete what the smoke test made: best effort, each failure named as a step."""
        with self._step("clean up"):
            s3 = self.dep.client("s3")
            removed = 0
            for bucket, prefix in (
                (self.dep.output("DataBucketName"), f"{bucket_layout.INPUTS.path}{self.model}/"),
                (
                    self.dep.output("ModelBucketName"),
                    f"{bucket_layout.MODEL_ARTIFACTS.path}{self.model}/",
                ),
            ):
                removed += _delete_versions(s3, bucket, prefix)
            dynamodb = self.dep.client("dynamodb")
            items = 0
            for output, sort in (
                ("ModelsTableName", "version"),
                ("PredictionsTableName", "item_id"),
            ):
                table = self.dep.output(output)
                for item in dynamo.partition(dynamodb, table, "model", self.model):
                    dynamodb.delete_item(
                        TableName=table,
                        Key={"model": {"S": self.model}, sort: {"S": str(item[sort])}},
                    )
                    items += 1
            for job_id in self.jobs:
                dynamodb.delete_item(
                    TableName=self.dep.output("JobsTableName"), Key={"job_id": {"S": job_id}}
                )
            self._ok(
                "clean up",
                f"{removed} object versions, {items} items, "
                f"{len(self.jobs)} ledger records of {self.model}",
            )

    # -- helpers -----------------------------------------------------------------------------
    @contextmanager
    def _step(self, name: str) -> Iterator[None]:
        self.progress(name)
        try:
            yield
        except (SmokeFailed, TargetError, ClientError, BotoCoreError, KeyError, OSError) as error:
            # OSError: the API or the instance unreachable (urllib's URLError is one)
            self.steps.append(Step(name, False, str(error)))
            if name != "clean up":
                raise StopSmoke from None

    def _ok(self, name: str, detail: str) -> None:
        self.steps.append(Step(name, True, detail))

    def _call(self, url: str, *, key: str | None, body: Any = None) -> tuple[int, bytes]:
        headers = {"Content-Type": "application/json", **({"X-API-Key": key} if key else {})}
        request = urllib.request.Request(  # noqa: S310 - the stack's own API
            url, data=None if body is None else json.dumps(body).encode(), headers=headers
        )
        try:
            with urllib.request.urlopen(request, timeout=15) as response:  # noqa: S310
                return response.status, response.read()
        except urllib.error.HTTPError as error:
            return error.code, error.read()


class SmokeFailed(Exception):
    """One step did not do what it should; the message says what happened."""


class StopSmoke(Exception):
    """A step failed: the later ones depend on it (cleanup still runs)."""


def _delete_versions(s3: Any, bucket: str, prefix: str) -> int:
    """Every version and delete marker under ``prefix`` (the buckets are versioned)."""
    removed = 0
    for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket, Prefix=prefix):
        objects = [
            {"Key": v["Key"], "VersionId": v["VersionId"]}
            for v in [*page.get("Versions", []), *page.get("DeleteMarkers", [])]
        ]
        if objects:
            s3.delete_objects(Bucket=bucket, Delete={"Objects": objects, "Quiet": True})
            removed += len(objects)
    return removed


def run_smoke(dep: Deployment, *, timeout: float, progress: Progress) -> list[Step]:
    smoke = Smoke(dep, timeout=timeout, progress=progress)
    try:
        return smoke.run()
    except StopSmoke:
        return smoke.steps
