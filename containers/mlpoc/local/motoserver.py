"""The embedded moto server of local mode, with one performance fix.

moto 5.2's ``SQSBackend.is_message_valid_based_on_retention_period`` computes *all* queue
attributes (which walk every message) for each message it considers, so one ReceiveMessage on
a queue of n messages costs O(n²): a 1,000-job backlog took minutes. The replacement reads the
one attribute it needs and decides exactly the same way.
"""

from __future__ import annotations

import logging
from typing import Any

from moto.core.utils import unix_time
from moto.server import ThreadedMotoServer
from moto.sqs.models import SQSBackend

from mlpoc.local.safety import check_endpoint


def _valid_for_retention(self: SQSBackend, queue_name: str, message: Any) -> bool:
    retention = int(self.get_queue(queue_name).message_retention_period)  # type: ignore[attr-defined]
    return bool(retention + message.sent_timestamp / 1000 > unix_time())


def apply_patches() -> None:
    SQSBackend.is_message_valid_based_on_retention_period = _valid_for_retention  # type: ignore[method-assign]


class EmbeddedMoto:
    """A moto server on a free port of 127.0.0.1, in this process (a thread)."""

    def __init__(self, port: int = 0) -> None:
        apply_patches()
        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        self.server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
        self.endpoint = ""

    def start(self) -> str:
        self.server.start()
        host, port = self.server.get_host_and_port()
        self.endpoint = check_endpoint(f"http://{host}:{port}")
        return self.endpoint

    def stop(self) -> None:
        self.server.stop()

    def __enter__(self) -> str:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()
