"""Synthesize the CDK app the way ``cdk synth`` does, for local mode.

``python -m mlpoc.local.synth PROJECT_DIR OUTDIR`` loads ``cdk.json``'s context (a bare
``cdk.App`` does not read it), builds both stacks with ``stacks.builder.build`` — the code
``app.py`` runs — and writes the cloud assembly to OUTDIR. It runs in its own process so the
long-lived local-mode process never carries the jsii/Node runtime.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from mlpoc.errors import SynthError
from mlpoc.paths import CHECKOUT

# containers/mlpoc/local/synth.py -> the checkout that holds cdk.json, stacks/ and lambdas/


def project_dir(path: Path | None = None) -> Path:
    root = (path or CHECKOUT).resolve()
    if not (root / "cdk.json").is_file() or not (root / "stacks").is_dir():
        raise SynthError(
            f"{root} is not an mlpoc checkout (no cdk.json and stacks/): local mode synthesizes "
            "the CDK app, so run it from a clone of the repository or pass --project-dir"
        )
    return root


def load_context(root: Path) -> dict[str, Any]:
    try:
        context: dict[str, Any] = json.loads((root / "cdk.json").read_text())["context"]
    except (OSError, ValueError, KeyError) as error:
        raise SynthError(f"cannot read the context of {root / 'cdk.json'}: {error}") from None
    return context


def synthesize(root: Path, outdir: Path) -> Path:
    """Run the synthesis in a subprocess; return the assembly directory."""
    env = {**os.environ, "JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION": "20"}
    done = subprocess.run(  # noqa: S603 - our own module, fixed arguments
        [sys.executable, "-m", "mlpoc.local.synth", str(root), str(outdir)],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        detail = (done.stderr or done.stdout).strip().splitlines()
        raise SynthError("the CDK app did not synthesize: " + " | ".join(detail[-5:]))
    return outdir


def main(argv: list[str]) -> int:
    root, outdir = project_dir(Path(argv[0])), Path(argv[1])
    sys.path.insert(0, str(root))
    # imported here: the CDK (and jsii's Node process) only in this subprocess, and stacks/
    # only once the checkout is on the path
    import aws_cdk as cdk  # noqa: PLC0415

    from mlpoc.errors import ConfigError  # noqa: PLC0415
    from stacks.builder import build  # noqa: PLC0415

    # what the CDK CLI sets: resource paths and asset locations in the template metadata
    context = {
        **load_context(root),
        "aws:cdk:enable-path-metadata": True,
        "aws:cdk:enable-asset-metadata": True,
    }
    app = cdk.App(context=context, outdir=str(outdir))
    try:
        build(app)
    except ConfigError as error:
        sys.stderr.write(f"bad configuration in cdk.json: {error}\n")
        return 1
    app.synth()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
