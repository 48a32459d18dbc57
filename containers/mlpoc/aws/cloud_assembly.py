"""A synthesized cloud assembly (``cdk.out``): the stacks' templates, read once, for the cost
report, preflight and local mode."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlpoc.errors import SynthError


@dataclass(frozen=True)
class Assembly:
    templates: dict[str, dict[str, Any]]  # stack name -> template
    docker_images: int = 0  # the worker and API images (every one but the GPU one)
    region: str | None = None  # when the stacks were synthesized for one
    gpu_images: int = 0  # docker build target "gpu": the GPU pool's image

    @classmethod
    def from_dir(cls, path: Path) -> Assembly:
        try:
            manifest = json.loads((path / "manifest.json").read_text())
        except (OSError, ValueError) as error:
            raise SynthError(
                f"{path} is not a synthesized assembly ({error}); run make synth"
            ) from None
        templates: dict[str, dict[str, Any]] = {}
        images = gpu_images = 0
        regions = set()
        for name, artifact in manifest["artifacts"].items():
            if artifact["type"] == "aws:cloudformation:stack":
                file = artifact["properties"]["templateFile"]
                templates[name] = json.loads((path / file).read_text())
                regions.add(artifact["environment"].rsplit("/", 1)[-1])
            elif artifact["type"] == "cdk:asset-manifest":
                assets = json.loads((path / artifact["properties"]["file"]).read_text())
                for image in assets.get("dockerImages", {}).values():
                    if image.get("source", {}).get("dockerBuildTarget") == "gpu":
                        gpu_images += 1
                    else:
                        images += 1
        if not templates:
            raise SynthError(f"{path} holds no stack templates; run make synth")
        known = regions - {"unknown-region"}
        region = known.pop() if len(known) == 1 else None
        return cls(templates, images, region, gpu_images)

    def resources(self) -> Iterator[tuple[str, dict[str, Any]]]:
        for template in self.templates.values():
            yield from template.get("Resources", {}).items()

    def of_type(self, kind: str) -> list[tuple[str, dict[str, Any]]]:
        return [(k, r) for k, r in self.resources() if r["Type"] == kind]


def references(value: Any) -> Iterator[str]:
    """Logical ids a template value points at (Ref, Fn::GetAtt, ${X} in Fn::Sub)."""
    if isinstance(value, dict):
        if "Ref" in value and isinstance(value["Ref"], str):
            yield value["Ref"]
        if "Fn::GetAtt" in value:
            target = value["Fn::GetAtt"]
            yield target[0] if isinstance(target, list) else str(target).split(".")[0]
        if "Fn::Sub" in value:
            text = value["Fn::Sub"][0] if isinstance(value["Fn::Sub"], list) else value["Fn::Sub"]
            yield from (m.split(".")[0] for m in re.findall(r"\$\{([^}!]+)\}", str(text)))
        for inner in value.values():
            yield from references(inner)
    elif isinstance(value, list):
        for inner in value:
            yield from references(inner)
