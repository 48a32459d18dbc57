"""The share stack: deployed in the *business* account, it hands data to the ML account.

An exchange bucket with its own KMS key, TLS-only, that only the ML account's train and predict
worker roles may read (under one prefix) and, optionally, write results to (under another).
It is a new bucket, not the data lake's own: a bucket has one bucket policy, and a policy
written by this stack would replace the one the lake's owners keep.

The grants name the ML account as principal and its worker roles in ``aws:PrincipalArn``: a
policy that names a role ARN as principal is bound to that role's internal id, so a redeployed
ML service stack (a new role of the same name) would silently lose access. The role names are
fixed by :func:`stacks.account_config.worker_role_name`.
"""

from __future__ import annotations

from typing import Any

from aws_cdk import CfnOutput, Duration, RemovalPolicy, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3

from constructs import Construct
from stacks.account_config import worker_role_name
from stacks.config import Config
from stacks.constructs.helper_logs import explain_helpers
from stacks.constructs.storage import NONCURRENT_DAYS, explain_log_bucket, log_bucket_settings

READER_ROLES = ("train", "predict")


class ShareStack(Stack):
    def __init__(
        self, scope: Construct, construct_id: str, *, config: Config, **kwargs: object
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)  # type: ignore[arg-type]
        share = config.share
        assert share.ml_account is not None  # noqa: S101 - the builder builds it only then
        keep = RemovalPolicy.RETAIN if config.retain_data else RemovalPolicy.DESTROY
        roles = [
            f"arn:{self.partition}:iam::{share.ml_account}:role/"
            f"{worker_role_name(config.project, role)}"
            for role in READER_ROLES
        ]
        ml_workers = {"ArnEquals": {"aws:PrincipalArn": roles}}
        self.key = kms.Key(
            self,
            "ExchangeKey",
            description=f"{config.project}: encrypts the exchange bucket shared with the ML "
            f"account {share.ml_account}",
            enable_key_rotation=True,
            pending_window=Duration.days(7),
            removal_policy=keep,
        )
        self.access_logs = s3.Bucket(
            self,
            "ExchangeAccessLogs",
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            enforce_ssl=True,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            **log_bucket_settings(),
            removal_policy=keep,
            auto_delete_objects=not config.retain_data,
        )
        explain_log_bucket(self.access_logs)
        self.bucket = s3.Bucket(
            self,
            "Exchange",
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            encryption=s3.BucketEncryption.KMS,
            encryption_key=self.key,
            bucket_key_enabled=True,
            enforce_ssl=True,
            versioned=True,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            server_access_logs_bucket=self.access_logs,
            server_access_logs_prefix="exchange/",
            lifecycle_rules=[
                s3.LifecycleRule(
                    noncurrent_version_expiration=Duration.days(NONCURRENT_DAYS),
                    abort_incomplete_multipart_upload_after=Duration.days(7),
                )
            ],
            removal_policy=keep,
            auto_delete_objects=not config.retain_data,
        )
        ml = iam.AccountPrincipal(share.ml_account)

        def allow(target: s3.Bucket | kms.Key, sid: str, actions: list[str], resource: str,
                  **conditions: dict[str, Any]) -> None:  # fmt: skip
            """One statement for the ML workers (and nobody else) on ``target``."""
            target.add_to_resource_policy(
                iam.PolicyStatement(
                    sid=sid,
                    principals=[ml],
                    actions=actions,
                    resources=[resource],
                    conditions={**ml_workers, **conditions},
                )
            )

        prefix_objects = self.bucket.arn_for_objects(f"{share.prefix}*")
        via_s3 = {"kms:ViaService": f"s3.{self.region}.amazonaws.com"}
        allow(self.bucket, "MlWorkersReadTheSharedPrefix", ["s3:GetObject"], prefix_objects)
        allow(self.bucket, "MlWorkersListTheSharedPrefix", ["s3:ListBucket"],
              self.bucket.bucket_arn, StringLike={"s3:prefix": [f"{share.prefix}*"]})  # fmt: skip
        # in a key policy, "*" means this key
        allow(self.key, "MlWorkersDecryptThroughS3", ["kms:Decrypt"], "*", StringEquals=via_s3)
        if share.results_prefix is not None:
            results = self.bucket.arn_for_objects(f"{share.results_prefix}*")
            allow(self.bucket, "MlWorkersWriteResults",
                  ["s3:PutObject", "s3:AbortMultipartUpload"], results)  # fmt: skip
            allow(self.key, "MlWorkersEncryptResultsThroughS3", ["kms:GenerateDataKey"], "*",
                  StringEquals=via_s3)  # fmt: skip
        self._outputs(config)
        explain_helpers(self)  # the auto-delete function aws-cdk-lib adds (stage poc)

    def _outputs(self, config: Config) -> None:
        share = config.share
        source = {
            "bucket": self.bucket.bucket_name,
            "prefix": share.prefix,
            "key_arn": self.key.key_arn,
            "account": self.account,
        }
        values = {
            "ExchangeBucketName": self.bucket.bucket_name,
            "ExchangeKeyArn": self.key.key_arn,
            "SharedPrefix": share.prefix,
            # paste into the ML side's cdk.json as one entry of "mlpoc:sources"
            "MlpocSource": self.to_json_string(source),
        }
        if share.results_prefix is not None:
            values["ResultsPrefix"] = share.results_prefix
        for name, value in values.items():
            CfnOutput(self, name, value=value)
