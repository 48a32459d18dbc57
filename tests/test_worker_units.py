"""The worker's parts in-process: batching, shutdown, leases, follow-ups, protection, settings."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

import numpy as np
import pytest
from moto import mock_aws

from mlpoc import plugins
from mlpoc.aws.dynamo import BatchWriter
from mlpoc.data import digits
from mlpoc.data.datasets import parse_training
from mlpoc.data.held_out import split
from mlpoc.errors import DatasetError, JobFailed, PluginError, SettingsError, TransientError
from mlpoc.models import metrics
from mlpoc.models.inference import OnnxModel
from mlpoc.models.registry import ModelVersion
from mlpoc.runtime.environment import Settings
from mlpoc.runtime.ledger import Ledger
from mlpoc.schema import Layout
from mlpoc.worker import __main__ as worker_main
from mlpoc.worker import loop
from mlpoc.worker.context import JobContext
from mlpoc.worker.loop import Worker
from mlpoc.worker.promotion import should_promote
from mlpoc.worker.protection import TaskProtection
from tests.support.aws_stack import Stack, create_stack
from tests.support.counting import CallCounter


@pytest.fixture
def stack() -> Iterator[Stack]:
    with mock_aws():
        yield create_stack(None)


def settings(stack: Stack, **changes: Any) -> Settings:
    return replace(Settings.from_env("predict", stack.env("")), wait_seconds=0, **changes)


def send(stack: Stack, *job_ids: str, queue: str | None = None) -> None:
    for job_id in job_ids:
        stack.clients().sqs.send_message(
            QueueUrl=queue or stack.predict_queue_url,
            MessageBody=json.dumps(
                {
                    "schema": 1,
                    "job_id": job_id,
                    "type": "train" if queue == stack.train_queue_url else "predict",
                    "model": "m",
                    "dataset": f"s3://{stack.data_bucket}/datasets/d.csv",
                }
            ),
        )


def visible(stack: Stack, queue: str | None = None) -> list[dict[str, Any]]:
    return (
        stack.clients()
        .sqs.receive_message(
            QueueUrl=queue or stack.predict_queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=0
        )
        .get("Messages", [])
    )


# -- BatchWriter -------------------------------------------------------------------------------
class Unprocessing:
    """A DynamoDB client that leaves the last half of each batch unprocessed, `times` times."""

    def __init__(self, inner: Any, times: int) -> None:
        self.inner, self.times, self.calls = inner, times, 0

    def batch_write_item(self, RequestItems: dict[str, list[Any]]) -> dict[str, Any]:
        self.calls += 1
        if self.calls > self.times:
            return self.inner.batch_write_item(RequestItems=RequestItems)  # type: ignore[no-any-return]
        done, left = {}, {}
        for table, requests in RequestItems.items():
            half = len(requests) // 2
            done[table], left[table] = requests[:half], requests[half:]
        self.inner.batch_write_item(RequestItems={t: r for t, r in done.items() if r})
        return {"UnprocessedItems": left}


def test_unprocessed_items_are_retried_until_written(stack: Stack) -> None:
    dynamodb = stack.clients().dynamodb
    flaky = Unprocessing(dynamodb, times=3)
    writer = BatchWriter(flaky, sleep=lambda _: None)
    for i in range(30):
        writer.put(stack.predictions_table, {"model": "m", "item_id": str(i), "label": "1"})
    writer.flush()
    assert writer.written == 30
    assert dynamodb.scan(TableName=stack.predictions_table, Select="COUNT")["Count"] == 30
    assert writer.calls == 5  # 25 (+3 retries of what was left) and then the last 5


def test_a_table_that_stays_throttled_fails_the_attempt_not_the_data(stack: Stack) -> None:
    flaky = Unprocessing(stack.clients().dynamodb, times=100)
    writer = BatchWriter(flaky, max_retries=2, sleep=lambda _: None)
    writer.put(stack.predictions_table, {"model": "m", "item_id": "1", "label": "1"})
    writer.put(stack.predictions_table, {"model": "m", "item_id": "2", "label": "1"})
    with pytest.raises(TransientError, match="1 item\\(s\\) stayed unprocessed after 2 retries"):
        writer.flush()


# -- the loop ----------------------------------------------------------------------------------
def echo(ctx: JobContext) -> None:
    ctx.commit({"echo": ctx.job.job_id})


def test_stop_requested_before_a_batch_releases_unstarted_messages(stack: Stack) -> None:
    send(stack, "a", "b", "c")
    worker = Worker(settings=settings(stack, prefetch=10), clients=stack.clients(), handler=echo)
    worker.start()
    worker.request_stop()
    result = worker.process_batch()
    assert (result.received, result.released, result.succeeded) == (3, 3, 0)
    assert len(visible(stack)) == 3
    assert Ledger(stack.clients().dynamodb, stack.jobs_table).get("a") is None


def test_a_handler_that_loses_its_lease_commits_nothing(stack: Stack) -> None:
    send(stack, "a")

    def handler(ctx: JobContext) -> None:
        ctx.lease_lost.set()  # what the heartbeat does when another worker took over
        ctx.commit({"x": 1})

    worker = Worker(settings=settings(stack), clients=stack.clients(), handler=handler)
    result = worker.process_batch()
    assert result.busy == 1 and result.succeeded == 0
    assert Ledger(stack.clients().dynamodb, stack.jobs_table).get("a")["status"] == "RUNNING"  # type: ignore[index]


def test_a_handler_returning_without_a_commit_is_retried_with_a_reason(stack: Stack) -> None:
    send(stack, "a")
    worker = Worker(settings=settings(stack), clients=stack.clients(), handler=lambda ctx: None)
    assert worker.process_batch().retried == 1
    record = Ledger(stack.clients().dynamodb, stack.jobs_table).get("a")
    assert record is not None and record["status"] == "RETRYABLE"
    assert "returned without committing" in record["reason"]


def test_permanent_failures_are_failed_and_deleted(stack: Stack) -> None:
    send(stack, "a")

    def handler(ctx: JobContext) -> None:
        raise JobFailed("the dataset has one class")

    worker = Worker(settings=settings(stack), clients=stack.clients(), handler=handler)
    assert worker.process_batch().failed == 1
    record = Ledger(stack.clients().dynamodb, stack.jobs_table).get("a")
    assert record is not None and record["reason"] == "the dataset has one class"
    assert visible(stack) == []


def test_heartbeat_extends_visibility_and_notices_a_lost_lease(stack: Stack) -> None:
    send(stack, "a")
    clients = stack.clients()
    counter = CallCounter(clients)
    seen: list[bool] = []

    def handler(ctx: JobContext) -> None:
        # another worker steals the job while this one runs
        clients.dynamodb.update_item(
            TableName=stack.jobs_table,
            Key={"job_id": {"S": "a"}},
            UpdateExpression="SET lease_owner = :x",
            ExpressionAttributeValues={":x": {"S": "thief"}},
        )
        worker.beat_once()
        seen.append(ctx.lease_lost.is_set())
        ctx.commit({})

    worker = Worker(settings=settings(stack), clients=clients, handler=handler)
    assert worker.process_batch().busy == 1
    assert seen == [True]
    assert counter["ChangeMessageVisibilityBatch"] == 1


def test_a_redelivered_finished_job_resends_its_lost_follow_ups(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    clients = stack.clients()
    ledger = Ledger(clients.dynamodb, stack.jobs_table)
    # GIVEN a train job that committed (with its follow-up recorded) but crashed before sending
    send(stack, "t1", queue=stack.train_queue_url)
    followup = {
        "schema": 1,
        "job_id": "t1.predict",
        "type": "predict",
        "model": "m",
        "dataset": f"s3://{stack.data_bucket}/datasets/p.csv",
    }

    def commit_with_followup(ctx: JobContext) -> None:
        from mlpoc.runtime.contract import parse_job

        ctx.commit({}, followups=[parse_job(json.dumps(followup), data_bucket=stack.data_bucket)])

    def crash_before_sending(*_: Any) -> None:
        raise RuntimeError("the task died here")

    train = replace(settings(stack), role="train")
    crashing = Worker(settings=train, clients=clients, handler=commit_with_followup)
    with monkeypatch.context() as patched:
        patched.setattr(loop, "send_followups", crash_before_sending)
        with pytest.raises(RuntimeError, match="the task died here"):
            crashing.process_batch()
    assert visible(stack) == []
    # WHEN the train message comes back
    clients.sqs.purge_queue(QueueUrl=stack.train_queue_url)
    send(stack, "t1", queue=stack.train_queue_url)
    result = Worker(settings=train, clients=clients, handler=echo).process_batch()
    # THEN it is a duplicate, and the follow-up is on the predict queue
    assert result.duplicates == 1
    assert [json.loads(m["Body"])["job_id"] for m in visible(stack)] == ["t1.predict"]
    assert ledger.get("t1.predict")["status"] == "QUEUED"  # type: ignore[index]


def test_a_failing_batch_does_not_kill_the_worker(
    stack: Stack, caplog: pytest.LogCaptureFixture
) -> None:
    # GIVEN a ledger table that cannot be reached (here: a wrong name)
    send(stack, "a")
    worker = Worker(
        settings=settings(stack, jobs_table="no-such-table"), clients=stack.clients(), handler=echo
    )
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    # WHEN a batch fails, THEN the loop logs it, backs off and keeps running until stopped
    for _ in range(50):
        if any(r.getMessage() == "worker.batch_failed" for r in caplog.records):
            break
        thread.join(0.1)
    assert thread.is_alive()
    worker.request_stop()
    thread.join(5)
    assert not thread.is_alive()
    assert any(r.getMessage() == "worker.batch_failed" for r in caplog.records)


def test_without_a_dlq_a_malformed_message_is_logged_and_deleted(stack: Stack) -> None:
    sqs = stack.clients().sqs
    url = sqs.create_queue(QueueName="no-dlq")["QueueUrl"]
    sqs.send_message(QueueUrl=url, MessageBody="{}")
    worker = Worker(
        settings=settings(stack, predict_queue_url=url), clients=stack.clients(), handler=echo
    )
    assert worker.process_batch().rejected == 1
    assert visible(stack, url) == []


# -- ECS task protection -----------------------------------------------------------------------
class Agent:
    """A stand-in for the ECS agent's task-protection endpoint."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        agent = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *_: object) -> None:
                return

            def do_PUT(self) -> None:
                agent.bodies.append(
                    {
                        "path": self.path,
                        **json.loads(self.rfile.read(int(self.headers["Content-Length"]))),
                    }
                )
                payload = json.dumps({"protection": {"ProtectionEnabled": True}}).encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        self.server = HTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.uri = f"http://127.0.0.1:{self.server.server_address[1]}/v4/abc"


def test_a_batch_is_protected_from_scale_in_while_it_is_held(stack: Stack) -> None:
    agent = Agent()
    send(stack, "a", "b")
    worker = Worker(
        settings=settings(stack, prefetch=10),
        clients=stack.clients(),
        handler=echo,
        protection=TaskProtection(agent.uri),
    )
    assert worker.process_batch().succeeded == 2
    assert agent.bodies == [
        {
            "path": "/v4/abc/task-protection/v1/state",
            "ProtectionEnabled": True,
            "ExpiresInMinutes": 60,
        },
        {"path": "/v4/abc/task-protection/v1/state", "ProtectionEnabled": False},
    ]
    worker.process_batch()  # an empty poll protects nothing
    assert len(agent.bodies) == 2
    agent.server.shutdown()


def test_protection_is_a_no_op_off_ecs_and_survives_an_unreachable_agent() -> None:
    off = TaskProtection(None)
    off.set(enabled=True)
    assert off.enabled is False
    unreachable = TaskProtection("http://127.0.0.1:9", timeout=0.5)
    unreachable.set(enabled=True)
    assert unreachable.enabled is False


# -- settings and entry point ------------------------------------------------------------------
def test_missing_settings_are_named_with_where_to_find_them() -> None:
    with pytest.raises(SettingsError, match="MLPOC_JOBS_TABLE \\(the jobs ledger table name"):
        Settings.from_env("train", {"MLPOC_DATA_BUCKET": "x"})


def test_malformed_settings_name_the_variable_and_the_range(stack: Stack) -> None:
    env = stack.env("")
    with pytest.raises(
        SettingsError, match="MLPOC_PREFETCH must be a whole number from 1 to 10; got 11"
    ):
        Settings.from_env("train", {**env, "MLPOC_PREFETCH": "11"})
    with pytest.raises(SettingsError, match="MLPOC_REVIEW_THRESHOLD must be a number"):
        Settings.from_env("train", {**env, "MLPOC_REVIEW_THRESHOLD": "high"})
    assert Settings.from_env("train", env).prefetch == 1
    assert Settings.from_env("predict", env).prefetch == 10


def test_the_entry_point_refuses_bad_usage_and_missing_settings(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert worker_main.main(["serve"]) == 2
    monkeypatch.delenv("MLPOC_JOBS_TABLE", raising=False)
    assert worker_main.main(["train"]) == 2
    assert "missing environment variable(s)" in capsys.readouterr().err


# -- training pieces ---------------------------------------------------------------------------
def test_promotion_policy_compares_scores_on_the_same_rows() -> None:
    from mlpoc.models.registry import Pointer
    from mlpoc.worker.promotion import Comparison

    current = Pointer(model="m", promoted=1, promoted_metric=0.99, history=[], next_version=2)
    better = Comparison(1, "accuracy", rows=50, candidate=0.91, live_score=0.9)
    tied = Comparison(1, "accuracy", rows=50, candidate=0.9, live_score=0.9)
    assert should_promote("auto", None, None)  # nothing live: the first version goes live
    # the live version's own recorded 0.99 (other rows) does not decide: the same rows do
    assert should_promote("auto", current, better)
    assert not should_promote("auto", current, tied)
    assert not should_promote("auto", current, better, least=0.02)  # not by enough
    lower = Comparison(1, "rmse", rows=50, candidate=3.0, live_score=3.5)
    assert should_promote("auto", current, lower, least=0.4)  # rmse: lower is better
    assert not should_promote("auto", current, lower, least=0.5)
    # a live version that could not be scored on these rows is not replaced automatically
    assert not should_promote("auto", current, Comparison(1, "accuracy", why_not="needs 'a'"))
    assert should_promote("always", current, tied)
    assert not should_promote("never", None, None)


def test_metrics_of_both_tasks() -> None:
    truth = np.array(["a", "a", "b", "b"], dtype=object)
    assert metrics.classification(["a", "b", "b", "b"], truth) == {
        "accuracy": 0.75,
        "macro_f1": round((2 / 3 + 0.8) / 2, 6),
    }
    scored = metrics.regression(np.array([1.0, 2.0, 5.0]), np.array([1.0, 3.0, 3.0]))
    assert scored == {"rmse": round(np.sqrt(5 / 3), 6), "mae": 1.0, "r2": round(1 - 5 / (8 / 3), 6)}
    with pytest.raises(JobFailed, match=r"params.metric must be one of \['rmse', 'mae', 'r2'\]"):
        metrics.check("regression", "accuracy", None)
    with pytest.raises(JobFailed, match="min_improvement must be a number >= 0"):
        metrics.check("classification", None, -0.1)
    assert metrics.check("regression", None, None) == ("rmse", 0.0)


def test_held_out_rows_are_chosen_by_row_not_by_chance() -> None:
    text = digits.training_csv(slice(0, 300))
    first = split(parse_training(text, "d.csv"), 0.2)
    # the same rows inside a bigger table are held out again, whatever their order
    grown = digits.training_csv(slice(0, 600)).splitlines()
    shuffled = "\n".join([grown[0], *reversed(grown[1:])]) + "\n"
    second = split(parse_training(shuffled, "d.csv"), 0.2)
    assert set(first.test.keys) <= set(second.test.keys)
    assert not set(first.test.keys) & set(second.train.keys)
    assert 0.1 < len(first.test.y) / 300 < 0.3
    # with an id column, the id decides: the same id is held out whatever its cells say
    rows = "".join(f"r{i},{i % 7},{'ab'[i % 2]}\n" for i in range(200))
    by_id = split(parse_training("key,a,label\n" + rows, "d.csv", Layout(id="key")), 0.3)
    changed = rows.replace(",3,", ",99,")
    again = split(parse_training("key,a,label\n" + changed, "d.csv", Layout(id="key")), 0.3)
    assert by_id.test.keys == again.test.keys


def test_splitting_refuses_datasets_that_cannot_be_evaluated() -> None:
    one_class = parse_training("a,label\n" + "".join(f"{i},x\n" for i in range(20)), "d.csv")
    with pytest.raises(DatasetError, match="one class"):
        split(one_class, 0.2)
    # identical rows land together: twenty copies of one row cannot be split
    same = parse_training("a,label\n" + "1,x\n2,y\n" * 10, "d.csv")
    with pytest.raises(DatasetError, match="identical rows go together"):
        split(same, 0.2)
    with pytest.raises(DatasetError, match="at least 10"):
        split(parse_training("a,label\n1,x\n2,y\n", "d.csv"), 0.2)


def test_plugins_refuse_unknown_names_and_bad_parameters() -> None:
    with pytest.raises(PluginError, match="no training plugin named 'torch'; available"):
        plugins.get("torch")
    with pytest.raises(PluginError, match="cannot be imported"):
        plugins.load(["no.such.module"])
    data = plugins.TrainingData.of(parse_training(digits.training_csv(slice(0, 200)), "d.csv"))
    sklearn = plugins.get("sklearn")
    with pytest.raises(PluginError, match=r"params\.C must be a float >= 1e-09"):
        sklearn.train(data, {"C": -1})
    with pytest.raises(PluginError, match=r"params\.estimator must be one of"):
        sklearn.train(data, {"estimator": "svm"})
    values = plugins.TrainingData(
        schema=replace(data.schema, task="regression"), columns=data.columns, y=data.y.astype(float)
    )
    with pytest.raises(PluginError, match=r"\['ridge', 'random_forest'\] for regression"):
        sklearn.train(values, {"estimator": "logistic_regression"})
    forest = sklearn.train(data, {"estimator": "random_forest", "n_estimators": 5, "max_depth": 4})
    assert forest.classes == [str(d) for d in range(10)]
    assert sklearn.library_versions()["scikit-learn"] != "unknown"


def test_an_artifact_that_is_not_a_usable_onnx_classifier_is_refused() -> None:
    from mlpoc.errors import ArtifactError

    version = ModelVersion(
        model="m",
        version=1,
        sha256="",
        artifact_key="",
        metadata_key="",
        features=["a"],
        classes=["0"],
        metrics={},
        job_id="j",
        dataset="",
        plugin="sklearn",
        created_at=0.0,
    )
    with pytest.raises(ArtifactError, match="is not a loadable ONNX graph"):
        OnnxModel(b"definitely not protobuf", version)
