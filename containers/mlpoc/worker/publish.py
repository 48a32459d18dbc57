"""The features job: publish a file or a folder as a new version of a feature set
(:mod:`mlpoc.data.feature_sets`). It runs on the train workers, the feature store's writers.

The job's ``model`` is the feature set's name and ``dataset`` a CSV or a folder of CSVs with
the same columns. ``params`` (all optional): ``key``, the entity key column (required for a
set's first version; later versions inherit the promoted one's); ``ignore_columns``;
``promote``: ``auto`` (default: only when the set has no promoted version), ``always`` or
``never``; ``keep_days`` (7): how long a superseded version's online items live once marked.

A retried job keeps its version number and rewrites the same snapshot and items.
"""

from __future__ import annotations

import hashlib
import logging
import time
from typing import Any

from mlpoc.aws.dynamo import BatchWriter
from mlpoc.data import datasets, feature_expiry, feature_sets, feature_snapshots
from mlpoc.errors import JobFailed
from mlpoc.models.registry import Registry
from mlpoc.runtime.contract import S3Uri
from mlpoc.runtime.environment import MAX_DATASET_BYTES
from mlpoc.schema import Column
from mlpoc.worker.context import JobContext

log = logging.getLogger("mlpoc.worker")
LEASE_CHECK_ROWS = 5_000


def _texts(ctx: JobContext) -> list[tuple[str, str]]:
    job, s3 = ctx.job, ctx.clients.s3
    if not job.over_prefix:
        return [(str(job.dataset), datasets.fetch(s3, job.dataset))]
    listed = datasets.listed_csvs(s3, job.dataset)
    if not listed:
        raise JobFailed(f"no .csv under {job.dataset} to publish")
    total = sum(int(o["Size"]) for o in listed)
    if total > MAX_DATASET_BYTES:
        raise JobFailed(
            f"the CSVs under {job.dataset} hold {total} bytes, over the "
            f"{MAX_DATASET_BYTES} one features job reads: publish a smaller folder"
        )
    uris = [S3Uri(job.dataset.bucket, o["Key"]) for o in listed]
    return [(str(u), datasets.fetch(s3, u)) for u in uris]


def job_options(params: dict[str, Any], inherited: str | None) -> tuple[str, list[str], str, float]:
    key = params.get("key", inherited)
    if key is None:
        raise JobFailed(
            "params.key must name the entity key column (a feature set's first version; later "
            "ones inherit it)"
        )
    if not isinstance(key, str) or not key.strip():
        raise JobFailed(f"params.key must be a column name; got {key!r}")
    ignore = params.get("ignore_columns", [])
    if not isinstance(ignore, list) or not all(isinstance(c, str) and c for c in ignore):
        raise JobFailed(f"params.ignore_columns must be a list of column names; got {ignore!r}")
    promote = params.get("promote", "auto")
    if promote not in feature_sets.PROMOTE:
        raise JobFailed(
            f"params.promote must be one of {list(feature_sets.PROMOTE)}; got {promote!r}"
        )
    return key.strip(), ignore, promote, feature_expiry.keep_days(params)


def handle_features(ctx: JobContext) -> None:
    job, settings, clients = ctx.job, ctx.settings, ctx.clients
    name = job.model  # a valid name: the contract checked it
    sets = feature_sets.FeatureSets(clients.dynamodb, settings.models_table)
    pointer = sets.pointer(name)
    inherited = sets.get(name, pointer.promoted).key if pointer and pointer.promoted else None
    key, ignore, promote_mode, days = job_options(job.params, inherited)
    table = feature_snapshots.parse_table(_texts(ctx), key, ignore)
    ctx.check_lease()

    number = ctx.record.get("feature_version")  # kept across retries, like a model version's
    if number is None:
        number = sets.allocate(name)
        ctx.note(feature_version=number)
    number = int(number)
    snapshot = table.snapshot()
    uri = feature_sets.snapshot_uri(settings.data_bucket, name, number)
    clients.s3.put_object(Bucket=uri.bucket, Key=uri.key, Body=snapshot.encode())
    writer = BatchWriter(clients.dynamodb)
    part = feature_sets.partition(name, number)
    for row, entity in enumerate(table.keys):
        if row % LEASE_CHECK_ROWS == 0:
            ctx.check_lease()
        writer.put(settings.features_table, {"set": part, "key": entity, "v": table.values(row)})
    writer.flush()
    now = time.time()
    version = feature_sets.FeatureVersion(
        name=name,
        version=number,
        key=key,
        columns=tuple(Column(c.name, c.type) for c in table.columns),
        rows=len(table.keys),
        snapshot=str(uri),
        sha256=hashlib.sha256(snapshot.encode()).hexdigest(),
        job_id=job.job_id,
        dataset=str(job.dataset),
        created_at=now,
    )
    promote = promote_mode == "always" or (
        promote_mode == "auto" and (pointer is None or pointer.promoted is None)
    )
    # what stays online: this version, the promoted one (and, once this one is promoted, the one
    # a rollback returns to), and what the models read
    keep = {
        number,
        *feature_expiry.needed(sets, Registry(clients.dynamodb, settings.models_table), name),
    }
    expired = feature_expiry.expire(
        clients.dynamodb,
        settings.features_table,
        sets,
        name,
        keep,
        at=now + days * 86_400,
        writer=writer,
    )
    extra: list[dict[str, Any]] = [{"Put": sets.put_request(version)}]
    if promote:
        extra.append({"Update": sets.promote_request(name, number, expected=pointer)})
    result = {
        "feature_set": name,
        "feature_version": number,
        "rows": version.rows,
        "columns": len(version.columns),
        "promoted": promote,
        "snapshot": version.snapshot,
        "batch_write_calls": writer.calls,
        **({"expiring": expired} if expired else {}),
    }
    ctx.commit(result, extra=extra)
    log.info("feature_sets.published", extra={k: v for k, v in result.items() if k != "snapshot"})
