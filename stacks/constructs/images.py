"""The kit's container images: ``containers/Dockerfile``, one asset per target.

The team's model plugins (``containers/plugins/<name>/``, listed in ``mlpoc:plugins``) go into
the worker and GPU images; the API's image serves ONNX and never carries them.

``worker`` (train and predict workers on Fargate), ``api`` (the Beanstalk bundle's API: ONNX
serving only, no training libraries) and ``gpu`` (the GPU pool's worker). ``make images``
builds the first two the same way, and the container tests run them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from aws_cdk import IgnoreMode
from aws_cdk import aws_ecr_assets as ecr_assets

from constructs import Construct
from mlpoc.paths import CHECKOUT

DOCKERFILE = "containers/Dockerfile"
Target = Literal["worker", "api", "gpu"]


def kit_image(
    scope: Construct,
    construct_id: str,
    *,
    target: Target,
    platform: ecr_assets.Platform,
    plugins: Sequence[str] = (),
    gpu_packages: Sequence[str] = (),
) -> ecr_assets.DockerImageAsset:
    """One target of the Dockerfile. ``plugins`` (mlpoc:plugins) are installed into the worker
    and GPU images, ``gpu_packages`` (mlpoc:gpu_packages) into the GPU image; both are build
    arguments, so they are part of the asset's hash (a change rebuilds and redeploys)."""
    build_args = {
        **({"PLUGINS": " ".join(plugins)} if plugins and target != "api" else {}),
        **({"GPU_PACKAGES": " ".join(gpu_packages)} if gpu_packages and target == "gpu" else {}),
    }
    return ecr_assets.DockerImageAsset(
        scope,
        construct_id,
        directory=str(CHECKOUT),
        file=DOCKERFILE,
        target=target,
        platform=platform,
        build_args=build_args or None,
        # .dockerignore allow-lists the context (pyproject.toml, containers/mlpoc, the
        # Dockerfile and its helper): the asset's hash, and so a redeploy, changes only when
        # the image's inputs do
        ignore_mode=IgnoreMode.DOCKER,
    )
