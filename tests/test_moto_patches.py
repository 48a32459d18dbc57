"""Local mode's changes to moto (mlpoc.local.motopatch): pinned to the moto they were written
for, and each doing what AWS's documentation says. The enforcement they enable is exercised
role by role in test_local_iam.py."""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError

from mlpoc.local import motopatch
from mlpoc.local.motopatch import Denial, dynamodb_authorizations
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


def test_s3_denials_name_the_object(enforced: EnforcedStack) -> None:
    bucket = enforced.outputs["ModelBucketName"]
    with pytest.raises(ClientError) as denied:
        enforced.client("predict", "s3").put_object(Bucket=bucket, Key="models/m/1/x", Body=b"")
    error = denied.value.response["Error"]
    assert error["Code"] == "AccessDenied"
    assert f"s3:PutObject on resource: arn:aws:s3:::{bucket}/models/m/1/x" in error["Message"]
