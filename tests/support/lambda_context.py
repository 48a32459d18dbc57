"""The Lambda context object (local mode's own), and the test events as files."""

from __future__ import annotations

import json
from typing import Any

from mlpoc.local.sqs_lambda import LocalLambdaContext
from mlpoc.paths import CHECKOUT

EVENTS = CHECKOUT / "tests" / "events"


def context() -> LocalLambdaContext:
    """Lambda's context object as local mode's event-source stand-in builds it."""
    return LocalLambdaContext("test-function", "us-east-1", timeout=30, memory=256)


def event(name: str, **replacements: str) -> dict[str, Any]:
    text = (EVENTS / f"{name}.json").read_text()
    for old, new in replacements.items():
        text = text.replace(old, new)
    loaded: dict[str, Any] = json.loads(text)
    return loaded
