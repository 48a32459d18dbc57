"""The one backoff policy: exponential, capped, with "equal jitter".

Every wait after a failure uses it: the worker's next poll after a failed receive or batch, the
delay before a failed job is visible again, and a throttled ``BatchWriteItem``'s retries.
Jitter spreads the retries of many workers that failed together (AWS Architecture Blog,
"Exponential Backoff And Jitter"); "equal jitter" keeps at least half of the step, so a retry is
never immediate.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Backoff:
    base: float  # the first step, in seconds
    cap: float  # no step is longer than this
    max_exponent: int = 16  # 2**16 steps: beyond any cap used here, and no overflow

    def step(self, attempt: int, *, jitter: Callable[[], float] = random.random) -> float:
        """The wait before retry number ``attempt`` (1 for the first retry): half of
        ``min(cap, base * 2**(attempt-1))`` plus a random share of the other half."""
        ceiling = min(self.cap, self.base * 2.0 ** min(max(attempt - 1, 0), self.max_exponent))
        return ceiling / 2 + ceiling / 2 * jitter()


# the worker: the next poll after a receive or a whole batch failed (botocore retried already)
POLL = Backoff(base=2.0, cap=30.0)
# a job that failed transiently: seconds until its message is visible again (SQS visibility)
JOB = Backoff(base=2.0, cap=300.0)
# a throttled BatchWriteItem's unprocessed items
BATCH_WRITE = Backoff(base=0.05, cap=5.0)
