"""Where the checkout is: the one module that knows its own depth in the repository.

``containers/mlpoc/paths.py`` → the repository root (``cdk.json``, ``stacks/``, ``lambdas/``).
Meaningful in a checkout only: the CLI's local mode, the CDK app and the tests use it; the
workers and the API in their image never do.
"""

from __future__ import annotations

from pathlib import Path

CHECKOUT = Path(__file__).resolve().parents[2]
