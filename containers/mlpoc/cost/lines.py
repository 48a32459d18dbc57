"""The pieces every part of the cost report shares: what a line is, and which resource types
cost nothing while idle, nothing at all, or by a rule."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

TRAIN_JOBS = 1_000
PREDICTIONS = 1_000_000
ALTERNATIVE = "ml.t2.medium"  # SageMaker's smallest real-time endpoint instance

# Charged only per request, per GB or per invocation: nothing while idle.
USAGE_ONLY = frozenset({
    "AWS::Lambda::Function", "AWS::SQS::Queue", "AWS::SNS::Topic", "AWS::Events::Rule",
    "AWS::ECS::Service", "AWS::Logs::LogGroup", "AWS::EC2::FlowLog", "AWS::S3::Bucket",
    "AWS::DynamoDB::Table", "AWS::Scheduler::Schedule",
})  # fmt: skip
# No charge at all (configuration, permissions, free networking pieces).
FREE = frozenset({
    "AWS::IAM::Role", "AWS::IAM::Policy", "AWS::IAM::ManagedPolicy", "AWS::IAM::InstanceProfile",
    "AWS::EC2::VPC", "AWS::EC2::Subnet", "AWS::EC2::RouteTable", "AWS::EC2::Route",
    "AWS::EC2::SubnetRouteTableAssociation", "AWS::EC2::InternetGateway",
    "AWS::EC2::VPCGatewayAttachment", "AWS::EC2::SecurityGroup", "AWS::EC2::SecurityGroupIngress",
    "AWS::EC2::SecurityGroupEgress", "AWS::ECS::TaskDefinition",
    "AWS::ECS::ClusterCapacityProviderAssociations", "AWS::ApplicationAutoScaling::ScalableTarget",
    "AWS::ApplicationAutoScaling::ScalingPolicy", "AWS::KMS::Alias", "AWS::SQS::QueuePolicy",
    "AWS::S3::BucketPolicy", "AWS::SNS::TopicPolicy", "AWS::SNS::Subscription",
    "AWS::Lambda::Permission", "AWS::Lambda::LayerVersion", "AWS::Lambda::EventInvokeConfig",
    "AWS::ElasticBeanstalk::Application",
    "AWS::ElasticBeanstalk::ApplicationVersion", "AWS::CDK::Metadata",
    "AWS::EC2::LaunchTemplate", "AWS::ECS::CapacityProvider",
})  # fmt: skip
# Priced by a rule below.
PRICED = frozenset({
    "AWS::ElasticBeanstalk::Environment", "AWS::EC2::NatGateway", "AWS::EC2::EIP",
    "AWS::EC2::VPCEndpoint", "AWS::KMS::Key", "AWS::SecretsManager::Secret",
    "AWS::CloudWatch::Alarm", "AWS::CloudWatch::Dashboard", "AWS::Lambda::EventSourceMapping",
    "AWS::CloudFront::Distribution", "AWS::Budgets::Budget", "AWS::ECS::Cluster",
    "AWS::AutoScaling::AutoScalingGroup",
})  # fmt: skip


@dataclass(frozen=True)
class Line:
    item: str
    detail: str
    usd: float | None  # None: cannot be priced here (named in the report, never counted as 0)
    free: float = 0.0  # the part AWS's always-free allowances would cover


def template_options(resource: Mapping[str, Any]) -> dict[str, Any]:
    return {
        o["OptionName"]: o.get("Value") for o in resource["Properties"].get("OptionSettings", [])
    }


def usd(value: float) -> float:
    return round(value, 6)
