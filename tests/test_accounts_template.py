"""Two accounts and schedules in the templates: the share stack's bucket and key policies, the
workers' grants on the sources, the predictions table's resource policy, the schedules' target
and role, and the knobs' validation. What moto cannot enforce (resource and key policies,
conditions) is pinned here."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from mlpoc import cost
from mlpoc.aws.cloud_assembly import Assembly
from mlpoc.errors import ConfigError
from mlpoc.runtime.schedules import SCHEDULED_TIME
from stacks.account_config import worker_role_name
from stacks.config import Config
from tests.support.cdk_app import (
    LINKED_KEY_ARN,
    LINKED_ML,
    LINKED_READER,
    LINKED_SCHEDULES,
    LINKED_SOURCE,
    SharedApp,
    Synthesized,
    cdk_json_context,
    share_app,
)

ML, BUSINESS, KEY_ARN = LINKED_ML, LINKED_READER, LINKED_KEY_ARN
SOURCE, SCHEDULES = LINKED_SOURCE, LINKED_SCHEDULES


def of_type(template: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {k: v for k, v in template["Resources"].items() if v["Type"] == kind}


def statements(document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {s["Sid"]: s for s in document["Statement"] if "Sid" in s}


def principal_account(statement: dict[str, Any]) -> str:
    """The account a statement's principal names (``arn:<partition>:iam::<id>:root``)."""
    joined = statement["Principal"]["AWS"]["Fn::Join"][1]
    assert joined[0] == "arn:" and joined[2].endswith(":root"), joined
    return str(joined[2].removeprefix(":iam::").removesuffix(":root"))


def role_policies(template: dict[str, Any], role_prefix: str) -> list[dict[str, Any]]:
    role = next(k for k in template["Resources"] if k.startswith(role_prefix))
    return [
        s
        for p in of_type(template, "AWS::IAM::Policy").values()
        if {"Ref": role} in p["Properties"]["Roles"]
        for s in p["Properties"]["PolicyDocument"]["Statement"]
    ]


# -- the share stack (business account) ---------------------------------------------------------
def worker_arns() -> list[dict[str, Any]]:
    """The ML worker roles as the share stack names them (by the ML stack's fixed names)."""
    return [
        {"Fn::Join": ["", ["arn:", {"Ref": "AWS::Partition"},
                           f":iam::{ML}:role/{worker_role_name('mlpoc', role)}"]]}
        for role in ("train", "predict")
    ]  # fmt: skip


@pytest.mark.integration  # synthesizes the app (CDK runs node)
def test_share_bucket_lets_only_the_ml_workers_read_the_prefix_over_tls(share: SharedApp) -> None:
    bucket = share.stack.get_logical_id(share.stack.bucket.node.default_child)  # type: ignore[arg-type]
    (exchange,) = [
        p["Properties"]["PolicyDocument"]
        for p in of_type(share.json, "AWS::S3::BucketPolicy").values()
        if p["Properties"]["Bucket"] == {"Ref": bucket}
    ]
    found = statements(exchange)
    workers = {"ArnEquals": {"aws:PrincipalArn": worker_arns()}}
    read = found["MlWorkersReadTheSharedPrefix"]
    assert (read["Effect"], read["Action"], principal_account(read)) == (
        "Allow",
        "s3:GetObject",
        ML,
    )
    assert read["Condition"] == workers
    assert read["Resource"]["Fn::Join"][1][-1] == "/cleansed/*"
    listing = found["MlWorkersListTheSharedPrefix"]
    assert listing["Action"] == "s3:ListBucket"
    assert listing["Condition"] == {**workers, "StringLike": {"s3:prefix": ["cleansed/*"]}}
    write = found["MlWorkersWriteResults"]
    assert sorted(write["Action"]) == ["s3:AbortMultipartUpload", "s3:PutObject"]
    assert write["Resource"]["Fn::Join"][1][-1] == "/results/*"
    # AND plain HTTP is refused for everyone
    deny = next(s for s in exchange["Statement"] if s["Effect"] == "Deny")
    assert deny["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    # AND every statement of ours names the ML account, never "*"
    for sid in found:
        assert principal_account(found[sid]) == ML


@pytest.mark.integration  # synthesizes the app (CDK runs node)
def test_share_key_decrypts_for_the_ml_workers_only_through_s3(share: SharedApp) -> None:
    (key,) = of_type(share.json, "AWS::KMS::Key").values()
    found = statements(key["Properties"]["KeyPolicy"])
    decrypt = found["MlWorkersDecryptThroughS3"]
    assert (decrypt["Action"], principal_account(decrypt)) == ("kms:Decrypt", ML)
    assert decrypt["Condition"]["StringEquals"] == {
        "kms:ViaService": {"Fn::Join": ["", ["s3.", {"Ref": "AWS::Region"}, ".amazonaws.com"]]}
    }
    assert decrypt["Condition"]["ArnEquals"] == {"aws:PrincipalArn": worker_arns()}
    assert found["MlWorkersEncryptResultsThroughS3"]["Action"] == "kms:GenerateDataKey"
    assert key["Properties"]["EnableKeyRotation"] is True


@pytest.mark.integration  # synthesizes the app (CDK runs node)
def test_share_outputs_are_what_the_ml_side_pastes(share: SharedApp) -> None:
    outputs = share.json["Outputs"]
    assert {"ExchangeBucketName", "ExchangeKeyArn", "SharedPrefix", "MlpocSource"} <= set(outputs)
    parts = outputs["MlpocSource"]["Value"]["Fn::Join"][1]
    assert parts[0] == '{"bucket":"' and '"prefix":"cleansed/"' in parts[2]


@pytest.mark.integration  # synthesizes the app (CDK runs node)
def test_a_share_stack_without_results_writes_nothing(tmp_path: Path) -> None:
    bare = share_app(tmp_path, ML)
    text = json.dumps(bare.json)
    assert 's3:PutObject", "s3:AbortMultipartUpload' not in text
    assert "MlWorkersWriteResults" not in text and "ResultsPrefix" not in bare.json["Outputs"]


# -- the ML stacks: sources, readers, schedules -------------------------------------------------
@pytest.mark.integration  # synthesizes the app (CDK runs node)
def test_workers_read_exactly_the_source_prefix_and_decrypt_through_s3(linked: Synthesized) -> None:
    for role in ("WorkersTrainTaskRole", "WorkersPredictTaskRole"):
        policy = role_policies(linked.service_json, role)
        assert {"Action": "s3:GetObject", "Effect": "Allow",
                "Resource": "arn:aws:s3:::biz-exchange/cleansed/*"} in policy  # fmt: skip
        listing = next(s for s in policy if s["Action"] == "s3:ListBucket"
                       and s["Resource"] == "arn:aws:s3:::biz-exchange")  # fmt: skip
        assert listing["Condition"] == {"StringLike": {"s3:prefix": ["cleansed/*"]}}
        decrypt = next(s for s in policy if s.get("Resource") == KEY_ARN)
        assert decrypt["Action"] == "kms:Decrypt"
        assert "kms:ViaService" in decrypt["Condition"]["StringEquals"]
    # AND no other role of the stack reaches the other account
    api = role_policies(linked.service_json, "ApiInstanceRole")
    assert "biz-exchange" not in json.dumps(api)


@pytest.mark.integration  # synthesizes the app (CDK runs node)
def test_worker_roles_have_the_names_the_share_stack_grants(linked: Synthesized) -> None:
    names = {
        v["Properties"].get("RoleName")
        for v in of_type(linked.service_json, "AWS::IAM::Role").values()
    }
    assert {"mlpoc-train-worker", "mlpoc-predict-worker"} <= names


@pytest.mark.integration  # synthesizes the app (CDK runs node)
def test_workers_are_told_the_sources(linked: Synthesized) -> None:
    for task in of_type(linked.service_json, "AWS::ECS::TaskDefinition").values():
        env = {
            e["Name"]: e["Value"]
            for e in task["Properties"]["ContainerDefinitions"][0]["Environment"]
        }
        assert env["MLPOC_SOURCES"] == "s3://biz-exchange/cleansed/"
    assert linked.data_json["Outputs"]["SourcePrefixes"]["Value"] == "s3://biz-exchange/cleansed/"


@pytest.mark.integration  # synthesizes the app (CDK runs node)
def test_predictions_table_is_readable_by_the_reader_accounts_only(linked: Synthesized) -> None:
    props = linked.data_json["Resources"]["PredictionsTable"]["Properties"]
    (statement,) = props["ResourcePolicy"]["PolicyDocument"]["Statement"]
    assert principal_account(statement) == BUSINESS  # never "*"
    assert statement["Condition"] == {"StringEquals": {"aws:PrincipalAccount": [BUSINESS]}}
    assert statement["Action"] == ["dynamodb:BatchGetItem", "dynamodb:GetItem", "dynamodb:Query"]
    for other in ("JobsTable", "ModelsTable", "AnnotationsTable"):
        assert "ResourcePolicy" not in linked.data_json["Resources"][other]["Properties"]
    key = linked.data_json["Resources"]["ProjectKey"]["Properties"]["KeyPolicy"]
    decrypt = statements(key)["ResultReadersDecryptThroughDynamoDB"]
    assert principal_account(decrypt) == BUSINESS
    assert decrypt["Condition"]["StringEquals"]["kms:CallerAccount"] == [BUSINESS]
    assert decrypt["Condition"]["StringEquals"]["kms:ViaService"]["Fn::Join"][1][0] == "dynamodb."


@pytest.mark.integration  # synthesizes the app (CDK runs node)
def test_without_readers_no_table_has_a_resource_policy(poc: Synthesized) -> None:
    for table in of_type(poc.data_json, "AWS::DynamoDB::Table").values():
        assert "ResourcePolicy" not in table["Properties"]
    assert "ResultReaders" not in json.dumps(poc.data_json)
    # no retrain schedule by default: only the monitor's (mlpoc:monitor watches digits)
    (only,) = of_type(poc.service_json, "AWS::Scheduler::Schedule")
    assert only.startswith("SchedulesMonitordigits")


@pytest.mark.integration  # synthesizes the app (CDK runs node)
def test_each_schedule_sends_its_train_job_to_the_train_queue(linked: Synthesized) -> None:
    schedules = of_type(linked.service_json, "AWS::Scheduler::Schedule")
    by_model = {}
    retrains = {k: v for k, v in schedules.items() if not k.startswith("SchedulesMonitor")}
    for schedule in retrains.values():
        target = schedule["Properties"]["Target"]
        assert target["Arn"]["Fn::ImportValue"].startswith(
            "mlpoc-data:ExportsOutputFnGetAttTrainQueue"
        )
        assert target["RoleArn"]["Fn::GetAtt"][0].startswith("SchedulesRole")
        assert schedule["Properties"]["FlexibleTimeWindow"] == {"Mode": "OFF"}
        raw = target["Input"]
        text = (
            raw
            if isinstance(raw, str)
            else "".join(p if isinstance(p, str) else "BUCKET" for p in raw["Fn::Join"][1])
        )
        message = json.loads(text)
        by_model[message["model"]] = (schedule["Properties"]["ScheduleExpression"], message)
    digits_expression, digits = by_model["digits"]
    assert digits_expression == "rate(1 day)"
    assert digits["job_id"] == f"schedule-digits-{SCHEDULED_TIME}"
    assert (digits["type"], digits["dataset"]) == ("train", "s3://BUCKET/datasets/digits/")
    assert digits["params"] == {"origin": "schedule", "promote": "auto"}
    churn_expression, churn = by_model["churn"]
    assert churn_expression == "cron(0 3 ? * MON *)"
    assert churn["dataset"] == "s3://biz-exchange/cleansed/churn/"
    assert churn["params"]["promote"] == "never"


@pytest.mark.integration  # synthesizes the app (CDK runs node)
def test_the_schedules_role_may_only_send_to_the_train_queue_and_its_dead_letters(
    linked: Synthesized,
) -> None:
    (role,) = [v for k, v in of_type(linked.service_json, "AWS::IAM::Role").items()
               if k.startswith("SchedulesRole")]  # fmt: skip
    (trust,) = role["Properties"]["AssumeRolePolicyDocument"]["Statement"]
    assert trust["Principal"] == {"Service": "scheduler.amazonaws.com"}
    assert trust["Condition"] == {"StringEquals": {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}}
    policy = role_policies(linked.service_json, "SchedulesRole")
    sqs = [s for s in policy if any(a.startswith("sqs:") for a in _actions(s))]
    (dead_letters,) = [k for k in of_type(linked.service_json, "AWS::SQS::Queue")
                       if k.startswith("SchedulesDeadLetters")]  # fmt: skip
    resources = [r for s in sqs for r in (s["Resource"] if isinstance(s["Resource"], list)
                                          else [s["Resource"]])]  # fmt: skip
    # the train queue, the predict queue (the monitor's jobs) and the schedules' dead letters
    own = {"Fn::GetAtt": [dead_letters, "Arn"]}
    assert len(resources) == 3 and own in resources
    queues = sorted(r["Fn::ImportValue"] for r in resources if r != own)
    assert queues[0].startswith("mlpoc-data:ExportsOutputFnGetAttPredictQueue")
    assert queues[1].startswith("mlpoc-data:ExportsOutputFnGetAttTrainQueue")
    assert linked.service_json["Outputs"]["ScheduleNames"]


@pytest.mark.integration  # synthesizes the app (CDK runs node)
def test_a_run_that_cannot_be_sent_goes_to_an_encrypted_alarmed_dead_letter_queue(
    linked: Synthesized,
) -> None:
    queues = of_type(linked.service_json, "AWS::SQS::Queue")
    (name,) = [k for k in queues if k.startswith("SchedulesDeadLetters")]
    queue = queues[name]["Properties"]
    assert "ProjectKey" in json.dumps(queue["KmsMasterKeyId"])  # the project key
    assert queue["MessageRetentionPeriod"] == 14 * 24 * 3600
    for schedule in of_type(linked.service_json, "AWS::Scheduler::Schedule").values():
        target = schedule["Properties"]["Target"]
        assert target["DeadLetterConfig"] == {"Arn": {"Fn::GetAtt": [name, "Arn"]}}
    alarms = [
        a["Properties"] for a in of_type(linked.service_json, "AWS::CloudWatch::Alarm").values()
    ]
    assert any(
        {"Name": "QueueName", "Value": {"Fn::GetAtt": [name, "QueueName"]}}
        in a.get("Dimensions", [])
        for a in alarms
    )


def _actions(statement: dict[str, Any]) -> list[str]:
    action = statement["Action"]
    return action if isinstance(action, list) else [action]


# -- the knobs ----------------------------------------------------------------------------------
def config(**overrides: Any) -> Config:
    return Config.from_context(
        {**cdk_json_context(), **{f"mlpoc:{k}": v for k, v in overrides.items()}}
    )


def test_knobs_take_json_strings_from_the_command_line() -> None:
    parsed = config(sources=json.dumps([SOURCE]), result_readers=f'["{BUSINESS}"]',
                    schedules=json.dumps(SCHEDULES))  # fmt: skip
    assert parsed.sources[0].bucket == "biz-exchange"
    assert parsed.result_readers == (BUSINESS,)
    assert [s.model for s in parsed.schedules] == ["digits", "churn"]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"result_readers": ["1234"]}, "mlpoc:result_readers[0] must be a 12-digit AWS account id"),
        ({"sources": [{**SOURCE, "prefix": "/"}]}, "mlpoc:sources[0].prefix must be a folder"),
        ({"sources": [{**SOURCE, "prefix": "data"}]}, "mlpoc:sources[0].prefix must be a folder"),
        (
            {"sources": [{**SOURCE, "account": "999999999999"}]},
            "mlpoc:sources[0].key_arn must be the ARN of the KMS key that encrypts the bucket, in "
            "account 999999999999",
        ),
        ({"sources": [{"bucket": "b"}]}, "mlpoc:sources[0] must have exactly bucket, prefix"),
        ({"sources": "[not json"}, "mlpoc:sources is not valid JSON"),
        (
            {"schedules": [{"model": "digits", "expression": "rate(2 day)"}]},
            "mlpoc:schedules[0].expression must be rate(",
        ),
        (
            {"schedules": [{"model": "digits", "expression": "cron(0 3 * * MON *)"}]},
            "exactly one of the two day fields is ?",
        ),
        (
            {"schedules": [{"model": "digits", "expression": "rate(1 day)", "promote": "best"}]},
            "mlpoc:schedules[0].promote must be one of auto, always, never",
        ),
        (
            {
                "schedules": [
                    {"model": "digits", "expression": "rate(1 day)", "source": "s3://elsewhere/x/"}
                ]
            },
            "mlpoc:schedules[0].source must lie inside one of mlpoc:sources (what the workers "
            "may read: none are configured)",
        ),
        (
            {"schedules": [{"model": "a", "expression": "rate(1 day)"}] * 2},
            "mlpoc:schedules has two schedules for one model",
        ),
        ({"share": {"ml_account": "12"}}, "mlpoc:share.ml_account must be a 12-digit"),
        (
            {"share": {"ml_account": ML, "prefix": "x/", "results_prefix": "x/out/"}},
            "mlpoc:share.results_prefix must not overlap prefix",
        ),
    ],
)
def test_bad_knobs_say_what_is_wrong(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as raised:
        config(**overrides)
    assert message in str(raised.value)


@pytest.mark.integration  # synthesizes the app (CDK runs node)
def test_the_cost_report_says_what_crosses_accounts_and_who_pays(
    linked: Synthesized, poc: Synthesized
) -> None:
    report = cost.report(Assembly.from_dir(linked.outdir), "us-east-1")
    text = " ".join(report.across_accounts)
    assert "s3://biz-exchange/cleansed/: S3 bills those requests to the bucket's owner" in text
    assert f"read by account(s) {BUSINESS}: DynamoDB bills those reads to this account" in text
    assert "3 schedule(s): EventBridge Scheduler invocations, 14 million a month free" in text
    # of the three, only the monitor's runs are priced as monitoring (30 a month, daily)
    runs = next(line for line in report.monitor if line.item.startswith("S3 requests"))
    assert runs.detail.startswith("30 runs:")
    assert not [u for u in report.unpriced if "Scheduler" in u]
    alone = cost.report(Assembly.from_dir(poc.outdir), "us-east-1").across_accounts
    assert alone == [
        "1 schedule(s): EventBridge Scheduler invocations, 14 million a month free, then 1.0 USD "
        "per million; each run is a train or monitor job (above)."
    ]
