"""What each runtime role may touch in the data stack: the one place the service stack grants it.

* **Buckets**, from :mod:`mlpoc.aws.bucket_layout`, the module the runtime builds its keys with:
each role
  reads (``grant_read``) the prefixes whose ``read_by`` names it and puts objects
  (``grant_put``: no delete) under those whose ``written_by`` does.
* **Tables**: the exact DynamoDB actions the runtime code calls (``TABLE_ACTIONS``), through
  ``Table.grant``, plus the project key: ``kms:Decrypt`` for a role that only reads a table,
  encrypt and decrypt for one that writes it.
* **Queues**: each worker consumes its own queue and may send to its dead-letter queue; the
  producers (the API, the upload function, the train worker's follow-up predict jobs) send.

Local mode creates these roles in moto from the synthesized template and runs every process
under its own, so a grant missing here is an AccessDenied on the laptop before it is one on AWS.
The cdk-nag findings that ``grant_*`` writes are acknowledged here too, one by one, with reasons
quoted from the layout.
"""

from __future__ import annotations

from collections.abc import Mapping

from aws_cdk import Stack
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sqs as sqs

from constructs import Construct
from mlpoc.aws import bucket_layout
from mlpoc.aws.bucket_layout import RuntimeRole
from stacks.constructs.nag import acknowledge

# table -> role -> the DynamoDB actions its code calls (runtime/ledger.py, models/registry.py,
# the predict worker's BatchWriter, the API's routes). TransactWriteItems needs the actions of
# its items.
TABLE_ACTIONS: dict[str, dict[RuntimeRole, tuple[str, ...]]] = {
    "jobs": {
        "train": ("GetItem", "PutItem", "UpdateItem"),  # claim … commit; follow-up records
        "predict": ("GetItem", "PutItem", "UpdateItem"),  # claim … commit; shard records
        "upload": ("PutItem", "UpdateItem"),  # create the job's record, or record a refusal
        "api": ("GetItem", "PutItem", "Scan"),  # submit, look up, list recent jobs
    },
    "models": {
        # version counter, version, pointer; the features job's expiry lists the set's versions
        # and reads every model's pointer
        "train": ("GetItem", "PutItem", "UpdateItem", "Query", "Scan"),
        "predict": ("GetItem", "Query"),  # resolve a version; the monitor lists them
        "api": ("GetItem", "Query", "Scan", "UpdateItem"),  # list, promote, roll back
    },
    "predictions": {
        "predict": ("BatchWriteItem",),
        "api": ("GetItem", "Query", "UpdateItem"),  # stored predictions, review queue
    },
    "annotations": {
        "api": ("PutItem", "Query"),
        "train": (
            "Query",
        ),  # the corrections a dataset version includes (mlpoc.data.dataset_versions)
        "predict": ("Query",),  # the monitor job's realized accuracy (mlpoc.quality.monitoring)
    },
    # the online feature store: the features job writes a version's items and marks a
    # superseded version's to expire (Query, then puts); the API only reads, by key
    "features": {
        "train": ("BatchWriteItem", "Query"),
        "api": ("BatchGetItem",),
    },
}
WRITE_ACTIONS = frozenset({"PutItem", "UpdateItem", "DeleteItem", "BatchWriteItem"})
S3_READ = "the action groups of grant_read (GetObject*, GetBucket*, List*)"
S3_PUT = "grant_put's Abort* (a failed multipart upload leaves no parts behind)"
KMS = (
    "added for the project key by the grants on its SSE-KMS buckets, tables and queues: "
    "data-key generation and re-encryption with that one key"
)


class DataAccess(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        roles: Mapping[RuntimeRole, iam.IRole],
        buckets: Mapping[bucket_layout.Bucket, s3.IBucket],
        tables: Mapping[str, dynamodb.ITable],
        key: kms.IKey,
        consumes: Mapping[RuntimeRole, sqs.IQueue],
        sends: Mapping[RuntimeRole, tuple[sqs.IQueue, ...]],
    ) -> None:
        super().__init__(scope, construct_id)
        for prefix in bucket_layout.PREFIXES:
            bucket = buckets[prefix.bucket]
            for reader in prefix.read_by:
                bucket.grant_read(roles[reader], prefix.pattern)
            for writer in prefix.written_by:
                bucket.grant_put(roles[writer], prefix.pattern)
        for table_name, by_role in TABLE_ACTIONS.items():
            table = tables[table_name]
            for role_name, actions in by_role.items():
                role = roles[role_name]
                table.grant(role, *(f"dynamodb:{a}" for a in actions))
                if WRITE_ACTIONS & set(actions):
                    key.grant_encrypt_decrypt(role)
                else:
                    key.grant_decrypt(role)
        for role_name, queue in consumes.items():
            queue.grant_consume_messages(roles[role_name])
        for role_name, targets in sends.items():
            for queue in targets:
                queue.grant_send_messages(roles[role_name])

    @staticmethod
    def acknowledge_grants(
        roles: Mapping[RuntimeRole, iam.IRole],
        *,
        data_stack: Stack,
        bucket_arns: Mapping[bucket_layout.Bucket, str],
        indexed_tables: Mapping[str, str],
    ) -> None:
        """The wildcards ``grant_*`` writes, acknowledged finding by finding on each role.

        ``bucket_arns`` and ``indexed_tables`` (table -> ARN output) are the logical ids of the
        data stack's ARN exports, the way cdk-nag names a cross-stack reference.
        """
        exports = data_stack.stack_name + ":ExportsOutputFnGetAtt"
        for role_name, role in roles.items():
            findings: dict[str, str] = {
                "Action::kms:GenerateDataKey*": KMS,
                "Action::kms:ReEncrypt*": KMS,
            }
            for prefix in bucket_layout.PREFIXES:
                if role_name not in prefix.read_by + prefix.written_by:
                    continue
                resource = f"Resource::{exports}{bucket_arns[prefix.bucket]}/{prefix.pattern}"
                findings[resource] = f"objects under {prefix.path} only: {prefix.holds}"
                if role_name in prefix.read_by:
                    for action in ("GetBucket*", "GetObject*", "List*"):
                        findings[f"Action::s3:{action}"] = S3_READ
                if role_name in prefix.written_by:
                    findings["Action::s3:Abort*"] = S3_PUT
            for table_name, arn in indexed_tables.items():
                if role_name in TABLE_ACTIONS[table_name]:
                    findings[f"Resource::{exports}{arn}/index/*"] = (
                        f"the {table_name} table's own indexes, which Table.grant adds to the "
                        "table's ARN (the review queue is one)"
                    )
            policy = role.node.find_child("DefaultPolicy")
            for finding, reason in findings.items():
                acknowledge(policy, f"AwsSolutions-IAM5[{finding}]", f"{reason}.")
