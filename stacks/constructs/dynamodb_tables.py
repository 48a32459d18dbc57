"""The five DynamoDB tables, from the key schemas the runtime queries (``mlpoc.aws.table_keys``).

``AWS::DynamoDB::Table`` (not TableV2's global table) so moto's CloudFormation can create the
same template locally. On demand, encrypted with the project key; point-in-time recovery in the
``retain`` stage.
"""

from __future__ import annotations

from aws_cdk import RemovalPolicy
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms

from constructs import Construct
from mlpoc.aws import table_keys as schemas
from stacks.constructs.nag import acknowledge

# what a reader in another account may do with the predictions (and their indexes)
READER_ACTIONS = ("dynamodb:GetItem", "dynamodb:BatchGetItem", "dynamodb:Query")
_TYPES = {"S": dynamodb.AttributeType.STRING, "N": dynamodb.AttributeType.NUMBER}


def _attribute(key: tuple[str, str]) -> dynamodb.Attribute:
    return dynamodb.Attribute(name=key[0], type=_TYPES[key[1]])


class Tables(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        key: kms.IKey,
        removal: RemovalPolicy,
        point_in_time_recovery: bool,
        result_readers: tuple[str, ...] = (),
    ) -> None:
        super().__init__(scope, construct_id)

        def table(
            name: str, schema: schemas.TableSchema, policy: iam.PolicyDocument | None = None
        ) -> dynamodb.Table:
            created = dynamodb.Table(
                self,
                name,
                partition_key=_attribute(schema.partition_key),
                sort_key=_attribute(schema.sort_key) if schema.sort_key else None,
                billing_mode=dynamodb.BillingMode.PAY_PER_REQUEST,
                encryption=dynamodb.TableEncryption.CUSTOMER_MANAGED,
                encryption_key=key,
                point_in_time_recovery_specification=dynamodb.PointInTimeRecoverySpecification(
                    point_in_time_recovery_enabled=point_in_time_recovery
                ),
                removal_policy=removal,
                resource_policy=policy,
                time_to_live_attribute=schema.ttl,
            )
            if not point_in_time_recovery:
                acknowledge(
                    created,
                    "AwsSolutions-DDB3",
                    "Stage 'poc' keeps disposable data and is destroyed whole with "
                    "`cdk destroy`; stage 'retain' (a project that keeps its data) turns "
                    "point-in-time recovery on for every table.",
                    checkov="CKV_AWS_28",
                )
            for index in schema.indexes:
                created.add_global_secondary_index(
                    index_name=index.name,
                    partition_key=_attribute(index.partition_key),
                    sort_key=_attribute(index.sort_key) if index.sort_key else None,
                    projection_type=dynamodb.ProjectionType.ALL,
                )
            return created

        self.jobs = table("Jobs", schemas.JOBS)
        self.models = table("Models", schemas.MODELS)
        self.predictions = table("Predictions", schemas.PREDICTIONS, readers_policy(result_readers))
        self.annotations = table("Annotations", schemas.ANNOTATIONS)
        self.features = table("Features", schemas.FEATURES)


def readers_policy(readers: tuple[str, ...]) -> iam.PolicyDocument | None:
    """The predictions table's resource policy (``mlpoc:result_readers``): those accounts read,
    nobody else. Each is named as principal and again in ``aws:PrincipalAccount``. ``Resource``
    is ``*``: in a table's own policy that is the table and its indexes (a template cannot name
    the ARN of the table it is creating). The reader's own account must allow it too."""
    if not readers:
        return None
    return iam.PolicyDocument(
        statements=[
            iam.PolicyStatement(
                sid="ResultReadersReadPredictions",
                principals=[iam.AccountPrincipal(account) for account in readers],
                actions=list(READER_ACTIONS),
                resources=["*"],
                conditions={"StringEquals": {"aws:PrincipalAccount": list(readers)}},
            )
        ]
    )
