"""cdk-nag v3 acknowledgments: one finding on one construct, with the reviewer's reason."""

from __future__ import annotations

from aws_cdk import Acknowledgment, Validations

from constructs import IConstruct


def acknowledge(construct: IConstruct, finding: str, reason: str) -> None:
    """Acknowledge exactly ``finding`` (e.g. ``AwsSolutions-IAM5[Action::s3:GetObject*]``)."""
    Validations.of(construct).acknowledge(Acknowledgment(id=finding, reason=reason))
