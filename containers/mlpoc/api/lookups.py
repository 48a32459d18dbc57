"""Realtime lookups by key, coalesced: one BatchGetItem in flight at a time, and the requests
that arrive meanwhile share the next one.

A request by key awaits :meth:`Lookups.get`. With nothing in flight its call starts at once (no
timer, so no latency is added when the API is quiet); while a call is in flight, the requests
that arrive wait for it to end and then go together in one call of up to 100 keys (DynamoDB's
limit), of any models and feature set versions. Under load, 8 concurrent requests cost about two
calls instead of eight: botocore's per-call work, which runs under the interpreter lock, is what
a lookup costs the API (docs/performance.md#features-by-key).

Only the event loop touches the queue (the route is async); the call itself runs in the thread
pool. An error of a call is every waiting request's error.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from fastapi.concurrency import run_in_threadpool

from mlpoc.data import feature_binding
from mlpoc.data.feature_binding import Binding

Pair = tuple[str, str]  # (partition, key)


@dataclass
class _Waiting:
    pairs: list[Pair]
    done: asyncio.Future[dict[Pair, list[Any]]]


@dataclass
class Lookups:
    dynamodb: Any
    table: str
    limit: int = feature_binding.MAX_KEYS
    fetch: Callable[..., dict[Pair, list[Any]]] = feature_binding.fetch
    calls: int = 0  # BatchGetItem calls made (a count the tests assert)
    _queue: list[_Waiting] = field(default_factory=list)
    _draining: bool = False

    async def get(self, bound: Binding, keys: list[str]) -> dict[str, list[Any]]:
        """The values of ``keys`` (at most ``limit``) in the bound version, in the model's
        column order; unknown keys are absent."""
        pairs = list(dict.fromkeys((bound.partition, k) for k in keys))
        if len(pairs) > self.limit:
            raise ValueError(f"at most {self.limit} keys a lookup; got {len(pairs)}")
        waiting = _Waiting(pairs, asyncio.get_running_loop().create_future())
        self._queue.append(waiting)
        if not self._draining:
            self._draining = True
            asyncio.get_running_loop().create_task(self._drain())
        found = await waiting.done
        return {k: bound.take(found[p, k]) for p, k in pairs if (p, k) in found}

    async def _drain(self) -> None:
        try:
            while self._queue:
                batch, pairs = self._next()
                try:
                    self.calls += 1
                    found = await run_in_threadpool(self.fetch, self.dynamodb, self.table, pairs)
                except Exception as error:
                    for waiting in batch:
                        if not waiting.done.done():  # its request may be gone (cancelled)
                            waiting.done.set_exception(error)
                    continue
                for waiting in batch:
                    if not waiting.done.done():
                        waiting.done.set_result(found)
        finally:
            self._draining = False

    def _next(self) -> tuple[list[_Waiting], list[Pair]]:
        """The requests of the next call: in arrival order, as many as fit in ``limit`` keys."""
        batch: list[_Waiting] = []
        pairs: dict[Pair, None] = {}
        while self._queue:
            more = [p for p in self._queue[0].pairs if p not in pairs]
            if batch and len(pairs) + len(more) > self.limit:
                break
            batch.append(self._queue.pop(0))
            pairs.update(dict.fromkeys(more))
        return batch, list(pairs)
