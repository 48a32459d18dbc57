"""Staging assets without Docker: a local bundler that copies files into the asset."""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

import jsii
from aws_cdk import BundlingOptions, ILocalBundling

from mlpoc.paths import CHECKOUT


@jsii.implements(ILocalBundling)
class CopyFiles:
    """Stage an asset by copying files (relative to the repository root) and, for ``modules``,
    the installed copy of each top-level module or package (the version pyproject.toml pins)."""

    def __init__(self, files: dict[str, str], modules: tuple[str, ...] = ()) -> None:
        self.files = files
        self.modules = modules

    def try_bundle(self, output_dir: str, options: BundlingOptions) -> bool:
        for source, target in self.files.items():
            destination = Path(output_dir) / target
            destination.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(CHECKOUT / source, destination)
        for module in self.modules:
            spec = importlib.util.find_spec(module)
            if spec is None or spec.origin is None:
                raise RuntimeError(f"{module} is not installed: `make install` installs it")
            origin = Path(spec.origin)
            if spec.submodule_search_locations:  # a package: the whole directory
                shutil.copytree(
                    origin.parent,
                    Path(output_dir) / module,
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"),
                )
            else:
                shutil.copyfile(origin, Path(output_dir) / origin.name)
        return True
