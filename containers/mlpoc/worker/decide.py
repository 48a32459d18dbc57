"""What becomes of one job and its SQS message: the README's "bad or unlucky job" table, as a
pure function. No AWS call, no clock: the loop gathers the facts, :func:`decide` rules, and the
loop carries the ruling out (ledger write, delete, release).

The first three rows are settled before a handler runs, by the contract's parser and the
ledger's claim (``Worker._handle``); :func:`decide` rules the others.

| situation                         | ledger     | message                                  |
| --------------------------------- | ---------- | ---------------------------------------- |
| breaks the contract               | FAILED     | copied to the DLQ with the reason, deleted |
| delivered again after it finished | unchanged  | deleted (lost follow-ups re-sent)        |
| held by another worker's lease    | unchanged  | left (returns after the timeout)         |
| committed by its handler          | SUCCEEDED  | deleted                                  |
| lease lost while it ran           | unchanged  | left (the owner decides)                 |
| can never succeed (``JobFailed``, | FAILED     | deleted                                  |
| a plugin's bug: ``PluginCrashed``) |            |                                          |
| any other error                   | RETRYABLE  | released after the backoff               |
| … on the queue's last receive     | FAILED     | released at once, so SQS moves it to the DLQ |
"""

from __future__ import annotations

import enum
import random
from collections.abc import Callable
from dataclasses import dataclass

from mlpoc.aws import backoff
from mlpoc.errors import JobFailed, LeaseLost, access_denied


class Outcome(enum.Enum):
    """What the loop writes to the job's ledger record."""

    UNCHANGED = "unchanged"
    SUCCEEDED = "succeeded"  # the handler's commit did it already
    FAILED = "failed"
    GAVE_UP = "gave_up"  # FAILED, with "gave up after N attempts"
    RETRYABLE = "retryable"


class MessageAction(enum.Enum):
    """What the loop does with the SQS message."""

    DELETE = "delete"
    LEAVE = "leave"  # visible again after its timeout
    RELEASE = "release"  # visible again after ``release_after`` seconds


@dataclass(frozen=True)
class Ruling:
    outcome: Outcome
    message: MessageAction
    reason: str | None = None
    release_after: int | None = None
    access_denied: str | None = None  # the service's sentence, when IAM refused a call


def decide(
    *,
    committed: bool,
    error: BaseException | None,
    receive_count: int,
    max_receive_count: int | None,
    jitter: Callable[[], float] = random.random,
) -> Ruling:
    """The ruling on a job whose handler ran: ``committed`` is whether it marked the job
    SUCCEEDED, ``error`` what it raised (if anything), ``receive_count`` how many times SQS has
    delivered the message, ``max_receive_count`` the queue's redrive limit (None: no DLQ)."""
    if committed:  # SUCCEEDED, whatever the handler did afterwards
        return Ruling(Outcome.SUCCEEDED, MessageAction.DELETE)
    if error is None:
        error = RuntimeError("the handler returned without committing a result")
    if isinstance(error, LeaseLost):
        return Ruling(Outcome.UNCHANGED, MessageAction.LEAVE)
    if isinstance(error, JobFailed):
        return Ruling(Outcome.FAILED, MessageAction.DELETE, reason=str(error))
    reason = f"{type(error).__name__}: {error}"
    denied = access_denied(error)
    if max_receive_count is not None and receive_count >= max_receive_count:
        return Ruling(
            Outcome.GAVE_UP,
            MessageAction.RELEASE,
            reason=f"gave up after {receive_count} attempts; last error: {reason}. The message "
            "is in the dead-letter queue: fix the cause, then redrive it",
            release_after=0,  # visible at once, so SQS moves it to the DLQ on the next receive
            access_denied=denied,
        )
    return Ruling(
        Outcome.RETRYABLE,
        MessageAction.RELEASE,
        reason=reason,
        release_after=round(backoff.JOB.step(receive_count, jitter=jitter)),
        access_denied=denied,
    )
