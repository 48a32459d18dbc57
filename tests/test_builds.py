"""A train job over a folder builds its dataset version in the train worker
(mlpoc.data.dataset_versions): the promoted version's data, the new CSVs in the folder, every
correction, once each; and ends "nothing new" when nothing is. In-process, against moto."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest
from moto import mock_aws

from mlpoc.data import dataset_versions, digits
from mlpoc.data.corrections import Annotations
from mlpoc.models.registry import Registry
from mlpoc.runtime.contract import S3Uri
from mlpoc.runtime.environment import Settings
from mlpoc.runtime.ledger import Ledger
from mlpoc.worker.loop import Worker
from mlpoc.worker.train import handle_train
from tests.support.aws_stack import Stack, create_stack
from tests.support.pipeline import prepare

MODEL = "digits"


@pytest.fixture
def stack() -> Iterator[Stack]:
    with mock_aws():
        yield create_stack(None)


def folder(stack: Stack) -> str:
    return f"s3://{stack.data_bucket}/datasets/{MODEL}/"


def put(stack: Stack, key: str, text: str) -> None:
    stack.clients().s3.put_object(Bucket=stack.data_bucket, Key=key, Body=text.encode())


def run(stack: Stack, job_id: str, **params: Any) -> dict[str, Any]:
    """One train job over the model's folder, run by an in-process train worker; its record."""
    settings = replace(Settings.from_env("train", stack.env()), wait_seconds=0)
    clients = stack.clients()
    message = {"schema": 1, "job_id": job_id, "type": "train", "model": MODEL,
               "dataset": folder(stack), "params": {"origin": "schedule", **params}}  # fmt: skip
    clients.sqs.send_message(QueueUrl=settings.train_queue_url, MessageBody=json.dumps(message))
    Worker(settings=settings, clients=clients, handler=handle_train).process_batch()
    record = Ledger(clients.dynamodb, stack.jobs_table).get(job_id)
    assert record is not None
    return record


def rows_of(stack: Stack, uri: str) -> list[list[str]]:
    where = S3Uri.parse(uri)
    body = stack.clients().s3.get_object(Bucket=where.bucket, Key=where.key)["Body"].read()
    return list(csv.reader(io.StringIO(body.decode())))


def correct(stack: Stack, count: int) -> list[str]:
    """A person corrects the first ``count`` items of the review queue with their true label."""
    settings = Settings.from_env("api", stack.env())
    clients = stack.clients()
    registry = Registry(clients.dynamodb, stack.models_table)
    notes = Annotations(settings, clients, Ledger(clients.dynamodb, stack.jobs_table), registry)
    items = notes.review_queue(MODEL, count)
    _, truth = digits.digits(None)
    for item in items:
        notes.correct(MODEL, item["item_id"], str(truth[int(item["item_id"].split("-")[1])]))
    return [i["item_id"] for i in items]


def test_a_run_builds_from_the_promoted_version_the_new_files_and_the_corrections(
    stack: Stack,
) -> None:
    # GIVEN v1 trained on datasets/digits/train.csv (1500 rows), a set to predict uploaded to
    # the same folder since, a new labelled file, and two corrections
    prepare(stack)
    put(stack, "datasets/digits/more.csv", digits.training_csv(slice(1500, 1600)))
    corrected = correct(stack, 2)
    # WHEN a scheduled run trains on the folder
    record = run(stack, "schedule-digits-a1")
    # THEN it succeeded, built from v1 plus the new file plus both corrections
    assert record["status"] == "SUCCEEDED", record
    built = record["result"]["built"]
    assert built["base_version"] == 1
    assert built["added"] == [f"{folder(stack)}more.csv"]
    assert (built["corrections"], built["new_corrections"]) == (2, 2)
    # AND the set to predict was left out, with the reason
    assert built["skipped"] == {f"{folder(stack)}score.csv": "no label column (a set to predict, "
                                "not to train on)"}  # fmt: skip
    rows = rows_of(stack, record["result"]["dataset"])
    assert rows[0] == [*digits.FEATURES, "label"]
    assert len(rows) == 1 + 1500 + 100 + 2
    # AND the version says where it came from
    version = Registry(stack.clients().dynamodb, stack.models_table).get(MODEL, 2)
    assert version.extra["origin"] == "schedule"
    assert version.dataset == record["result"]["dataset"]
    assert corrected  # the items the corrections name


def test_a_second_run_with_nothing_new_ends_nothing_new_and_a_new_correction_is_counted_once(
    stack: Stack,
) -> None:
    prepare(stack)
    put(stack, "datasets/digits/more.csv", digits.training_csv(slice(1500, 1600)))
    correct(stack, 1)
    first = run(stack, "schedule-digits-b1", promote="always")
    assert first["result"]["model_version"] == 2
    # WHEN the schedule fires again with nothing new
    second = run(stack, "schedule-digits-b2", promote="always")
    # THEN the job succeeded and trained nothing
    assert second["status"] == "SUCCEEDED"
    assert second["result"]["outcome"] == "nothing new"
    assert "since version 2" in second["result"]["reason"]
    pointer = Registry(stack.clients().dynamodb, stack.models_table).pointer(MODEL)
    assert pointer is not None and pointer.next_version == 2  # no version allocated
    # WHEN a person corrects one more item
    correct(stack, 1)
    third = run(stack, "schedule-digits-b3", promote="always")
    # THEN the new version has v2's data once and both corrections once (rebuilt from the root)
    assert third["result"]["built"]["new_corrections"] == 1
    assert len(rows_of(stack, third["result"]["dataset"])) == 1 + 1500 + 100 + 2


def test_a_version_that_was_not_promoted_is_not_trained_again_on_the_same_inputs(
    stack: Stack,
) -> None:
    prepare(stack)
    put(stack, "datasets/digits/more.csv", digits.training_csv(slice(1500, 1600)))
    first = run(stack, "schedule-digits-c1", promote="never")
    assert first["result"]["promoted"] is False
    again = run(stack, "schedule-digits-c2", promote="never")
    assert again["result"]["outcome"] == "nothing new"
    assert "version 2 was trained on exactly these inputs" in again["result"]["reason"]


def test_the_first_run_of_a_new_model_trains_on_every_labelled_file_in_the_folder(
    stack: Stack,
) -> None:
    put(stack, "datasets/digits/a.csv", digits.training_csv(slice(0, 400)))
    put(stack, "datasets/digits/b.csv", digits.training_csv(slice(400, 800)))
    record = run(stack, "schedule-digits-d1")
    assert record["status"] == "SUCCEEDED", record
    assert record["result"]["built"]["base_version"] is None
    assert len(rows_of(stack, record["result"]["dataset"])) == 1 + 800


def test_an_empty_folder_is_nothing_new_and_a_damaged_manifest_fails_with_a_reason(
    stack: Stack,
) -> None:
    empty = run(stack, "schedule-digits-e1")
    assert (empty["status"], empty["result"]["outcome"]) == ("SUCCEEDED", "nothing new")
    # GIVEN a promoted version built from the folder, whose manifest someone overwrote
    put(stack, "datasets/digits/a.csv", digits.training_csv(slice(0, 400)))
    built = run(stack, "schedule-digits-e2")
    key = S3Uri.parse(built["result"]["dataset"]).key
    put(stack, dataset_versions.manifest_key(key), "{not json")
    put(stack, "datasets/digits/b.csv", digits.training_csv(slice(400, 800)))
    broken = run(stack, "schedule-digits-e3")
    assert broken["status"] == "FAILED"
    assert (
        "is damaged" in broken["reason"]
        and "train the model on a dataset once" in (broken["reason"])
    )


def test_the_retrain_route_queues_a_job_the_worker_builds_with_the_corrections(
    stack: Stack,
) -> None:
    prepare(stack)
    correct(stack, 3)
    clients = stack.clients()
    notes = Annotations(
        Settings.from_env("api", stack.env()),
        clients,
        Ledger(clients.dynamodb, stack.jobs_table),
        Registry(clients.dynamodb, stack.models_table),
    )
    queued = notes.retrain(MODEL)
    settings = replace(Settings.from_env("train", stack.env()), wait_seconds=0)
    Worker(settings=settings, clients=clients, handler=handle_train).process_batch()
    record = Ledger(clients.dynamodb, stack.jobs_table).get(queued["job_id"])
    assert record is not None and record["status"] == "SUCCEEDED", record
    assert len(rows_of(stack, record["result"]["dataset"])) == 1 + 1500 + 3
    version = Registry(clients.dynamodb, stack.models_table).get(MODEL, 2)
    assert version.extra["origin"] == "retrain"


def test_a_manifest_that_names_a_bucket_the_worker_may_not_read_fails_before_any_read(
    stack: Stack,
) -> None:
    put(stack, "datasets/digits/a.csv", digits.training_csv(slice(0, 400)))
    built = run(stack, "schedule-digits-f1")
    key = S3Uri.parse(built["result"]["dataset"]).key
    manifest = {"root": "s3://someone-elses-bucket/secret.csv", "files": [], "watermark": 0,
                "corrections_at": 0}  # fmt: skip
    put(stack, dataset_versions.manifest_key(key), json.dumps(manifest))
    put(stack, "datasets/digits/b.csv", digits.training_csv(slice(400, 800)))
    refused = run(stack, "schedule-digits-f2")
    assert refused["status"] == "FAILED"
    assert (
        "names s3://someone-elses-bucket/secret.csv: dataset must be inside the data bucket"
        in (refused["reason"])
    )


def test_a_malformed_new_file_is_left_out_with_its_line_and_a_corrected_upload_counts(
    stack: Stack,
) -> None:
    prepare(stack)
    put(stack, "datasets/digits/more.csv", digits.training_csv(slice(1500, 1600)))
    good = digits.training_csv(slice(1600, 1700))
    lines = good.splitlines()
    put(stack, "datasets/digits/broken.csv", "\n".join([*lines[:5], "1,2"]) + "\n")
    record = run(stack, "schedule-digits-g1", promote="always")
    assert record["status"] == "SUCCEEDED", record
    reason = record["result"]["built"]["skipped"][f"{folder(stack)}broken.csv"]
    assert reason.startswith("not a valid CSV: ") and "line 6: 2 values for 65 columns" in reason
    assert len(rows_of(stack, record["result"]["dataset"])) == 1 + 1500 + 100
    # WHEN the file is uploaded again, fixed
    put(stack, "datasets/digits/broken.csv", good)
    again = run(stack, "schedule-digits-g2", promote="always")
    # THEN the next run takes it
    assert again["result"]["built"]["added"] == [f"{folder(stack)}broken.csv"]
    assert len(rows_of(stack, again["result"]["dataset"])) == 1 + 1500 + 100 + 100


def test_a_run_trains_the_live_versions_configuration_unless_it_names_its_own(
    stack: Stack,
) -> None:
    from tests.support.pipeline import train

    registry = Registry(stack.clients().dynamodb, stack.models_table)
    # GIVEN v1 live: a random forest of 10 trees, depth 4 (not the plugin's defaults)
    forest = {"estimator": "random_forest", "n_estimators": 10, "max_depth": 4}
    train(stack, "train-1", **forest, review_threshold=0.4)
    assert registry.get(MODEL, 1).extra["plugin_params"] == forest
    assert registry.get(MODEL, 1).extra["review_threshold"] == 0.4
    # WHEN a scheduled run (no parameters of the plugin's) trains on a new file
    put(stack, f"datasets/{MODEL}/more.csv", digits.training_csv(slice(1500, 1600)))
    assert run(stack, "sched-1", promote="always")["status"] == "SUCCEEDED"
    # THEN v2 is the same forest, not the plugin's default logistic regression
    v2 = registry.get(MODEL, 2)
    assert (v2.plugin, v2.extra["plugin_params"]) == ("sklearn", forest)
    assert v2.extra["review_threshold"] == 0.4  # and its review threshold
    # AND a run that names parameters of its own gets exactly those
    put(stack, f"datasets/{MODEL}/even-more.csv", digits.training_csv(slice(1600, 1700)))
    run(stack, "sched-2", promote="always", estimator="logistic_regression", C=0.5)
    assert registry.get(MODEL, 3).extra["plugin_params"] == {
        "estimator": "logistic_regression",
        "C": 0.5,
    }


def test_a_teams_table_is_retrained_with_its_corrections_and_its_own_shape(stack: Stack) -> None:
    from tests.support.pipeline import run_job

    # GIVEN v1 trained on a team's table: an id, a label named "digit", a text column, blanks
    table = digits.check_csv().replace(",label\n", ",digit\n", 1)
    put(stack, f"datasets/{MODEL}/team.csv", table)
    shape = {"label_column": "digit", "id_column": "id"}
    run_job(stack, {"job_id": "team-1", "type": "train", "model": MODEL,
                    "dataset": f"s3://{stack.data_bucket}/datasets/{MODEL}/team.csv",
                    "params": shape})  # fmt: skip
    # AND ten of its rows predicted again, all sent to review, and corrected by a person
    lines = table.splitlines()
    header = lines[0].split(",")
    truth = {line.split(",")[0]: line.split(",")[-1] for line in lines[1:11]}
    to_score = "\n".join(",".join(line.split(",")[:-1]) for line in lines[:11]) + "\n"
    put(stack, f"inputs/{MODEL}/again.csv", to_score)
    run_job(stack, {"job_id": "team-p", "type": "predict", "model": MODEL,
                    "dataset": f"s3://{stack.data_bucket}/inputs/{MODEL}/again.csv",
                    "params": {"review_threshold": 1.0}})  # fmt: skip
    settings = Settings.from_env("api", stack.env())
    clients = stack.clients()
    registry = Registry(clients.dynamodb, stack.models_table)
    notes = Annotations(settings, clients, Ledger(clients.dynamodb, stack.jobs_table), registry)
    items = notes.review_queue(MODEL, 10)
    # the review items keep the row's cells as the model took them: text, and null for a blank
    cells = [i["features"] for i in items]
    assert any(None in row for row in cells) and any("light" in row for row in cells)
    for item in items:
        notes.correct(MODEL, item["item_id"], truth[item["item_id"]])
    # WHEN a retrain over the folder names nothing of the table's shape
    record = run(stack, "team-retrain")
    # THEN it took v1's shape: the same label, id and types; the corrected rows replaced the
    # file's rows of the same ids (each id once), nothing else lost
    assert record["status"] == "SUCCEEDED", record
    assert record["result"]["built"]["corrections"] == 10
    v2 = registry.get(MODEL, 2)
    assert (v2.schema.label, v2.schema.id) == ("digit", "id")
    assert v2.schema.column("ink") is not None and v2.schema.column("ink").type == "category"
    rows = rows_of(stack, record["result"]["dataset"])
    features = [h for h in header if h not in ("id", "digit")]
    assert rows[0] == [*features, "digit", "id"]
    ids = [r[-1] for r in rows[1:]]
    assert len(ids) == len(set(ids)) == 600
