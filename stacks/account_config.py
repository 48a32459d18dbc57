"""The knobs for a second account and for schedules, parsed and validated (see config.py).

* ``mlpoc:sources``: where the business account hands data over (the share stack's outputs);
* ``mlpoc:result_readers``: the accounts that may read the predictions table;
* ``mlpoc:schedules``: retrain a model on what is new, on a schedule;
* ``mlpoc:share``: set ``ml_account`` to synthesize the share stack (for the business account)
  instead of the ML stacks.

Each accepts JSON from cdk.json, or the same JSON as a string (``-c 'mlpoc:result_readers=["…"]'``).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from mlpoc.errors import ConfigError
from mlpoc.runtime.contract import MODEL_NAME_PATTERN, S3Uri
from mlpoc.runtime.schedules import PROMOTE_POLICIES, expression_refusal

ACCOUNT_PATTERN = re.compile(r"^\d{12}$")
BUCKET_PATTERN = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
# an object-key prefix: a folder (ends with /), no wildcard, not the whole bucket
PREFIX_PATTERN = re.compile(r"^[A-Za-z0-9!_.'()-][A-Za-z0-9!_.'()/-]{0,254}/$")
KEY_ARN_PATTERN = re.compile(
    r"^arn:aws[a-z-]*:kms:(?P<region>[a-z0-9-]+):(?P<account>\d{12}):key/"
    r"(mrk-[0-9a-f]{32}|[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})$"
)
MAX_SOURCES = 10
MAX_READERS = 20
MAX_SCHEDULES = 20
SOURCE_EXAMPLE = (
    '[{"bucket": "<ExchangeBucketName>", "prefix": "cleansed/", "key_arn": "<ExchangeKeyArn>", '
    '"account": "<business account id>"}] (the share stack\'s outputs)'
)
SCHEDULE_EXAMPLE = (
    '[{"model": "digits", "expression": "rate(1 day)", "promote": "auto"}], with an optional '
    '"source": "s3://<exchange bucket>/cleansed/digits/"'
)


@dataclass(frozen=True)
class Source:
    """A prefix of a bucket in another account that the workers read datasets from."""

    bucket: str
    prefix: str  # ends with "/"
    key_arn: str
    account: str

    @property
    def uri(self) -> S3Uri:
        return S3Uri(self.bucket, self.prefix)

    def holds(self, uri: S3Uri) -> bool:
        return uri.bucket == self.bucket and uri.key.startswith(self.prefix)


@dataclass(frozen=True)
class ScheduleSpec:
    model: str
    expression: str  # rate(...) or cron(...), as EventBridge Scheduler takes it
    promote: str  # auto | always | never: the train job's promotion rule
    source: S3Uri | None = None  # None: the model's upload folder, datasets/<model>/


@dataclass(frozen=True)
class Share:
    """The share stack's knobs (the business account's side)."""

    ml_account: str | None  # None: synthesize the ML stacks, not the share stack
    prefix: str
    results_prefix: str | None


NO_SHARE = Share(ml_account=None, prefix="cleansed/", results_prefix=None)


def _json(name: str, value: Any) -> Any:
    if isinstance(value, str) and value.strip()[:1] in ("[", "{"):
        try:
            return json.loads(value)
        except json.JSONDecodeError as error:
            raise ConfigError(f"{name} is not valid JSON ({error}); got {value!r}") from None
    return value


def _account(name: str, value: Any) -> str:
    if not isinstance(value, str) or not ACCOUNT_PATTERN.match(value):
        raise ConfigError(f"{name} must be a 12-digit AWS account id (a string); got {value!r}")
    return value


def _entries(name: str, value: Any, most: int, what: str) -> list[Any]:
    """``value`` (JSON, or its text) as a list of at most ``most`` entries, or the error."""
    value = _json(name, value)
    if not isinstance(value, list) or len(value) > most:
        raise ConfigError(f"{name} must be a list of at most {most} {what}; got {value!r}")
    return value


def parse_sources(name: str, value: Any) -> tuple[Source, ...]:
    sources = []
    entries = _entries(name, value, MAX_SOURCES, f"sources such as {SOURCE_EXAMPLE}")
    for index, entry in enumerate(entries):
        where = f"{name}[{index}]"
        if not isinstance(entry, dict) or set(entry) != {"bucket", "prefix", "key_arn", "account"}:
            raise ConfigError(
                f"{where} must have exactly bucket, prefix, key_arn and account, as in "
                f"{SOURCE_EXAMPLE}; got {entry!r}"
            )
        account = _account(f"{where}.account", entry["account"])
        bucket, prefix, key_arn = entry["bucket"], entry["prefix"], entry["key_arn"]
        if not isinstance(bucket, str) or not BUCKET_PATTERN.match(bucket):
            raise ConfigError(f"{where}.bucket must be an S3 bucket name; got {bucket!r}")
        if not isinstance(prefix, str) or not PREFIX_PATTERN.match(prefix):
            raise ConfigError(
                f"{where}.prefix must be a folder of that bucket ending in / (such as "
                f"'cleansed/'; not the whole bucket, no wildcards); got {prefix!r}"
            )
        match = KEY_ARN_PATTERN.match(key_arn) if isinstance(key_arn, str) else None
        if match is None or match["account"] != account:
            raise ConfigError(
                f"{where}.key_arn must be the ARN of the KMS key that encrypts the bucket, in "
                f"account {account} (the share stack's output ExchangeKeyArn); got {key_arn!r}"
            )
        sources.append(Source(bucket=bucket, prefix=prefix, key_arn=key_arn, account=account))
    uris = [str(s.uri) for s in sources]
    if len(set(uris)) != len(uris):
        raise ConfigError(f"{name} lists the same bucket and prefix twice: {uris}")
    return tuple(sources)


def parse_readers(name: str, value: Any) -> tuple[str, ...]:
    what = '12-digit account ids that may read the predictions table, such as ["111122223333"]'
    readers = tuple(
        _account(f"{name}[{i}]", v) for i, v in enumerate(_entries(name, value, MAX_READERS, what))
    )
    if len(set(readers)) != len(readers):
        raise ConfigError(f"{name} lists an account twice: {list(readers)}")
    return readers


def parse_schedules(name: str, value: Any, sources: tuple[Source, ...]) -> tuple[ScheduleSpec, ...]:
    entries = _entries(name, value, MAX_SCHEDULES, f"schedules such as {SCHEDULE_EXAMPLE}")
    schedules = []
    for index, entry in enumerate(entries):
        where = f"{name}[{index}]"
        if (
            not isinstance(entry, dict)
            or not {"model", "expression"} <= set(entry)
            or (set(entry) - {"model", "expression", "promote", "source"})
        ):
            raise ConfigError(
                f"{where} must have model and expression, and may have promote and source, as "
                f"in {SCHEDULE_EXAMPLE}; got {entry!r}"
            )
        model = entry["model"]
        if not isinstance(model, str) or not MODEL_NAME_PATTERN.match(model):
            raise ConfigError(
                f"{where}.model must be a model name (lowercase letters, digits, - and _); "
                f"got {model!r}"
            )
        refusal = expression_refusal(entry["expression"])
        if refusal is not None:
            raise ConfigError(f"{where}.expression {refusal}")
        promote = entry.get("promote", "auto")
        if promote not in PROMOTE_POLICIES:
            raise ConfigError(
                f"{where}.promote must be one of {', '.join(PROMOTE_POLICIES)} (the train job's "
                f"promotion rule); got {promote!r}"
            )
        source = None
        if "source" in entry:
            source = _source_prefix(f"{where}.source", entry["source"], sources)
        schedules.append(
            ScheduleSpec(
                model=model, expression=entry["expression"], promote=promote, source=source
            )
        )
    models = [s.model for s in schedules]
    if len(set(models)) != len(models):
        raise ConfigError(f"{name} has two schedules for one model: {models}")
    return tuple(schedules)


def _source_prefix(name: str, value: Any, sources: tuple[Source, ...]) -> S3Uri:
    try:
        uri = S3Uri.parse(value) if isinstance(value, str) else None
    except ValueError:
        uri = None
    if uri is None or not uri.key.endswith("/"):
        raise ConfigError(f"{name} must be an s3://bucket/prefix/ folder; got {value!r}")
    if not any(s.holds(uri) for s in sources):
        listed = ", ".join(str(s.uri) for s in sources) or "none are configured"
        raise ConfigError(
            f"{name} must lie inside one of mlpoc:sources (what the workers may read: "
            f"{listed}); got {value!r}"
        )
    return uri


def parse_share(name: str, value: Any) -> Share:
    value = _json(name, value)
    if not isinstance(value, dict) or not set(value) <= {"ml_account", "prefix", "results_prefix"}:
        raise ConfigError(
            f'{name} must be an object such as {{"ml_account": "", "prefix": "cleansed/", '
            f'"results_prefix": ""}}; got {value!r}'
        )
    ml_account = value.get("ml_account") or None
    if ml_account is not None:
        _account(f"{name}.ml_account", ml_account)
    prefix = value.get("prefix", "cleansed/")
    results = value.get("results_prefix") or None
    # the prefix is required (it is what the share hands over); results_prefix is optional
    for key, given in (("prefix", prefix), ("results_prefix", results)):
        if (given is not None or key == "prefix") and (
            not isinstance(given, str) or not PREFIX_PATTERN.match(given)
        ):
            raise ConfigError(
                f"{name}.{key} must be a folder ending in / (such as 'cleansed/'); got {given!r}"
            )
    if results is not None and (results.startswith(prefix) or prefix.startswith(results)):
        raise ConfigError(
            f"{name}.results_prefix must not overlap prefix (the ML side reads one and may "
            f"write the other); got {prefix!r} and {results!r}"
        )
    return Share(ml_account=ml_account, prefix=prefix, results_prefix=results)


def worker_role_name(project: str, role: str) -> str:
    """The fixed name of a worker's task role (``mlpoc-train-worker``): the share stack in the
    business account names these roles in its bucket and key policies."""
    return f"{project}-{role}-worker"
