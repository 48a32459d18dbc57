"""The user's knobs: read once from CDK context, validated, frozen.

Every key lives in ``cdk.json`` under ``context`` with the ``mlpoc:`` prefix and can be
overridden on the command line, e.g. ``npx cdk deploy -c mlpoc:stage=retain``. A missing or
malformed value stops synth with one sentence naming the key and what it accepts.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

from mlpoc.aws import beanstalk_platform
from mlpoc.errors import ConfigError
from mlpoc.paths import CHECKOUT
from mlpoc.runtime.contract import MODEL_NAME_PATTERN
from mlpoc.runtime.schedules import expression_refusal
from stacks.account_config import (
    NO_SHARE,
    ScheduleSpec,
    Share,
    Source,
    parse_readers,
    parse_schedules,
    parse_share,
    parse_sources,
)

Stage = Literal["poc", "retain"]


@dataclass(frozen=True)
class Monitor:
    """``mlpoc:monitor``: which models a monitor job watches on a schedule, its thresholds (the
    predict worker's defaults) and the share of realtime requests the API samples."""

    models: tuple[str, ...] = ()
    schedule: str = "rate(1 day)"
    psi: float = 0.2
    drift_share: float = 0.3
    min_realized_accuracy: float = 0.0  # 0: no realized-accuracy alert
    sample_rate: float = 0.1

    def worker_environment(self) -> dict[str, str]:
        return {
            "MLPOC_DRIFT_PSI": f"{self.psi:g}",
            "MLPOC_DRIFT_SHARE": f"{self.drift_share:g}",
            "MLPOC_MIN_REALIZED_ACCURACY": f"{self.min_realized_accuracy:g}",
        }


MONITOR_EXAMPLE = (
    '{"models": ["digits"], "schedule": "rate(1 day)", "psi": 0.2, "drift_share": 0.3, '
    '"min_realized_accuracy": 0.8, "sample_rate": 0.1}'
)
# key -> (low, high, what it is)
MONITOR_NUMBERS: dict[str, tuple[float, float, str]] = {
    "psi": (0.001, 10.0, "the PSI over which a feature drifts"),
    "drift_share": (0.001, 1.0, "the share of drifting features that alerts"),
    "min_realized_accuracy": (0.0, 1.0, "the realized accuracy under which it alerts (0: off)"),
    "sample_rate": (0.0, 1.0, "the share of realtime requests the API samples (0: none)"),
}


def parse_monitor(name: str, value: Any) -> Monitor:
    if isinstance(value, str) and value.strip().startswith("{"):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as error:
            raise ConfigError(f"{name} is not valid JSON ({error}); got {value!r}") from None
    allowed = {"models", "schedule", *MONITOR_NUMBERS}
    if not isinstance(value, dict) or set(value) - allowed:
        raise ConfigError(
            f"{name} must be an object with some of {sorted(allowed)}, as in {MONITOR_EXAMPLE}; "
            f"got {value!r}"
        )
    models = value.get("models", [])
    if not isinstance(models, list) or not all(
        isinstance(m, str) and MODEL_NAME_PATTERN.match(m) for m in models
    ):
        raise ConfigError(
            f"{name}.models must be a list of model names (lowercase letters, digits, - and _); "
            f"got {models!r}"
        )
    if len(set(models)) != len(models):
        raise ConfigError(f"{name}.models names a model twice: {models}")
    schedule = value.get("schedule", Monitor.schedule)
    refusal = expression_refusal(schedule)
    if refusal is not None:
        raise ConfigError(f"{name}.schedule {refusal}")
    numbers: dict[str, float] = {}
    for key, (low, high, what) in MONITOR_NUMBERS.items():
        raw = value.get(key, getattr(Monitor, key))
        if isinstance(raw, bool) or not isinstance(raw, (int, float)) or not low <= raw <= high:
            raise ConfigError(
                f"{name}.{key} ({what}) must be a number from {low:g} to {high:g}; got {raw!r}"
            )
        numbers[key] = float(raw)
    return Monitor(models=tuple(models), schedule=schedule, **numbers)


T = TypeVar("T")

PREFIX = "mlpoc:"
# Fargate's valid memory sizes (MiB) for each CPU size (units).
FARGATE_SIZES: dict[int, tuple[int, ...]] = {
    256: (512, 1024, 2048),
    512: tuple(range(1024, 4097, 1024)),
    1024: tuple(range(2048, 8193, 1024)),
    2048: tuple(range(4096, 16385, 1024)),
    4096: tuple(range(8192, 30721, 1024)),
}
PROJECT_PATTERN = re.compile(r"^[a-z][a-z0-9-]{1,18}[a-z0-9]$")
INSTANCE_PATTERN = re.compile(r"^[a-z][a-z0-9-]*\d[a-z0-9-]*\.[a-z0-9]+$")
# NVIDIA GPU families on x86_64 (the GPU image is built for amd64): g4dn, g5, g6, g6e, p4d, …;
# an ARM one (g5g) is refused
GPU_INSTANCE_PATTERN = re.compile(r"^[gp]\d+[a-z]*(?<!g)\.\d*x?large$")
# the processor letter after the generation digit: g is Graviton (t4g, m7g, c6gn, g5g), the rest
# x86_64 (t3, m7i, g4dn)
GRAVITON_PATTERN = re.compile(r"^[a-z]+\d+[a-z-]*g[a-z-]*\.")
GPU_INSTANCE_RULE = 'a list of x86_64 GPU instance types such as ["g4dn.xlarge", "g5.xlarge"]'
MAX_GPU_TYPES = 20
PINNED_PATTERN = re.compile(
    r"^[A-Za-z0-9][A-Za-z0-9._-]*(\[[A-Za-z0-9_,-]+\])?==[A-Za-z0-9.+!_-]+$"
)
PLUGINS_DIR = CHECKOUT / "containers" / "plugins"
EMAIL_PATTERN = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
SECRET_NAME_PATTERN = re.compile(r"^[A-Za-z0-9/_+=.@-]{1,512}$")
PROJECT_RULE = "3-20 lowercase letters, digits or -, starting with a letter"
INSTANCE_RULE = "an EC2 instance type such as t4g.micro"
EMAIL_RULE = "an email address, or empty for none"
SECRET_RULE = "a Secrets Manager secret name, or empty for none"  # noqa: S105 - a description
LISTED_CHOICES = 10


@dataclass(frozen=True, kw_only=True)
class Config:
    project: str
    stage: Stage
    api_instance_type: str
    worker_cpu: int
    worker_memory: int
    worker_max_tasks: int
    spot: bool
    budget_usd: int
    alert_email: str | None
    slack_webhook_secret_name: str | None
    eb_solution_stack: str
    max_receive_count: int
    # the optional GPU training pool (ECS on EC2 Spot, from zero): off by default
    gpu: bool = False
    gpu_instance_types: tuple[str, ...] = ()
    gpu_max_instances: int = 0
    # the team's model plugins (containers/plugins/<name>/) the worker and GPU images carry
    plugins: tuple[str, ...] = ()
    # pinned packages for the GPU image only (its framework's CUDA build, e.g. torch==2.9.1)
    gpu_packages: tuple[str, ...] = ()
    # a second account: datasets read from its exchange bucket, predictions shared back
    sources: tuple[Source, ...] = ()
    result_readers: tuple[str, ...] = ()
    # retrain on what is new, on a schedule (EventBridge Scheduler -> the train queue)
    schedules: tuple[ScheduleSpec, ...] = ()
    # the share stack's knobs: with share.ml_account set, the app is the share stack alone
    share: Share = NO_SHARE
    # the monitor job's schedule and thresholds, and the API's sample of requests
    monitor: Monitor = Monitor()

    @property
    def api_on_graviton(self) -> bool:
        """The API's instance type is ARM64 (Graviton): its image is built for that."""
        return bool(GRAVITON_PATTERN.match(self.api_instance_type))

    @property
    def retain_data(self) -> bool:
        return self.stage == "retain"

    @classmethod
    def from_context(cls, context: Mapping[str, Any]) -> Config:
        """Build from a mapping of context keys (``mlpoc:stage`` → value)."""
        read = _Reader(context).get
        cpu = read("worker_cpu", _choice_int(tuple(FARGATE_SIZES)))
        sources = read("sources", parse_sources)
        return cls(
            project=read("project", _pattern(PROJECT_PATTERN, PROJECT_RULE)),
            stage=read("stage", _choice(("poc", "retain"))),
            api_instance_type=read("api_instance_type", _pattern(INSTANCE_PATTERN, INSTANCE_RULE)),
            worker_cpu=cpu,
            worker_memory=read(
                "worker_memory", _choice_int(FARGATE_SIZES[cpu], f"for worker_cpu {cpu}")
            ),
            worker_max_tasks=read("worker_max_tasks", _int_range(1, 50)),
            spot=read("spot", _boolean),
            budget_usd=read("budget_usd", _int_range(1, 100_000)),
            alert_email=read("alert_email", _optional(_pattern(EMAIL_PATTERN, EMAIL_RULE))),
            slack_webhook_secret_name=read(
                "slack_webhook_secret_name", _optional(_pattern(SECRET_NAME_PATTERN, SECRET_RULE))
            ),
            eb_solution_stack=read("eb_solution_stack", _eb_docker_al2023),
            max_receive_count=read("max_receive_count", _int_range(5, 1000)),
            gpu=read("gpu", _boolean),
            gpu_instance_types=read("gpu_instance_types", _gpu_instance_types),
            gpu_max_instances=read("gpu_max_instances", _int_range(1, 20)),
            plugins=read("plugins", _plugins),
            gpu_packages=read("gpu_packages", _pinned_packages),
            sources=sources,
            result_readers=read("result_readers", parse_readers),
            schedules=read("schedules", lambda name, v: parse_schedules(name, v, sources)),
            share=read("share", parse_share),
            monitor=read("monitor", parse_monitor),
        )


class _Reader:
    def __init__(self, context: Mapping[str, Any]) -> None:
        self._context = context

    def get(self, key: str, parse: Callable[[str, Any], T]) -> T:
        name = PREFIX + key
        if name not in self._context:
            raise ConfigError(f"context key {name!r} is missing: add it to cdk.json's context")
        return parse(name, self._context[name])


def _choice(allowed: tuple[str, ...]) -> Callable[[str, Any], Any]:
    def parse(name: str, value: Any) -> Any:
        if value not in allowed:
            raise ConfigError(f"{name} must be one of {', '.join(allowed)}; got {value!r}")
        return value

    return parse


def _to_int(name: str, value: Any, expected: str) -> int:
    if isinstance(value, bool):
        raise ConfigError(f"{name} must be {expected}; got {value!r}")
    try:
        number = int(str(value).strip())
    except ValueError:
        raise ConfigError(f"{name} must be {expected}; got {value!r}") from None
    return number


def _choice_int(allowed: tuple[int, ...], note: str = "") -> Callable[[str, Any], int]:
    described = (
        ", ".join(map(str, allowed))
        if len(allowed) < LISTED_CHOICES
        else f"{allowed[0]}-{allowed[-1]} in steps of {allowed[1] - allowed[0]}"
    )
    expected = f"one of {described}{' ' + note if note else ''}"

    def parse(name: str, value: Any) -> int:
        number = _to_int(name, value, expected)
        if number not in allowed:
            raise ConfigError(f"{name} must be {expected}; got {value!r}")
        return number

    return parse


def _int_range(low: int, high: int) -> Callable[[str, Any], int]:
    expected = f"a whole number from {low} to {high}"

    def parse(name: str, value: Any) -> int:
        number = _to_int(name, value, expected)
        if not low <= number <= high:
            raise ConfigError(f"{name} must be {expected}; got {value!r}")
        return number

    return parse


def _boolean(name: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in {"true", "false"}:
        return text == "true"
    raise ConfigError(f"{name} must be true or false; got {value!r}")


def _plugins(name: str, value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(
            f'{name} must be a list of plugin names, e.g. ["lightgbm"]; got {value!r}'
        )
    if len(set(value)) != len(value):
        raise ConfigError(f"{name} names a plugin twice: {value!r}")
    for plugin in value:
        if not (PLUGINS_DIR / plugin / "pyproject.toml").is_file():
            here = sorted(p.parent.name for p in PLUGINS_DIR.glob("*/pyproject.toml"))
            raise ConfigError(
                f"{name} names {plugin!r}, but containers/plugins/{plugin}/pyproject.toml does "
                f"not exist (plugins here: {here}); scaffold one with `mlpoc plugin new {plugin}`"
            )
    return tuple(value)


def _pinned_packages(name: str, value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(
        isinstance(v, str) and PINNED_PATTERN.match(v) for v in value
    ):
        raise ConfigError(
            f'{name} must be a list of pinned packages, e.g. ["torch==2.9.1"]; got {value!r}'
        )
    return tuple(value)


def _gpu_instance_types(name: str, value: Any) -> tuple[str, ...]:
    if (
        not isinstance(value, list)
        or not 1 <= len(value) <= MAX_GPU_TYPES
        or not all(isinstance(v, str) and GPU_INSTANCE_PATTERN.match(v) for v in value)
        or len(set(value)) != len(value)
    ):
        raise ConfigError(
            f"{name} must be {GPU_INSTANCE_RULE}: 1-{MAX_GPU_TYPES} distinct types (several "
            f"let Spot pick the cheapest with capacity); got {value!r}"
        )
    return tuple(value)


def _pattern(pattern: re.Pattern[str], expected: str) -> Callable[[str, Any], str]:
    def parse(name: str, value: Any) -> str:
        if not isinstance(value, str) or not pattern.match(value):
            raise ConfigError(f"{name} must be {expected}; got {value!r}")
        return value

    return parse


def _optional(parse: Callable[[str, Any], str]) -> Callable[[str, Any], str | None]:
    def wrapped(name: str, value: Any) -> str | None:
        return None if value in (None, "") else parse(name, value)

    return wrapped


def _eb_docker_al2023(name: str, value: Any) -> str:
    if not isinstance(value, str) or not (
        value == beanstalk_platform.AUTO or beanstalk_platform.is_docker_al2023(value)
    ):
        raise ConfigError(
            f"{name} must be 'auto' (mlpoc preflight resolves the current platform) or an "
            "Elastic Beanstalk 'Docker running on Amazon Linux 2023' solution stack, such as "
            f"'64bit Amazon Linux 2023 v4.7.1 running Docker'; got {value!r} "
            "(list them with: aws elasticbeanstalk list-available-solution-stacks)"
        )
    return value


@dataclass(frozen=True)
class Platform:
    name: str  # the SolutionStackName the template carries
    unresolved: str | None = None  # why a deploy of this template must stop, if it must


def eb_platform(
    configured: str, *, account: str | None, region: str | None, lookup: Callable[[str], Any]
) -> Platform:
    """The solution stack to deploy: the pinned one, or the one preflight resolved for this
    account and region (kept in cdk.context.json). Without one, the synth-only name, and for a
    synth for an account (what `cdk deploy` runs) the sentence that stops the deploy: synth
    itself goes on, so `make test` works in a shell with AWS credentials."""
    if configured != beanstalk_platform.AUTO:
        return Platform(configured)
    if not account or not region:
        return Platform(beanstalk_platform.SYNTH_ONLY_PLATFORM)
    key = beanstalk_platform.context_key(account, region)
    resolved = lookup(key)
    if isinstance(resolved, str) and beanstalk_platform.is_docker_al2023(resolved):
        return Platform(resolved)
    return Platform(
        beanstalk_platform.SYNTH_ONLY_PLATFORM,
        unresolved=(
            f"{PREFIX}eb_solution_stack is 'auto' and no Elastic Beanstalk Docker platform is "
            f"resolved for account {account} in {region} yet: run `mlpoc preflight --target aws` "
            f"(it keeps the current one in cdk.context.json under {key!r}), or pin a platform "
            f"with -c {PREFIX}eb_solution_stack='64bit Amazon Linux 2023 vX.Y.Z running Docker'"
        ),
    )
