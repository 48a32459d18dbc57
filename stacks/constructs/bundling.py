"""Staging assets without Docker: a local bundler that copies files into the asset."""

from __future__ import annotations

import shutil
from pathlib import Path

import jsii
from aws_cdk import BundlingOptions, ILocalBundling

REPO_ROOT = Path(__file__).resolve().parents[2]


@jsii.implements(ILocalBundling)
class CopyFiles:
    """Stage an asset by copying files (relative to the repository root)."""

    def __init__(self, files: dict[str, str]) -> None:
        self.files = files

    def try_bundle(self, output_dir: str, options: BundlingOptions) -> bool:
        for source, target in self.files.items():
            destination = Path(output_dir) / target
            destination.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(REPO_ROOT / source, destination)
        return True
