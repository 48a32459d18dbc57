"""Create the data stack in the local moto server and wire up what moto could not."""

from __future__ import annotations

import json
import re
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

from moto.cloudformation.parsing import get_model_map

from mlpoc.errors import DeployError
from mlpoc.local.moto_template import LeftOut, MotoTemplate, for_moto
from mlpoc.local.safety import FAKE, REGION, Credentials, check_endpoint, local_session

AWS_QUEUE_URL = re.compile(
    r"^https://sqs\.[a-z0-9-]+\.amazonaws\.com(\.cn)?/(?P<account>\d{12})/(?P<name>[\w-]{1,80})$"
)


@dataclass
class LocalStack:
    name: str
    outputs: dict[str, str]
    exports: dict[str, str]
    left_out: list[LeftOut]
    wired: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def supported_by_moto(resource_type: str) -> bool:
    return resource_type in get_model_map()


class LocalDeployer:
    """Creates stacks in the local moto server: in its default account, or in the account of
    ``credentials`` (a role assumed in another account id, for the share stack)."""

    def __init__(self, endpoint: str, credentials: Credentials | None = None) -> None:
        session = local_session(credentials or FAKE)
        self.endpoint = check_endpoint(endpoint)
        self.cloudformation = session.client("cloudformation", endpoint_url=endpoint)
        self.s3 = session.client("s3", endpoint_url=endpoint)
        self.sqs = session.client("sqs", endpoint_url=endpoint)
        self.dynamodb = session.client("dynamodb", endpoint_url=endpoint)
        self.secretsmanager = session.client("secretsmanager", endpoint_url=endpoint)
        self.sns = session.client("sns", endpoint_url=endpoint)

    def create(self, name: str, template: dict[str, Any]) -> LocalStack:
        prepared = for_moto(template, supported_by_moto)
        self.cloudformation.create_stack(StackName=name, TemplateBody=json.dumps(prepared.template))
        stack = self._wait(name)
        outputs = {
            o["OutputKey"]: self.local_url(o["OutputValue"]) for o in stack.get("Outputs", [])
        }
        exports = {
            o["ExportName"]: self.local_url(o["OutputValue"])
            for o in stack.get("Outputs", [])
            if o.get("ExportName")
        }
        local = LocalStack(name, outputs, exports, prepared.left_out, notes=list(prepared.notes))
        self._wire(name, prepared, local)
        return local

    def local_url(self, value: str) -> str:
        """An AWS-shaped queue URL (what moto's CloudFormation outputs) made to point at the
        local endpoint: clients that send to the queue URL's host (AWS CLI v1) reach moto."""
        match = AWS_QUEUE_URL.match(value)
        return f"{self.endpoint}/{match['account']}/{match['name']}" if match else value

    def _wait(self, name: str) -> dict[str, Any]:
        deadline = time.monotonic() + 60
        while True:
            stack: dict[str, Any] = self.cloudformation.describe_stacks(StackName=name)["Stacks"][0]
            status = stack["StackStatus"]
            if status == "CREATE_COMPLETE":
                return stack
            if not status.endswith("IN_PROGRESS") or time.monotonic() > deadline:
                reason = stack.get("StackStatusReason", "no reason given")
                raise DeployError(f"stack {name} ended {status}: {reason}")
            time.sleep(0.2)

    def _physical_ids(self, name: str) -> dict[str, str]:
        found = self.cloudformation.describe_stack_resources(StackName=name)["StackResources"]
        return {r["LogicalResourceId"]: r["PhysicalResourceId"] for r in found}

    def _wire(self, name: str, prepared: MotoTemplate, local: LocalStack) -> None:
        """Apply the custom resources' effect that local mode knows how to reproduce."""
        physical = self._physical_ids(name)

        pseudo = {"AWS::Partition": "aws", "AWS::Region": REGION}

        def resolve(value: Any) -> Any:
            if isinstance(value, dict) and "Ref" in value:
                return pseudo.get(value["Ref"]) or physical[value["Ref"]]
            if isinstance(value, dict) and "Fn::Join" in value:
                separator, parts = value["Fn::Join"]
                return separator.join(str(resolve(p)) for p in parts)
            if isinstance(value, dict) and "Fn::GetAtt" in value:
                logical, attribute = value["Fn::GetAtt"]
                if attribute == "Arn" and physical[logical].startswith("http"):
                    return self.sqs.get_queue_attributes(
                        QueueUrl=physical[logical], AttributeNames=["QueueArn"]
                    )["Attributes"]["QueueArn"]
                raise DeployError(f"local mode cannot resolve {value}")
            if isinstance(value, dict):
                return {k: resolve(v) for k, v in value.items()}
            if isinstance(value, list):
                return [resolve(v) for v in value]
            return value

        for logical_id, resource in prepared.to_wire.get("Custom::S3BucketNotifications", []):
            props = resolve(
                {k: v for k, v in resource["Properties"].items() if k != "ServiceToken"}
            )
            self.s3.put_bucket_notification_configuration(
                Bucket=props["BucketName"],
                NotificationConfiguration=_notification_api_shape(
                    props["NotificationConfiguration"]
                ),
            )
            local.wired.append(f"{logical_id}: S3 notifications of {props['BucketName']} (S3 API)")
        for logical_id, resource in prepared.template["Resources"].items():
            versioning = resource.get("Properties", {}).get("VersioningConfiguration")
            if resource["Type"] != "AWS::S3::Bucket" or versioning is None:
                continue
            # moto's CloudFormation ignores VersioningConfiguration; the S3 API sets it, so a
            # job records the object version it read, as on AWS
            self.s3.put_bucket_versioning(
                Bucket=physical[logical_id],
                VersioningConfiguration={"Status": versioning["Status"]},
            )
            local.wired.append(f"{logical_id}: versioning of {physical[logical_id]} (S3 API)")
        for logical_id, resource in prepared.template["Resources"].items():
            policy = resource.get("Properties", {}).get("ResourcePolicy")
            if resource["Type"] != "AWS::DynamoDB::Table" or policy is None:
                continue
            # moto's CloudFormation creates the table without it; the DynamoDB API sets it
            table = self.dynamodb.describe_table(TableName=physical[logical_id])["Table"]
            self.dynamodb.put_resource_policy(
                ResourceArn=table["TableArn"],
                Policy=json.dumps(resolve(policy["PolicyDocument"])),
            )
            local.wired.append(
                f"{logical_id}: resource policy of {table['TableName']} (DynamoDB API)"
            )
        for logical_id, _ in prepared.to_wire.get("Custom::S3AutoDeleteObjects", []):
            local.wired.append(f"{logical_id}: not needed (the whole server stops with local mode)")

    def create_api_key(self, project: str) -> tuple[str, str]:
        """The API key in (local) Secrets Manager, as the service stack generates it on AWS."""
        key = secrets.token_urlsafe(24)
        arn: str = self.secretsmanager.create_secret(
            Name=f"{project}-local-api-key-{secrets.token_hex(3)}", SecretString=key
        )["ARN"]
        return arn, key


def create_alerts_topic(deployer: LocalDeployer, project: str) -> tuple[str, str]:
    """A stand-in for the service stack's alerts topic, with a queue subscribed in place of the
    notify function (which needs Lambda): what the monitor job publishes lands there. Its ARN
    and the queue's URL."""
    topic: str = deployer.sns.create_topic(Name=f"{project}-alerts")["TopicArn"]
    url: str = deployer.sqs.create_queue(QueueName=f"{project}-alerts-inbox")["QueueUrl"]
    arn = deployer.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])
    deployer.sns.subscribe(
        TopicArn=topic,
        Protocol="sqs",
        Endpoint=arn["Attributes"]["QueueArn"],
        Attributes={"RawMessageDelivery": "true"},
    )
    return topic, url


def _notification_api_shape(config: dict[str, Any]) -> dict[str, Any]:
    """The custom resource passes the PutBucketNotificationConfiguration shape through."""
    shaped: dict[str, Any] = {}
    for kind in ("QueueConfigurations", "TopicConfigurations", "LambdaFunctionConfigurations"):
        if config.get(kind):
            shaped[kind] = config[kind]
    return shaped


__all__ = ["REGION", "DeployError", "LocalDeployer", "LocalStack"]
