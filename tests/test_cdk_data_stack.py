"""The data stack's template: encryption, TLS, redrive, retention, logical ids, teardown."""

from __future__ import annotations

from typing import Any

import pytest
from aws_cdk.assertions import Match

from stacks.data_stack import EVENTS_LAMBDA_TIMEOUT
from tests.support.cdk_app import Synthesized

KEY = {"Fn::GetAtt": ["ProjectKey", "Arn"]}
STATEFUL = {
    "ProjectKey": "AWS::KMS::Key",
    "AccessLogBucket": "AWS::S3::Bucket",
    "DataBucket": "AWS::S3::Bucket",
    "ModelBucket": "AWS::S3::Bucket",
    "JobsTable": "AWS::DynamoDB::Table",
    "ModelsTable": "AWS::DynamoDB::Table",
    "PredictionsTable": "AWS::DynamoDB::Table",
    "AnnotationsTable": "AWS::DynamoDB::Table",
    "FeaturesTable": "AWS::DynamoDB::Table",
}


def resources(synth: Synthesized, kind: str) -> dict[str, Any]:
    return {k: v for k, v in synth.data_json["Resources"].items() if v["Type"] == kind}


def test_stateful_logical_ids_are_pinned(poc: Synthesized) -> None:
    found = {k: v["Type"] for k, v in poc.data_json["Resources"].items() if k in STATEFUL}
    assert found == STATEFUL


def test_the_key_rotates_with_a_seven_day_window_and_a_unique_alias(poc: Synthesized) -> None:
    poc.data.has_resource_properties(
        "AWS::KMS::Key", {"EnableKeyRotation": True, "PendingWindowInDays": 7}
    )
    alias = next(iter(resources(poc, "AWS::KMS::Alias").values()))["Properties"]["AliasName"]
    assert alias.startswith("alias/mlpoc-") and len(alias) == len("alias/mlpoc-") + 8


@pytest.mark.parametrize("bucket", ["DataBucket", "ModelBucket"])
def test_data_buckets_use_the_project_key_with_bucket_keys(poc: Synthesized, bucket: str) -> None:
    properties = poc.data_json["Resources"][bucket]["Properties"]
    assert properties["BucketEncryption"] == {
        "ServerSideEncryptionConfiguration": [
            {
                "BucketKeyEnabled": True,
                "ServerSideEncryptionByDefault": {
                    "KMSMasterKeyID": KEY,
                    "SSEAlgorithm": "aws:kms",
                },
            }
        ]
    }
    assert properties["PublicAccessBlockConfiguration"] == {
        "BlockPublicAcls": True,
        "BlockPublicPolicy": True,
        "IgnorePublicAcls": True,
        "RestrictPublicBuckets": True,
    }
    assert properties["LoggingConfiguration"]["DestinationBucketName"] == {"Ref": "AccessLogBucket"}


@pytest.mark.parametrize("bucket", ["DataBucket", "ModelBucket"])
def test_datasets_and_models_are_versioned_and_old_versions_expire(
    poc: Synthesized, bucket: str
) -> None:
    # a dataset that jobs point to, or an artifact, can be overwritten: the old one stays 30 days
    properties = poc.data_json["Resources"][bucket]["Properties"]
    assert properties["VersioningConfiguration"] == {"Status": "Enabled"}
    rules = properties["LifecycleConfiguration"]["Rules"]
    (rule,) = [r for r in rules if "Prefix" not in r]
    assert rule["NoncurrentVersionExpiration"] == {"NoncurrentDays": 30}
    assert rule["AbortIncompleteMultipartUpload"] == {"DaysAfterInitiation": 7}
    assert rule["Status"] == "Enabled"


def test_every_bucket_refuses_plain_http(poc: Synthesized) -> None:
    policies = resources(poc, "AWS::S3::BucketPolicy")
    secured = set()
    for policy in policies.values():
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]:
            if statement.get("Condition") == {"Bool": {"aws:SecureTransport": "false"}}:
                assert statement["Effect"] == "Deny" and statement["Action"] == "s3:*"
                secured.add(policy["Properties"]["Bucket"]["Ref"])
    assert secured == {"AccessLogBucket", "DataBucket", "ModelBucket"}


@pytest.mark.parametrize(
    "table", ["JobsTable", "ModelsTable", "PredictionsTable", "AnnotationsTable", "FeaturesTable"]
)
def test_tables_are_on_demand_and_encrypted_with_the_project_key(
    poc: Synthesized, table: str
) -> None:
    properties = poc.data_json["Resources"][table]["Properties"]
    assert properties["BillingMode"] == "PAY_PER_REQUEST"
    assert properties["SSESpecification"] == {
        "KMSMasterKeyId": KEY,
        "SSEEnabled": True,
        "SSEType": "KMS",
    }
    assert properties["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": False}


def test_the_predictions_table_has_the_sparse_review_index(poc: Synthesized) -> None:
    poc.data.has_resource_properties(
        "AWS::DynamoDB::Table",
        {
            "KeySchema": [
                {"AttributeName": "model", "KeyType": "HASH"},
                {"AttributeName": "item_id", "KeyType": "RANGE"},
            ],
            "GlobalSecondaryIndexes": [
                {
                    "IndexName": "review",
                    "KeySchema": [
                        {"AttributeName": "review", "KeyType": "HASH"},
                        {"AttributeName": "confidence", "KeyType": "RANGE"},
                    ],
                    "Projection": {"ProjectionType": "ALL"},
                }
            ],
        },
    )


def _queue(synth: Synthesized, prefix: str) -> dict[str, Any]:
    (props,) = [
        v["Properties"]
        for k, v in resources(synth, "AWS::SQS::Queue").items()
        if k.startswith(prefix) and "DeadLetter" not in k
    ]
    return props


@pytest.mark.parametrize(("name", "visibility"), [("Train", 120), ("Predict", 60), ("Events", 180)])
def test_queues_redrive_to_their_dlq_and_are_encrypted(
    poc: Synthesized, name: str, visibility: int
) -> None:
    queue = _queue(poc, f"{name}Queue")
    assert queue["KmsMasterKeyId"] == KEY
    assert queue["VisibilityTimeout"] == visibility
    target = queue["RedrivePolicy"]["deadLetterTargetArn"]["Fn::GetAtt"]
    assert target[0].startswith(f"{name}DeadLetter") and target[1] == "Arn"
    assert queue["RedrivePolicy"]["maxReceiveCount"] == 5
    (dead,) = [
        v["Properties"]
        for k, v in resources(poc, "AWS::SQS::Queue").items()
        if k.startswith(f"{name}DeadLetter")
    ]
    assert dead["KmsMasterKeyId"] == KEY
    assert dead["MessageRetentionPeriod"] == 14 * 24 * 3600
    assert "RedrivePolicy" not in dead


def test_the_events_queue_outlives_six_lambda_timeouts(poc: Synthesized) -> None:
    assert _queue(poc, "EventsQueue")["VisibilityTimeout"] >= 6 * EVENTS_LAMBDA_TIMEOUT.to_seconds()


def test_every_queue_refuses_plain_http(poc: Synthesized) -> None:
    queues = set(resources(poc, "AWS::SQS::Queue"))
    secured = set()
    for policy in resources(poc, "AWS::SQS::QueuePolicy").values():
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]:
            if statement.get("Condition") == {"Bool": {"aws:SecureTransport": "false"}}:
                assert statement["Effect"] == "Deny"
                secured.update(q["Ref"] for q in policy["Properties"]["Queues"])
    assert secured == queues


def test_dataset_uploads_notify_the_events_queue(poc: Synthesized) -> None:
    poc.data.has_resource_properties(
        "Custom::S3BucketNotifications",
        {
            "BucketName": {"Ref": "DataBucket"},
            "NotificationConfiguration": {
                "QueueConfigurations": [
                    {
                        "Events": ["s3:ObjectCreated:*"],
                        "Filter": {
                            "Key": {
                                "FilterRules": [
                                    {"Name": "suffix", "Value": ".csv"},
                                    {"Name": "prefix", "Value": "datasets/"},
                                ]
                            }
                        },
                        "QueueArn": {
                            "Fn::GetAtt": [Match.string_like_regexp("EventsQueue.*"), "Arn"]
                        },
                    }
                ]
            },
        },
    )


def test_poc_deletes_everything_and_empties_the_buckets(poc: Synthesized) -> None:
    for logical_id, resource in poc.data_json["Resources"].items():
        assert resource.get("DeletionPolicy", "Delete") == "Delete", logical_id
    auto_deleted = {
        r["Properties"]["BucketName"]["Ref"]
        for r in resources(poc, "Custom::S3AutoDeleteObjects").values()
    }
    assert auto_deleted == {"AccessLogBucket", "DataBucket", "ModelBucket"}


def test_retain_keeps_the_data_and_turns_on_recovery(retain: Synthesized) -> None:
    for logical_id in STATEFUL:
        resource = retain.data_json["Resources"][logical_id]
        assert resource["DeletionPolicy"] == "Retain", logical_id
        assert resource["UpdateReplacePolicy"] == "Retain", logical_id
    for table in ("JobsTable", "ModelsTable", "PredictionsTable", "AnnotationsTable",
                  "FeaturesTable"):  # fmt: skip
        properties = retain.data_json["Resources"][table]["Properties"]
        assert properties["PointInTimeRecoverySpecification"] == {
            "PointInTimeRecoveryEnabled": True
        }
    assert resources(retain, "Custom::S3AutoDeleteObjects") == {}


def test_outputs_name_everything_the_cli_needs(poc: Synthesized) -> None:
    assert set(poc.data_json["Outputs"]) >= {
        "DataBucketName", "ModelBucketName", "JobsTableName", "ModelsTableName",
        "PredictionsTableName", "AnnotationsTableName", "TrainQueueUrl", "PredictQueueUrl",
        "EventsQueueUrl", "TrainDeadLetterQueueUrl", "PredictDeadLetterQueueUrl",
        "EventsDeadLetterQueueUrl", "KeyArn", "FeaturesTableName",
    }  # fmt: skip


def test_the_online_feature_store_expires_superseded_versions_by_ttl(poc: Synthesized) -> None:
    # moto ignores TimeToLiveSpecification: only this test and a real deploy check it
    properties = poc.data_json["Resources"]["FeaturesTable"]["Properties"]
    assert properties["TimeToLiveSpecification"] == {"AttributeName": "expires_at", "Enabled": True}
    assert properties["KeySchema"] == [
        {"AttributeName": "set", "KeyType": "HASH"},
        {"AttributeName": "key", "KeyType": "RANGE"},
    ]
    assert "ResourcePolicy" not in properties  # no other account reads features


def test_the_monitors_input_samples_expire(poc: Synthesized) -> None:
    rules = poc.data_json["Resources"]["DataBucket"]["Properties"]["LifecycleConfiguration"]
    (samples,) = [r for r in rules["Rules"] if "Prefix" in r]
    assert samples["Prefix"] == "input-samples/"
    assert samples["ExpirationInDays"] == 30 and samples["Status"] == "Enabled"
    models = poc.data_json["Resources"]["ModelBucket"]["Properties"]["LifecycleConfiguration"]
    assert all("ExpirationInDays" not in r for r in models["Rules"])  # artifacts never expire
