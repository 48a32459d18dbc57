"""The functions' logger: Powertools' Lambda logger (request id, cold start, service), writing
mlpoc's one log format, in which a line's name is its ``event`` field, as the workers write it
(:mod:`mlpoc.aws.logs`). One Logs Insights query, ``filter event = '…'``, reads both."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.logging.formatter import LambdaPowertoolsFormatter


class EventFormatter(LambdaPowertoolsFormatter):
    def serialize(self, log: dict[str, Any]) -> str:  # type: ignore[override]
        named = {"event": log.pop("message", None), **log}
        return super().serialize(named)


def logger(service: str) -> Logger:
    return Logger(service=service, logger_formatter=EventFormatter())
