"""Local mode's IAM enforcement, on the synthesized templates: each runtime role may touch
exactly what the bucket layout and the table grants say, in moto as on AWS.

The stack is what `mlpoc local up` builds (the data stack through moto's CloudFormation, the
service stack's roles with their resolved policies, moto's access control on), in a moto server
of its own process.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from botocore.exceptions import ClientError

from mlpoc.aws import bucket_layout, table_keys
from mlpoc.local.iam import role_policies
from mlpoc.local.processes import Resolver
from mlpoc.local.safety import FAKE, REGION, local_session
from stacks.constructs.access import TABLE_ACTIONS
from tests.support.cdk_app import Synthesized
from tests.support.enforced import EnforcedStack

DENIED = {"AccessDenied", "AccessDeniedException"}
BUCKET_OUTPUT = {"data": "DataBucketName", "models": "ModelBucketName"}
TABLE_OUTPUT = {
    "jobs": "JobsTableName",
    "models": "ModelsTableName",
    "predictions": "PredictionsTableName",
    "annotations": "AnnotationsTableName",
    "features": "FeaturesTableName",
}
SCHEMA = {
    "jobs": table_keys.JOBS,
    "models": table_keys.MODELS,
    "predictions": table_keys.PREDICTIONS,
    "annotations": table_keys.ANNOTATIONS,
    "features": table_keys.FEATURES,
}


def allowed(call: Callable[[], Any]) -> bool:
    """True unless moto's IAM refused the call (any other error means it got past IAM)."""
    try:
        call()
    except ClientError as error:
        return error.response["Error"]["Code"] not in DENIED
    return True


def key_of(table: str, sort: str = "x") -> dict[str, Any]:
    schema = SCHEMA[table]
    key = {
        schema.partition_key[0]: {
            schema.partition_key[1]: "1" if schema.partition_key[1] == "N" else "mlpoc-test"
        }
    }
    if schema.sort_key:
        key[schema.sort_key[0]] = {schema.sort_key[1]: "1" if schema.sort_key[1] == "N" else sort}
    return key


@pytest.mark.parametrize("prefix", bucket_layout.PREFIXES, ids=lambda p: p.path)
@pytest.mark.parametrize("role", bucket_layout.RUNTIME_ROLES)
def test_each_role_reads_and_writes_exactly_its_prefixes(
    enforced: EnforcedStack, prefix: bucket_layout.Prefix, role: str
) -> None:
    bucket = enforced.outputs[BUCKET_OUTPUT[prefix.bucket]]
    key = f"{prefix.path}matrix/{role}.csv"
    # GIVEN an object the operator put there (the operator may do anything)
    enforced.client("operator", "s3").put_object(Bucket=bucket, Key=key, Body=b"a,label\n1,x\n")
    s3 = enforced.client(role, "s3")
    # THEN the role reads it if and only if the layout says it reads that prefix
    can_read = allowed(lambda: s3.get_object(Bucket=bucket, Key=key)["Body"].read())  # noqa: PLW0108
    assert can_read == (role in prefix.read_by), f"{role} read {key}"
    # AND writes there if and only if the layout says it writes there
    can_write = allowed(lambda: s3.put_object(Bucket=bucket, Key=key + ".new", Body=b"x"))
    assert can_write == (role in prefix.written_by), f"{role} write {key}"
    # AND no role deletes objects anywhere (grant_put, never grant_read_write)
    assert not allowed(lambda: s3.delete_object(Bucket=bucket, Key=key))


def test_no_role_reaches_outside_the_layout(enforced: EnforcedStack) -> None:
    data = enforced.outputs["DataBucketName"]
    enforced.client("operator", "s3").put_object(Bucket=data, Key="elsewhere/a.csv", Body=b"x")
    for role in bucket_layout.RUNTIME_ROLES:
        s3 = enforced.client(role, "s3")
        assert not allowed(lambda s3=s3: s3.get_object(Bucket=data, Key="elsewhere/a.csv"))


TABLE_CALLS: dict[str, Callable[[Any, str, str], Any]] = {
    "GetItem": lambda d, name, table: d.get_item(TableName=name, Key=key_of(table)),
    "PutItem": lambda d, name, table: d.put_item(TableName=name, Item=key_of(table, "put")),
    "UpdateItem": lambda d, name, table: d.update_item(
        TableName=name,
        Key=key_of(table),
        UpdateExpression="SET touched = :t",
        ExpressionAttributeValues={":t": {"S": "yes"}},
    ),
    "DeleteItem": lambda d, name, table: d.delete_item(TableName=name, Key=key_of(table, "gone")),
    "Scan": lambda d, name, table: d.scan(TableName=name, Limit=1),
    "Query": lambda d, name, table: d.query(
        TableName=name,
        KeyConditionExpression="#p = :p",
        ExpressionAttributeNames={"#p": SCHEMA[table].partition_key[0]},
        ExpressionAttributeValues={":p": key_of(table)[SCHEMA[table].partition_key[0]]},
    ),
    "BatchGetItem": lambda d, name, table: d.batch_get_item(
        RequestItems={name: {"Keys": [key_of(table)]}}
    ),
    "BatchWriteItem": lambda d, name, table: d.batch_write_item(
        RequestItems={name: [{"PutRequest": {"Item": key_of(table, "batch")}}]}
    ),
}


@pytest.mark.parametrize("table", TABLE_ACTIONS)
@pytest.mark.parametrize("role", bucket_layout.RUNTIME_ROLES)
def test_each_role_calls_exactly_its_table_actions(
    enforced: EnforcedStack, table: str, role: str
) -> None:
    dynamodb = enforced.client(role, "dynamodb")
    name = enforced.outputs[TABLE_OUTPUT[table]]
    granted = set(TABLE_ACTIONS[table].get(role, ()))  # type: ignore[call-overload]
    for action, call in TABLE_CALLS.items():
        assert allowed(lambda call=call: call(dynamodb, name, table)) == (action in granted), (
            f"{role} {action} on {table}"
        )


def test_a_transaction_needs_the_action_of_every_item(enforced: EnforcedStack) -> None:
    # GIVEN the predict role, which may update the jobs table but not put into the models table
    jobs, models = enforced.outputs["JobsTableName"], enforced.outputs["ModelsTableName"]
    update = {
        "Update": {
            "TableName": jobs, "Key": key_of("jobs"), "UpdateExpression": "SET a = :a",
            "ExpressionAttributeValues": {":a": {"S": "1"}},
        }
    }  # fmt: skip
    put = {"Put": {"TableName": models, "Item": key_of("models", "v1")}}
    # THEN a transaction of the update alone passes, and one that adds the put is refused
    assert allowed(lambda: enforced.client("predict", "dynamodb").transact_write_items(
        TransactItems=[update]))  # fmt: skip
    assert not allowed(lambda: enforced.client("predict", "dynamodb").transact_write_items(
        TransactItems=[update, put]))  # fmt: skip
    # AND the train role (the registry's writer) may do both
    assert allowed(lambda: enforced.client("train", "dynamodb").transact_write_items(
        TransactItems=[update, put]))  # fmt: skip


def test_queues_the_roles_consume_and_send_to(enforced: EnforcedStack) -> None:
    train_url, predict_url = enforced.outputs["TrainQueueUrl"], enforced.outputs["PredictQueueUrl"]
    for role, queue, may_receive, may_send in (
        ("train", train_url, True, False),
        ("train", predict_url, False, True),  # follow-up predict jobs
        ("predict", predict_url, True, True),  # the shards of a split predict job
        ("predict", train_url, False, False),
        ("api", train_url, False, True),
        ("upload", predict_url, False, True),
    ):
        sqs = enforced.client(role, "sqs")
        assert allowed(lambda sqs=sqs, q=queue: sqs.receive_message(QueueUrl=q)) == may_receive
        sent = allowed(lambda sqs=sqs, q=queue: sqs.send_message(QueueUrl=q, MessageBody="{}"))
        assert sent == may_send, f"{role} send {queue}"
        # the batch calls are authorized as their single actions (there is no *Batch action)
        batch = allowed(lambda sqs=sqs, q=queue: sqs.send_message_batch(
            QueueUrl=q, Entries=[{"Id": "1", "MessageBody": "{}"}]))  # fmt: skip
        assert batch == may_send


def test_only_the_api_reads_its_key(enforced: EnforcedStack) -> None:
    arn = enforced.specs["api"].env["MLPOC_API_KEY_SECRET_ARN"]
    for role in bucket_layout.RUNTIME_ROLES:
        secrets = enforced.client(role, "secretsmanager")
        assert allowed(lambda s=secrets: s.get_secret_value(SecretId=arn)) == (role == "api")


def test_only_the_predict_worker_publishes_the_monitors_alerts(enforced: EnforcedStack) -> None:
    # the stand-in topic replaced the template's in the predict worker's environment and policy
    topic = enforced.specs["predict"].env["MLPOC_ALERTS_TOPIC_ARN"]
    assert topic.startswith("arn:aws:sns:") and topic.endswith(":mlpoc-alerts")
    for role in bucket_layout.RUNTIME_ROLES:
        sns = enforced.client(role, "sns")
        sent = allowed(lambda s=sns, r=role: s.publish(TopicArn=topic, Message=f"from {r}"))
        assert sent == (role == "predict"), role
    inbox = enforced.client("operator", "sqs").receive_message(
        QueueUrl=enforced.alerts_inbox, MaxNumberOfMessages=10
    )
    # (the fixture's stack is shared: other tests may have published there too)
    assert [m["Body"] for m in inbox["Messages"] if m["Body"].startswith("from ")] == [
        "from predict"
    ]


def test_a_denial_names_the_role_the_action_and_the_resource(enforced: EnforcedStack) -> None:
    jobs = enforced.outputs["JobsTableName"]
    with pytest.raises(ClientError) as denied:
        enforced.client("predict", "dynamodb").scan(TableName=jobs)
    error = denied.value.response["Error"]
    assert error["Code"] == "AccessDeniedException"  # what DynamoDB answers
    assert f":assumed-role/{enforced.specs['predict'].role_id}/" in error["Message"]
    assert (
        "is not authorized to perform: dynamodb:Scan on resource: arn:aws:dynamodb:"
        in (error["Message"])
    )
    assert f":table/{jobs} because no identity-based policy allows" in error["Message"]


def test_the_fake_credentials_of_local_mode_are_refused(enforced: EnforcedStack) -> None:
    for service, call in (
        ("s3", lambda c: c.list_buckets()),
        ("sqs", lambda c: c.list_queues()),
        ("dynamodb", lambda c: c.list_tables()),
    ):
        client = local_session(FAKE).client(service, endpoint_url=enforced.endpoint)
        with pytest.raises(ClientError) as refused:
            call(client)
        assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
        assert "InvalidClientTokenId" in str(refused.value) or "InvalidAccessKeyId" in str(
            refused.value
        )


def test_what_the_local_roles_leave_out_only_narrows_them(poc: Synthesized) -> None:
    # GIVEN the train role's policy resolved against made-up local exports
    service = poc.service_json
    exports = {
        o["Value"]["Fn::ImportValue"]: f"arn:aws:local:::{o['Value']['Fn::ImportValue'][-8:]}"
        for o in _imports(service)
    }
    resolve = Resolver(exports, REGION)
    role_id = next(k for k in service["Resources"] if k.startswith("WorkersTrainTaskRole"))
    role = role_policies(service, role_id, resolve)
    # THEN the ECS task-protection statement (the cluster exists only on AWS) is named and gone
    assert any("ecs:GetTaskProtection" in line for line in role.left_out)
    statements = [s for p in role.policies.values() for s in p["Statement"]]
    assert not any("ecs:UpdateTaskProtection" in s["Action"] for s in statements)
    # AND every other statement kept its actions, with resolved resources only
    assert all(isinstance(r, str) for s in statements for r in s["Resource"])


def _imports(value: Any) -> Iterator[dict[str, Any]]:
    if isinstance(value, dict):
        if "Fn::ImportValue" in value:
            yield {"Value": value}
        for inner in value.values():
            yield from _imports(inner)
    elif isinstance(value, list):
        for inner in value:
            yield from _imports(inner)
