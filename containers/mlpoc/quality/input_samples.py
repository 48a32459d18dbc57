"""Samples of what each model version was asked about, for the monitor job's drift check.

Two writers, one folder per model and version (``input-samples/<model>/<version>/``, a CSV each
with the version's id column and feature columns, so the monitor reads it like a predict CSV):

* the predict worker keeps up to ``MLPOC_SAMPLE_ROWS`` rows of each predict job (or shard),
  picked at random with the job id as the seed (a retried job writes the same sample again);
* the API's :class:`RequestSampler` keeps a share (``MLPOC_SAMPLE_RATE``) of realtime requests.
  The request only appends a reference to its typed columns to a bounded in-memory buffer (a
  random draw and a lock, no I/O, no copy); a background thread writes the buffer to S3 every
  ``MLPOC_SAMPLE_FLUSH_SECONDS``. Past ``MLPOC_SAMPLE_MAX_ROWS`` rows in one interval a request
  is not sampled (counted as ``dropped``): a burst never grows the API's memory.

The samples expire with the data bucket's lifecycle rule
(:data:`mlpoc.aws.bucket_layout.SAMPLE_DAYS`).
"""

from __future__ import annotations

import logging
import math
import random
import re
import secrets
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from mlpoc.aws import bucket_layout
from mlpoc.data.datasets import PredictionSet
from mlpoc.models.registry import ModelVersion
from mlpoc.schema import CATEGORY, Schema

log = logging.getLogger("mlpoc.quality.input_samples")


NAN_CELL = re.compile(r"(?<=,)nan(?=,|\n)")


def _quoted(values: Any) -> list[str]:
    """Text cells as CSV writes them (quoted when they hold a comma, a quote or a newline)."""
    return [
        '"' + str(v).replace('"', '""') + '"' if any(c in str(v) for c in ',"\n\r') else str(v)
        for v in values
    ]


def to_csv(schema: Schema, columns: Mapping[str, np.ndarray], ids: Sequence[str]) -> str:
    """Typed columns as a CSV a predict job (or the monitor) reads back: the schema's id column,
    then its features; a missing value is an empty cell. A row is one ``%`` format (the API's
    flush holds the GIL while it formats: no per-cell Python for numbers)."""
    texts = {c.name: _quoted(columns[c.name]) for c in schema.columns if c.type == CATEGORY}
    header = ",".join(_quoted([schema.id_column, *(c.name for c in schema.columns)]))
    # a missing number formats as "nan", removed after; unless a quoted text cell holds "nan"
    # too (rare): then the numbers are formatted cell by cell
    fast = not any('"' in cell and "nan" in cell for cells in texts.values() for cell in cells)
    numbers = {
        c.name: np.asarray(columns[c.name], np.float64).tolist()
        if fast
        else ["" if math.isnan(v) else f"{v:.7g}" for v in np.asarray(columns[c.name], np.float64)]
        for c in schema.columns
        if c.type != CATEGORY
    }
    fmt = ",".join(
        ["%s", *("%.7g" if fast and c.type != CATEGORY else "%s" for c in schema.columns)]
    )
    cells = [_quoted(ids), *(texts.get(c.name) or numbers[c.name] for c in schema.columns)]
    text = "\n".join([header, *(fmt % row for row in zip(*cells, strict=True))]) + "\n"
    return NAN_CELL.sub("", text) if fast else text


def stamp(now: float) -> str:
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now))


def pick(rows: int, limit: int, seed: str) -> np.ndarray:
    """Up to ``limit`` of ``rows`` row numbers, in order, the same for the same ``seed``."""
    if rows <= limit:
        return np.arange(rows)
    generator = np.random.default_rng(int.from_bytes(seed.encode()[-16:].rjust(16, b"\0"), "big"))
    return np.sort(generator.choice(rows, size=limit, replace=False))


def write(
    s3: Any,
    bucket: str,
    *,
    model: str,
    version: int,
    schema: Schema,
    columns: Mapping[str, np.ndarray],
    ids: Sequence[str],
    token: str,
    now: float,
) -> str:
    """One sample object; its key."""
    key = bucket_layout.sample_key(model, version, stamp(now), token)
    s3.put_object(Bucket=bucket, Key=key, Body=to_csv(schema, columns, ids).encode())
    return key


def keep_job_rows(
    s3: Any, bucket: str, version: ModelVersion, data: PredictionSet, *, limit: int, job_id: str
) -> str | None:
    """A predict job's sample of ``data`` (None when ``limit`` is 0 or the job had no rows)."""
    if limit <= 0 or not data.ids:
        return None
    chosen = pick(len(data.ids), limit, job_id)
    return write(
        s3,
        bucket,
        model=version.model,
        version=version.version,
        schema=version.schema,
        columns={name: values[chosen] for name, values in data.columns.items()},
        ids=[data.ids[i] for i in chosen],
        token=job_id,
        now=time.time(),
    )


@dataclass
class _Held:
    schema: Schema
    parts: list[Mapping[str, np.ndarray]]
    rows: int = 0


class RequestSampler:
    """A bounded sample of realtime requests' rows, written to S3 off the request path."""

    def __init__(
        self,
        *,
        s3: Any,
        bucket: str,
        rate: float,
        max_rows: int,
        flush_seconds: float,
        draw: Callable[[], float] = random.random,
    ) -> None:
        self._s3 = s3
        self._bucket = bucket
        self.rate = rate
        self.max_rows = max_rows
        self.flush_seconds = flush_seconds
        self._draw = draw
        self._lock = threading.Lock()
        self._held: dict[tuple[str, int], _Held] = {}
        self._rows = 0
        self.dropped = 0
        self.written = 0
        self.failed = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def offer(
        self, model: str, version: int, schema: Schema, columns: Mapping[str, np.ndarray]
    ) -> None:
        """Called by each realtime request: keep its rows or not (no I/O)."""
        if self.rate <= 0 or self._draw() >= self.rate:
            return
        rows = len(next(iter(columns.values()))) if columns else 0
        with self._lock:
            if self._rows + rows > self.max_rows:
                self.dropped += rows
                return
            held = self._held.setdefault((model, version), _Held(schema, []))
            held.parts.append(columns)
            held.rows += rows
            self._rows += rows

    def flush(self) -> list[str]:
        """Write what is held (one object per model and version); the keys written. A failed
        write is logged and its rows are lost: the sample is a sample."""
        with self._lock:
            held, self._held, self._rows = self._held, {}, 0
        keys = []
        now = time.time()
        for (model, version), found in held.items():
            names = [c.name for c in found.schema.columns]
            columns = {n: np.concatenate([part[n] for part in found.parts]) for n in names}
            token = secrets.token_hex(4)
            try:
                keys.append(
                    write(
                        self._s3,
                        self._bucket,
                        model=model,
                        version=version,
                        schema=found.schema,
                        columns=columns,
                        ids=[f"r{token}-{i}" for i in range(found.rows)],
                        token=token,
                        now=now,
                    )
                )
                self.written += found.rows
            except Exception:  # the API keeps serving; the next interval samples again
                self.failed += found.rows
                log.exception("sample.write_failed", extra={"model": model, "version": version})
        return keys

    def status(self) -> dict[str, Any]:
        return {
            "rate": self.rate,
            "held_rows": self._rows,
            "written_rows": self.written,
            "dropped_rows": self.dropped,
            "failed_rows": self.failed,
        }

    def start(self) -> None:
        if self.rate > 0 and self._thread is None:
            self._thread = threading.Thread(target=self._run, name="sampler", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        """Stop the thread and write what is held (the API's shutdown)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self.flush()

    def _run(self) -> None:
        while not self._stop.wait(self.flush_seconds):
            self.flush()
