"""Read access for the workers to datasets in another account (``mlpoc:sources``).

Cross-account access needs both sides: the business account's share stack lets these roles in
(bucket and key policies), and here each worker role is allowed exactly the same thing:
``s3:GetObject`` under each source's prefix, ``s3:ListBucket`` of that prefix only (the
scheduled retrain lists what is new), and ``kms:Decrypt`` with the source's key, only when S3
asks for it (``kms:ViaService``). Hand-written statements rather than ``grant_read`` on an
imported bucket: that grant would add ``GetBucket*``, ``List*`` on the whole bucket and a
direct decrypt, more than a reader of one prefix needs.
"""

from __future__ import annotations

from collections.abc import Mapping

from aws_cdk import Stack
from aws_cdk import aws_iam as iam

from constructs import Construct
from stacks.account_config import Source
from stacks.constructs.nag import acknowledge


def _partition(source: Source) -> str:
    return source.key_arn.split(":")[1]


def object_arn(source: Source) -> str:
    return f"arn:{_partition(source)}:s3:::{source.bucket}/{source.prefix}*"


def bucket_arn(source: Source) -> str:
    return f"arn:{_partition(source)}:s3:::{source.bucket}"


class SourceAccess(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        roles: Mapping[str, iam.IRole],
        sources: tuple[Source, ...],
    ) -> None:
        super().__init__(scope, construct_id)
        region = Stack.of(self).region
        for role in roles.values():
            for source in sources:
                role.add_to_principal_policy(
                    iam.PolicyStatement(actions=["s3:GetObject"], resources=[object_arn(source)])
                )
                role.add_to_principal_policy(
                    iam.PolicyStatement(
                        actions=["s3:ListBucket"],
                        resources=[bucket_arn(source)],
                        conditions={"StringLike": {"s3:prefix": [f"{source.prefix}*"]}},
                    )
                )
                role.add_to_principal_policy(
                    iam.PolicyStatement(
                        actions=["kms:Decrypt"],
                        resources=[source.key_arn],
                        conditions={
                            "StringEquals": {"kms:ViaService": f"s3.{region}.amazonaws.com"}
                        },
                    )
                )
                acknowledge(
                    role.node.find_child("DefaultPolicy"),
                    f"AwsSolutions-IAM5[Resource::{object_arn(source)}]",
                    f"Objects under the shared prefix {source.prefix} of the exchange bucket in "
                    f"account {source.account} only (mlpoc:sources): the datasets handed over.",
                )
