"""One performance fix for moto, applied to the in-process moto of the test session.

moto 5.2's ``SQSBackend.is_message_valid_based_on_retention_period`` computes *all* queue
attributes (which walk every message) for each message it considers, so one ReceiveMessage on
a queue of n messages costs O(n²): a 1,000-job backlog took minutes. The replacement reads the
one attribute it needs and decides exactly the same way.
"""

from __future__ import annotations

from typing import Any

from moto.core.utils import unix_time
from moto.sqs.models import SQSBackend


def _valid_for_retention(self: SQSBackend, queue_name: str, message: Any) -> bool:
    retention = int(self.get_queue(queue_name).message_retention_period)
    return bool(retention + message.sent_timestamp / 1000 > unix_time())


def apply() -> None:
    SQSBackend.is_message_valid_based_on_retention_period = _valid_for_retention
