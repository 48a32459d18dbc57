"""Local mode, piece by piece: the template for moto, the process specs, safety, the runner."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path
from typing import Any

import boto3
import pytest
from typer.testing import CliRunner

from mlpoc.cli.app import app
from mlpoc.cli.target import resolve
from mlpoc.errors import LocalError, LocalModeRefused, TargetError
from mlpoc.local import sqs_lambda
from mlpoc.local.deploy import LocalDeployer, supported_by_moto
from mlpoc.local.moto_template import for_moto
from mlpoc.local.processes import Resolver, Unresolvable, processes
from mlpoc.local.safety import FAKE_CREDENTIALS, Credentials, check_endpoint, check_env, local_env
from mlpoc.local.state import STATE_FILE, LocalState, ProcessState, down
from mlpoc.local.synth import load_context, synthesize
from tests.support.aws_stack import Stack
from tests.support.cdk_app import ROOT, Synthesized

runner = CliRunner()


def template(assembly: Path, stack: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((assembly / f"mlpoc-{stack}.template.json").read_text())
    return loaded


# -- the data stack for moto ---------------------------------------------------------------
def test_moto_template_keeps_every_stateful_resource(poc: Synthesized) -> None:
    prepared = for_moto(poc.data_json, supported_by_moto)
    kept, original = prepared.template["Resources"], poc.data_json["Resources"]
    for logical_id in (
        "AccessLogBucket",
        "DataBucket",
        "ModelBucket",
        "JobsTable",
        "ModelsTable",
        "PredictionsTable",
        "AnnotationsTable",
        "FeaturesTable",
    ):
        assert kept[logical_id] == original[logical_id]
    # moto 5.2 cannot read CloudFormation's tags on a KMS key: the key's only change
    key = original["ProjectKey"]
    assert kept["ProjectKey"] == {
        **key,
        "Properties": {k: v for k, v in key["Properties"].items() if k != "Tags"},
    }
    assert sum(r["Type"] == "AWS::SQS::Queue" for r in kept.values()) == 6
    assert "tags of AWS::KMS::Key left out (moto 5.2 cannot read them)" in prepared.notes


def test_moto_template_leaves_out_what_moto_cannot_run_and_says_why(poc: Synthesized) -> None:
    prepared = for_moto(poc.data_json, supported_by_moto)
    left: dict[str, set[str]] = {}
    for r in prepared.left_out:
        left.setdefault(r.type, set()).add(r.reason.split(" (")[0].split(":")[0].split(" of ")[0])
    assert left == {
        "Custom::S3AutoDeleteObjects": {"Lambda-backed custom resource"},
        "Custom::S3BucketNotifications": {"Lambda-backed custom resource"},
        "AWS::Lambda::Function": {"CDK helper"},
        "AWS::S3::BucketPolicy": {"not implemented by moto's CloudFormation"},
        "AWS::SQS::QueuePolicy": {"not implemented by moto's CloudFormation"},
        "AWS::IAM::Role": {"execution role"},
        "AWS::IAM::Policy": {
            "refers to BucketNotificationsHandler050a0587b7544547bf325f094a3db834RoleB6FB88EC, "
            "which was left out"
        },
        "AWS::Logs::LogGroup": {
            "refers to CustomS3AutoDeleteObjectsCustomResourceProviderHandler9D90184F, which "
            "was left out",
            "refers to BucketNotificationsHandler050a0587b7544547bf325f094a3db8347ECC3691, which "
            "was left out",
        },
    }
    kept = prepared.template
    assert "Rules" not in kept
    assert "BootstrapVersion" not in kept.get("Parameters", {})
    assert all("DependsOn" not in r or r["DependsOn"] for r in kept["Resources"].values())
    (notification,) = prepared.to_wire["Custom::S3BucketNotifications"]
    assert notification[1]["Properties"]["BucketName"] == {"Ref": "DataBucket"}


def test_a_resource_that_refers_to_a_left_out_one_goes_too() -> None:
    # GIVEN a queue policy moto lacks, a topic that depends on it and an output naming it
    source = {
        "Resources": {
            "Queue": {"Type": "AWS::SQS::Queue"},
            "Policy": {
                "Type": "AWS::SQS::QueuePolicy",
                "Properties": {"Queues": [{"Ref": "Queue"}]},
            },
            "Reader": {
                "Type": "AWS::SNS::Topic",
                "Properties": {"DisplayName": {"Fn::GetAtt": ["Policy", "Id"]}},
            },
            "Later": {"Type": "AWS::SQS::Queue", "DependsOn": ["Policy", "Queue"]},
        },
        "Outputs": {
            "PolicyId": {"Value": {"Ref": "Policy"}},
            "QueueUrl": {"Value": {"Ref": "Queue"}},
        },
    }
    # WHEN it is prepared for moto
    prepared = for_moto(source, lambda kind: kind != "AWS::SQS::QueuePolicy")
    # THEN the policy and its reader are out, the rest is intact
    assert {r.logical_id for r in prepared.left_out} == {"Policy", "Reader"}
    assert prepared.template["Resources"]["Later"]["DependsOn"] == ["Queue"]
    assert list(prepared.template["Outputs"]) == ["QueueUrl"]
    assert source["Resources"]["Later"]["DependsOn"] == ["Policy", "Queue"]  # a copy was changed


def test_the_data_stack_is_created_in_moto_with_its_outputs_and_notifications(
    moto_endpoint: str, poc: Synthesized
) -> None:
    deployer = LocalDeployer(moto_endpoint)
    name = "mlpoc-data"  # the only test that creates the data stack with its export names
    stack = deployer.create(name, poc.data_json)
    bucket = stack.outputs["DataBucketName"]
    # the S3 → events queue notification the custom resource would have written
    config = deployer.s3.get_bucket_notification_configuration(Bucket=bucket)
    (queue_config,) = config["QueueConfigurations"]
    assert queue_config["QueueArn"].endswith(stack.outputs["EventsQueueUrl"].rsplit("/", 1)[1])
    rules = {r["Name"].lower(): r["Value"] for r in queue_config["Filter"]["Key"]["FilterRules"]}
    assert rules == {"prefix": "datasets/", "suffix": ".csv"}
    # the tables carry the key schema the runtime queries
    dynamodb = boto3.session.Session(region_name="us-east-1").client(
        "dynamodb", endpoint_url=moto_endpoint
    )
    described = dynamodb.describe_table(TableName=stack.outputs["PredictionsTableName"])["Table"]
    assert [k["AttributeName"] for k in described["KeySchema"]] == ["model", "item_id"]
    assert [i["IndexName"] for i in described["GlobalSecondaryIndexes"]] == ["review"]
    # every export of the stack maps to its value (what the service stack imports)
    assert stack.exports["mlpoc-data:ExportsOutputRefDataBucket17E4E1D7"] == bucket
    assert any("S3 notifications" in line for line in stack.wired)
    # queue URLs point at the local endpoint (AWS CLI v1 sends to the queue URL's host)
    for name in ("TrainQueueUrl", "PredictQueueUrl", "TrainDeadLetterQueueUrl"):
        url = stack.outputs[name]
        assert url.startswith(f"{moto_endpoint}/123456789012/"), url
        sqs = boto3.session.Session(region_name="us-east-1").client("sqs", endpoint_url=url)
        sqs.send_message(QueueUrl=url, MessageBody="{}")  # the endpoint taken from the URL
        assert sqs.receive_message(QueueUrl=url)["Messages"][0]["Body"] == "{}"


# -- the service stack's processes ---------------------------------------------------------
def test_processes_are_read_from_the_service_template(local_assembly: Path) -> None:
    assembly = local_assembly  # synthesized the way `mlpoc local up` does it (asset metadata)
    data, service = template(assembly, "data"), template(assembly, "service")
    exports = {
        o["Export"]["Name"]: f"local-{key}" for key, o in data["Outputs"].items() if "Export" in o
    }
    resolve = Resolver(exports, "us-east-1", {"ApiApiKey8A01341B": "arn:local:secret"})
    specs = {s.name: s for s in processes(service, assembly, resolve)}
    assert set(specs) == {"train", "predict", "DatasetUploaded", "api"}

    train = specs["train"]
    assert train.command == ["python", "-m", "mlpoc.worker", "train"]
    assert train.env["MLPOC_PREFETCH"] == "1"
    assert train.env["MLPOC_DATA_BUCKET"] == "local-ExportsOutputRefDataBucket17E4E1D7"
    assert specs["predict"].env["MLPOC_PREFETCH"] == "10"

    function = specs["DatasetUploaded"]
    assert (function.handler, function.batch_size, function.batching_window) == (
        "handler.handler",
        10,
        5,
    )
    assert function.report_failures
    assert function.asset_dir is not None
    assert (function.asset_dir / "handler.py").is_file()
    assert (function.asset_dir / "mlpoc" / "runtime" / "ledger.py").is_file()
    assert function.queue_arn == "local-ExportsOutputFnGetAttEventsQueue7396B467Arn0975E373"

    api = specs["api"]
    assert api.env["MLPOC_API_KEY_SECRET_ARN"] == "arn:local:secret"
    assert api.env["AWS_REGION"] == "us-east-1"
    assert "MLPOC_IMAGE" in api.left_out
    assert "exists only on AWS" in api.left_out["MLPOC_IMAGE"]


def test_resolver_names_what_it_cannot_resolve() -> None:
    resolve = Resolver({"x:Export": "value"}, "ap-northeast-1", {"Secret": "arn"})
    assert resolve({"Fn::ImportValue": "x:Export"}) == "value"
    assert resolve({"Ref": "AWS::Region"}) == "ap-northeast-1"
    assert resolve({"Ref": "Secret"}) == "arn"
    assert resolve(7) == "7"
    with pytest.raises(Unresolvable, match="exports no x:Other"):
        resolve({"Fn::ImportValue": "x:Other"})
    assert resolve({"Fn::Sub": "${AWS::AccountId}.dkr.ecr"}) == "123456789012.dkr.ecr"
    assert resolve({"Fn::Join": ["/", [{"Ref": "Secret"}, "x"]]}) == "arn/x"
    assert resolve.value({"Fn::Select": [1, ["a", {"Ref": "AWS::Region"}]]}) == "ap-northeast-1"
    assert resolve({"Fn::Sub": ["${A}-${B}", {"A": "a", "B": {"Ref": "Secret"}}]}) == "a-arn"
    with pytest.raises(Unresolvable, match="only on AWS"):
        resolve({"Fn::GetAtt": ["Logs", "Arn"]})
    with pytest.raises(Unresolvable, match="only on AWS"):
        resolve({"Fn::Join": ["", ["task/", {"Ref": "WorkerCluster"}, "/*"]]})


def test_synthesis_reports_a_bad_cdk_json_value(tmp_path: Path) -> None:
    # GIVEN a checkout whose cdk.json has a bad stage
    checkout = tmp_path / "checkout"
    checkout.mkdir()
    (checkout / "stacks").symlink_to(ROOT / "stacks")
    (checkout / "lambdas").symlink_to(ROOT / "lambdas")
    (checkout / "containers").symlink_to(ROOT / "containers")
    context = {**load_context(ROOT), "mlpoc:stage": "prod"}
    (checkout / "cdk.json").write_text(json.dumps({"context": context}))
    # WHEN local mode synthesizes it, THEN the config error reaches the user
    from mlpoc.errors import SynthError

    with pytest.raises(SynthError, match=r"mlpoc:stage"):
        synthesize(checkout, tmp_path / "out")
    with pytest.raises(SynthError, match="not an mlpoc checkout"):
        synthesize(tmp_path, tmp_path / "out")


# -- safety --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "endpoint", ["http://127.0.0.1:5000", "http://localhost:4566", "http://[::1]:5000"]
)
def test_loopback_endpoints_are_accepted(endpoint: str) -> None:
    assert check_endpoint(endpoint) == endpoint


@pytest.mark.parametrize(
    "endpoint",
    [
        "https://sqs.us-east-1.amazonaws.com",
        "http://10.0.0.5:5000",
        "http://169.254.169.254",
        "http://localhost.example.com:5000",
        "",
        "127.0.0.1:5000",
    ],
)
def test_anything_else_is_refused(endpoint: str) -> None:
    with pytest.raises(LocalModeRefused):
        check_endpoint(endpoint)


def test_the_shells_aws_settings_never_reach_a_local_process() -> None:
    shell = {
        "PATH": "/usr/bin",
        "AWS_PROFILE": "production",
        "AWS_ACCESS_KEY_ID": "AKIAIOSFODNN7EXAMPLE",
        "AWS_SECRET_ACCESS_KEY": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        "AWS_ENDPOINT_URL": "https://example.amazonaws.com",
    }
    env = local_env("http://127.0.0.1:5000", shell)
    assert env["AWS_ACCESS_KEY_ID"] == FAKE_CREDENTIALS["AWS_ACCESS_KEY_ID"]
    assert env["AWS_SECRET_ACCESS_KEY"] == FAKE_CREDENTIALS["AWS_SECRET_ACCESS_KEY"]
    assert env["AWS_ENDPOINT_URL"] == "http://127.0.0.1:5000"
    assert "AWS_PROFILE" not in env
    assert env["AWS_CONFIG_FILE"] == env["AWS_SHARED_CREDENTIALS_FILE"] == os.devnull
    assert env["PATH"] == "/usr/bin"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"AWS_ACCESS_KEY_ID": "AKIAIOSFODNN7EXAMPLE"}, "looks like a real one"),
        ({"AWS_ACCESS_KEY_ID": "ASIAY34FZKBOKMUTVV7A"}, "looks like a real one"),
        ({"AWS_ENDPOINT_URL": "https://s3.amazonaws.com"}, "loopback"),
        ({"AWS_PROFILE": "default"}, "profiles"),
        ({"AWS_SHARED_CREDENTIALS_FILE": "~/.aws/credentials"}, "config files"),
    ],
)
def test_an_environment_that_could_reach_aws_is_refused(
    change: dict[str, str], message: str
) -> None:
    env = {**local_env("http://127.0.0.1:5000"), **change}
    with pytest.raises(LocalModeRefused, match=message):
        check_env(env)


def test_keys_the_local_moto_issued_are_accepted_and_only_those() -> None:
    # moto shapes its keys like AWS's: local mode accepts exactly the ones it was issued
    issued = Credentials("ASIAY34FZKBOKMUTVV7A", "secret", "token")
    env = local_env("http://127.0.0.1:5000", credentials=issued)
    assert env["AWS_ACCESS_KEY_ID"] == "ASIAY34FZKBOKMUTVV7A"
    assert env["AWS_SESSION_TOKEN"] == "token"
    check_env(env, issued={"ASIAY34FZKBOKMUTVV7A"})
    with pytest.raises(LocalModeRefused, match="looks like a real one"):
        check_env(env, issued={"ASIAOTHERKEYOTHERKEY"})


def test_local_up_refuses_a_non_loopback_endpoint(tmp_path: Path) -> None:
    result = runner.invoke(
        app,
        ["local", "up", "--state-dir", str(tmp_path), "--endpoint", "https://s3.amazonaws.com"],
    )
    assert result.exit_code == 1
    assert "only talks to a loopback endpoint" in result.output
    assert not (tmp_path / STATE_FILE).exists()


def test_an_edited_state_file_cannot_point_local_mode_at_aws(tmp_path: Path) -> None:
    state = LocalState(
        pid=1,
        project="mlpoc",
        endpoint="https://dynamodb.us-east-1.amazonaws.com",
        region="us-east-1",
        api_url="",
        api_key="",
        outputs={},
        started_at=0.0,
        processes=[ProcessState(name="api", kind="api", pid=1, log="x")],
    )
    state.save(tmp_path)
    with pytest.raises(LocalModeRefused):
        resolve("local", state_dir=tmp_path, project="mlpoc", region=None)
    assert (tmp_path / STATE_FILE).stat().st_mode & 0o077 == 0  # the key file is private


def test_commands_say_when_local_mode_is_not_running(tmp_path: Path) -> None:
    for command in (["jobs"], ["models"], ["local", "status"], ["local", "down"], ["outputs"]):
        result = runner.invoke(app, [*command, "--state-dir", str(tmp_path)])
        assert result.exit_code == 1, command
        assert "local mode is not running" in result.output
        assert "mlpoc local up" in result.output
    with pytest.raises(LocalError, match="not valid JSON"):
        (tmp_path / STATE_FILE).write_text("{")
        LocalState.load(tmp_path)


# -- the SQS event source runner ------------------------------------------------------------
def test_records_have_lambdas_sqs_event_shape() -> None:
    message = {
        "MessageId": "m-1",
        "ReceiptHandle": "r-1",
        "Body": "{}",
        "MD5OfBody": "99914b932bd37a50b983c5e7c90ae93b",
        "Attributes": {
            "ApproximateReceiveCount": "2",
            "SentTimestamp": "1700000000000",
            "Other": "x",
        },
        "MessageAttributes": {"mlpoc-reason": {"StringValue": "bad", "DataType": "String"}},
    }
    record = sqs_lambda.to_record(message, "arn:aws:sqs:us-east-1:123456789012:q", "us-east-1")
    assert record == {
        "messageId": "m-1",
        "receiptHandle": "r-1",
        "body": "{}",
        "attributes": {"ApproximateReceiveCount": "2", "SentTimestamp": "1700000000000"},
        "messageAttributes": {
            "mlpoc-reason": {
                "stringValue": "bad",
                "binaryValue": None,
                "stringListValues": [],
                "binaryListValues": [],
                "dataType": "String",
            }
        },
        "md5OfBody": "99914b932bd37a50b983c5e7c90ae93b",
        "eventSource": "aws:sqs",
        "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:q",
        "awsRegion": "us-east-1",
    }


def test_partial_batch_responses_follow_lambdas_rules() -> None:
    records = [{"messageId": m} for m in ("a", "b", "c")]
    failed_b = {"batchItemFailures": [{"itemIdentifier": "b"}]}
    assert sqs_lambda.to_delete(records, failed_b, report_failures=True) == [records[0], records[2]]
    assert sqs_lambda.to_delete(records, {"batchItemFailures": []}, report_failures=True) == records
    assert sqs_lambda.to_delete(records, None, report_failures=True) == records
    # an unknown or empty identifier fails the whole batch
    unknown = {"batchItemFailures": [{"itemIdentifier": "zzz"}]}
    assert sqs_lambda.to_delete(records, unknown, report_failures=True) == []
    empty = {"batchItemFailures": [{"itemIdentifier": ""}]}
    assert sqs_lambda.to_delete(records, empty, report_failures=True) == []
    # without ReportBatchItemFailures a successful invocation deletes everything
    assert sqs_lambda.to_delete(records, failed_b, report_failures=False) == records


def runner_for(asset: Path, handler: str, queue_url: str, *, window: int) -> sqs_lambda.Runner:
    """The event-source stand-in as local mode starts it (ReportBatchItemFailures on)."""
    return sqs_lambda.Runner(
        sqs_lambda.parse(
            ["--asset", str(asset), "--handler", handler, "--function-name", handler,
             "--queue-url", queue_url, "--queue-arn", "arn:aws:sqs:us-east-1:123456789012:q",
             "--batch-size", "10", "--window", str(window), "--timeout", "30",
             "--report-failures"]
        )
    )  # fmt: skip


def test_the_runner_deletes_what_the_handler_did_not_fail(
    stack: Stack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN a handler that fails the messages whose body is "bad", behind a queue
    (tmp_path / "fn.py").write_text(
        textwrap.dedent(
            """
            def handler(event, context):
                assert context.get_remaining_time_in_millis() > 0
                bad = [r["messageId"] for r in event["Records"] if r["body"] == "bad"]
                return {"batchItemFailures": [{"itemIdentifier": m} for m in bad]}
            """
        )
    )
    monkeypatch.setenv("AWS_ENDPOINT_URL", stack.endpoint)
    sqs = stack.clients().sqs
    for body in ("good", "bad", "good"):
        sqs.send_message(QueueUrl=stack.predict_queue_url, MessageBody=body)
    run = runner_for(tmp_path, "fn.handler", stack.predict_queue_url, window=1)
    # WHEN one batch is gathered and invoked
    messages = run.gather()
    deleted = run.invoke(messages)
    # THEN the two good ones are gone and the bad one comes back after the visibility timeout
    assert (len(messages), deleted) == (3, 2)
    sqs.change_message_visibility_batch(
        QueueUrl=stack.predict_queue_url,
        Entries=[
            {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"], "VisibilityTimeout": 0}
            for i, m in enumerate(messages)
            if m["Body"] == "bad"
        ],
    )
    left = sqs.receive_message(QueueUrl=stack.predict_queue_url, MaxNumberOfMessages=10)
    assert [m["Body"] for m in left["Messages"]] == ["bad"]


def test_a_handler_that_raises_fails_the_whole_batch(
    stack: Stack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "boom.py").write_text("def handler(event, context):\n    raise RuntimeError('x')\n")
    monkeypatch.setenv("AWS_ENDPOINT_URL", stack.endpoint)
    stack.clients().sqs.send_message(QueueUrl=stack.train_queue_url, MessageBody="m")
    run = runner_for(tmp_path, "boom.handler", stack.train_queue_url, window=0)
    assert run.invoke(run.gather()) == 0
    attributes = stack.clients().sqs.get_queue_attributes(
        QueueUrl=stack.train_queue_url, AttributeNames=["ApproximateNumberOfMessagesNotVisible"]
    )["Attributes"]
    assert attributes["ApproximateNumberOfMessagesNotVisible"] == "1"


def test_aws_target_explains_missing_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")  # no instance-metadata lookup
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # and nothing else reachable
    with pytest.raises(TargetError, match="no AWS credentials"):
        resolve("aws", state_dir=Path(), project="mlpoc", region="us-east-1")


def test_aws_target_finds_the_deployed_stacks_by_their_outputs(
    moto_endpoint: str, poc: Synthesized, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN "AWS" (moto, through the standard endpoint variable) with only the data stack
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_endpoint)
    project = f"p{uuid.uuid4().hex[:6]}"
    deployer = LocalDeployer(moto_endpoint)
    data = {
        **poc.data_json,
        "Outputs": {  # export names are unique per region: one test owns them
            k: {"Value": o["Value"]} for k, o in poc.data_json["Outputs"].items()
        },
    }
    deployer.create(f"{project}-data", data)
    with pytest.raises(TargetError, match=rf"stack {project}-service is not deployed"):
        resolve("aws", state_dir=Path(), project=project, region="us-east-1")
    # WHEN the service stack exists too
    service = {
        "Resources": {"Topic": {"Type": "AWS::SNS::Topic"}},
        "Outputs": {"ApiUrl": {"Value": "https://d111.cloudfront.net"}},
    }
    deployer.cloudformation.create_stack(
        StackName=f"{project}-service", TemplateBody=json.dumps(service)
    )
    # THEN the operator commands find everything through the outputs
    dep = resolve("aws", state_dir=Path(), project=project, region="us-east-1")
    assert dep.name == "aws"
    assert dep.api_url == "https://d111.cloudfront.net"
    assert dep.output("JobsTableName").startswith(f"{project}-data-JobsTable")
    result = runner.invoke(app, ["jobs", "--target", "aws", "--project", project])
    assert result.exit_code == 0, result.output


def test_down_after_a_killed_local_mode_stops_only_its_own_leftovers(tmp_path: Path) -> None:
    # GIVEN a state file whose local mode died, leaving one of its processes behind, and a pid
    # that now belongs to something else
    ours = subprocess.Popen([sys.executable, "-c", "import time  # mlpoc worker\ntime.sleep(60)"])
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    LocalState(
        pid=gone.pid, project="mlpoc", endpoint="http://127.0.0.1:1", region="us-east-1",
        api_url="", api_key="", outputs={}, started_at=0.0,
        processes=[ProcessState(name="train", kind="worker", pid=ours.pid, log="x"),
                   ProcessState(name="api", kind="api", pid=other.pid, log="y")],
    ).save(tmp_path)  # fmt: skip
    try:
        # WHEN `mlpoc local down` runs
        down(tmp_path)
        # THEN the leftover is killed, the stranger is not, and the state file is gone
        assert ours.wait(timeout=5) == -signal.SIGKILL
        assert other.poll() is None
        assert not (tmp_path / STATE_FILE).exists()
    finally:
        for process in (ours, other):
            process.kill()
            process.wait()
