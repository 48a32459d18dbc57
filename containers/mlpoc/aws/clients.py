"""AWS clients with the retry and timeout policy every role shares.

Clients are created by functions, never at import time. The endpoint comes from the standard
``AWS_ENDPOINT_URL`` variable, which is how local mode and the tests point every client at an
embedded moto server; on AWS it is unset.
"""

from __future__ import annotations

from typing import Any

import boto3
from botocore.config import Config

# "standard" retry mode retries throttling (ThrottlingException,
# ProvisionedThroughputExceededException, SlowDown, RequestThrottled) and 5xx errors with
# exponential backoff and jitter. Ten attempts ride out a throttling burst of several seconds.
RETRY_ATTEMPTS = 10

_CONFIG = Config(
    retries={"mode": "standard", "max_attempts": RETRY_ATTEMPTS},
    connect_timeout=5,
    # Long polls wait up to 20 s before SQS answers: the read timeout must exceed it.
    read_timeout=40,
    max_pool_connections=16,
)


def client(service: str, *, session: boto3.session.Session | None = None) -> Any:
    """A boto3 client for ``service`` with the shared retry/timeout configuration."""
    session = session or boto3.session.Session()
    return session.client(service, config=_CONFIG)


class Clients:
    """The clients a worker uses, created once per process and passed in (SNS only for the
    monitor job's alerts: made on first use when not given)."""

    def __init__(self, *, s3: Any, sqs: Any, dynamodb: Any, sns: Any = None) -> None:
        self.s3 = s3
        self.sqs = sqs
        self.dynamodb = dynamodb
        self._sns = sns

    @property
    def sns(self) -> Any:
        if self._sns is None:
            self._sns = client("sns")
        return self._sns

    @classmethod
    def create(cls) -> Clients:
        session = boto3.session.Session()
        return cls(
            s3=client("s3", session=session),
            sqs=client("sqs", session=session),
            dynamodb=client("dynamodb", session=session),
        )
