#!/usr/bin/env python3
"""CDK entry point: `npx cdk synth|deploy|destroy` runs this (see cdk.json's "app")."""

from __future__ import annotations

import os
import sys

import aws_cdk as cdk

from mlpoc.errors import ConfigError
from stacks.builder import build


def main() -> None:
    app = cdk.App()
    # The only place that reads the environment: the CLI's account and region, when known.
    account, region = os.environ.get("CDK_DEFAULT_ACCOUNT"), os.environ.get("CDK_DEFAULT_REGION")
    env = cdk.Environment(account=account, region=region) if account and region else None
    try:
        build(app, env=env)
    except ConfigError as error:
        sys.stderr.write(f"mlpoc: bad configuration: {error}\n")
        sys.exit(1)
    app.synth()


if __name__ == "__main__":
    main()
