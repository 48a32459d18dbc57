"""Is the model still good (mlpoc.quality.monitoring, the monitor job, the API's sample of
requests): drift of recent inputs against a version's training reference, realized accuracy from
the corrections, and the alert when either crosses its threshold."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any
from xml.etree import ElementTree

import numpy as np
import pytest

from mlpoc.aws import bucket_layout
from mlpoc.data import datasets, digits
from mlpoc.models import runs
from mlpoc.models.inference import Predictions
from mlpoc.models.registry import ModelVersion, Registry
from mlpoc.quality import input_samples, monitoring
from mlpoc.runtime.environment import Settings
from mlpoc.runtime.ledger import Ledger
from mlpoc.schema import CATEGORY, Column, Schema
from mlpoc.worker.loop import Worker
from mlpoc.worker.predict import PredictHandler
from tests.support.aws_stack import Stack
from tests.support.pipeline import prepare, run_job
from tests.support.pipeline import train as train_pipeline
from tests.test_api import AUTH, make_client
from tests.test_promotion import train

RNG = np.random.default_rng(7)

# -- PSI and drift ---------------------------------------------------------------------------


def test_psi_is_zero_for_the_same_distribution_and_grows_with_the_shift() -> None:
    assert monitoring.psi([0.5, 0.5], [0.5, 0.5]) == 0.0
    # (0.9 - 0.5) ln(0.9/0.5) + (0.1 - 0.5) ln(0.1/0.5)
    assert monitoring.psi([0.5, 0.5], [0.9, 0.1]) == pytest.approx(0.8789, abs=1e-4)
    # an empty bin counts as EPSILON, not as a division by zero
    assert np.isfinite(monitoring.psi([1.0, 0.0], [0.0, 1.0]))
    with pytest.raises(ValueError, match="same bins"):
        monitoring.psi([1.0], [0.5, 0.5])


def reference(values: np.ndarray) -> dict[str, Any]:
    return {"type": "number", **runs.numeric_profile(values)}


def test_a_number_drifts_when_its_values_move_and_not_when_resampled() -> None:
    ref = reference(RNG.normal(0, 1, 5_000))
    same = monitoring.distribution_drift(ref, RNG.normal(0, 1, 2_000))
    moved = monitoring.distribution_drift(ref, RNG.normal(1.0, 1, 2_000))
    assert same["psi"] < 0.05 < monitoring.PSI_DRIFT < moved["psi"]
    # the chart's data: the reference's bins plus one for missing values, each side sums to 1
    assert len(moved["bins"]) == len(ref["edges"]) + 2 and moved["bins"][-1] == "missing"
    assert sum(moved["recent"]) == pytest.approx(1, abs=1e-3)
    # missing values are a bin of their own: a column that starts arriving empty drifts
    holes = RNG.normal(0, 1, 2_000)
    holes[:800] = np.nan
    assert monitoring.distribution_drift(ref, holes)["psi"] > monitoring.PSI_DRIFT


def test_a_category_drifts_by_its_shares_and_an_unseen_one_counts_as_other() -> None:
    ref = {"type": CATEGORY, **runs.category_profile(np.array(["a"] * 50 + ["b"] * 50, object))}
    assert monitoring.distribution_drift(ref, np.array(["a", "b"] * 100, object))["psi"] == 0
    found = monitoring.distribution_drift(ref, np.array(["a"] * 100 + ["new"] * 100, object))
    assert found["bins"] == ["a", "b", runs.OTHER, "missing"]
    assert found["recent"] == [0.5, 0.0, 0.5, 0.0]
    assert found["psi"] > monitoring.PSI_DRIFT


def profile_of(columns: dict[str, np.ndarray], output: Predictions) -> dict[str, Any]:
    schema = Schema(
        columns=tuple(Column(n, "number") for n in columns), label="label", task="classification"
    )
    return runs.profile(schema, columns, output)


def confident(rows: int, level: float) -> Predictions:
    return Predictions(labels=["a"] * rows, confidence=np.clip(RNG.normal(level, 0.03, rows), 0, 1))


def test_the_inputs_drift_when_the_share_of_drifting_features_exceeds_the_threshold() -> None:
    base = {f"f{i}": RNG.normal(0, 1, 3_000) for i in range(10)}
    profile = profile_of(base, confident(3_000, 0.9))
    thresholds = monitoring.Thresholds()
    same = {name: RNG.normal(0, 1, 500) for name in base}
    found = monitoring.drift(profile, same, confident(500, 0.9), thresholds)
    assert found["judged"] and found["drifting"] == [] and found["drift"] is False
    assert found["output"]["confidence"]["psi"] < monitoring.PSI_DRIFT
    # three of ten features move: a share of 0.3 is not over 0.3
    three = {**same, **{f"f{i}": RNG.normal(2, 1, 500) for i in range(3)}}
    found = monitoring.drift(profile, three, confident(500, 0.9), thresholds)
    assert found["drifting"] == ["f0", "f1", "f2"] and found["share"] == 0.3
    assert found["drift"] is False
    four = {**three, "f3": RNG.normal(2, 1, 500)}
    found = monitoring.drift(profile, four, confident(500, 0.6), thresholds)
    assert found["drift"] is True and found["share"] == 0.4
    # the scores drift too, reported beside the features
    assert found["output"]["confidence"]["psi"] > monitoring.PSI_DRIFT
    # too few rows are not judged
    few = {name: values[: monitoring.MIN_ROWS - 1] for name, values in four.items()}
    found = monitoring.drift(profile, few, None, thresholds)
    assert found["judged"] is False and found["drift"] is False
    assert f"at least {monitoring.MIN_ROWS}" in found["why"]


def test_thresholds_come_from_the_job_over_the_workers_defaults() -> None:
    default = monitoring.Thresholds(psi=0.2, share=0.3, min_realized=None)
    assert monitoring.Thresholds.from_params({}, default) == default
    found = monitoring.Thresholds.from_params(
        {"psi": 0.1, "drift_share": 0.5, "min_realized_accuracy": 0.7}, default
    )
    assert found == monitoring.Thresholds(psi=0.1, share=0.5, min_realized=0.7)
    for wrong in ({"psi": 0}, {"drift_share": 1.5}, {"psi": "high"}, {"drift_share": True}):
        with pytest.raises(ValueError, match="must be a number in"):
            monitoring.Thresholds.from_params(wrong, default)


# -- realized accuracy -------------------------------------------------------------------------

DAY = 86_400.0


def correction(version: int | None, label: str, served: str, day: int) -> dict[str, Any]:
    return {
        "version": version,
        "label": label,
        "predicted_label": served,
        "annotated_at": 1_700_000_000 + day * DAY,
    }


def test_realized_accuracy_is_the_share_of_served_answers_people_kept_per_version() -> None:
    found = monitoring.realized(
        [
            correction(2, "3", "3", 0),
            correction(2, "3", "8", 0),
            correction(2, "1", "1", 1),
            correction(2, "7", "7", 1),
            correction(1, "5", "6", 0),
            correction(None, "5", "5", 0),  # from before versions were recorded: left out
        ],
        [served(1, {"rmse": 3.0}), served(2, {"accuracy": 0.95})],
    )
    assert [v["version"] for v in found] == [2, 1]
    newest = found[0]
    assert (newest["reviewed"], newest["kept"], newest["realized"]) == (4, 3, 0.75)
    assert newest["held_out"] == 0.95
    assert [(d["reviewed"], d["kept"]) for d in newest["by_day"]] == [(2, 1), (2, 2)]
    assert found[1]["realized"] == 0.0
    assert found[1]["held_out"] is None  # a version without an accuracy (a regression) has none


def served(number: int, metrics: dict[str, float]) -> ModelVersion:
    return ModelVersion(
        model="m", version=number, sha256="0" * 64, artifact_key="a", metadata_key="m",
        features=["x"], classes=[], metrics=metrics, job_id="j", dataset="d", plugin="p",
        created_at=0.0,
    )  # fmt: skip


def test_a_realized_accuracy_under_the_floor_alerts_once_enough_items_were_reviewed() -> None:
    thresholds = monitoring.Thresholds(min_realized=0.8)
    reviewed = monitoring.MIN_REVIEWED
    low = [{"version": 3, "reviewed": reviewed, "kept": 10, "realized": 0.5, "held_out": 0.97}]
    said = monitoring.alerts("digits", [], low, thresholds)
    assert len(said) == 1 and "digits v3: realized accuracy 50%" in said[0]
    assert "held-out 97%" in said[0] and "least confident" in said[0]
    few = [{**low[0], "reviewed": reviewed - 1}]
    assert monitoring.alerts("digits", [], few, thresholds) == []
    assert monitoring.alerts("digits", [], low, monitoring.Thresholds()) == []  # no floor set


# -- the API's sample of requests --------------------------------------------------------------

SCHEMA = Schema(
    columns=(Column("x", "number"), Column("colour", CATEGORY, ("red", "blue"))),
    label="label",
    task="classification",
)


def typed(rows: int) -> dict[str, np.ndarray]:
    x = np.arange(rows, dtype=np.float32)
    x[0] = np.nan
    return {"x": x, "colour": np.array(["red", ""] * (rows // 2), dtype=object)}


def test_the_sampler_keeps_a_bounded_share_and_writes_what_a_predict_job_reads(
    stack: Stack,
) -> None:
    s3 = stack.clients().s3
    draws = iter([0.05, 0.5, 0.01, 0.02])
    sampler = input_samples.RequestSampler(
        s3=s3, bucket=stack.data_bucket, rate=0.1, max_rows=6, flush_seconds=60,
        draw=lambda: next(draws),
    )  # fmt: skip
    sampler.offer("m", 2, SCHEMA, typed(4))  # drawn 0.05 < 0.1: kept
    sampler.offer("m", 2, SCHEMA, typed(4))  # drawn 0.5: not sampled
    sampler.offer("m", 2, SCHEMA, typed(4))  # kept would make 8 > 6 rows: dropped
    sampler.offer("m", 3, SCHEMA, typed(2))
    assert sampler.status()["held_rows"] == 6 and sampler.dropped == 4
    keys = sampler.flush()
    assert sorted(k.split("/")[2] for k in keys) == ["2", "3"]
    assert all(k.startswith(bucket_layout.sample_folder("m")) for k in keys)
    text = s3.get_object(Bucket=stack.data_bucket, Key=sorted(keys)[0])["Body"].read().decode()
    back = datasets.parse_prediction(text, "sample", SCHEMA)
    assert len(back.ids) == 4 and np.isnan(back.columns["x"][0])
    assert back.columns["x"][1:].tolist() == [1.0, 2.0, 3.0]
    assert back.columns["colour"].tolist() == ["red", "", "red", ""]
    assert sampler.flush() == [] and sampler.written == 6  # nothing held: nothing written
    off = input_samples.RequestSampler(s3=s3, bucket="b", rate=0.0, max_rows=6, flush_seconds=60)
    off.offer("m", 2, SCHEMA, typed(4))
    assert off.status()["held_rows"] == 0


def test_a_failed_sample_write_loses_the_sample_not_the_api(stack: Stack) -> None:
    sampler = input_samples.RequestSampler(
        s3=stack.clients().s3, bucket="no-such-bucket", rate=1.0, max_rows=10, flush_seconds=60
    )
    sampler.offer("m", 1, SCHEMA, typed(2))
    assert sampler.flush() == [] and sampler.failed == 2


def test_a_job_sample_is_bounded_and_the_same_on_a_retry() -> None:
    first = input_samples.pick(5_000, 100, "job-1")
    assert len(first) == 100 and np.all(np.diff(first) > 0)
    assert np.array_equal(first, input_samples.pick(5_000, 100, "job-1"))
    assert not np.array_equal(first, input_samples.pick(5_000, 100, "job-2"))
    assert input_samples.pick(50, 100, "job-1").tolist() == list(range(50))


# -- the monitor job ---------------------------------------------------------------------------


def run_predict_worker(stack: Stack, body: dict[str, Any], **settings: Any) -> dict[str, Any]:
    clients = stack.clients()
    clients.sqs.send_message(QueueUrl=stack.predict_queue_url, MessageBody=json.dumps(body))
    found = replace(Settings.from_env("predict", stack.env("")), wait_seconds=0, **settings)
    Worker(settings=found, clients=clients, handler=PredictHandler(found, clients)).process_batch()
    record = Ledger(clients.dynamodb, stack.jobs_table).get(body["job_id"])
    assert record is not None, body
    return record


def alerts_inbox(stack: Stack) -> tuple[str, str]:
    """An alerts topic with a queue subscribed (what the notifier would receive)."""
    clients = stack.clients()
    topic = clients.sns.create_topic(Name="alerts")["TopicArn"]
    url = clients.sqs.create_queue(QueueName="alerts-inbox")["QueueUrl"]
    arn = clients.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])
    clients.sns.subscribe(
        TopicArn=topic, Protocol="sqs", Endpoint=arn["Attributes"]["QueueArn"],
        Attributes={"RawMessageDelivery": "true"},
    )  # fmt: skip
    return topic, url


def monitor(stack: Stack, job_id: str, topic: str, **params: Any) -> dict[str, Any]:
    body = {
        "schema": 1, "job_id": job_id, "type": "monitor", "model": "digits",
        "dataset": f"s3://{stack.data_bucket}/{bucket_layout.sample_folder('digits')}",
        "params": params,
    }  # fmt: skip
    record = run_predict_worker(stack, body, alerts_topic_arn=topic)
    assert record["status"] == "SUCCEEDED", record
    return record["result"]  # type: ignore[no-any-return]


def report(stack: Stack) -> dict[str, Any]:
    s3 = stack.clients().s3
    body = s3.get_object(Bucket=stack.model_bucket, Key=bucket_layout.latest_report_key("digits"))
    return json.loads(body["Body"].read())  # type: ignore[no-any-return]


def inbox(stack: Stack, url: str) -> list[dict[str, Any]]:
    found = stack.clients().sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10)
    return [json.loads(m["Body"]) for m in found.get("Messages", [])]


def shifted_csv(rows: slice) -> str:
    """The digits drawn heavier and shifted: every pixel 6 darker, at most 16."""
    x, _ = digits.digits(rows)
    lines = ["id," + ",".join(digits.FEATURES)]
    lines += [f"s{i}," + ",".join(str(min(int(v) + 6, 16)) for v in row) for i, row in enumerate(x)]
    return "\n".join(lines) + "\n"


def test_the_monitor_reports_shifted_inputs_and_alerts_and_stays_quiet_on_unshifted(
    stack: Stack,
) -> None:
    train(stack, "v1", digits.training_csv(slice(0, 1_000)), estimator="logistic_regression")
    topic, url = alerts_inbox(stack)
    # GIVEN a predict job over rows the model has not seen, like its training rows
    clients = stack.clients()
    clients.s3.put_object(
        Bucket=stack.data_bucket, Key="inputs/digits/new.csv",
        Body=digits.prediction_csv(slice(1_000, 1_600)).encode(),
    )  # fmt: skip
    predicted = run_predict_worker(
        stack,
        {"schema": 1, "job_id": "p1", "type": "predict", "model": "digits",
         "dataset": f"s3://{stack.data_bucket}/inputs/digits/new.csv"},
        sample_rows=400,
    )  # fmt: skip
    assert predicted["status"] == "SUCCEEDED", predicted
    # WHEN the monitor runs: the job's sample is judged against v1's reference, quietly
    quiet = monitor(stack, "m1", topic)
    assert quiet["versions"] == [1] and quiet["rows"] == 400 and quiet["alerts"] == 0
    found = report(stack)["versions"][0]
    assert found["judged"] and found["drift"] is False and found["share"] < 0.3
    assert set(found["features"]) == set(digits.FEATURES)
    assert inbox(stack, url) == []
    # WHEN shifted rows arrive (as the API's sampler would write them)
    schema = Registry(clients.dynamodb, stack.models_table).get("digits", 1).schema
    shifted = datasets.parse_prediction(shifted_csv(slice(1_600, 1_797)), "shifted", schema)
    input_samples.write(
        clients.s3, stack.data_bucket, model="digits", version=1, schema=schema,
        columns=shifted.columns, ids=shifted.ids, token="api", now=0,
    )  # fmt: skip
    # AND a sample that does not fit v1's schema (put there by hand) is skipped with its reason
    clients.s3.put_object(
        Bucket=stack.data_bucket, Key=f"{bucket_layout.sample_folder('digits')}1/by-hand.csv",
        Body=b"id,colour\na,red\n",
    )  # fmt: skip
    loud = monitor(stack, "m2", topic)
    # THEN drift is reported per feature and for the scores, and one alert is published
    assert loud["drifting_versions"] == [1] and loud["alerts"] == 1 and loud["published"] == 1
    latest = report(stack)
    found = latest["versions"][0]
    assert found["rows"] == 400 + 197 and found["drift"] is True
    (skipped,) = found["skipped"]
    assert "by-hand.csv lacks feature column(s) the model was trained on" in skipped
    assert found["share"] > 0.3 and len(found["drifting"]) > 0.3 * 64
    assert all(found["features"][n]["psi"] > 0.2 for n in found["drifting"])
    assert "confidence" in found["output"] and "label" in found["output"]
    sent = inbox(stack, url)
    assert len(sent) == 1 and sent[0]["source"] == "mlpoc.monitor"
    assert sent[0]["model"] == "digits" and "features drift" in sent[0]["alerts"][0]
    # the report is kept under its own key beside latest.json
    listed = clients.s3.list_objects_v2(Bucket=stack.model_bucket, Prefix="monitor/digits/reports/")
    assert len(listed["Contents"]) == 2
    # AND the job's ledger record points at its report
    ledger = Ledger(clients.dynamodb, stack.jobs_table)
    assert ledger.get("m2")["result"]["report"].endswith("-m2.json")  # type: ignore[index]


def test_a_monitor_over_a_given_csv_judges_it_against_the_named_version(stack: Stack) -> None:
    train(stack, "v1", digits.training_csv(slice(0, 800)), estimator="logistic_regression")
    topic, url = alerts_inbox(stack)
    stack.clients().s3.put_object(
        Bucket=stack.data_bucket, Key="inputs/digits/shifted.csv",
        Body=shifted_csv(slice(800, 1_100)).encode(),
    )  # fmt: skip
    body = {
        "schema": 1, "job_id": "given", "type": "monitor", "model": "digits", "version": "1",
        "dataset": f"s3://{stack.data_bucket}/inputs/digits/shifted.csv",
    }  # fmt: skip
    record = run_predict_worker(stack, body, alerts_topic_arn=topic)
    assert record["status"] == "SUCCEEDED" and record["result"]["drifting_versions"] == [1]
    assert report(stack)["window"] == {"dataset": body["dataset"]}
    assert len(inbox(stack, url)) == 1


def test_a_monitor_job_with_a_bad_threshold_fails_with_the_reason(stack: Stack) -> None:
    train(stack, "v1", digits.training_csv(slice(0, 300)), estimator="logistic_regression")
    body = {
        "schema": 1, "job_id": "bad", "type": "monitor", "model": "digits",
        "dataset": f"s3://{stack.data_bucket}/{bucket_layout.sample_folder('digits')}",
        "params": {"drift_share": 2},
    }  # fmt: skip
    record = run_predict_worker(stack, body)
    assert record["status"] == "FAILED"
    assert "params.drift_share must be a number in (0, 1]; got 2" in record["reason"]
    body = {**body, "job_id": "window", "params": {"window_hours": -1}}
    record = run_predict_worker(stack, body)
    assert record["status"] == "FAILED" and "params.window_hours" in record["reason"]


def test_the_monitor_reports_realized_accuracy_per_served_version(stack: Stack) -> None:
    train(stack, "v1", digits.training_csv(slice(0, 600)), estimator="logistic_regression")
    clients = stack.clients()
    for i, (label, served) in enumerate([("1", "1"), ("2", "7"), ("3", "3"), ("4", "4")]):
        clients.dynamodb.put_item(
            TableName=stack.annotations_table,
            Item={
                "model": {"S": "digits"}, "item_id": {"S": f"i{i}"}, "label": {"S": label},
                "predicted_label": {"S": served}, "version": {"N": "1"},
                "annotated_at": {"N": "1700000000"},
            },
        )  # fmt: skip
    topic, _ = alerts_inbox(stack)
    result = monitor(stack, "m-realized", topic)
    assert result["versions"] == []  # nothing recent to judge drift on
    realized = report(stack)["realized"]
    v1 = Registry(clients.dynamodb, stack.models_table).get("digits", 1)
    assert realized == [
        {
            "version": 1, "reviewed": 4, "kept": 3, "realized": 0.75,
            "held_out": round(v1.metrics["accuracy"], 4),
            "by_day": [{"day": "2023-11-14", "reviewed": 4, "kept": 3, "realized": 0.75}],
        }
    ]  # fmt: skip


# -- the API: samples of realtime requests, the quality routes and their charts ---------------

SVG_NS = "{http://www.w3.org/2000/svg}"


def test_a_sampled_realtime_request_is_written_as_the_monitor_reads_it(stack: Stack) -> None:
    prepare(stack)
    x, _ = digits.digits(slice(0, 3))
    rows = [dict(zip(digits.FEATURES, map(float, r), strict=True)) for r in x]
    with make_client(stack, MLPOC_SAMPLE_RATE="1") as client:
        answer = client.post("/v1/predict", headers=AUTH, json={"model": "digits", "rows": rows})
        assert answer.status_code == 200
        sampler = client.app.state.services.sampler  # type: ignore[attr-defined]
        (key,) = sampler.flush()
        assert client.get("/v1/health", headers=AUTH).json()["sampling"]["written_rows"] == 3
    assert key.startswith("input-samples/digits/1/")
    text = stack.clients().s3.get_object(Bucket=stack.data_bucket, Key=key)["Body"].read()
    schema = Registry(stack.clients().dynamodb, stack.models_table).get("digits", 1).schema
    back = datasets.parse_prediction(text.decode(), key, schema)
    assert np.array_equal(np.column_stack([back.columns[f] for f in digits.FEATURES]), x)
    with make_client(stack, MLPOC_SAMPLE_RATE="0") as client:
        client.post("/v1/predict", headers=AUTH, json={"model": "digits", "rows": rows})
        assert client.app.state.services.sampler.flush() == []  # type: ignore[attr-defined]


def test_the_quality_routes_refuse_what_is_not_there(stack: Stack) -> None:
    prepare(stack)
    with make_client(stack) as client:
        assert client.get("/v1/models/digits/quality").status_code == 401
        unknown = client.get("/v1/models/nope/charts/metric.svg", headers=AUTH)
        assert unknown.status_code == 404 and "no model 'nope'" in unknown.text
        missing = client.get("/v1/models/digits/charts/confusion.svg?version=9", headers=AUTH)
        assert missing.status_code == 404 and "has no version 9" in missing.text
        assert (
            client.get("/v1/models/digits/charts/confusion.svg?version=0", headers=AUTH).status_code
            == 422
        )
        drift = client.get("/v1/models/digits/charts/drift.svg?feature=pixel_1", headers=AUTH)
        assert drift.status_code == 404
        assert "run `mlpoc monitor run digits`" in drift.json()["error"]["message"]
        quality = client.get("/v1/models/digits/quality", headers=AUTH).json()
        assert quality["monitor"] is None and quality["realized"] == []
        assert quality["versions"] == [
            {"version": 1, "value": quality["versions"][0]["value"], "promoted": True,
             "live": True}
        ]  # fmt: skip


def test_every_chart_is_well_formed_svg_with_its_title(stack: Stack) -> None:
    prepare(stack)
    train_pipeline(stack, "train-2", estimator="logistic_regression", C=0.01)
    input_samples.write(
        stack.clients().s3, stack.data_bucket, model="digits", version=1,
        schema=Registry(stack.clients().dynamodb, stack.models_table).get("digits", 1).schema,
        columns=datasets.parse_prediction(shifted_csv(slice(1_400, 1_797)), "s", Registry(
            stack.clients().dynamodb, stack.models_table).get("digits", 1).schema).columns,
        ids=[f"s{i}" for i in range(397)], token="t", now=0,
    )  # fmt: skip
    run_job(
        stack,
        {"job_id": "m", "type": "monitor", "model": "digits",
         "dataset": f"s3://{stack.data_bucket}/{bucket_layout.sample_folder('digits')}"},
    )  # fmt: skip
    with make_client(stack) as client:
        report = client.get("/v1/models/digits/quality", headers=AUTH).json()["monitor"]
        drifting = report["versions"][0]["drifting"][0]
        for path, title in [
            ("metric.svg", "digits: held-out accuracy of each version"),
            ("confusion.svg?version=2", "digits v2: confusion matrix on the held-out rows"),
            ("compare.svg?a=1&b=2", "digits: v1 beside v2"),
            ("realized.svg", "digits v1: realized accuracy on reviewed predictions, per day"),
            (f"drift.svg?feature={drifting}", f"digits v1: {drifting} (PSI "),
        ]:
            answer = client.get(f"/v1/models/digits/charts/{path}", headers=AUTH)
            assert answer.status_code == 200, answer.text
            assert answer.headers["content-type"] == "image/svg+xml"
            svg = ElementTree.fromstring(answer.text)  # noqa: S314 - our own SVG: well-formed, or this raises
            assert svg.tag == f"{SVG_NS}svg" and svg.attrib["role"] == "img"
            assert svg.find(f"{SVG_NS}title").text.startswith(title)  # type: ignore[union-attr]
            assert "style=" not in answer.text  # the page's CSP allows no inline style


def test_chart_text_is_escaped() -> None:
    from mlpoc.quality import charts

    svg = charts.distributions(
        "m", 1, "<b>&x", {"psi": 0.5, "bins": ["<1", "missing"], "reference": [1, 0],
                          "recent": [0, 1]},
    )  # fmt: skip
    tree = ElementTree.fromstring(svg)  # noqa: S314 - our own SVG
    texts = [t.text for t in tree.iter(f"{SVG_NS}text")]
    assert "<1" in texts and tree.find(f"{SVG_NS}title").text == "m v1: <b>&x (PSI 0.500)"  # type: ignore[union-attr]


def test_the_monitor_commands_queue_a_job_and_show_its_report(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from mlpoc.cli import common
    from mlpoc.cli.app import app
    from tests.test_cli_ops import deployment

    prepare(stack)
    monkeypatch.setattr(common, "deployment", lambda *_: deployment(stack))
    runner = CliRunner()
    # GIVEN no monitor has run: show says what to do, and fails
    shown = runner.invoke(app, ["monitor", "show", "digits"])
    assert shown.exit_code == 1
    assert "no monitor report for 'digits' yet: run `mlpoc monitor run digits --wait`" in (
        shown.output
    )
    # WHEN one is queued: a monitor job over the model's samples, on the predict queue
    queued = runner.invoke(
        app, ["monitor", "run", "digits", "--window-hours", "24", "--param", "psi=0.1"]
    )
    assert queued.exit_code == 0, queued.output
    (message,) = stack.clients().sqs.receive_message(QueueUrl=stack.predict_queue_url)["Messages"]
    body = json.loads(message["Body"])
    assert (body["type"], body["dataset"]) == (
        "monitor", f"s3://{stack.data_bucket}/input-samples/digits/"
    )  # fmt: skip
    assert body["params"] == {"window_hours": 24, "psi": 0.1}
    # AND a predict worker runs it (the message is visible again after a moment: resend it)
    stack.clients().sqs.send_message(QueueUrl=stack.predict_queue_url, MessageBody=message["Body"])
    found = replace(Settings.from_env("predict", stack.env("")), wait_seconds=0, prefetch=1)
    clients = stack.clients()
    Worker(settings=found, clients=clients, handler=PredictHandler(found, clients)).process_batch()
    # THEN show prints v1 judged on the predict job's sample, with the report's thresholds
    shown = runner.invoke(app, ["monitor", "show", "digits"])
    assert shown.exit_code == 0, shown.output
    flat = " ".join(shown.output.split())  # the title wraps at the terminal's width
    assert "(drift: PSI > 0.1 in over 30% of the features)" in flat
    assert "│ v1 " in shown.output and "no alerts" in shown.output
