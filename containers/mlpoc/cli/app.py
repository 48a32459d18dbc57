"""``mlpoc``: run the PoC locally, run the demo, and operate the stacks (local or AWS).

The commands live by what they are for, and register on the one Typer app of
:mod:`mlpoc.cli.common`:

* :mod:`mlpoc.cli.local_commands`: `local up|down|status`, `demo`;
* :mod:`mlpoc.cli.operator_commands`: `train`, `predict`, `jobs`, `models`, `promote`, `rollback`,
  `dlq show|redrive`, `outputs` (either target);
* :mod:`mlpoc.cli.feature_commands`: `features publish|list|show|promote|rollback`;
* :mod:`mlpoc.cli.deploy_commands`: `preflight`, `smoke`, `cost`;
* :mod:`mlpoc.cli.plugin_commands`: `plugin new|check`.

What they print is in :mod:`mlpoc.cli.render`.
"""

from __future__ import annotations

import os

from mlpoc.cli import (
    deploy_commands,
    feature_commands,
    local_commands,
    operator_commands,
    plugin_commands,
)
from mlpoc.cli.common import app

COMMAND_MODULES = (
    local_commands,
    operator_commands,
    feature_commands,
    deploy_commands,
    plugin_commands,
)

__all__ = ["app", "main"]


def main() -> None:
    os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")
    app()
