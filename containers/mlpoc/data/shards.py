"""Sharded predict jobs: a large CSV, or a prefix of CSVs, split into shard jobs that fan out on
the predict queue, so that as many predict tasks as the service may run share the work.

* **The plan.** Each CSV's data (what follows its header line) is cut into byte ranges of about
  ``shard_bytes``. A shard holds every line that *begins* inside its range, so the ranges need
  not fall on line ends and no line is read twice or lost: the reader starts one byte early,
  skips to the first line start, and reads past ``end`` to finish the last line it began. A
  prefix is planned file by file (a small file is one shard). The plan reads only each object's
  size and header; it is the same for the same objects, so a re-delivered parent plans the same
  shard ids again.
* **The ledger.** The parent keeps one record: ``shards_total``, the set ``shards_done`` of
  finished shard indexes and the sum ``shards_rows``. A shard's commit adds its index and rows
  to the parent in the same transaction that marks the shard SUCCEEDED, so each shard counts
  once whatever SQS redelivers; the shard that completes the set marks the parent SUCCEEDED (a
  conditional write, so only once). A shard that fails for good fails the parent, naming it.
* **Rows.** Predictions are keyed by (model, item id): a shard run twice (a worker killed
  mid-shard) writes the same items again, never a second copy.

Limits: a quoted CSV value with a line break inside would be cut at the break, so sharded
datasets must have one row per line (what pandas and the CLI write). Ids are checked for
duplicates within a shard, not across shards (a duplicate id keeps one of its rows).
"""

from __future__ import annotations

import hashlib
import itertools
import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from mlpoc.data import datasets
from mlpoc.errors import DatasetError, JobFailed
from mlpoc.runtime.contract import JOB_ID_PATTERN, Job, S3Uri, Shard
from mlpoc.runtime.environment import MIN_SHARD_BYTES

MAX_SHARDS = 1_000
HEADER_PROBE_BYTES = 64 * 1024
MAX_HEADER_BYTES = 1024 * 1024
READ_CHUNK_BYTES = 256 * 1024


@dataclass(frozen=True)
class Piece:
    """One shard's part of one object: the lines that begin in ``[start, end)``."""

    key: str
    header: int
    start: int
    end: int


def shard_job_id(parent: str, index: int) -> str:
    """The id of a parent's shard ``index``: the same on every plan (idempotent enqueue)."""
    suffix = f".shard-{index:04d}"
    if len(parent) + len(suffix) > 128:  # noqa: PLR2004 - the contract's job id length
        parent = f"{parent[:100]}-{hashlib.sha256(parent.encode()).hexdigest()[:12]}"
    job_id = parent + suffix
    assert JOB_ID_PATTERN.match(job_id)  # noqa: S101 - built from a valid id
    return job_id


def shard_bytes_for(job: Job, default: int) -> int:
    value = job.params.get("shard_bytes", default)
    if isinstance(value, bool) or not isinstance(value, int) or value < MIN_SHARD_BYTES:
        raise JobFailed(
            f"params.shard_bytes must be a whole number >= {MIN_SHARD_BYTES}; got {value!r}"
        )
    return value


def _objects(s3: Any, dataset: S3Uri) -> list[tuple[str, int]]:
    """(key, size) of the dataset: the one object, or every .csv under the prefix."""
    if not dataset.key.endswith("/"):
        return [(dataset.key, datasets.size_of(s3, dataset))]
    found = [
        (entry["Key"], int(entry["Size"]))
        for entry in datasets.listed_csvs(s3, dataset)
        if entry["Size"] > 0
    ]
    if not found:
        raise DatasetError(
            f"no .csv object under {dataset}: upload the files first, or name one .csv object"
        )
    return sorted(found)


def header_length(s3: Any, bucket: str, key: str) -> int:
    """Bytes of the header line, its newline included (ranged reads of the object's start)."""
    read = 0
    while read < MAX_HEADER_BYTES:
        last = read + HEADER_PROBE_BYTES - 1
        data = _get(s3, bucket, key, f"bytes={read}-{last}").read()
        newline = data.find(b"\n")
        if newline >= 0:
            return int(read + newline + 1)
        if len(data) < HEADER_PROBE_BYTES:  # the object ends within its header
            raise DatasetError(f"s3://{bucket}/{key} has a header but no rows")
        read += len(data)
    raise DatasetError(f"s3://{bucket}/{key}: no line break in its first {MAX_HEADER_BYTES} bytes")


def plan(s3: Any, dataset: S3Uri, shard_bytes: int) -> list[Piece]:
    """The pieces of ``dataset``: about ``shard_bytes`` of data each, at most MAX_SHARDS."""
    objects = _objects(s3, dataset)
    total = sum(size for _, size in objects)
    size_each = max(shard_bytes, math.ceil(total / MAX_SHARDS))
    pieces: list[Piece] = []
    for key, size in objects:
        header = header_length(s3, dataset.bucket, key)
        data = size - header
        count = max(1, math.ceil(data / size_each))
        bounds = [header + (data * i) // count for i in range(count + 1)]
        pieces.extend(Piece(key, header, a, b) for a, b in itertools.pairwise(bounds))
    if len(pieces) > MAX_SHARDS:  # a prefix of more small files than shards
        raise DatasetError(
            f"{dataset} holds {len(objects)} CSV files, more than the {MAX_SHARDS} shards one "
            "job may have: split it across several predict jobs (one per sub-prefix)"
        )
    return pieces


def shard_jobs(parent: Job, pieces: list[Piece], version: int) -> list[Job]:
    """The shard jobs of ``parent``, all pinned to the version the parent resolved."""
    return [
        Job(
            job_id=shard_job_id(parent.job_id, index),
            type="predict",
            model=parent.model,
            dataset=S3Uri(parent.dataset.bucket, piece.key),
            version=str(version),
            params={k: v for k, v in parent.params.items() if k != "shard_bytes"},
            shard=Shard(
                parent=parent.job_id,
                index=index,
                total=len(pieces),
                header=piece.header,
                start=piece.start,
                end=piece.end,
            ),
        )
        for index, piece in enumerate(pieces)
    ]


def _get(s3: Any, bucket: str, key: str, byte_range: str) -> Any:
    try:
        return s3.get_object(Bucket=bucket, Key=key, Range=byte_range)["Body"]
    except ClientError as error:
        code = error.response["Error"]["Code"]
        if code in datasets.NOT_FOUND:
            raise DatasetError(f"dataset s3://{bucket}/{key} does not exist any more") from None
        if code == "InvalidRange":
            raise DatasetError(
                f"dataset s3://{bucket}/{key} is shorter than when the job was split: it was "
                "replaced while the job ran; send the job again"
            ) from None
        raise


def _lines(chunks: Iterator[bytes], position: int, end: int) -> Iterator[bytes]:
    """The lines of a stream (whose first byte is at ``position``) that begin in
    ``[position + 1, end)`` or at the first line start after ``position``."""
    buffer = b""
    started = False
    for chunk in chunks:
        buffer += chunk
        cursor = 0
        if not started:
            newline = buffer.find(b"\n")
            if newline < 0:
                position += len(buffer)
                buffer = b""
                continue
            cursor, started = newline + 1, True
        while position + cursor < end:
            newline = buffer.find(b"\n", cursor)
            if newline < 0:
                break
            yield buffer[cursor : newline + 1]
            cursor = newline + 1
        position += cursor
        buffer = buffer[cursor:]
        if position >= end:
            return
    if started and buffer and position < end:  # the last line has no newline
        yield buffer


def read_shard(s3: Any, uri: S3Uri, shard: Shard) -> tuple[str, int]:
    """The shard's CSV text (the header, then its lines) and how many lines it holds."""
    header = _get(s3, uri.bucket, uri.key, f"bytes=0-{shard.header - 1}").read()
    if shard.start >= shard.end:
        return header.decode("utf-8-sig"), 0
    # one byte early: the byte before the range tells whether a line begins at its start
    body = _get(s3, uri.bucket, uri.key, f"bytes={shard.start - 1}-")
    try:
        lines = list(_lines(body.iter_chunks(READ_CHUNK_BYTES), shard.start - 1, shard.end))
    finally:
        body.close()
    try:
        text = (header + b"".join(lines)).decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise DatasetError(f"dataset {uri} ({shard}) is not UTF-8 text ({error})") from None
    return text, sum(1 for line in lines if line.strip())
