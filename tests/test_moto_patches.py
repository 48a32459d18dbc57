"""Local mode's changes to moto (mlpoc.local.motopatch): pinned to the moto they were written
for, and each doing what AWS's documentation says. The enforcement they enable is exercised
role by role in test_local_iam.py."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from moto.dynamodb.models import DynamoDBBackend

from mlpoc.local import motopatch
from mlpoc.local.motopatch import Denial, dynamodb_authorizations
from mlpoc.local.motoserver import EmbeddedMoto
from tests.support.enforced import EnforcedStack


def test_moto_still_has_the_code_each_patch_was_written_against() -> None:
    # a moto upgrade that changes what a patch replaces or relies on fails here: re-read that
    # code, adjust the patch in mlpoc/local/motopatch.py, then pin the new sha256
    assert motopatch.moto_sources() == motopatch.MOTO_SOURCES


def test_every_patch_is_applied_once() -> None:
    motopatch.apply()
    motopatch.apply()
    for patch in motopatch.PATCHES:
        assert getattr(patch.target, patch.name) is patch.replacement


ARN = "arn:aws:dynamodb:us-east-1:123456789012:table/"


@pytest.mark.parametrize(
    ("action", "body", "expected"),
    [
        ("GetItem", {"TableName": "jobs"}, [("GetItem", ARN + "jobs")]),
        (
            "Query",
            {"TableName": "predictions", "IndexName": "review"},
            [("Query", ARN + "predictions/index/review")],
        ),
        ("GetItem", {"TableName": ARN + "jobs"}, [("GetItem", ARN + "jobs")]),
        ("ListTables", {}, [("ListTables", "*")]),
        (
            "BatchWriteItem",
            {"RequestItems": {"a": [], "b": []}},
            [("BatchWriteItem", ARN + "a"), ("BatchWriteItem", ARN + "b")],
        ),
        ("BatchGetItem", {"RequestItems": {"a": {}}}, [("BatchGetItem", ARN + "a")]),
        (
            "TransactWriteItems",
            {
                "TransactItems": [
                    {"Update": {"TableName": "jobs"}},
                    {"Put": {"TableName": "models"}},
                    {"ConditionCheck": {"TableName": "jobs"}},
                    {"Delete": {"TableName": "models"}},
                ]
            },
            [
                ("UpdateItem", ARN + "jobs"),
                ("PutItem", ARN + "models"),
                ("ConditionCheckItem", ARN + "jobs"),
                ("DeleteItem", ARN + "models"),
            ],
        ),
        (
            "TransactGetItems",
            {"TransactItems": [{"Get": {"TableName": "jobs"}}]},
            [("GetItem", ARN + "jobs")],
        ),
    ],
)
def test_dynamodb_requests_are_authorized_the_way_aws_documents(
    action: str, body: dict[str, object], expected: list[tuple[str, str]]
) -> None:
    found = dynamodb_authorizations(action, body, region="us-east-1", account="123456789012")
    assert found == expected


def test_a_denial_reads_like_aws_and_knows_its_role() -> None:
    denial = Denial(
        principal="arn:aws:sts::123456789012:assumed-role/WorkersPredictTaskTaskRole29B618FD/predict",
        action="dynamodb:BatchWriteItem",
        resource="arn:aws:dynamodb:us-east-1:123456789012:table/p",
        at=0.0,
    )
    assert denial.role == "WorkersPredictTaskTaskRole29B618FD"
    assert denial.session == "predict"
    assert denial.sentence() == (
        "User: arn:aws:sts::123456789012:assumed-role/WorkersPredictTaskTaskRole29B618FD/predict "
        "is not authorized to perform: dynamodb:BatchWriteItem on resource: "
        "arn:aws:dynamodb:us-east-1:123456789012:table/p because no identity-based policy "
        "allows the dynamodb:BatchWriteItem action"
    )


def test_get_queue_url_is_authorized_on_the_queue(enforced: EnforcedStack) -> None:
    # the worker looks its dead-letter queue up by name (GetQueueUrl) when it starts
    train_dlq = enforced.outputs["TrainDeadLetterQueueUrl"].rsplit("/", 1)[-1]
    predict_dlq = enforced.outputs["PredictDeadLetterQueueUrl"].rsplit("/", 1)[-1]
    sqs = enforced.client("train", "sqs")
    assert sqs.get_queue_url(QueueName=train_dlq)["QueueUrl"].endswith(train_dlq)
    with pytest.raises(ClientError) as denied:
        sqs.get_queue_url(QueueName=predict_dlq)
    assert denied.value.response["Error"]["Code"] == "AccessDenied"
    assert (
        f"sqs:GetQueueUrl on resource: arn:aws:sqs:us-east-1:123456789012:{predict_dlq}"
        in (denied.value.response["Error"]["Message"])
    )


def test_sns_publish_is_authorized_on_the_topic(enforced: EnforcedStack) -> None:
    # AWS authorizes sns:Publish on the topic's ARN: grant_publish scopes the policy to it
    topic = enforced.specs["predict"].env["MLPOC_ALERTS_TOPIC_ARN"]
    enforced.client("predict", "sns").publish(TopicArn=topic, Message="drift")
    with pytest.raises(ClientError) as denied:
        enforced.client("train", "sns").publish(TopicArn=topic, Message="drift")
    assert denied.value.response["Error"]["Code"] == "AccessDenied"
    assert f"sns:Publish on resource: {topic}" in denied.value.response["Error"]["Message"]


def test_s3_denials_name_the_object(enforced: EnforcedStack) -> None:
    bucket = enforced.outputs["ModelBucketName"]
    with pytest.raises(ClientError) as denied:
        enforced.client("predict", "s3").put_object(Bucket=bucket, Key="models/m/1/x", Body=b"")
    error = denied.value.response["Error"]
    assert error["Code"] == "AccessDenied"
    assert f"s3:PutObject on resource: arn:aws:s3:::{bucket}/models/m/1/x" in error["Message"]


def test_a_dynamodb_update_is_never_seen_half_applied(monkeypatch: pytest.MonkeyPatch) -> None:
    # moto updates the stored item in place, action by action, on one of its server's threads;
    # DynamoDB shows readers committed items only. Every DynamoDB action runs under the lock, so
    # a GetItem (another thread) waits for the whole update.
    seen: list[tuple[str, bool]] = []

    def watched(name: str) -> Callable[..., Any]:
        original = getattr(DynamoDBBackend, name)

        def call(self: DynamoDBBackend, *args: Any, **kwargs: Any) -> Any:
            seen.append((name, motopatch.DYNAMODB_LOCK.locked()))
            return original(self, *args, **kwargs)

        return call

    for name in ("update_item", "get_item", "transact_write_items"):
        monkeypatch.setattr(DynamoDBBackend, name, watched(name))
    with EmbeddedMoto() as endpoint:
        dynamodb = boto3.client(
            "dynamodb", endpoint_url=endpoint, region_name="us-east-1",
            aws_access_key_id="testing", aws_secret_access_key="testing",
        )  # fmt: skip
        dynamodb.create_table(
            TableName="jobs",
            KeySchema=[{"AttributeName": "job_id", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "job_id", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        key = {"job_id": {"S": "j"}}
        update = {
            "TableName": "jobs",
            "Key": key,
            "UpdateExpression": "SET #s = :done, #r = :result",
            "ExpressionAttributeNames": {"#s": "status", "#r": "result"},
            "ExpressionAttributeValues": {":done": {"S": "SUCCEEDED"}, ":result": {"N": "1"}},
        }
        dynamodb.update_item(**update)
        dynamodb.transact_write_items(TransactItems=[{"Update": update}])
        assert dynamodb.get_item(TableName="jobs", Key=key)["Item"]["result"] == {"N": "1"}
    assert {name for name, _ in seen} == {"update_item", "transact_write_items", "get_item"}
    assert all(locked for _, locked in seen)
    # and outside a request the lock is free: nothing holds it between requests
    assert not motopatch.DYNAMODB_LOCK.locked()
