"""The project's KMS key: every bucket, table, queue, log group and secret is encrypted with it.

:class:`EncryptLogGroups` is the aspect that gives every log group of a stack the key (the
workers', the functions', the flow logs', aws-cdk-lib's helpers'), so none is left on the
service-owned default; the key policy lets CloudWatch Logs use it for this account's log
groups only.
"""

from __future__ import annotations

from typing import Any

import jsii
from aws_cdk import Duration, IAspect, Names, RemovalPolicy, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_logs as logs

from constructs import Construct, IConstruct

# (statement id, service, the ARN pattern of its sources in this account)
PUBLISHERS = (
    (
        "AllowCloudWatchAlarmsToEncryptedTopics",
        "cloudwatch.amazonaws.com",
        "arn:{partition}:cloudwatch:{region}:{account}:alarm:*",
    ),
    (
        "AllowBudgetsToEncryptedTopics",
        "budgets.amazonaws.com",
        "arn:{partition}:budgets::{account}:*",
    ),
)


def source_conditions(stack: Stack, arn_pattern: str) -> dict[str, Any]:
    """aws:SourceAccount and aws:SourceArn for a service principal: only this account's own
    alarms or budgets may use the grant (the confused-deputy guard AWS recommends)."""
    arn = arn_pattern.format(partition=stack.partition, region=stack.region, account=stack.account)
    return {
        "StringEquals": {"aws:SourceAccount": stack.account},
        "ArnLike": {"aws:SourceArn": arn},
    }


class ProjectKey(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        project: str,
        removal: RemovalPolicy,
        result_readers: tuple[str, ...] = (),
    ) -> None:
        super().__init__(scope, construct_id)
        self.key = kms.Key(
            self,
            "Key",
            description=f"{project}: encrypts the data plane (buckets, tables, queues)",
            enable_key_rotation=True,
            pending_window=Duration.days(7),
            removal_policy=removal,
        )
        # S3 publishes ObjectCreated events to the (encrypted) events queue: it needs the key.
        self.key.add_to_resource_policy(
            iam.PolicyStatement(
                sid="AllowS3EventNotificationsToEncryptedQueues",
                principals=[iam.ServicePrincipal("s3.amazonaws.com")],
                actions=["kms:GenerateDataKey", "kms:Decrypt"],
                resources=["*"],  # in a key policy, "*" means this key
                conditions={"StringEquals": {"aws:SourceAccount": self.key.stack.account}},
            )
        )
        # CloudWatch alarms, AWS Budgets and EventBridge rules publish to the (encrypted) alerts
        # topic: they use the key too (SNS developer guide, "compatibility between event sources
        # from AWS services and encrypted topics"), each only for this account's own sources.
        for sid, service, source_arn in PUBLISHERS:
            self.key.add_to_resource_policy(
                iam.PolicyStatement(
                    sid=sid,
                    principals=[iam.ServicePrincipal(service)],
                    actions=["kms:GenerateDataKey*", "kms:Decrypt"],
                    resources=["*"],  # in a key policy, "*" means this key
                    conditions=source_conditions(self.key.stack, source_arn),
                )
            )
        # EventBridge's requests to KMS for an SNS target carry no aws:SourceAccount or
        # aws:SourceArn (a condition on them would drop every event); the topic's own policy
        # admits only this stack's rule.
        self.key.add_to_resource_policy(
            iam.PolicyStatement(
                sid="AllowEventBridgeRulesToEncryptedTopics",
                principals=[iam.ServicePrincipal("events.amazonaws.com")],
                actions=["kms:GenerateDataKey*", "kms:Decrypt"],
                resources=["*"],
            )
        )
        # accounts that read the predictions table (mlpoc:result_readers) decrypt what they read,
        # only through DynamoDB in this region; the table's resource policy says what they read
        if result_readers:
            stack = self.key.stack
            self.key.add_to_resource_policy(
                iam.PolicyStatement(
                    sid="ResultReadersDecryptThroughDynamoDB",
                    principals=[iam.AccountPrincipal(account) for account in result_readers],
                    actions=["kms:Decrypt", "kms:DescribeKey"],
                    resources=["*"],
                    conditions={
                        "StringEquals": {
                            "kms:ViaService": f"dynamodb.{stack.region}.amazonaws.com",
                            "kms:CallerAccount": list(result_readers),
                        }
                    },
                )
            )
        # CloudWatch Logs encrypts this account's log groups with the key (CloudWatch Logs user
        # guide, "Encrypt log data in CloudWatch Logs using AWS KMS"): the service principal of
        # the region, limited by the encryption context to log groups of this account and region
        stack = self.key.stack
        self.key.add_to_resource_policy(
            iam.PolicyStatement(
                sid="AllowCloudWatchLogsOfThisAccount",
                principals=[iam.ServicePrincipal(f"logs.{stack.region}.amazonaws.com")],
                actions=[
                    "kms:Encrypt*",
                    "kms:Decrypt*",
                    "kms:ReEncrypt*",
                    "kms:GenerateDataKey*",
                    "kms:Describe*",
                ],
                resources=["*"],  # in a key policy, "*" means this key
                conditions={
                    "ArnLike": {
                        "kms:EncryptionContext:aws:logs:arn": (
                            f"arn:{stack.partition}:logs:{stack.region}:{stack.account}:log-group:*"
                        )
                    }
                },
            )
        )
        # a unique suffix: two PoCs (or a redeploy while the old key is pending deletion) never
        # collide on the alias name
        suffix = Names.unique_id(self)[-8:].lower()
        self.alias = self.key.add_alias(f"alias/{project}-{suffix}")


@jsii.implements(IAspect)
class EncryptLogGroups:
    """Every log group of the scope it is applied to gets the project key (unless it has one)."""

    def __init__(self, key: kms.IKey) -> None:
        self.key = key

    def visit(self, node: IConstruct) -> None:
        if isinstance(node, logs.CfnLogGroup) and node.kms_key_id is None:
            node.kms_key_id = self.key.key_arn
