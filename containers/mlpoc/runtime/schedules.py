"""Scheduled retraining: the job a schedule sends, its expressions, and when one is due locally.

On AWS an EventBridge Scheduler schedule sends :func:`job_message` (with the scheduler's
context attributes in it) to the train queue. Locally, :class:`Due` says when a schedule from
the same template fires, and :func:`fire` turns its input into a job body the way the scheduler
does. ``mlpoc schedule run MODEL`` fires one at once on either target.

Standard library only: the CDK app, the CLI and local mode import it.
"""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

# the train job's promotion rules (params.promote; mlpoc.worker.train applies them)
PROMOTE_POLICIES = ("auto", "always", "never")
ORIGIN = "schedule"
# EventBridge Scheduler's context attributes (Scheduler user guide, "Adding context
# attributes"): replaced in the target's input on each invocation
EXECUTION_ID = "<aws.scheduler.execution-id>"
SCHEDULED_TIME = "<aws.scheduler.scheduled-time>"
SCHEDULE_ARN = "<aws.scheduler.schedule-arn>"
ATTEMPT = "<aws.scheduler.attempt-number>"
JOB_ID_PREFIX = "schedule-"
MONITOR_JOB_ID_PREFIX = "monitor-"
# the service stack's output: the schedules' names, comma-separated (`mlpoc schedule run`)
SCHEDULES_OUTPUT = "ScheduleNames"

RATE = re.compile(r"^rate\((?P<value>[1-9]\d{0,5}) (?P<unit>minutes?|hours?|days?)\)$")
CRON = re.compile(r"^cron\((?P<fields>[^()]+)\)$")
UNIT_SECONDS = {"minute": 60, "hour": 3600, "day": 86_400}
# AWS cron: minutes hours day-of-month month day-of-week year
CRON_FIELD = re.compile(r"^[0-9A-Za-z*?,/#LW-]+$")
MONTHS = ["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"]
DAYS = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"]
# (low, high, names) per field; day-of-week counts 1 (SUN) to 7 (SAT)
FIELDS: tuple[tuple[int, int, Sequence[str]], ...] = (
    (0, 59, ()),
    (0, 23, ()),
    (1, 31, ()),
    (1, 12, MONTHS),
    (1, 7, DAYS),
    (1970, 2199, ()),
)
EXPRESSION_RULE = (
    "must be rate(<n> minute(s)|hour(s)|day(s)) or an EventBridge cron(<minutes> <hours> "
    "<day-of-month> <month> <day-of-week> <year>) with ? in day-of-month or day-of-week, "
    "such as 'rate(1 day)' or 'cron(0 3 ? * MON *)'"
)


def expression_refusal(expression: Any) -> str | None:
    """Why ``expression`` is not a schedule expression mlpoc accepts, or None."""
    if not isinstance(expression, str):
        return f"{EXPRESSION_RULE}; got {expression!r}"
    rate = RATE.match(expression)
    if rate is not None:
        singular = rate["value"] == "1"
        if singular != (not rate["unit"].endswith("s")):
            return f"{EXPRESSION_RULE} (1 takes a singular unit, more a plural); got {expression!r}"
        return None
    cron = CRON.match(expression)
    fields = cron["fields"].split() if cron else []
    if len(fields) != len(FIELDS) or not all(CRON_FIELD.match(f) for f in fields):
        return f"{EXPRESSION_RULE}; got {expression!r}"
    if "?" not in (fields[2], fields[4]) or fields[2] == fields[4] == "?":
        return f"{EXPRESSION_RULE} (exactly one of the two day fields is ?); got {expression!r}"
    return None


def job_message(model: str, dataset: str, promote: str) -> dict[str, Any]:
    """What a schedule sends: a train job over a folder (the worker builds the dataset version:
    the promoted version's data, what is new under the folder, every correction). Its job id
    holds the run's scheduled time: each run is its own job, and a retried send of the same run
    (Scheduler gives each attempt a new execution id, not a new scheduled time) is a duplicate
    the ledger refuses."""
    return {
        "schema": 1,
        "job_id": f"{JOB_ID_PREFIX}{model}-{SCHEDULED_TIME}",
        "type": "train",
        "model": model,
        "dataset": dataset,
        "params": {"origin": ORIGIN, "promote": promote},
    }


def monitor_message(model: str, dataset: str) -> dict[str, Any]:
    """What a monitor schedule sends to the predict queue: a monitor job over the model's input
    samples (:mod:`mlpoc.worker.monitor`), one per scheduled time like a retrain."""
    return {
        "schema": 1,
        "job_id": f"{MONITOR_JOB_ID_PREFIX}{model}-{SCHEDULED_TIME}",
        "type": "monitor",
        "model": model,
        "dataset": dataset,
        "params": {"origin": ORIGIN},
    }


def fire(
    template: str,
    *,
    execution_id: str | None = None,
    arn: str = "",
    now: float = 0,
    scheduled: str | None = None,
) -> str:
    """The body a schedule's input becomes on one invocation (the scheduler's substitution);
    ``scheduled`` replaces the scheduled time (a manual run names itself)."""
    stamp = scheduled or time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now or time.time()))
    return (
        template.replace(EXECUTION_ID, execution_id or secrets.token_hex(8))
        .replace(SCHEDULED_TIME, stamp)
        .replace(SCHEDULE_ARN, arn)
        .replace(ATTEMPT, "1")
    )


# -- local mode: when is a schedule due --------------------------------------------------------


def _values(field: str, low: int, high: int, names: Sequence[str]) -> set[int]:
    """The values one cron field matches; ValueError for what local mode cannot evaluate."""
    found: set[int] = set()
    for part in field.split(","):
        base, _, step_text = part.partition("/")
        step = int(step_text) if step_text else 1
        if base in ("*", "?"):
            start, end = low, high
        elif "-" in base:
            first, last = base.split("-", 1)
            start, end = _number(first, names, low), _number(last, names, low)
        else:
            start = _number(base, names, low)
            end = high if step_text else start
        if not low <= start <= end <= high or step < 1:
            raise ValueError(f"{part!r} is out of range {low}-{high}")
        found.update(range(start, end + 1, step))
    return found


def _number(text: str, names: Sequence[str], low: int) -> int:
    if text.upper() in names:
        return list(names).index(text.upper()) + low
    if not text.isdigit():
        raise ValueError(f"{text!r} (L, W and # are evaluated only by EventBridge Scheduler)")
    return int(text)


@dataclass
class Due:
    """When one schedule fires, by the laptop's clock (UTC, like a schedule without a time
    zone). ``rate``: every period from the start; ``cron``: each matching minute."""

    expression: str
    started: float
    last: float | None = None

    def __post_init__(self) -> None:
        rate = RATE.match(self.expression)
        self.period = UNIT_SECONDS[rate["unit"].rstrip("s")] * int(rate["value"]) if rate else 0
        self.matchers: list[set[int]] = []
        if not rate:
            fields = CRON.match(self.expression)["fields"].split()  # type: ignore[index]
            self.matchers = [_values(f, *spec) for f, spec in zip(fields, FIELDS, strict=True)]

    def due(self, now: float) -> bool:
        """True once per due time (call it as time passes: it remembers the last firing)."""
        if self.period:
            since = self.last if self.last is not None else self.started
            fired = now - since >= self.period
        else:
            minute = int(now // 60) * 60
            fired = self._matches(time.gmtime(minute)) and (self.last or 0) < minute
            now = minute if fired else now
        if fired:
            self.last = now
        return fired

    def _matches(self, at: time.struct_time) -> bool:
        minutes, hours, days, months, weekdays, years = self.matchers
        weekday = (at.tm_wday + 1) % 7 + 1  # Python's Monday=0 -> cron's MON=2 (SUN=1)
        return (
            at.tm_min in minutes
            and at.tm_hour in hours
            and at.tm_mday in days
            and at.tm_mon in months
            and weekday in weekdays
            and at.tm_year in years
        )


def local_refusal(expression: str) -> str | None:
    """Why local mode cannot run this (valid) expression, or None."""
    try:
        Due(expression, started=0)
    except ValueError as error:
        return f"{expression}: {error}"
    return None
