"""Log groups for aws-cdk-lib's own helper functions, so they expire and go with the stack.

CDK's custom resources (bucket notifications, auto-delete of objects, the default security
group's lockdown, AwsCustomResource) run Lambda functions the kit does not declare. Lambda
creates their log groups on first run, with no retention, and `cdk destroy` leaves them behind.
:func:`keep_helper_logs` declares each one first, as ``/aws/lambda/<function>`` with the kit's
retention and removal policy, and makes every custom resource of the stack wait for them, so
Lambda writes into the declared group instead of creating its own. It also records, on each
helper, why checkov's Lambda checks do not apply to it (:data:`HELPER_SKIPS`).
"""

from __future__ import annotations

from typing import cast

from aws_cdk import CfnResource, Fn, RemovalPolicy, Stack
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs

from constructs import Construct
from stacks.constructs.functions import NO_RESERVATION
from stacks.constructs.nag import skip_checkov

FUNCTION = "AWS::Lambda::Function"
HELPER_SKIPS = {
    "CKV_AWS_116": "aws-cdk-lib's custom-resource handler: CloudFormation invokes it during a "
    "deploy or destroy and waits for its answer; a failure fails that stack operation, where it "
    "is seen and retried. A dead-letter queue would keep an event whose response URL expired.",
    "CKV_AWS_117": "aws-cdk-lib's custom-resource handler: it calls AWS APIs at deploy time and "
    "reaches nothing inside the VPC, which has no NAT gateway (public subnets only).",
    "CKV_AWS_115": NO_RESERVATION + "It runs a few times per deploy, for CloudFormation only.",
}


def _is_custom_resource(resource: CfnResource) -> bool:
    kind = resource.cfn_resource_type
    return kind.startswith("Custom::") or kind == "AWS::CloudFormation::CustomResource"


def _has_log_group(resource: CfnResource) -> bool:
    """A function declared with its own log group (the kit's: LoggingConfig)."""
    return isinstance(resource, lambda_.CfnFunction) and resource.logging_config is not None


def helper_functions(stack: Stack) -> list[CfnResource]:
    """aws-cdk-lib's own functions in ``stack``: those declared without the kit's log group."""
    return [
        c
        for c in stack.node.find_all()
        if isinstance(c, CfnResource) and c.cfn_resource_type == FUNCTION and not _has_log_group(c)
    ]


def explain_helpers(stack: Stack) -> None:
    """Record on each helper function why checkov's Lambda checks do not apply; call it last."""
    for function in helper_functions(stack):
        for check, reason in HELPER_SKIPS.items():
            skip_checkov(function, check, reason)


def keep_helper_logs(
    stack: Stack, *, retention: logs.RetentionDays, removal: RemovalPolicy
) -> list[logs.LogGroup]:
    """Declare a log group for every helper function of ``stack``; call it last."""
    groups = []
    for function in helper_functions(stack):
        owner = cast(Construct, function.node.scope)
        group = logs.LogGroup(
            owner,
            f"{function.node.id}Logs",
            log_group_name=Fn.join("", ["/aws/lambda/", function.ref]),
            retention=retention,
            removal_policy=removal,
        )
        groups.append(group)
    explain_helpers(stack)
    for resource in stack.node.find_all():
        if isinstance(resource, CfnResource) and _is_custom_resource(resource):
            for group in groups:
                resource.node.add_dependency(group)
    return groups
