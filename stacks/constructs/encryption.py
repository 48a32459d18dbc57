"""The project's KMS key: every bucket, table and queue of the data plane is encrypted with it."""

from __future__ import annotations

from aws_cdk import Duration, Names, RemovalPolicy
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms

from constructs import Construct


class ProjectKey(Construct):
    def __init__(
        self, scope: Construct, construct_id: str, *, project: str, removal: RemovalPolicy
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
        # CloudWatch alarms, EventBridge rules and AWS Budgets publish to the (encrypted) alerts
        # topic: they need to use the key too, for this account only.
        self.key.add_to_resource_policy(
            iam.PolicyStatement(
                sid="AllowAlertPublishersToEncryptedTopics",
                principals=[
                    iam.ServicePrincipal("cloudwatch.amazonaws.com"),
                    iam.ServicePrincipal("events.amazonaws.com"),
                    iam.ServicePrincipal("budgets.amazonaws.com"),
                ],
                actions=["kms:GenerateDataKey*", "kms:Decrypt"],
                resources=["*"],  # in a key policy, "*" means this key
                conditions={"StringEquals": {"aws:SourceAccount": self.key.stack.account}},
            )
        )
        # a unique suffix: two PoCs (or a redeploy while the old key is pending deletion) never
        # collide on the alias name
        suffix = Names.unique_id(self)[-8:].lower()
        self.alias = self.key.add_alias(f"alias/{project}-{suffix}")
