"""A job's record as the ledger keeps it: its status, what a reason may hold, and what a reader
(the CLI, the API, the jobs page) makes of it: a split job's shards, the job that follows."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import Any


class Status(enum.StrEnum):
    QUEUED = "QUEUED"
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    RETRYABLE = "RETRYABLE"


TERMINAL = frozenset({Status.SUCCEEDED, Status.FAILED})


MAX_REASON_CHARS = 2_000


def clip_reason(reason: str) -> str:
    return reason if len(reason) <= MAX_REASON_CHARS else reason[: MAX_REASON_CHARS - 1] + "…"


def is_split(record: Mapping[str, Any]) -> bool:
    """A parent whose shards are running: RUNNING, with no lease of its own."""
    return (
        record.get("status") == Status.RUNNING.value
        and "shards_total" in record
        and "lease_owner" not in record
    )


def shard_progress(record: Mapping[str, Any]) -> str | None:
    """ "3/12" for a split job (shards done out of total), None for any other job."""
    total = record.get("shards_total")
    if total is None:
        return None
    return f"{len(record.get('shards_done') or ())}/{total}"


def followup_message(record: Mapping[str, Any]) -> str | None:
    """The stored body of a QUEUED follow-up job, to send again if it may have been lost."""
    if record.get("status") != Status.QUEUED.value:
        return None
    message = record.get("message")
    return message if isinstance(message, str) else None
