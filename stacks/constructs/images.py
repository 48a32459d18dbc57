"""The kit's container images: ``containers/Dockerfile``, one asset per target.

``worker`` (train and predict workers on Fargate), ``api`` (the Beanstalk bundle's API: ONNX
serving only, no training libraries) and ``gpu`` (the GPU pool's worker). ``make images``
builds the first two the same way, and the container tests run them.
"""

from __future__ import annotations

from typing import Literal

from aws_cdk import IgnoreMode
from aws_cdk import aws_ecr_assets as ecr_assets

from constructs import Construct
from mlpoc.paths import CHECKOUT

DOCKERFILE = "containers/Dockerfile"
Target = Literal["worker", "api", "gpu"]


def kit_image(
    scope: Construct, construct_id: str, *, target: Target, platform: ecr_assets.Platform
) -> ecr_assets.DockerImageAsset:
    return ecr_assets.DockerImageAsset(
        scope,
        construct_id,
        directory=str(CHECKOUT),
        file=DOCKERFILE,
        target=target,
        platform=platform,
        # .dockerignore allow-lists the context (pyproject.toml, containers/mlpoc, the
        # Dockerfile and its helper): the asset's hash, and so a redeploy, changes only when
        # the image's inputs do
        ignore_mode=IgnoreMode.DOCKER,
    )
