"""A small stand-in for the Lambda context object, and the test events as files."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

EVENTS = Path(__file__).resolve().parents[1] / "events"


@dataclass
class FakeContext:
    function_name: str = "test-function"
    memory_limit_in_mb: int = 256
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:test-function"
    aws_request_id: str = "52fdfc07-2182-154f-163f-5f0f9a621d72"

    def get_remaining_time_in_millis(self) -> int:
        return 30_000


def event(name: str, **replacements: str) -> dict[str, Any]:
    text = (EVENTS / f"{name}.json").read_text()
    for old, new in replacements.items():
        text = text.replace(old, new)
    loaded: dict[str, Any] = json.loads(text)
    return loaded
