"""Local mode for real: `mlpoc local up` driven by a plain AWS client and the operator commands.

The client uses none of the project's code: boto3 against the endpoint and the
operator's keys that `mlpoc outputs --json` prints, the job contract as the README states it,
and the API over HTTP. IAM is enforced throughout (local mode's default): every process runs
as its own role from the service template, so what passes here passes the deployed policies.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from sklearn.datasets import load_digits

from mlpoc.aws import dynamo
from tests.support.cli import local_up as local_up_process
from tests.support.cli import mlpoc

pytestmark = pytest.mark.integration


# -- `mlpoc local up` and a client that knows only the README ------------------------------
@pytest.fixture(scope="module")
def local_up(
    tmp_path_factory: pytest.TempPathFactory, local_assembly: Path
) -> Iterator[tuple[Path, subprocess.Popen[str]]]:
    state_dir = tmp_path_factory.mktemp("local-up")
    with local_up_process(state_dir, local_assembly, "local-up.log") as process:
        yield state_dir, process


@pytest.fixture(scope="module")
def outputs(local_up: tuple[Path, subprocess.Popen[str]]) -> dict[str, str]:
    done = mlpoc("outputs", "--json", state_dir=local_up[0])
    assert done.returncode == 0, done.stderr
    found: dict[str, str] = json.loads(done.stdout)
    return found


def aws(service: str, outputs: dict[str, str], *, key: str = "", secret: str = "") -> Any:
    """A plain client with the operator's keys from `mlpoc outputs --json` (or others)."""
    return boto3.client(
        service,
        endpoint_url=outputs["AwsEndpointUrl"],
        region_name="us-east-1",
        aws_access_key_id=key or outputs["AwsAccessKeyId"],
        aws_secret_access_key=secret or outputs["AwsSecretAccessKey"],
    )


def wait_for_job(outputs: dict[str, str], **match: str) -> dict[str, Any]:
    dynamodb = aws("dynamodb", outputs)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        for item in dynamodb.scan(TableName=outputs["JobsTableName"])["Items"]:
            fields = {k: v.get("S") for k, v in item.items()}
            # .get: moto applies an UpdateItem that creates an item in two steps, so a scan
            # can catch a record with its key and nothing else yet
            if all(fields.get(k) == v for k, v in match.items()) and fields.get("status") in (
                "SUCCEEDED",
                "FAILED",
            ):
                return item
        time.sleep(0.5)
    raise AssertionError(f"no finished job matching {match}")


def http(outputs: dict[str, str], method: str, path: str, body: Any = None, key: str = "") -> Any:
    request = urllib.request.Request(  # noqa: S310 - the local API on loopback
        outputs["ApiUrl"] + path,
        method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={"X-API-Key": key or outputs["ApiKey"], "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
        return json.loads(response.read())


def test_a_plain_aws_client_drives_the_local_stack(outputs: dict[str, str]) -> None:
    digits = load_digits()
    header = [f"pixel_{i}" for i in range(64)]
    # GIVEN a training CSV uploaded under datasets/<model>/ (README: "Datasets")
    lines = [",".join([*header, "label"])]
    lines += [
        ",".join([*(str(int(v)) for v in x), str(y)])
        for x, y in zip(digits.data[:600], digits.target[:600], strict=True)
    ]
    s3 = aws("s3", outputs)
    bucket = outputs["DataBucketName"]
    s3.put_object(Bucket=bucket, Key="datasets/plain/train.csv", Body="\n".join(lines).encode())
    # THEN the upload starts a training job that succeeds
    trained = wait_for_job(outputs, dataset=f"s3://{bucket}/datasets/plain/train.csv")
    assert trained["status"]["S"] == "SUCCEEDED", trained
    assert trained["type"]["S"] == "train"

    # WHEN a predict job is sent straight to the predict queue, as the job contract says
    rows = [",".join(["id", *header])]
    rows += [
        ",".join([f"img-{i}", *(str(int(v)) for v in digits.data[i])]) for i in range(600, 620)
    ]
    s3.put_object(Bucket=bucket, Key="inputs/plain/score.csv", Body="\n".join(rows).encode())
    aws("sqs", outputs).send_message(
        QueueUrl=outputs["PredictQueueUrl"],
        MessageBody=json.dumps(
            {
                "schema": 1,
                "job_id": "plain-client-predict-1",
                "type": "predict",
                "model": "plain",
                "dataset": f"s3://{bucket}/inputs/plain/score.csv",
            }
        ),
    )
    predicted = wait_for_job(outputs, job_id="plain-client-predict-1")
    assert predicted["status"]["S"] == "SUCCEEDED", predicted
    # THEN the predictions are in the predictions table, keyed by model and row id
    item = aws("dynamodb", outputs).get_item(
        TableName=outputs["PredictionsTableName"],
        Key={"model": {"S": "plain"}, "item_id": {"S": "img-600"}},
    )["Item"]
    assert item["label"]["S"] in {str(d) for d in range(10)}

    # AND a malformed message ends in the train DLQ with the reason, ledger untouched
    aws("sqs", outputs).send_message(QueueUrl=outputs["TrainQueueUrl"], MessageBody="not json")
    dlq = aws("sqs", outputs)
    deadline, dead = time.monotonic() + 30, []
    while not dead and time.monotonic() < deadline:
        dead = dlq.receive_message(
            QueueUrl=outputs["TrainDeadLetterQueueUrl"],
            MessageAttributeNames=["All"],
            WaitTimeSeconds=1,
            VisibilityTimeout=0,
        ).get("Messages", [])
    assert dead[0]["Body"] == "not json"
    assert "JSON" in dead[0]["MessageAttributes"]["mlpoc-reason"]["StringValue"]

    # AND the API answers with the key, and refuses a wrong one
    assert http(outputs, "GET", "/healthz")["status"] == "ok"
    answer = http(
        outputs,
        "POST",
        "/v1/predict",
        {
            "model": "plain",
            "rows": [dict(zip(header, map(float, digits.data[700]), strict=True))],
        },
    )
    assert answer["predictions"][0]["label"] in {str(d) for d in range(10)}
    with pytest.raises(urllib.error.HTTPError) as refused:
        http(outputs, "GET", "/v1/jobs", key="wrong-key-wrong-key")
    assert refused.value.code == 401


def test_keys_local_mode_did_not_issue_are_refused(outputs: dict[str, str]) -> None:
    # the fixed fake keys every local client used before IAM was enforced, and made-up ones
    for key in ("mlpoc-local", "anything"):
        with pytest.raises(ClientError) as refused:
            aws("s3", outputs, key=key, secret=key).list_buckets()
        assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403


def test_a_retrain_from_the_review_queue_succeeds_under_the_deployed_policies(
    outputs: dict[str, str],
) -> None:
    # GIVEN a model trained from a CSV uploaded under datasets/ and predictions for review
    digits = load_digits()
    header = [f"pixel_{i}" for i in range(64)]
    bucket = outputs["DataBucketName"]
    lines = [",".join([*header, "label"])] + [
        ",".join([*(str(int(v)) for v in x), str(y)])
        for x, y in zip(digits.data[:300], digits.target[:300], strict=True)
    ]
    s3, sqs = aws("s3", outputs), aws("sqs", outputs)
    s3.put_object(Bucket=bucket, Key="datasets/loop/train.csv", Body="\n".join(lines).encode())
    assert (
        wait_for_job(outputs, dataset=f"s3://{bucket}/datasets/loop/train.csv")["status"]["S"]
        == "SUCCEEDED"
    )
    rows = [",".join(["id", *header])] + [
        ",".join([f"d-{i}", *(str(int(v)) for v in digits.data[i])]) for i in range(900, 910)
    ]
    s3.put_object(Bucket=bucket, Key="inputs/loop/score.csv", Body="\n".join(rows).encode())
    sqs.send_message(
        QueueUrl=outputs["PredictQueueUrl"],
        MessageBody=json.dumps(
            {
                "schema": 1, "job_id": "loop-predict", "type": "predict", "model": "loop",
                "dataset": f"s3://{bucket}/inputs/loop/score.csv",
                "params": {"review_threshold": 1.0},  # every row goes to the review queue
            }
        ),
    )  # fmt: skip
    assert wait_for_job(outputs, job_id="loop-predict")["status"]["S"] == "SUCCEEDED"
    # WHEN a person corrects one answer on the review queue and asks for a retrain
    item = http(outputs, "GET", "/v1/annotations/loop?limit=1")["items"][0]
    truth = str(digits.target[int(item["item_id"].removeprefix("d-"))])
    http(outputs, "POST", "/v1/annotations/loop", {"item_id": item["item_id"], "label": truth})
    retrain = http(outputs, "POST", "/v1/annotations/loop/retrain")
    # THEN the train worker, as its own role, built the dataset version (the corrections read
    # from the annotations table, the version written under dataset-versions/) and trained on it
    assert retrain["dataset"] == f"s3://{bucket}/datasets/loop/"
    done = wait_for_job(outputs, job_id=retrain["job_id"])
    assert done["status"]["S"] == "SUCCEEDED", done
    result = (dynamo.deserialize({"result": done["result"]}) or {})["result"]
    assert result["dataset"].startswith(f"s3://{bucket}/dataset-versions/loop/")
    assert (result["built"]["corrections"], result["built"]["base_version"]) == (1, 1)


def test_preflight_checks_what_applies_to_the_local_stack(
    local_up: tuple[Path, subprocess.Popen[str]], local_assembly: Path
) -> None:
    state_dir, _ = local_up
    checked = mlpoc(
        "preflight", "--assembly", str(local_assembly), state_dir=state_dir, timeout=180
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    # the operator's identity, the data stack in moto, the idle month; no bootstrap or Docker
    assert "✓ credentials" in checked.stdout
    assert "user/mlpoc-local-operator" in checked.stdout
    assert "✓ stacks                 mlpoc-data: CREATE_COMPLETE" in checked.stdout
    assert "- CDK bootstrap          not needed locally" in checked.stdout
    assert "✓ idle month" in checked.stdout


def test_the_smoke_test_proves_the_loop_and_leaves_nothing_behind(
    local_up: tuple[Path, subprocess.Popen[str]], outputs: dict[str, str]
) -> None:
    state_dir, _ = local_up
    done = mlpoc("smoke", "--timeout", "90", state_dir=state_dir, timeout=240)
    assert done.returncode == 0, done.stdout + done.stderr
    for step in (
        "train on a tiny dataset", "predict and store", "read the ledger", "API with the key",
        "API without the key", "clean up",
    ):  # fmt: skip
        assert re.search(rf"{step}\s+│ ✓", done.stdout), (step, done.stdout)
    for step in ("instance refuses direct calls", "alarm reaches the notify function"):
        assert re.search(rf"{step}\s+│ -", done.stdout), (step, done.stdout)  # AWS only
    assert "the deployed loop works" in done.stdout
    # THEN nothing of its model is left: no ledger record, no object, no registry item
    model = re.search(r"of (smoke-[0-9a-f]{6})", done.stdout)
    assert model is not None
    dynamodb = aws("dynamodb", outputs)
    for table in ("ModelsTableName", "PredictionsTableName"):
        left = dynamodb.query(
            TableName=outputs[table],
            KeyConditionExpression="#m = :m",
            ExpressionAttributeNames={"#m": "model"},
            ExpressionAttributeValues={":m": {"S": model.group(1)}},
        )["Items"]
        assert left == []
    versions = aws("s3", outputs).list_object_versions(
        Bucket=outputs["DataBucketName"], Prefix=f"inputs/{model.group(1)}/"
    )
    assert "Versions" not in versions and "DeleteMarkers" not in versions


def predict_with_its_own_threshold(state_dir: Path, rows: bytes) -> None:
    """`mlpoc predict --param review_threshold=…`: 0 sends nothing to review; 2 is refused."""
    # a predict job with its own review threshold (--param): 0 sends nothing to review
    lines = rows.decode().splitlines()
    header = lines[0].split(",")
    label = header.index("label")
    scored = ["id," + ",".join(h for i, h in enumerate(header) if i != label)]
    scored += [
        f"r{n}," + ",".join(v for i, v in enumerate(line.split(",")) if i != label)
        for n, line in enumerate(lines[1:51])
    ]
    score_csv = state_dir / "ops-score.csv"
    score_csv.write_text("\n".join(scored) + "\n")
    predicted = mlpoc(
        "predict", "ops", str(score_csv), "--param", "review_threshold=0", "--wait",
        state_dir=state_dir,
    )  # fmt: skip
    assert predicted.returncode == 0, predicted.stdout + predicted.stderr
    assert '"rows": 50' in predicted.stdout and '"for_review": 0' in predicted.stdout
    refused = mlpoc(
        "predict", "ops", str(score_csv), "--param", "review_threshold=2", "--wait",
        state_dir=state_dir,
    )  # fmt: skip
    assert refused.returncode == 1
    assert "params.review_threshold must be from 0 to 1; got 2" in refused.stdout


def test_the_operator_commands_and_status_work_from_another_terminal(
    local_up: tuple[Path, subprocess.Popen[str]], outputs: dict[str, str]
) -> None:
    state_dir, process = local_up
    status = mlpoc("local", "status", state_dir=state_dir)
    assert status.returncode == 0, status.stderr
    for name in ("train", "predict", "DatasetUploaded", "api"):
        assert name in status.stdout
    assert "no" not in status.stdout.split()  # every process alive
    assert "IAM: enforced; 0 request(s) denied" in status.stdout
    # a second `local up` on the same state dir refuses
    second = mlpoc("local", "up", state_dir=state_dir)
    assert second.returncode == 1
    assert "already running" in second.stderr

    trained = mlpoc(
        "train",
        "ops",
        "s3://" + outputs["DataBucketName"] + "/datasets/plain/train.csv",
        "--param",
        "promote=never",
        "--wait",
        state_dir=state_dir,
    )
    assert trained.returncode == 0, trained.stdout + trained.stderr
    assert "SUCCEEDED" in trained.stdout
    models = mlpoc("models", "ops", state_dir=state_dir)
    assert "v1" in models.stdout
    promoted = mlpoc("promote", "ops", "1", state_dir=state_dir)
    assert "ops: v1 is live" in promoted.stdout
    nothing = mlpoc("rollback", "ops", state_dir=state_dir)
    assert nothing.returncode == 1
    assert "no earlier promoted version" in nothing.stderr
    jobs = mlpoc("jobs", state_dir=state_dir)
    assert jobs.returncode == 0
    assert "ops" in jobs.stdout
    unknown = mlpoc("models", "nope", state_dir=state_dir)
    assert unknown.returncode == 1
    assert "no model 'nope'" in unknown.stderr

    # a CSV on this machine: the CLI uploads it under inputs/, which the train role may read
    local_csv = state_dir / "ops-local.csv"
    rows = (
        aws("s3", outputs)
        .get_object(Bucket=outputs["DataBucketName"], Key="datasets/plain/train.csv")["Body"]
        .read()
    )
    local_csv.write_bytes(rows)
    from_file = mlpoc("train", "ops", str(local_csv), "--wait", state_dir=state_dir)
    assert from_file.returncode == 0, from_file.stdout + from_file.stderr
    assert "SUCCEEDED" in from_file.stdout

    predict_with_its_own_threshold(state_dir, rows)

    exports = mlpoc("outputs", "--env", state_dir=state_dir)
    assert f"export AWS_ENDPOINT_URL={outputs['AwsEndpointUrl']}" in exports.stdout
    assert f"export AWS_ACCESS_KEY_ID={outputs['AwsAccessKeyId']}" in exports.stdout
    assert "export AWS_DEFAULT_REGION=us-east-1" in exports.stdout  # AWS CLI v1 reads this one
    assert exports.stdout.startswith("unset AWS_PROFILE AWS_SESSION_TOKEN")
    assert f"export MLPOC_JOBS_TABLE={outputs['JobsTableName']}" in exports.stdout

    # `local down` from here stops the `local up` process and everything it started
    state = json.loads((state_dir / "local.json").read_text())
    stopped = mlpoc("local", "down", state_dir=state_dir, timeout=60)
    assert stopped.returncode == 0, stopped.stderr
    assert process.wait(timeout=30) == 0
    assert not (state_dir / "local.json").exists()
    for child in state["processes"]:
        with pytest.raises(ProcessLookupError):
            os.kill(child["pid"], 0)
