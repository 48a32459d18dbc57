"""The Lambda handlers, with the event shapes AWS sends (tests/events/*.json) and moto."""

from __future__ import annotations

import importlib.util
import io
import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from types import ModuleType
from typing import Any

import boto3
import pytest
from moto import mock_aws

from mlpoc.data import digits
from mlpoc.paths import CHECKOUT
from mlpoc.runtime.ledger import Ledger
from tests.support.aws_stack import Stack, create_stack
from tests.support.lambda_context import context, event

LAMBDAS = CHECKOUT / "lambdas"


def load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"{name}_handler", LAMBDAS / name / "handler.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while it loads
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def uploaded() -> ModuleType:
    return load("dataset_uploaded")


@pytest.fixture
def stack(monkeypatch: pytest.MonkeyPatch) -> Iterator[Stack]:
    with mock_aws():
        created = create_stack(None)
        for name, value in created.env("").items():
            if name.startswith("MLPOC_"):
                monkeypatch.setenv(name, value)
        yield created


def upload_event(stack: Stack, key: str = "datasets/digits/train+2026-11-27.csv") -> dict[str, Any]:
    raw = event("s3_upload_via_sqs", BUCKET=stack.data_bucket)
    body = json.loads(raw["Records"][0]["body"])
    body["Records"][0]["s3"]["object"]["key"] = key.replace(" ", "+")
    raw["Records"][0]["body"] = json.dumps(body)
    return raw


def messages(stack: Stack, queue: str) -> list[dict[str, Any]]:
    sqs = stack.clients().sqs
    return [
        json.loads(m["Body"])
        for m in sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10).get("Messages", [])
    ]


def test_a_training_csv_becomes_one_queued_train_job(stack: Stack, uploaded: ModuleType) -> None:
    # GIVEN a training CSV uploaded under datasets/digits/ (key URL-encoded by S3: + is a space)
    key = "datasets/digits/train 2026-11-27.csv"
    stack.clients().s3.put_object(
        Bucket=stack.data_bucket, Key=key, Body=digits.training_csv(slice(0, 20)).encode()
    )
    # WHEN the event arrives twice (S3 and SQS both deliver at least once)
    for _ in range(2):
        assert uploaded.handler(upload_event(stack, key), context()) == {"batchItemFailures": []}
    # THEN one job record, QUEUED, and the train message follows the job contract
    sent = messages(stack, stack.train_queue_url)
    assert len({m["job_id"] for m in sent}) == 1
    job = sent[0]
    assert job == {
        "schema": 1,
        "job_id": job["job_id"],
        "type": "train",
        "model": "digits",
        "dataset": f"s3://{stack.data_bucket}/{key}",
        "version": "current",
        "params": {},
    }
    record = Ledger(stack.clients().dynamodb, stack.jobs_table).get(job["job_id"])
    assert record is not None and record["status"] == "QUEUED"
    assert record["source"] == f"s3://{stack.data_bucket}/{key}"


def test_a_csv_with_ids_becomes_a_predict_job(stack: Stack, uploaded: ModuleType) -> None:
    key = "datasets/scoring.csv"
    stack.clients().s3.put_object(
        Bucket=stack.data_bucket, Key=key, Body=digits.prediction_csv(slice(0, 5)).encode()
    )
    uploaded.handler(upload_event(stack, key), context())
    (job,) = messages(stack, stack.predict_queue_url)
    assert (job["type"], job["model"], job["version"]) == ("predict", "scoring", "current")


def test_a_header_without_label_or_id_is_recorded_as_failed(
    stack: Stack, uploaded: ModuleType
) -> None:
    key = "datasets/digits/oops.csv"
    stack.clients().s3.put_object(Bucket=stack.data_bucket, Key=key, Body=b"a,b\n1,2\n")
    uploaded.handler(upload_event(stack, key), context())
    assert messages(stack, stack.train_queue_url) == []
    items = stack.clients().dynamodb.scan(TableName=stack.jobs_table)["Items"]
    assert len(items) == 1 and items[0]["status"]["S"] == "FAILED"
    assert "needs a 'label' column" in items[0]["reason"]["S"]


def test_a_broken_notification_fails_only_its_own_record(
    stack: Stack, uploaded: ModuleType
) -> None:
    key = "datasets/digits/ok.csv"
    stack.clients().s3.put_object(
        Bucket=stack.data_bucket, Key=key, Body=digits.training_csv(slice(0, 20)).encode()
    )
    batch = upload_event(stack, key)
    broken = dict(batch["Records"][0], messageId="broken-1", body="not json")
    batch["Records"].append(broken)
    result = uploaded.handler(batch, context())
    assert result == {"batchItemFailures": [{"itemIdentifier": "broken-1"}]}
    assert len(messages(stack, stack.train_queue_url)) == 1


def test_s3_test_events_are_acknowledged(stack: Stack, uploaded: ModuleType) -> None:
    batch = upload_event(stack)
    batch["Records"][0]["body"] = json.dumps({"Service": "Amazon S3", "Event": "s3:TestEvent"})
    assert uploaded.handler(batch, context()) == {"batchItemFailures": []}


@pytest.mark.parametrize(
    ("key", "model"),
    [
        ("datasets/digits/x.csv", "digits"),
        ("datasets/My Data.csv", "my-data"),
        ("datasets/!!!.csv", None),
    ],
)
def test_model_names_come_from_the_folder_or_the_file(
    uploaded: ModuleType, key: str, model: str | None
) -> None:
    assert uploaded.model_name(key) == model


# -- notify ------------------------------------------------------------------------------------
class Slack:
    def __init__(self) -> None:
        self.posts: list[dict[str, Any]] = []
        slack = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *_: object) -> None:
                return

            def do_POST(self) -> None:
                slack.posts.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = HTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/"


def test_an_alarm_reaches_slack_through_the_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    notify = load("notify")
    slack = Slack()
    monkeypatch.setattr(notify, "SLACK_PREFIX", slack.url)
    with mock_aws():
        secret = boto3.client("secretsmanager").create_secret(
            Name="mlpoc/slack",
            SecretString=json.dumps({"webhook_url": slack.url + "T000/B000/xyz"}),
        )["ARN"]
        monkeypatch.setenv("MLPOC_SLACK_SECRET_ARN", secret)
        assert notify.handler(event("sns_alarm"), context()) == {"sent": 1}
    assert slack.posts == [
        {
            "text": ":rotating_light: *mlpoc-train-dlq-not-empty* is ALARM: Threshold Crossed: "
            "1 datapoint [1.0] was greater than the threshold (0.0)."
        }
    ]
    slack.server.shutdown()


def test_without_a_secret_alarms_are_only_logged(monkeypatch: pytest.MonkeyPatch) -> None:
    notify = load("notify")
    monkeypatch.delenv("MLPOC_SLACK_SECRET_ARN", raising=False)
    # Powertools binds its handler to the stdout of the first load: read that handler instead
    stream = io.StringIO()
    monkeypatch.setattr(notify.logger.registered_handler, "stream", stream)
    assert notify.handler(event("sns_alarm"), context()) == {"sent": 0}
    logged = [json.loads(line) for line in stream.getvalue().splitlines() if line]
    # every alert that arrives is logged with its subject (what `mlpoc smoke` follows on AWS)
    # mlpoc's one log format: the line's name is its `event`, as in the workers' logs
    (received,) = [entry for entry in logged if entry.get("event") == "notify.received"]
    assert '"mlpoc-train-dlq-not-empty"' in received["subject"]


def test_a_secret_that_is_not_a_slack_webhook_is_refused() -> None:
    notify = load("notify")
    with mock_aws():
        client = boto3.client("secretsmanager")
        arn = client.create_secret(Name="bad", SecretString="https://evil.example/hook")["ARN"]
        with pytest.raises(ValueError, match="must hold a Slack incoming-webhook URL"):
            notify.webhook_url(arn, client)


def test_a_monitor_alert_reaches_slack_as_the_models_sentences() -> None:
    notify = load("notify")
    message = json.dumps(
        {"source": "mlpoc.monitor", "model": "digits", "job_id": "monitor-digits-1",
         "alerts": ["digits v3: 40 of 64 features drift", "digits v3: realized accuracy 50%"]}
    )  # fmt: skip
    text = notify.format_message("mlpoc monitor", message)
    assert text.startswith(":chart_with_downwards_trend: *digits* may not be good any more")
    assert "• digits v3: 40 of 64 features drift\n• digits v3: realized accuracy 50%" in text
    assert "`mlpoc monitor show digits`" in text


def test_budget_notifications_pass_through_as_text() -> None:
    notify = load("notify")
    assert (
        notify.format_message("AWS Budgets: mlpoc", "You have exceeded 80%")
        == "*AWS Budgets: mlpoc*\nYou have exceeded 80%"
    )


def test_the_bundled_upload_function_imports_without_the_worker_dependencies(
    tmp_path: Path,
) -> None:
    """What CDK stages for Lambda (handler, the shared modules, Powertools) runs on the bare
    runtime: boto3, no numpy, no scikit-learn, no layer."""
    from stacks.constructs.bundling import CopyFiles
    from stacks.constructs.functions import BUNDLED_MODULES, runtime_modules

    files = {"lambdas/dataset_uploaded/handler.py": "handler.py"}
    modules = runtime_modules(LAMBDAS / "dataset_uploaded" / "handler.py")
    # what it records jobs with, found through the handler's imports (not a hand-kept list)
    assert {"runtime/ledger.py", "runtime/job_records.py", "runtime/contract.py"} <= set(modules)
    files.update({f"containers/mlpoc/{m}": f"mlpoc/{m}" for m in modules})
    bundler = CopyFiles(files, BUNDLED_MODULES)
    assert bundler.try_bundle(str(tmp_path), None)  # type: ignore[arg-type]
    assert not list(tmp_path.rglob("__pycache__"))
    probe = (
        "import sys; sys.modules.update(numpy=None, sklearn=None, onnxruntime=None); "
        "import handler, mlpoc, aws_lambda_powertools as p; "
        "print(handler.model_name('datasets/digits/x.csv'), mlpoc.__file__, p.__file__)"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
        env={"PYTHONPATH": str(tmp_path), "PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 0, result.stderr
    model, module, powertools = result.stdout.split()
    assert model == "digits"
    assert module == str(tmp_path / "mlpoc" / "__init__.py")  # the bundled copy, not the repo
    assert powertools == str(tmp_path / "aws_lambda_powertools" / "__init__.py")


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        (
            "spot_interruption",
            ":warning: *Spot interruption* in two minutes: instance i-0b662ef9931388ba0 in "
            "us-east-1. A GPU job on it is released (SIGTERM) and runs again on another instance.",
        ),
        (
            "ecs_task_stopped",
            ":x: *Worker task stopped* (service:mlpoc-service-GpuService): Essential container "
            "in task exited; exit codes [137]",
        ),
    ],
)
def test_eventbridge_events_reach_slack_as_one_line(name: str, expected: str) -> None:
    # GIVEN an event of a rule that targets the alerts topic, as SNS delivers its message
    message = json.dumps(event(name))
    # THEN the notify function writes one readable line, not the raw JSON
    assert load("notify").format_message(None, message) == expected


def test_the_bundled_notify_function_formats_a_monitor_alert_on_the_bare_runtime(
    tmp_path: Path,
) -> None:
    """The notify function gets only mlpoc's logging modules: the monitor's source name is
    among them, so it formats an alert without the worker's package."""
    from stacks.constructs.bundling import CopyFiles
    from stacks.constructs.functions import BUNDLED_MODULES, runtime_modules

    files = {"lambdas/notify/handler.py": "handler.py"}
    modules = runtime_modules(LAMBDAS / "notify" / "handler.py")
    assert not any(m.startswith(("runtime/", "models/", "data/")) for m in modules), modules
    files.update({f"containers/mlpoc/{m}": f"mlpoc/{m}" for m in modules})
    assert CopyFiles(files, BUNDLED_MODULES).try_bundle(str(tmp_path), None)  # type: ignore[arg-type]
    probe = (
        "import sys, json; sys.modules.update(numpy=None); import handler; "
        "print(handler.format_message(None, json.dumps({'source': 'mlpoc.monitor', "
        "'model': 'm', 'alerts': ['drift']})))"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], cwd=tmp_path, capture_output=True, text=True,
        check=False, env={"PYTHONPATH": str(tmp_path), "PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "*m* may not be good any more" in result.stdout and "• drift" in result.stdout
