"""cdk-nag v3 acknowledgments: one finding on one construct, with the reviewer's reason."""

from __future__ import annotations

from aws_cdk import Acknowledgment, Stack, Token, Validations

from constructs import IConstruct


def acknowledge(construct: IConstruct, finding: str, reason: str) -> None:
    """Acknowledge exactly ``finding`` (e.g. ``AwsSolutions-IAM5[Action::s3:GetObject*]``)."""
    Validations.of(construct).acknowledge(Acknowledgment(id=finding, reason=reason))


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
