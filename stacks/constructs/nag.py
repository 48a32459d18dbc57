"""Reviewed findings, with the reviewer's reason, where each scanner reads them.

* cdk-nag v3 acknowledgments: one finding on one construct (:func:`acknowledge`).
* checkov skips: one check on one resource, in the resource's template ``Metadata``
  (``checkov.skip``, :func:`skip_checkov`), so the reason ships inside the template that
  checkov scans. ``tests/test_checkov.py`` runs checkov over every configuration and checks
  each reason's claim against the template.
"""

from __future__ import annotations

from typing import cast

from aws_cdk import Acknowledgment, CfnResource, Stack, Token, Validations

from constructs import IConstruct


def acknowledge(
    construct: IConstruct, finding: str, reason: str, *, checkov: str | None = None
) -> None:
    """Acknowledge exactly ``finding`` (e.g. ``AwsSolutions-IAM5[Action::s3:GetObject*]``), and
    the same finding's checkov check (``checkov="CKV_AWS_68"``) with the same reason."""
    Validations.of(construct).acknowledge(Acknowledgment(id=finding, reason=reason))
    if checkov is not None:
        skip_checkov(construct, checkov, reason)


def skip_checkov(construct: IConstruct, check: str, reason: str) -> None:
    """Skip checkov's ``check`` on ``construct``'s CloudFormation resource, saying why."""
    resource = construct if isinstance(construct, CfnResource) else construct.node.default_child
    if not isinstance(resource, CfnResource):
        raise TypeError(f"{construct.node.path} has no CloudFormation resource to annotate")
    found = cast(dict[str, list[dict[str, str]]] | None, resource.get_metadata("checkov"))
    skips = [*(found or {}).get("skip", []), {"id": check, "comment": reason}]
    resource.add_metadata("checkov", {"skip": skips})


def as_nag_names(stack: Stack, value: str) -> str:
    """``value`` with {partition}, {region} and {account} as cdk-nag writes them in a finding:
    ``<AWS::Region>`` for an environment-agnostic stack, the literal region for a stack synthesized
    for one (what `cdk deploy` does), so an acknowledgment matches either way."""

    def shown(token: str, pseudo: str) -> str:
        return f"<{pseudo}>" if Token.is_unresolved(token) else token

    return value.format(
        partition=shown(stack.partition, "AWS::Partition"),
        region=shown(stack.region, "AWS::Region"),
        account=shown(stack.account, "AWS::AccountId"),
    )
