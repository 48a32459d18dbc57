"""The service stack's function constructs, each synthesized alone in a bare stack."""

from __future__ import annotations

from typing import Any

import aws_cdk as cdk
from aws_cdk import aws_kms as kms
from aws_cdk import aws_logs as logs
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sqs as sqs
from aws_cdk.assertions import Match, Template

from mlpoc.runtime.environment import RESOURCE_VARIABLES, UPLOAD_VARIABLES
from stacks.constructs.notifier import AlertNotifier
from stacks.constructs.upload import UploadFunction


def bare() -> cdk.Stack:
    return cdk.Stack(cdk.App(), "Bare")


def only(template: Template, kind: str) -> dict[str, Any]:
    (resource,) = template.find_resources(kind).values()
    return resource


def test_the_upload_function_reads_the_events_queue_in_batches_with_partial_failures() -> None:
    stack = bare()
    events = sqs.Queue(stack, "Events")
    environment = {name: f"<{name}>" for name in RESOURCE_VARIABLES}
    UploadFunction(
        stack,
        "DatasetUploaded",
        environment=environment,
        events_queue=events,
        timeout=cdk.Duration.seconds(30),
        log_retention=logs.RetentionDays.ONE_MONTH,
    )
    template = Template.from_stack(stack)
    mapping = only(template, "AWS::Lambda::EventSourceMapping")["Properties"]
    assert mapping["BatchSize"] == 10
    assert mapping["MaximumBatchingWindowInSeconds"] == 5
    assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    function = only(template, "AWS::Lambda::Function")["Properties"]
    variables = function["Environment"]["Variables"]
    # just what it reads, nothing of the other roles' resources
    assert set(variables) == {*UPLOAD_VARIABLES, "POWERTOOLS_SERVICE_NAME"}
    assert function["Handler"] == "handler.handler"


def test_the_notifier_keeps_what_it_could_not_deliver_in_an_encrypted_queue() -> None:
    stack = bare()
    key = kms.Key(stack, "Key")
    topic = sns.Topic(stack, "Alerts")
    AlertNotifier(
        stack,
        "Notify",
        topic=topic,
        key=key,
        slack_webhook_secret_name="mlpoc/slack",
        log_retention=logs.RetentionDays.ONE_MONTH,
    )
    template = Template.from_stack(stack)
    queue = only(template, "AWS::SQS::Queue")
    key_id = stack.get_logical_id(key.node.default_child)  # type: ignore[arg-type]
    assert queue["Properties"]["KmsMasterKeyId"] == {"Fn::GetAtt": [key_id, "Arn"]}
    assert queue["Properties"]["MessageRetentionPeriod"] == 14 * 24 * 3600
    invoke = only(template, "AWS::Lambda::EventInvokeConfig")["Properties"]
    assert invoke["MaximumRetryAttempts"] == 2
    assert "OnFailure" in invoke["DestinationConfig"]
    template.has_resource_properties(
        "AWS::SNS::Subscription", {"Protocol": "lambda", "TopicArn": {"Ref": Match.any_value()}}
    )
    function = only(template, "AWS::Lambda::Function")["Properties"]
    assert "MLPOC_SLACK_SECRET_ARN" in function["Environment"]["Variables"]
    # the secret is read with the function's own role, and only that secret
    policy = template.to_json()["Resources"]
    statements = [
        s
        for r in policy.values()
        if r["Type"] == "AWS::IAM::Policy"
        for s in r["Properties"]["PolicyDocument"]["Statement"]
    ]
    reads = [s for s in statements if "secretsmanager:GetSecretValue" in s["Action"]]
    assert len(reads) == 1 and "mlpoc/slack" in str(reads[0]["Resource"])


def test_without_a_slack_secret_the_notifier_only_logs() -> None:
    stack = bare()
    AlertNotifier(
        stack,
        "Notify",
        topic=sns.Topic(stack, "Alerts"),
        key=kms.Key(stack, "Key"),
        slack_webhook_secret_name=None,
        log_retention=logs.RetentionDays.ONE_MONTH,
    )
    function = only(Template.from_stack(stack), "AWS::Lambda::Function")["Properties"]
    assert "MLPOC_SLACK_SECRET_ARN" not in function.get("Environment", {}).get("Variables", {})
