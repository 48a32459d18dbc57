"""Log groups for aws-cdk-lib's own helper functions, so they expire and go with the stack.

CDK's custom resources (bucket notifications, auto-delete of objects, the default security
group's lockdown, AwsCustomResource) run Lambda functions the kit does not declare. Lambda
creates their log groups on first run, with no retention, and `cdk destroy` leaves them behind.
:func:`keep_helper_logs` declares each one first, as ``/aws/lambda/<function>`` with the kit's
retention and removal policy, and makes every custom resource of the stack wait for them, so
Lambda writes into the declared group instead of creating its own.
"""

from __future__ import annotations

from typing import cast

from aws_cdk import CfnResource, Fn, RemovalPolicy, Stack
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs

from constructs import Construct

FUNCTION = "AWS::Lambda::Function"


def _is_custom_resource(resource: CfnResource) -> bool:
    kind = resource.cfn_resource_type
    return kind.startswith("Custom::") or kind == "AWS::CloudFormation::CustomResource"


def _has_log_group(resource: CfnResource) -> bool:
    """A function declared with its own log group (the kit's: LoggingConfig)."""
    return isinstance(resource, lambda_.CfnFunction) and resource.logging_config is not None


def keep_helper_logs(
    stack: Stack, *, retention: logs.RetentionDays, removal: RemovalPolicy
) -> list[logs.LogGroup]:
    """Declare a log group for every helper function of ``stack``; call it last."""
    resources = [c for c in stack.node.find_all() if isinstance(c, CfnResource)]
    groups = []
    for function in [r for r in resources if r.cfn_resource_type == FUNCTION]:
        if _has_log_group(function):
            continue
        owner = cast(Construct, function.node.scope)
        group = logs.LogGroup(
            owner,
            f"{function.node.id}Logs",
            log_group_name=Fn.join("", ["/aws/lambda/", function.ref]),
            retention=retention,
            removal_policy=removal,
        )
        groups.append(group)
    for resource in resources:
        if _is_custom_resource(resource):
            for group in groups:
                resource.node.add_dependency(group)
    return groups
