"""The images `cdk deploy` builds, run as containers (`make images` builds them first).

* The workers run as ECS runs them (the task definition's command, environment, read-only root
  and stop timeout; the image's user) under their task roles' local credentials, IAM enforced,
  against a moto server in its own process: a missing grant fails here.
* The Beanstalk bundle runs as Beanstalk runs it: the synthesized asset's compose file under
  Docker Compose v2, with a .env written from the environment's properties, nginx in front.

Skipped with the reason on a machine without a Docker engine or images; failed in CI.
"""

from __future__ import annotations

import gzip
import json
import re
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from mlpoc.aws import bucket_layout
from mlpoc.data import digits
from mlpoc.models.registry import Registry
from mlpoc.runtime import submission
from mlpoc.runtime.contract import QUEUE_OF_TYPE, QUEUE_OUTPUTS, parse_job
from mlpoc.runtime.ledger import Ledger
from tests.support.cdk_app import Synthesized
from tests.support.containers import (
    SAMPLE_EVERY_REQUEST,
    Bundle,
    Container,
    Images,
    beanstalk_env,
    bundle_directory,
    compose_command,
    free,
    images,
    local_aws,
    run,
    run_worker,
    write_env_file,
)
from tests.support.enforced import EnforcedStack, deploy_enforced, moto_process
from tests.support.pipeline import scan
from tests.support.workers import wait_for, wait_for_status

pytestmark = [pytest.mark.integration, pytest.mark.containers]

ORIGIN = "origin-" + "o" * 40
HEALTHD = re.compile(r'^\d+\.\d{3}"(?P<uri>[^"]*)"(?P<status>\d{3})"\d+\.\d{3}"[\d.-]*"[^"]*$')
# a forest big enough that a stop lands while it trains (seconds, not minutes)
SLOW = {"estimator": "random_forest", "n_estimators": 400}


@pytest.fixture(scope="module")
def found() -> Images:
    return images()


@pytest.fixture(scope="module")
def poc(found: Images, tmp_path_factory: pytest.TempPathFactory) -> Synthesized:
    """cdk.json's app with its assets staged as `cdk synth` stages them (the bundle's files)."""
    return Synthesized(tmp_path_factory.mktemp("cdk-bundled"), bundling=True)


@pytest.fixture(scope="module")
def stack(found: Images, poc: Synthesized) -> Iterator[EnforcedStack]:
    with moto_process(covered=False) as endpoint:
        yield deploy_enforced(endpoint, poc, origin_secret=ORIGIN)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("containers")


class Jobs:
    """Submits jobs as the operator does (ledger record + message) and reads them back."""

    def __init__(self, stack: EnforcedStack) -> None:
        self.stack = stack
        self.sqs = stack.client("operator", "sqs")
        self.s3 = stack.client("operator", "s3")
        self.dynamodb = stack.client("operator", "dynamodb")
        self.ledger = Ledger(self.dynamodb, stack.outputs["JobsTableName"])
        self.bucket = stack.outputs["DataBucketName"]

    def upload(self, key: str, text: str) -> str:
        self.s3.put_object(Bucket=self.bucket, Key=key, Body=text.encode())
        return f"s3://{self.bucket}/{key}"

    def submit(
        self, job_id: str, kind: str, dataset: str, model: str = "digits", **params: Any
    ) -> None:
        body = json.dumps(
            {"schema": 1, "job_id": job_id, "type": kind, "model": model,
             "dataset": dataset, "params": params}
        )  # fmt: skip
        job = parse_job(body, data_bucket=self.bucket)
        queue = self.stack.outputs[QUEUE_OUTPUTS[QUEUE_OF_TYPE[kind]]]
        assert submission.submit(self.ledger, self.sqs, queue_url=queue, job=job, source="test")

    def wait(self, job_id: str, statuses: set[str], timeout: float = 180) -> dict[str, Any]:
        return wait_for_status(self.ledger, job_id, statuses, timeout=timeout)


@dataclass
class Rig:
    """What a worker container needs: the images, the stack, its template, a folder."""

    found: Images
    stack: EnforcedStack
    poc: Synthesized
    workdir: Path
    jobs: Jobs

    def worker(self, role: str, name: str, **overrides: str) -> Container:
        return run_worker(
            self.found, self.stack, self.poc.service_json, role,
            name=name, workdir=self.workdir, overrides=overrides,
        )  # fmt: skip


@pytest.fixture(scope="module")
def rig(
    found: Images, stack: EnforcedStack, poc: Synthesized, workdir: Path, submitted: Jobs
) -> Rig:
    return Rig(found, stack, poc, workdir, submitted)


@dataclass
class Trained:
    train: dict[str, Any]
    predict: dict[str, Any]
    logs: dict[str, str]  # role -> the container's output
    inspected: dict[str, dict[str, Any]]  # role -> docker inspect's Config and HostConfig
    stopped: dict[str, tuple[int, float]]  # role -> (exit code, seconds) of an idle stop
    example: dict[str, Any]  # the worked example: LightGBM (a plugin in the image) on penguins
    monitors: dict[str, dict[str, Any]]  # model -> its monitor job's ledger record
    by_key: dict[str, dict[str, Any]]  # features, train and predict jobs by key: their records


def penguins_csv() -> str:
    """The worked example's table: palmerpenguins' own CSV with an id (text, blanks)."""
    from palmerpenguins import load_penguins

    table = load_penguins()
    table.insert(0, "penguin", [f"p{i}" for i in range(len(table))])
    return str(table.to_csv(index=False))


@pytest.fixture(scope="module")
def submitted(stack: EnforcedStack) -> Jobs:
    return Jobs(stack)


@pytest.fixture(scope="module")
def trained(rig: Rig) -> Trained:
    """A train job, then a predict job, each run by its worker's container; then both stopped
    (idle) and removed, so that the later tests' containers are the only consumers."""
    submitted = rig.jobs
    # GIVEN digits rows 0-1499 to train on and rows 1500-1796 to score
    train_csv = submitted.upload("datasets/digits/train.csv", digits.training_csv(slice(0, 1500)))
    score_csv = submitted.upload(
        "datasets/digits/score.csv", digits.prediction_csv(slice(1500, 1797))
    )
    containers = {role: rig.worker(role, f"mlpoc-test-{role}") for role in ("train", "predict")}
    try:
        # WHEN a train job and then a predict job are submitted
        submitted.submit("c-train-1", "train", train_csv)
        train = submitted.wait("c-train-1", {"SUCCEEDED", "FAILED"})
        submitted.submit("c-predict-1", "predict", score_csv, review_threshold=0.95)
        predict = submitted.wait("c-predict-1", {"SUCCEEDED", "FAILED"})
        # AND the worked example: the image's LightGBM plugin on the team's penguins table
        table = submitted.upload("inputs/penguins/train.csv", penguins_csv())
        submitted.submit(
            "c-train-penguins", "train", table, model="penguins", plugin="lightgbm",
            label_column="species", id_column="penguin", ignore_columns=["year"],
        )  # fmt: skip
        example = submitted.wait("c-train-penguins", {"SUCCEEDED", "FAILED"})
        # AND monitor jobs in the predict image: the digits job's sample, and the team's table
        # (text and blanks) judged against its LightGBM version
        samples_folder = f"s3://{submitted.bucket}/{bucket_layout.sample_folder('digits')}"
        submitted.submit("c-monitor-digits", "monitor", samples_folder)
        submitted.submit("c-monitor-penguins", "monitor", table, model="penguins")
        monitors = {
            m: submitted.wait(f"c-monitor-{m}", {"SUCCEEDED", "FAILED"})
            for m in ("digits", "penguins")
        }
        # AND features by key: a feature set published by the train image, a model trained on
        # keys and labels joined with it, and a predict job by key in the predict image
        images = submitted.upload("inputs/images/v1.csv", digits.feature_set_csv(slice(0, 600)))
        submitted.submit("c-features-1", "features", images, model="images", key="image")
        by_key = {"features": submitted.wait("c-features-1", {"SUCCEEDED", "FAILED"})}
        labels = submitted.upload(
            "inputs/bykey/labels.csv", digits.keyed_csv(slice(0, 500), labels=True)
        )
        submitted.submit("c-train-bykey", "train", labels, model="bykey", feature_set="images")
        by_key["train"] = submitted.wait("c-train-bykey", {"SUCCEEDED", "FAILED"})
        keys = submitted.upload(
            "inputs/bykey/keys.csv", digits.keyed_csv(slice(500, 650), labels=False)
        )
        submitted.submit("c-predict-bykey", "predict", keys, model="bykey")
        by_key["predict"] = submitted.wait("c-predict-bykey", {"SUCCEEDED", "FAILED"})
        inspected = {role: c.inspect() for role, c in containers.items()}
        stopped = {role: c.stop() for role, c in containers.items()}
        logs = {role: c.logs() for role, c in containers.items()}
        return Trained(train, predict, logs, inspected, stopped, example, monitors, by_key)
    finally:
        for container in containers.values():
            container.remove()


def test_the_workers_run_a_train_and_a_predict_job_as_containers(
    trained: Trained, stack: EnforcedStack
) -> None:
    assert trained.train["status"] == "SUCCEEDED", (trained.train, trained.logs["train"])
    assert trained.predict["status"] == "SUCCEEDED", (trained.predict, trained.logs["predict"])
    # THEN the model is registered and promoted, and every scored row is stored
    registry = Registry(stack.client("operator", "dynamodb"), stack.outputs["ModelsTableName"])
    pointer = registry.pointer("digits")
    assert pointer is not None and pointer.promoted == 1
    dynamodb = stack.client("operator", "dynamodb")
    stored = scan(dynamodb, stack.outputs["PredictionsTableName"])
    assert len([item for item in stored if item["model"]["S"] == "digits"]) == 297
    # the worked example trained in the image, with the plugin's own library, on text and blanks
    assert trained.example["status"] == "SUCCEEDED", (trained.example, trained.logs["train"])
    assert trained.example["result"]["metrics"]["accuracy"] > 0.9
    example = registry.get("penguins", 1)
    assert example.plugin == "lightgbm" and example.schema.column("island") is not None
    metadata = json.loads(
        stack.client("operator", "s3")
        .get_object(Bucket=stack.outputs["ModelBucketName"], Key=example.metadata_key)["Body"]
        .read()
    )
    assert metadata["libraries"]["lightgbm"] == "4.7.0"
    # the monitor ran in the predict image under its task role: the digits job's sample (all its
    # 297 rows) and the team's table, categories and blanks, each against its version
    for model, rows in (("digits", 297), ("penguins", 344)):
        record = trained.monitors[model]
        assert record["status"] == "SUCCEEDED", (record, trained.logs["predict"])
        assert (record["result"]["versions"], record["result"]["rows"]) == ([1], rows)
    report = json.loads(
        stack.client("operator", "s3")
        .get_object(
            Bucket=stack.outputs["ModelBucketName"], Key=bucket_layout.latest_report_key("penguins")
        )["Body"]
        .read()
    )
    (judged,) = report["versions"]
    assert judged["judged"] and judged["drifting"] == []  # its own training table: no drift
    assert judged["features"]["island"]["bins"][-1] == "missing"
    # and the workers ran as the image's user, on a read-only root, as the task says
    for inspected in trained.inspected.values():
        assert inspected["Config"]["User"] == "10001"
        assert inspected["HostConfig"]["ReadonlyRootfs"] is True
    # an idle worker stops at SIGTERM (within its long poll), well before ECS's SIGKILL
    for role, (code, seconds) in trained.stopped.items():
        assert code == 0, trained.logs[role]
        assert seconds < 30


def test_the_worker_images_publish_a_feature_set_and_train_and_predict_by_key(
    trained: Trained,
) -> None:
    for kind, record in trained.by_key.items():
        role = "predict" if kind == "predict" else "train"
        assert record["status"] == "SUCCEEDED", (kind, record, trained.logs[role])
    published = trained.by_key["features"]["result"]
    assert (published["feature_version"], published["rows"], published["promoted"]) == (
        1, 600, True
    )  # fmt: skip
    assert trained.by_key["train"]["result"]["feature_set"]["version"] == 1
    # rows 500-649 by key: 600-649 are not in the set, counted and not predicted
    predicted = trained.by_key["predict"]["result"]
    assert (predicted["rows"], predicted["features"]["unknown_keys"]) == (100, 50)


def test_a_worker_stopped_while_it_starts_exits_at_once(rig: Rig, trained: Trained) -> None:
    # a SIGTERM at once, while Python starts and imports: the task's init forwards it (PID 1
    # without a handler would drop it and wait for the SIGKILL, 120 s later); the worker's
    # early handler turns it into a clean stop, or Python's default ends it (143) if it came
    # before even that
    container = rig.worker("train", "mlpoc-test-early")
    try:
        code, seconds = container.stop()
        assert code in (0, 143), container.logs()
        assert seconds < 30, container.logs()
    finally:
        container.remove()


def test_a_worker_container_calls_aws_as_its_task_role(
    found: Images, stack: EnforcedStack, workdir: Path
) -> None:
    # the credentials a worker container gets are its task role's, and what the role lacks is
    # refused: the train role may not write stored predictions
    env_file = write_env_file(workdir / "whoami.env", local_aws(stack, "train"))
    table = stack.outputs["PredictionsTableName"]
    script = (
        "import boto3, botocore.exceptions as e\n"
        "print(boto3.client('sts').get_caller_identity()['Arn'])\n"
        "try:\n"
        f"    boto3.client('dynamodb').put_item(TableName='{table}',"
        " Item={'model': {'S': 'digits'}, 'id': {'S': 'x'}})\n"
        "except e.ClientError as error:\n"
        "    print(error.response['Error']['Code'])\n"
    )
    done = run(
        [found.docker, "run", "--rm", "--network", "host", "--read-only", "--env-file",
         str(env_file), found.worker, "python", "-c", script]
    )  # fmt: skip
    arn, refusal = done.stdout.split()
    role = stack.specs["train"].role_id
    assert re.fullmatch(rf"arn:aws:sts::\d+:assumed-role/[^/]*{role}[^/]*/train", arn), arn
    assert refusal == "AccessDeniedException"


def running(submitted: Jobs, job_id: str, container: Container) -> dict[str, Any]:
    try:
        return wait_for(
            lambda: (r := submitted.ledger.get(job_id)) and r.get("status") == "RUNNING" and r,
            timeout=60,
            interval=0.05,
            what=f"{job_id} to be RUNNING",
        )
    except AssertionError as error:
        record = submitted.ledger.get(job_id)
        raise AssertionError(f"{error}; ledger: {record}; worker: {container.logs()}") from None


def test_docker_stop_mid_job_lets_the_job_finish_within_the_stop_timeout(
    rig: Rig, trained: Trained
) -> None:
    submitted = rig.jobs
    container = rig.worker("train", "mlpoc-test-stop")
    try:
        # GIVEN a worker that holds a job (the deployed grace: MLPOC_STOP_GRACE_SECONDS)
        dataset = f"s3://{submitted.bucket}/datasets/digits/train.csv"
        submitted.submit("c-stop-finish", "train", dataset, **SLOW)
        running(submitted, "c-stop-finish", container)
        # WHEN it is stopped (SIGTERM, SIGKILL after the task's stop timeout)
        code, seconds = container.stop()
        # THEN it finished the job and exited by itself, before the SIGKILL
        assert code == 0, container.logs()
        assert seconds < container.stop_timeout
        record = submitted.ledger.get("c-stop-finish")
        assert record is not None and record["status"] == "SUCCEEDED", container.logs()
        assert container.events("worker.stopped")
    finally:
        container.remove()


def test_docker_stop_past_the_grace_hands_the_job_back_and_another_task_runs_it(
    rig: Rig, trained: Trained
) -> None:
    submitted = rig.jobs
    dataset = f"s3://{submitted.bucket}/datasets/digits/train.csv"
    first = rig.worker("train", "mlpoc-test-release", MLPOC_STOP_GRACE_SECONDS="0")
    second = None
    try:
        submitted.submit("c-stop-release", "train", dataset, **SLOW)
        running(submitted, "c-stop-release", first)
        code, _ = first.stop()
        # THEN the job was handed back, not lost: RETRYABLE in the ledger, its message visible
        assert code == 0, first.logs()
        record = submitted.ledger.get("c-stop-release")
        assert record is not None and record["status"] == "RETRYABLE", first.logs()
        assert first.events("job.released_on_stop")
        # AND the next task (a new container) runs it to the end
        second = rig.worker("train", "mlpoc-test-next")
        done = submitted.wait("c-stop-release", {"SUCCEEDED", "FAILED"})
        assert done["status"] == "SUCCEEDED", second.logs()
        assert int(done["attempts"]) == 2
    finally:
        first.remove()
        if second is not None:
            second.remove()


# -- the Beanstalk bundle ------------------------------------------------------------------------
@dataclass
class Served:
    bundle: Bundle
    url: str
    key: str
    healthd: Path


@pytest.fixture(scope="module")
def served(
    found: Images, stack: EnforcedStack, poc: Synthesized, workdir: Path, trained: Trained
) -> Iterator[Served]:
    """`docker compose up` of the synthesized bundle, with the .env Beanstalk would write."""
    for port in (80, 8000):
        if not free(port):
            pytest.fail(f"port {port} is taken: the bundle listens on 80 (nginx) and 8000 (API)")
    directory = bundle_directory(poc.outdir)
    healthd = workdir / "healthd"  # the host's /var/log/nginx/healthd on the instance
    env = write_env_file(directory / ".env", beanstalk_env(stack, found, healthd))
    bundle = Bundle(compose_command(found), directory, "mlpoc-test-bundle", found.docker)
    try:
        up = run(
            [*bundle.compose_args(), "up", "--detach", "--wait", "--wait-timeout", "120"],
            check=False,
            timeout=180,
        )
        assert up.returncode == 0, f"{up.stderr}\n{bundle.logs()}"
        yield Served(bundle, "http://127.0.0.1:80", stack.api_key, healthd)
    finally:
        bundle.command("down", "--timeout", "20")
        env.unlink(missing_ok=True)


def request(
    url: str,
    *,
    origin: bool = True,
    key: str = "",
    data: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, str], bytes]:
    sent = {"Content-Type": "application/json", **(headers or {})}
    if origin:
        sent["X-Origin-Verify"] = ORIGIN
    if key:
        sent["X-API-Key"] = key
    call = urllib.request.Request(url, data=data, headers=sent)  # noqa: S310 - loopback
    try:
        with urllib.request.urlopen(call, timeout=10) as response:  # noqa: S310
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def test_the_bundle_serves_realtime_predictions_through_nginx(
    served: Served, stack: EnforcedStack
) -> None:
    url, key = served.url, served.key
    assert request(f"{url}/healthz", origin=False)[0] == 200
    # not from CloudFront: refused, whatever the key; from CloudFront without the key: 401
    status, _, body = request(f"{url}/v1/models", origin=False, key=key)
    assert (status, json.loads(body)["error"]["code"]) == (403, "forbidden")
    assert request(f"{url}/v1/models")[0] == 401
    # the promoted model answers a realtime request
    x, _ = digits.digits()
    rows = [{n: float(v) for n, v in zip(digits.FEATURES, x[i], strict=True)} for i in (0, 1)]
    payload = json.dumps({"model": "digits", "rows": rows, "ids": ["a", "b"]}).encode()
    status, _, body = request(f"{url}/v1/predict", key=key, data=payload)
    assert status == 200, body
    answer = json.loads(body)
    registry = Registry(stack.client("operator", "dynamodb"), stack.outputs["ModelsTableName"])
    pointer = registry.pointer("digits")
    assert pointer is not None and answer["version"] == pointer.promoted
    assert [p["id"] for p in answer["predictions"]] == ["a", "b"]
    # the worked example's LightGBM version, trained in the worker image, answers text and nulls
    penguin = {"island": "Dream", "bill_length_mm": 49.0, "bill_depth_mm": 18.5,
               "flipper_length_mm": 195, "body_mass_g": None, "sex": "male"}  # fmt: skip
    payload = json.dumps({"model": "penguins", "rows": [penguin]}).encode()
    status, _, body = request(f"{url}/v1/predict", key=key, data=payload)
    assert status == 200, body
    assert json.loads(body)["predictions"][0]["label"] == "Chinstrap"
    # by key: the API container reads the feature set under the instance role (BatchGetItem)
    payload = json.dumps({"model": "bykey", "keys": ["image-510", "image-9999"]}).encode()
    status, _, body = request(f"{url}/v1/predict", key=key, data=payload)
    assert status == 200, body
    known, unknown = json.loads(body)["predictions"]
    assert known["key"] == "image-510" and "label" in known
    assert unknown["error"] == "unknown key: feature set images v1 has no 'image-9999'"


def test_the_bundles_proxy_caps_bodies_limits_clients_and_compresses(served: Served) -> None:
    url, key = served.url, served.key
    status, _, body = request(f"{url}/v1/jobs", key=key, data=b"x" * (2 * 1024 * 1024))
    assert (status, json.loads(body)["error"]["code"]) == (413, "payload_too_large")
    status, headers, body = request(f"{url}/ui/jobs", key=key, headers={"Accept-Encoding": "gzip"})
    assert status == 200 and headers.get("Content-Encoding") == "gzip"
    assert b"<html" in gzip.decompress(body)
    # 20 a second with a burst of 40 (the compose file's values): 80 at once cannot all pass
    statuses = [
        request(f"{url}/healthz", origin=False, headers={"X-Forwarded-For": "198.51.100.9"})[0]
        for _ in range(80)
    ]
    assert statuses[0] == 200 and 429 in statuses


def test_the_health_agents_log_is_written_by_the_unprivileged_nginx_worker(
    served: Served,
) -> None:
    request(f"{served.url}/v1/models", key=served.key)
    nginx_uid = int(
        run([served.bundle.docker, "exec", served.bundle.container("proxy"), "id", "-u", "nginx"])
        .stdout.strip()
    )  # fmt: skip
    assert nginx_uid != 0

    def lines() -> list[dict[str, str]]:
        return [
            m.groupdict()
            for f in served.healthd.glob("application.log.*")
            for m in map(HEALTHD.match, f.read_text().splitlines())
            if m
        ]

    wait_for(
        lambda: {"uri": "/v1/models", "status": "200"} in lines(),
        timeout=10,
        interval=0.05,
        what="the request in the health agent's log",
    )
    files = list(served.healthd.glob("application.log.*"))
    assert files and all(f.stat().st_uid == nginx_uid for f in files)
    assert "Permission denied" not in served.bundle.logs()


def test_every_environment_property_reaches_the_api_container(
    served: Served, stack: EnforcedStack
) -> None:
    # compose passes the .env Beanstalk writes to the API whole (env_file): the names a fixed
    # list would forget (the worker services, MLPOC_SOURCES, the GPU queue) arrive too
    bundle = served.bundle
    done = run([bundle.docker, "exec", bundle.container("api"), "env"])
    seen = dict(line.split("=", 1) for line in done.stdout.splitlines() if "=" in line)
    spec = stack.specs["api"]
    # (the test samples every request, to know what the API's sampler writes)
    assert {k: seen.get(k) for k in spec.env} == {**spec.env, **SAMPLE_EVERY_REQUEST}
    # the names that exist only on AWS too: the worker services the API raises from zero
    assert {"MLPOC_WORKER_CLUSTER", "MLPOC_TRAIN_SERVICE"} <= set(spec.left_out) <= set(seen)
    assert seen["AWS_DEFAULT_REGION"] == spec.env["AWS_REGION"]


def test_the_api_container_runs_read_only_as_its_own_user(served: Served) -> None:
    bundle = served.bundle
    assert bundle.inspect("api", "{{.HostConfig.ReadonlyRootfs}}") == "true"
    assert bundle.inspect("api", "{{.Config.User}}") == "10001"
    api = bundle.container("api")
    written = run([bundle.docker, "exec", api, "python", "-c", "open('/opt/x', 'w')"], check=False)
    assert written.returncode != 0 and "Read-only file system" in written.stderr
    # /tmp is its one writable place (a tmpfs)
    run([bundle.docker, "exec", api, "python", "-c", "open('/tmp/x', 'w').write('ok')"])


def test_the_bundle_stops_cleanly_and_down_leaves_nothing(
    served: Served, stack: EnforcedStack
) -> None:
    bundle = served.bundle
    services = ("api", "proxy")
    started = time.monotonic()
    bundle.command("stop")
    assert time.monotonic() - started < 15  # neither waited for its SIGKILL
    states = {s: json.loads(bundle.inspect(s, "{{json .State}}")) for s in services}
    logs = bundle.logs()
    # nginx quits gracefully on SIGQUIT (exit 0); uvicorn finishes, then re-raises the SIGTERM
    # it caught (Python's default: 143 through the init), never the SIGKILL's 137
    assert states["proxy"]["ExitCode"] == 0, (states, logs)
    assert states["api"]["ExitCode"] in (0, 143), (states, logs)
    assert "Finished server process" in logs
    # the API's sampler wrote what it held as it stopped, as its instance role: the realtime
    # rows of both models, the team's text and blank cells as the monitor reads them
    s3 = stack.client("operator", "s3")
    for model, columns in (("digits", "pixel_0"), ("penguins", "island")):
        listed = s3.list_objects_v2(
            Bucket=stack.outputs["DataBucketName"], Prefix=f"input-samples/{model}/"
        )
        # the API's objects end in a random token (a predict job's in its job id)
        (key,) = [
            o["Key"]
            for o in listed.get("Contents", [])
            if re.search(r"Z-[0-9a-f]{8}\.csv$", o["Key"])
        ]
        text = s3.get_object(Bucket=stack.outputs["DataBucketName"], Key=key)["Body"].read()
        assert columns in text.decode().splitlines()[0], text
    assert "sample.write_failed" not in logs
    bundle.command("down", "--timeout", "20")
    left = run(
        [bundle.docker, "ps", "--all", "--quiet", "--filter",
         f"label=com.docker.compose.project={bundle.project}"]
    )  # fmt: skip
    assert left.stdout.strip() == ""


# -- what the images hold ------------------------------------------------------------------------
SCAN = r"""
import json, os, re
key = re.compile(rb"-----BEGIN [A-Z ]*PRIVATE KEY-----")
found = {"git": [], "kit_files": [], "secrets": []}
# files only the checkout has (the build context is allow-listed by .dockerignore)
kit = {"cdk.json", "package-lock.json", ".dockerignore", "Dockerfile", "docker-compose.yml",
       "test_containers.py", "data_stack.py", ".env", "images.json", "worker.txt",
       "test_mlpoc_lightgbm.py"}
for top, dirs, files in os.walk("/"):
    if top in ("/proc", "/sys", "/dev"):
        dirs[:] = []
        continue
    found["git"] += [os.path.join(top, d) for d in dirs if d == ".git"]
    found["kit_files"] += [os.path.join(top, f) for f in files if f in kit]
    for name in files:
        path = os.path.join(top, name)
        if name.endswith((".pem", ".key")) or name.startswith("id_"):
            try:
                with open(path, "rb") as handle:
                    if key.search(handle.read(1 << 20)):
                        found["secrets"].append(path)
            except OSError:
                pass
import mlpoc
package = os.path.dirname(mlpoc.__file__)
found["package_tests"] = [f for f in os.listdir(package) if f.startswith("test")]
print(json.dumps(found))
"""


@pytest.mark.parametrize("image", ["worker", "api"])
def test_an_image_holds_the_package_and_nothing_of_the_checkout(found: Images, image: str) -> None:
    tag = getattr(found, image)
    done = run(
        [found.docker, "run", "--rm", "--network", "none", tag, "python", "-c", SCAN],
        timeout=180,
    )
    contents = json.loads(done.stdout)
    assert contents == {"git": [], "kit_files": [], "secrets": [], "package_tests": []}
    user = run([found.docker, "image", "inspect", "-f", "{{.Config.User}}", tag])
    assert user.stdout.strip() == "10001"


def test_the_api_image_serves_onnx_without_the_training_libraries(found: Images) -> None:
    # the API image has onnxruntime and FastAPI, and none of the workers' training stack nor
    # the model plugins' libraries (mlpoc:plugins go into the worker image only)
    probe = (
        "import importlib.util as u; print(' '.join(m for m in "
        "('sklearn', 'scipy', 'skl2onnx', 'onnx', 'pandas', 'lightgbm', 'onnxmltools', "
        "'mlpoc_lightgbm', 'onnxruntime', 'fastapi', 'uvicorn') if u.find_spec(m)))"
    )
    api = run([found.docker, "run", "--rm", "--network", "none", found.api, "python", "-c", probe])
    assert api.stdout.split() == ["onnxruntime", "fastapi", "uvicorn"]
    worker = run(
        [found.docker, "run", "--rm", "--network", "none", found.worker, "python", "-c", probe]
    )
    assert worker.stdout.split() == [
        "sklearn", "scipy", "skl2onnx", "onnx", "pandas", "lightgbm", "onnxmltools",
        "mlpoc_lightgbm", "onnxruntime",
    ]  # fmt: skip
