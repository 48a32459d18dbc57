"""Count AWS API calls per operation with botocore's event hooks."""

from __future__ import annotations

from collections import Counter
from typing import Any

from mlpoc.aws.clients import Clients


class CallCounter:
    def __init__(self, clients: Clients) -> None:
        self.calls: Counter[str] = Counter()
        for client in (clients.s3, clients.sqs, clients.dynamodb):
            client.meta.events.register("before-call", self._count)

    def _count(self, model: Any, **_: Any) -> None:
        self.calls[model.name] += 1

    def __getitem__(self, operation: str) -> int:
        return self.calls[operation]

    def reset(self) -> None:
        self.calls.clear()
