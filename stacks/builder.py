"""Build the whole app from a CDK App whose context holds the user's knobs (cdk.json)."""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

import aws_cdk as cdk
from cdk_nag import AwsSolutionsChecks

from stacks.config import PREFIX, Config, eb_platform
from stacks.data_stack import DataStack
from stacks.service_stack import ServiceStack
from stacks.share_stack import ShareStack


@dataclass(frozen=True)
class Stacks:
    config: Config
    data: DataStack
    service: ServiceStack


def read_config(app: cdk.App) -> Config:
    context = {}
    for field in fields(Config):
        value = app.node.try_get_context(PREFIX + field.name)
        if value is not None:
            context[PREFIX + field.name] = value
    return Config.from_context(context)


def build(app: cdk.App, *, env: cdk.Environment | None = None) -> Stacks | ShareStack:
    """The ML stacks; or, with ``mlpoc:share``'s ``ml_account`` set, the share stack alone
    (what the business account deploys)."""
    config = read_config(app)
    if config.share.ml_account is not None:
        return build_share(app, config, env=env)
    # `auto`: the platform preflight resolved for this account and region (cdk.context.json)
    platform = eb_platform(
        config.eb_solution_stack,
        account=env.account if env else None,
        region=env.region if env else None,
        lookup=app.node.try_get_context,
    )
    config = replace(config, eb_solution_stack=platform.name)
    data = DataStack(
        app,
        f"{config.project}-data",
        config=config,
        env=env,
        description=f"{config.project}: stateful data plane (key, buckets, tables, queues)",
        termination_protection=config.retain_data,
    )
    service = ServiceStack(
        app,
        f"{config.project}-service",
        config=config,
        data=data,
        env=env,
        description=f"{config.project}: workers, event functions, alarms and budget",
    )
    for stack in (data, service):
        cdk.Tags.of(stack).add("project", config.project)
        cdk.Tags.of(stack).add("stage", config.stage)
    if platform.unresolved:
        stop_deploy(service, platform.unresolved)
    cdk.Validations.of(app).add_plugins(AwsSolutionsChecks(app))
    return Stacks(config=config, data=data, service=service)


def build_share(app: cdk.App, config: Config, *, env: cdk.Environment | None) -> ShareStack:
    share = ShareStack(
        app,
        f"{config.project}-share",
        config=config,
        env=env,
        description=f"{config.project}: exchange bucket shared with ML account "
        f"{config.share.ml_account}",
        termination_protection=config.retain_data,
    )
    cdk.Tags.of(share).add("project", config.project)
    cdk.Tags.of(share).add("stage", config.stage)
    cdk.Validations.of(app).add_plugins(AwsSolutionsChecks(app))
    return share


def stop_deploy(stack: cdk.Stack, why: str) -> None:
    """A template CloudFormation refuses before it creates anything (a rule whose assertion
    never holds, with ``why`` as its message), and a warning at synth."""
    rule = cdk.CfnRule(stack, "EbPlatformResolved")
    rule.add_assertion(cdk.Fn.condition_equals("resolved", "unresolved"), why)
    cdk.Annotations.of(stack).add_warning_v2("mlpoc:eb-platform-unresolved", why)
