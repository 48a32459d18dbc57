"""Structured JSON logs, one object a line, with the current job's id attached.

CloudWatch Logs Insights (and ``jq`` locally) query these fields directly:
``fields @timestamp, job_id, event, duration_ms | filter event = "job.finished"``.
"""

from __future__ import annotations

import contextvars
import json
import logging
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

_context: contextvars.ContextVar[dict[str, Any]] = contextvars.ContextVar("mlpoc_log_context")

_STANDARD_ATTRS = frozenset(vars(logging.makeLogRecord({})).keys()) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": round(record.created, 3),
            "level": record.levelname,
            "logger": record.name,
            "event": record.getMessage(),
        }
        entry.update(_context.get({}))
        for key, value in vars(record).items():
            if key not in _STANDARD_ATTRS and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["error"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def configure(level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # botocore's own debug chatter is not ours to ship
    logging.getLogger("botocore").setLevel(max(logging.INFO, root.level))


def current() -> dict[str, Any]:
    """The fields bound now (to carry them into another thread)."""
    return dict(_context.get({}))


@contextmanager
def bound(**fields: Any) -> Iterator[None]:
    """Attach fields (job_id, job_type, ...) to every log line inside the block."""
    token = _context.set({**_context.get({}), **fields})
    try:
        yield
    finally:
        _context.reset(token)


class Stopwatch:
    def __init__(self) -> None:
        self.start = time.monotonic()

    @property
    def ms(self) -> int:
        return int((time.monotonic() - self.start) * 1000)
