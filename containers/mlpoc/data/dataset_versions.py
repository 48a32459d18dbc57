"""The dataset version a train job over a folder builds (a scheduled run, a retrain from the
annotation page, or anyone's ``"dataset": "s3://…/datasets/digits/"``).

A version is: the promoted version's dataset (the *root* of its lineage), every file its
lineage added since, the new CSVs in the folder since then, and every human correction. It is
written to ``dataset-versions/<model>/<job id>.csv`` with a manifest beside it
(``….manifest.json``) that the next build reads to know what "new" means:

* a file is new when S3 says it was written at or after the lineage's *watermark* (the newest
  write time seen by the build that made the promoted version; for a version trained on a
  plain file, the time it was registered) and the lineage does not hold it yet;
* a correction is new when it was made after the newest one the lineage included.

Rebuilding from the root each time keeps every row once: a correction made twice is one row
(the annotations table holds one label per item), a file is added once.

Nothing new (no new file, no new correction, or exactly the inputs of the newest version,
which was not promoted) is a result, not an error: the job ends SUCCEEDED with "nothing new".
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from botocore.exceptions import ClientError

from mlpoc.aws import bucket_layout, dynamo
from mlpoc.aws.clients import Clients
from mlpoc.data import datasets
from mlpoc.errors import DatasetError, RegistryError
from mlpoc.models.registry import ModelVersion, Registry
from mlpoc.runtime.contract import Job, S3Uri, dataset_refusal
from mlpoc.runtime.environment import MAX_DATASET_BYTES, Settings
from mlpoc.schema import Layout

MANIFEST_SUFFIX = ".manifest.json"
# where a job came from, kept on the version it trains (`mlpoc models` shows it)
ORIGINS = ("schedule", "retrain")
SHOWN = 20  # files listed by name in a result
INVALID = "not a valid CSV: "  # a skipped file's reason when it could not be read as one


@dataclass(frozen=True)
class Lineage:
    root: str | None  # the dataset the lineage started from (None: the folder's files only)
    files: tuple[str, ...]  # files added since, in the order they were added
    watermark: float  # files written before this are not new
    corrections_at: float  # corrections made at or before this are included already
    ignored: tuple[str, ...] = ()  # files seen and left out (no label, other columns)

    @property
    def held(self) -> set[str]:
        """Every file the lineage has seen (used or left out)."""
        return {*self.files, *self.ignored, *([self.root] if self.root else [])}

    @classmethod
    def from_json(cls, text: str) -> Lineage:
        raw = json.loads(text)
        return cls(
            root=raw["root"],
            files=tuple(raw["files"]),
            watermark=float(raw["watermark"]),
            corrections_at=float(raw["corrections_at"]),
            ignored=tuple(raw.get("ignored", ())),
        )


@dataclass(frozen=True)
class Built:
    uri: S3Uri
    text: str
    lineage: Lineage
    base_version: int | None
    base_plugin: str | None  # how the promoted version was trained (the default plugin)
    base_params: dict[str, Any]  # and with which of its plugin's parameters
    base_threshold: float | None  # its review threshold, when it has its own
    base_promotion: dict[str, Any]  # the metric it is promoted on, and the least improvement
    layout: Layout  # the table's label, id and ignored columns and task (the job's, else its)
    added: list[str]
    corrections: int
    new_corrections: int
    skipped: dict[str, str] = field(default_factory=dict)
    base_feature_set: str | None = None  # the feature set the promoted version reads

    @property
    def inputs(self) -> str:
        """A digest of what the version is made of: the same inputs, the same digest."""
        return _digest(self.lineage)

    def summary(self) -> dict[str, Any]:
        return {
            "folder_files_added": len(self.added),
            "added": self.added[:SHOWN],
            "corrections": self.corrections,
            "new_corrections": self.new_corrections,
            "base_version": self.base_version,
            **({"skipped": dict(list(self.skipped.items())[:SHOWN])} if self.skipped else {}),
        }


@dataclass(frozen=True)
class NothingNew:
    base_version: int | None
    reason: str


def _digest(lineage: Lineage) -> str:
    basis = {"held": sorted(lineage.held), "corrections": lineage.corrections_at}
    return hashlib.sha256(json.dumps(basis, sort_keys=True).encode()).hexdigest()[:16]


def origin_of(job: Job) -> str | None:
    origin = job.params.get("origin")
    return origin if origin in ORIGINS else None


def manifest_key(dataset_key: str) -> str:
    return dataset_key + MANIFEST_SUFFIX


def lineage_of(s3: Any, base: ModelVersion | None) -> Lineage:
    """What the promoted version was made of (its manifest), or a lineage rooted at its
    dataset when it was trained on a plain file."""
    if base is None:
        return Lineage(root=None, files=(), watermark=0.0, corrections_at=0.0)
    uri = S3Uri.parse(base.dataset)
    if bucket_layout.DATASET_VERSIONS.holds_key(uri.key):
        try:
            body = s3.get_object(Bucket=uri.bucket, Key=manifest_key(uri.key))["Body"].read()
            return Lineage.from_json(body.decode())
        except ClientError as error:
            if error.response["Error"]["Code"] not in datasets.NOT_FOUND:
                raise
        except (ValueError, KeyError, TypeError) as error:
            raise DatasetError(
                f"the manifest of {uri} is damaged ({error}): train the model on a dataset "
                "once (a job over one .csv), then scheduled builds start from that version"
            ) from None
    # S3 lists write times to the second: a file written in the second the version was
    # registered counts as new (the lineage's own dataset is held, so it never does)
    watermark = float(math.floor(base.created_at))
    return Lineage(root=base.dataset, files=(), watermark=watermark, corrections_at=0.0)


def new_files(s3: Any, folder: S3Uri, lineage: Lineage) -> tuple[list[str], float]:
    """The CSVs under ``folder`` written since the lineage's watermark that it does not hold
    (oldest first), and the newest write time seen."""
    held = lineage.held
    found: list[tuple[float, str]] = []
    newest = lineage.watermark
    for item in datasets.listed_csvs(s3, folder):
        written = item["LastModified"].timestamp()
        newest = max(newest, written)
        uri = str(S3Uri(folder.bucket, item["Key"]))
        if written >= lineage.watermark and uri not in held:
            found.append((written, uri))
    return [uri for _, uri in sorted(found)], newest


def _remapped(header: list[str], rows: list[list[str]], columns: list[str]) -> Iterator[list[str]]:
    """The rows in ``columns``' order; a column the file lacks is empty (a feature set's)."""
    at = [header.index(c) if c in header else None for c in columns]
    for row in rows:
        yield ["" if i is None or i >= len(row) else row[i] for i in at]


def build(clients: Clients, settings: Settings, job: Job, registry: Registry) -> Built | NothingNew:
    """The dataset version for a train job over ``job.dataset`` (a folder), written to the data
    bucket; or why there is nothing new to train on."""
    folder = job.dataset
    try:
        base: ModelVersion | None = registry.resolve(job.model, "current")
    except RegistryError:
        base = None
    base_version = base.version if base else None
    shape = Layout.from_params(job.params, base.schema if base else None)
    lineage = lineage_of(clients.s3, base)
    for held in ([lineage.root] if lineage.root else []) + list(lineage.files):
        # a manifest is read from the bucket: it may name only what a train job may read
        refusal = dataset_refusal(
            S3Uri.parse(held), "train", settings.data_bucket, settings.sources
        )
        if refusal is not None:
            raise DatasetError(f"the lineage of version {base_version} names {held}: {refusal}")
    added, newest = new_files(clients.s3, folder, lineage)
    corrections = [c for c in _corrections(clients, settings, job.model) if c.get("features")]
    corrections_at = max((float(c["annotated_at"]) for c in corrections), default=0.0)
    fresh = [c for c in corrections if float(c["annotated_at"]) > lineage.corrections_at]
    if not added and not fresh:
        return NothingNew(
            base_version,
            f"nothing new in {folder} since "
            + (f"version {base_version}" if base else "the start")
            + (" and no new corrections" if base else " (no CSV files there)"),
        )
    grown = replace(
        lineage,
        files=(*lineage.files, *added),
        watermark=newest,
        corrections_at=max(corrections_at, lineage.corrections_at),
    )
    same = _already_trained(registry, job.model, _digest(grown), base_version)
    if same is not None:
        return NothingNew(
            base_version,
            f"version {same} was trained on exactly these inputs and was not promoted: nothing "
            "new since",
        )
    text, skipped = _assemble(clients.s3, grown, base, shape, corrections, where=str(folder))
    used = [a for a in added if a not in skipped]
    if not used and not fresh:
        reasons = "; ".join(f"{f}: {why}" for f, why in list(skipped.items())[:3])
        return NothingNew(base_version, f"nothing new to train on in {folder} ({reasons})")
    grown = replace(
        grown,
        files=tuple(f for f in grown.files if f not in skipped),
        ignored=(
            *grown.ignored,
            *(f for f, why in skipped.items() if f in grown.files and not why.startswith(INVALID)),
        ),
    )
    key = bucket_layout.dataset_version_key(job.model, job.job_id)
    uri = S3Uri(settings.data_bucket, key)
    clients.s3.put_object(Bucket=uri.bucket, Key=key, Body=text.encode())
    clients.s3.put_object(
        Bucket=uri.bucket,
        Key=manifest_key(key),
        Body=json.dumps(asdict(grown), indent=1).encode(),
        ContentType="application/json",
    )
    return Built(
        uri=uri,
        text=text,
        lineage=grown,
        base_version=base_version,
        base_plugin=base.plugin if base else None,
        base_params=dict(base.extra.get("plugin_params", {})) if base else {},
        base_threshold=base.extra.get("review_threshold") if base else None,
        base_promotion=dict(base.extra.get("promotion") or {}) if base else {},
        base_feature_set=_feature_set(base).get("name"),
        layout=shape,
        added=used,
        corrections=len(corrections),
        new_corrections=len(fresh),
        skipped=skipped,
    )


def _already_trained(
    registry: Registry, model: str, inputs: str, promoted: int | None
) -> int | None:
    """The newest version when it was built from exactly ``inputs`` (and is not the promoted
    one): a run after a version that was not promoted must not train on the same data again."""
    pointer = registry.pointer(model)
    if pointer is None or not pointer.next_version or pointer.next_version == promoted:
        return None
    try:
        newest = registry.get(model, pointer.next_version)
    except RegistryError:  # allocated by a job that has not committed (or this job's retry)
        return None
    return newest.version if newest.extra.get("inputs") == inputs else None


def _feature_set(base: ModelVersion | None) -> dict[str, Any]:
    return dict(base.extra.get("feature_set") or {}) if base is not None else {}


def _assemble(
    s3: Any,
    lineage: Lineage,
    base: ModelVersion | None,
    shape: Layout,
    corrections: list[dict[str, Any]],
    *,
    where: str,
) -> tuple[str, dict[str, str]]:
    """The CSV text (the promoted version's features in its order, the label, its id column,
    and the key of its feature set) and the files left out with the reason.

    A version trained with a feature set took some of its features from it: a file may lack
    those columns (the train job joins them by key), and a correction, which holds every
    feature it was served with, has no key."""
    owned = _feature_set(base)
    entity = [owned["key"]] if owned and owned["key"] not in (shape.label, shape.id) else []
    joined = {str(c["name"]) for c in owned.get("columns", ())}
    keys = [shape.label, *([shape.id] if shape.id else []), *entity]
    columns: list[str] | None = [*base.features, *keys] if base else None
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    skipped: dict[str, str] = {}
    # with an id column, a corrected row replaces the row of that id in the files
    corrected = {str(c["item_id"]) for c in corrections} if shape.id else set()
    for uri in ([lineage.root] if lineage.root else []) + list(lineage.files):
        try:
            header, rows = datasets.table(datasets.fetch(s3, S3Uri.parse(uri)), uri)
        except DatasetError as error:
            if uri == lineage.root:
                raise
            # not kept as seen: a corrected upload of the same file is new again
            skipped[uri] = f"{INVALID}{error}"
            continue
        if columns is None and shape.label in header:  # no promoted version: the first file's
            columns = [h for h in header if h not in shape.skipped()] + keys
        missing = [c for c in columns or [shape.label] if c not in header and c not in joined]
        if missing:
            if uri == lineage.root:
                raise DatasetError(f"the promoted version's dataset {uri} lacks {missing[:10]}")
            skipped[uri] = (
                "no label column (a set to predict, not to train on)"
                if shape.label in missing
                else f"lacks column(s) {missing[:10]} of the model"
            )
            continue
        assert columns is not None  # noqa: S101 - set above from this file's header
        if out.tell() == 0:
            writer.writerow(columns)
        remapped = _remapped(header, rows, columns)
        id_at = columns.index(shape.id) if shape.id else -1
        writer.writerows(r for r in remapped if not corrected or r[id_at].strip() not in corrected)
        if out.tell() > MAX_DATASET_BYTES:
            raise DatasetError(
                f"the dataset version built from {where} passed {MAX_DATASET_BYTES} bytes: "
                "train on a smaller folder, or start a new lineage with a job over one .csv"
            )
    if columns is None or out.tell() == 0:
        raise DatasetError(f"no CSV under {where} has the model's columns and a label: nothing "
                           "to train on")  # fmt: skip
    features = columns[: -len(keys)]
    for correction in corrections:
        values = json.loads(correction["features"])
        if len(values) != len(features):
            skipped[f"correction {correction['item_id']}"] = (
                f"{len(values)} features, the model has {len(features)}"
            )
            continue
        # a missing value (null) is an empty cell; the row's id is the predicted item's
        ids = [correction["item_id"]] if shape.id else []
        writer.writerow(
            [
                *("" if v is None else v for v in values),
                correction["label"],
                *ids,
                *("" for _ in entity),
            ]
        )
    return out.getvalue(), skipped


def _corrections(clients: Clients, settings: Settings, model: str) -> list[dict[str, Any]]:
    return list(dynamo.partition(clients.dynamodb, settings.annotations_table, "model", model))
