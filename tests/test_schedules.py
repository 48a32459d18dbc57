"""Schedules without a clock: expressions, when one is due (times passed in), the job a schedule
sends, and local mode's scheduler reading the service template."""

from __future__ import annotations

import calendar
import json
import shutil
import time
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from mlpoc.cli import ops
from mlpoc.cli.target import Deployment
from mlpoc.errors import TargetError
from mlpoc.local.motopatch import resource_policy_allows
from mlpoc.local.processes import Resolver
from mlpoc.local.safety import REGION
from mlpoc.local.scheduler import LocalScheduler, from_template
from mlpoc.runtime import schedules
from mlpoc.runtime.contract import parse_job
from mlpoc.runtime.ledger import Ledger
from tests.support.aws_stack import OUTPUTS, create_stack
from tests.support.cdk_app import Synthesized
from tests.support.cli import local_up, mlpoc


def at(text: str) -> float:
    """A UTC time as seconds (2026-11-30 03:00 is a Monday)."""
    return float(calendar.timegm(time.strptime(text, "%Y-%m-%d %H:%M")))


@pytest.mark.parametrize(
    "expression",
    ["rate(1 minute)", "rate(5 minutes)", "rate(1 day)", "cron(0 3 ? * MON *)",
     "cron(0/15 8-18 ? * MON-FRI *)", "cron(0 0 1 * ? *)", "cron(0 12 L * ? *)"],
)  # fmt: skip
def test_expressions_eventbridge_takes_are_accepted(expression: str) -> None:
    assert schedules.expression_refusal(expression) is None


@pytest.mark.parametrize(
    ("expression", "says"),
    [
        ("rate(2 day)", "1 takes a singular unit"),
        ("rate(1 days)", "1 takes a singular unit"),
        ("rate(0 minutes)", "must be rate("),
        ("cron(0 3 * * *)", "must be rate("),
        ("cron(0 3 * * MON *)", "exactly one of the two day fields is ?"),
        ("at(2026-12-01T00:00:00)", "must be rate("),
        (3, "must be rate("),
    ],
)
def test_other_expressions_are_refused_with_the_rule(expression: Any, says: str) -> None:
    refusal = schedules.expression_refusal(expression)
    assert refusal is not None and says in refusal


def test_a_rate_is_due_once_per_period_from_the_start() -> None:
    due = schedules.Due("rate(10 minutes)", started=1000.0)
    assert not due.due(1000.0 + 599)
    assert due.due(1000.0 + 600)
    assert not due.due(1000.0 + 601)  # once per due time
    assert due.due(1000.0 + 1200)


def test_a_cron_is_due_in_each_matching_minute_once() -> None:
    due = schedules.Due("cron(0 3 ? * MON *)", started=0)
    assert due.due(at("2026-11-30 03:00") + 5)  # a Monday, 03:00
    assert not due.due(at("2026-11-30 03:00") + 30)  # the same minute again
    assert not due.due(at("2026-11-30 03:01"))
    assert not due.due(at("2026-12-01 03:00"))  # a Tuesday
    assert due.due(at("2026-12-07 03:00"))
    every = schedules.Due("cron(0/15 8-9 ? * * *)", started=0)
    fired = [m for m in range(0, 24 * 60) if every.due(at("2026-11-29 00:00") + m * 60)]
    assert [(m // 60, m % 60) for m in fired] == [(8, 0), (8, 15), (8, 30), (8, 45), (9, 0),
                                                  (9, 15), (9, 30), (9, 45)]  # fmt: skip


def test_local_mode_names_what_only_eventbridge_evaluates() -> None:
    refusal = schedules.local_refusal("cron(0 12 L * ? *)")
    assert refusal is not None and "evaluated only by EventBridge Scheduler" in refusal
    assert schedules.local_refusal("cron(0 12 1 * ? *)") is None


def test_a_fired_schedule_is_a_valid_job_whose_id_is_its_scheduled_time() -> None:
    template = json.dumps(schedules.job_message("digits", "s3://data/datasets/digits/", "auto"))
    noon = at("2026-11-30 12:00")
    first = parse_job(
        schedules.fire(template, execution_id="d32c5kddcf5bb8c3", now=noon), data_bucket="data"
    )
    assert first.job_id == "schedule-digits-2026-11-30T12:00:00Z"
    # a retried send of the same run: Scheduler's new execution id, the same scheduled time,
    # so the same job id (the ledger refuses the second one as a duplicate)
    retry = parse_job(
        schedules.fire(template, execution_id="a81bc81b", now=noon), data_bucket="data"
    )
    assert retry.job_id == first.job_id
    tomorrow = parse_job(schedules.fire(template, now=noon + 86_400), data_bucket="data")
    assert tomorrow.job_id == "schedule-digits-2026-12-01T12:00:00Z"
    manual = parse_job(schedules.fire(template, scheduled="manual-1a2b"), data_bucket="data")
    assert manual.job_id == "schedule-digits-manual-1a2b"
    assert (first.type, first.over_prefix, first.params) == (
        "train", True, {"origin": "schedule", "promote": "auto"},
    )  # fmt: skip


def test_local_mode_reads_the_templates_schedules_and_sends_when_due(linked: Synthesized) -> None:
    exports = {
        name: f"value-of-{name}" for name in _imports(linked.service_json)
    }  # every export the service template imports, as a stand-in value
    queues = {
        json.loads(Resolver(exports, REGION)(r["Properties"]["Target"]["Input"]))["type"]: r[
            "Properties"
        ]["Target"]["Arn"]["Fn::ImportValue"]
        for r in linked.service_json["Resources"].values()
        if r["Type"] == "AWS::Scheduler::Schedule"
    }
    exports[queues["train"]] = f"arn:aws:sqs:{REGION}:123456789012:train-queue"
    exports[queues["monitor"]] = f"arn:aws:sqs:{REGION}:123456789012:predict-queue"
    every = from_template(linked.service_json, Resolver(exports, REGION))
    # the monitor's schedule (mlpoc:monitor, daily) goes to the predict queue
    (monitor,) = [f for f in every if json.loads(f.input)["type"] == "monitor"]
    assert monitor.model == "digits" and monitor.queue_arn.endswith(":predict-queue")
    assert json.loads(monitor.input)["dataset"].endswith("/input-samples/digits/")
    found = [f for f in every if f is not monitor]
    assert {f.model for f in found} == {"digits", "churn"}
    digits = next(f for f in found if f.model == "digits")
    assert digits.queue_arn.endswith(":train-queue") and digits.role_id
    assert schedules.SCHEDULED_TIME in digits.input
    sent: list[tuple[str, str]] = []
    scheduler = LocalScheduler(found, send=lambda s, body: sent.append((s.model, body)),
                               started=at("2026-11-29 12:00"))  # fmt: skip
    assert scheduler.tick(at("2026-11-29 12:30")) == []
    # the Monday cron fires at 03:00 on 2026-11-30; the daily rate at noon
    (churn,) = scheduler.tick(at("2026-11-30 03:00"))
    assert churn.startswith("schedule-churn-")
    (digits_job,) = scheduler.tick(at("2026-11-30 12:00"))
    assert digits_job.startswith("schedule-digits-")
    assert [m for m, _ in sent] == ["churn", "digits"]
    assert json.loads(sent[1][1])["dataset"].endswith("/datasets/digits/")


def test_a_schedule_local_mode_cannot_evaluate_is_named_not_run() -> None:
    found = [
        *from_template(
            {"Resources": {"Odd": {"Type": "AWS::Scheduler::Schedule", "Properties": {
                "ScheduleExpression": "cron(0 12 L * ? *)",
                "Target": {"Arn": "arn:aws:sqs:us-east-1:1:q", "Input": '{"model": "m"}'},
            }}}},
            Resolver({}, REGION),
        )
    ]  # fmt: skip
    scheduler = LocalScheduler(found, send=lambda *_: None, started=0)
    assert scheduler.due == []
    assert (
        "does not run locally" in scheduler.notes[0]
        and "mlpoc schedule run m" in (scheduler.notes[0])
    )


def _imports(value: Any) -> set[str]:
    if isinstance(value, dict):
        if "Fn::ImportValue" in value:
            return {value["Fn::ImportValue"]}
        return set().union(*(_imports(v) for v in value.values())) if value else set()
    if isinstance(value, list):
        return set().union(*(_imports(v) for v in value)) if value else set()
    return set()


# -- the table resource policy, as local mode evaluates it across accounts -----------------------
TABLE = "arn:aws:dynamodb:us-east-1:123456789012:table/predictions"
READERS = {
    "Statement": [{
        "Effect": "Allow",
        "Principal": {"AWS": "arn:aws:iam::111122223333:root"},
        "Action": ["dynamodb:GetItem", "dynamodb:Query"],
        "Resource": "*",
        "Condition": {"StringEquals": {"aws:PrincipalAccount": ["111122223333"]}},
    }]
}  # fmt: skip


@pytest.mark.parametrize(
    ("document", "action", "arn", "account", "allowed"),
    [
        (READERS, "dynamodb:GetItem", TABLE, "111122223333", True),
        (READERS, "dynamodb:Query", f"{TABLE}/index/review", "111122223333", True),
        (READERS, "dynamodb:PutItem", TABLE, "111122223333", False),
        (READERS, "dynamodb:GetItem", TABLE, "222222222222", False),
        ({"Statement": []}, "dynamodb:GetItem", TABLE, "111122223333", False),
        (  # an explicit deny wins
            {"Statement": [*READERS["Statement"],
                           {**READERS["Statement"][0], "Effect": "Deny", "Condition": {}}]},
            "dynamodb:GetItem", TABLE, "111122223333", False,
        ),
        (  # a condition local mode cannot evaluate does not hold: less than AWS, never more
            {"Statement": [{**READERS["Statement"][0],
                            "Condition": {"IpAddress": {"aws:SourceIp": "10.0.0.0/8"}}}]},
            "dynamodb:GetItem", TABLE, "111122223333", False,
        ),
        (
            {"Statement": [{"Effect": "Allow", "Principal": {"AWS": "111122223333"},
                            "Action": "dynamodb:*", "Resource": TABLE}]},
            "dynamodb:BatchGetItem", TABLE, "111122223333", True,
        ),
    ],
)  # fmt: skip
def test_a_table_policy_is_evaluated_by_account(
    document: dict[str, Any], action: str, arn: str, account: str, allowed: bool
) -> None:
    assert resource_policy_allows(document, action=action, arn=arn, account=account) is allowed


# -- `mlpoc local up` with schedules, and `mlpoc schedule list|run` ------------------------------
@pytest.mark.integration
def test_local_up_runs_the_templates_schedules_and_the_cli_fires_one(
    tmp_path: Path, local_assembly: Path, linked: Synthesized
) -> None:
    # GIVEN the session's local assembly with the linked app's schedules (role, policy,
    # schedules: their imports name the same data-stack exports)
    assembly = tmp_path / "cdk.out"
    shutil.copytree(local_assembly, assembly)
    path = assembly / "mlpoc-service.template.json"
    service = json.loads(path.read_text())
    service["Resources"].update(
        {k: v for k, v in linked.service_json["Resources"].items() if k.startswith("Schedules")}
    )
    path.write_text(json.dumps(service))
    state_dir = tmp_path / "state"
    with local_up(state_dir, assembly, "local-up-schedules.log"):
        # THEN the state lists them, and the CLI shows them
        listed = mlpoc("schedule", "list", state_dir=state_dir)
        assert listed.returncode == 0, listed.stdout + listed.stderr
        assert "rate(1 day)" in listed.stdout and "cron(0 3 ? * MON *)" in listed.stdout
        # WHEN one is fired now, on a folder with nothing in it
        fired = mlpoc("schedule", "run", "digits", "--wait", state_dir=state_dir)
        # THEN its job ran as a train job over the folder and found nothing new
        assert fired.returncode == 0, fired.stdout + fired.stderr
        assert "schedule-digits-manual-" in fired.stdout and "nothing new" in fired.stdout
        unknown = mlpoc("schedule", "run", "nope", state_dir=state_dir)
        assert unknown.returncode != 0 and "no schedule for model 'nope'" in unknown.stderr


def test_on_aws_the_cli_reads_the_schedules_from_eventbridge_scheduler() -> None:
    with mock_aws():
        stack = create_stack(None)
        session = boto3.session.Session(region_name=REGION)
        folder = f"s3://{stack.data_bucket}/datasets/digits/"
        template = json.dumps(schedules.job_message("digits", folder, "always"))
        session.client("scheduler").create_schedule(
            Name="mlpoc-service-Retrain-digits",
            ScheduleExpression="rate(1 day)",
            FlexibleTimeWindow={"Mode": "OFF"},
            Target={"Arn": "arn:aws:sqs:us-east-1:123456789012:train", "RoleArn":
                    "arn:aws:iam::123456789012:role/scheduler", "Input": template},
        )  # fmt: skip
        outputs = {**{o: getattr(stack, f) for f, o in OUTPUTS.items()},
                   schedules.SCHEDULES_OUTPUT: "mlpoc-service-Retrain-digits"}  # fmt: skip
        dep = Deployment(name="aws", region=REGION, outputs=outputs, session=session,
                         endpoint=None, api_url=None)  # fmt: skip
        (found,) = ops.schedules(dep)
        assert (found.model, found.expression) == ("digits", "rate(1 day)")
        job = ops.run_schedule(dep, "digits")
        assert (
            job.job_id.startswith("schedule-digits-manual-") and job.params["promote"] == "always"
        )
        record = Ledger(stack.clients().dynamodb, stack.jobs_table).get(job.job_id)
        assert record is not None and record["status"] == "QUEUED"
        assert record["source"] == "schedule run (mlpoc-service-Retrain-digits)"
        (message,) = stack.clients().sqs.receive_message(QueueUrl=stack.train_queue_url)["Messages"]
        assert json.loads(message["Body"])["dataset"] == folder
        with pytest.raises(TargetError, match="no schedule for model 'churn'; schedules: digits"):
            ops.run_schedule(dep, "churn")


# -- expressions and local evaluation: the exact limits and refusals ----------------------------
def refused(expression: Any, detail: str = "") -> str:
    """The refusal expression_refusal gives, word for word."""
    return f"{schedules.EXPRESSION_RULE}{detail}; got {expression!r}"


@pytest.mark.parametrize(
    "expression",
    ["rate(999999 minutes)", "rate(2 hours)", "rate(1 hour)", "rate(10 days)",
     "cron(0 3 1 * ? *)", "cron(0 3 ? * 1 *)", "cron(0,30 3 ? JAN-DEC SUN-SAT 1970-2199)"],
)  # fmt: skip
def test_the_limits_of_an_accepted_expression(expression: str) -> None:
    assert schedules.expression_refusal(expression) is None


@pytest.mark.parametrize(
    ("expression", "detail"),
    [
        ("rate(1000000 minutes)", ""),  # six digits at most
        ("rate(01 minute)", ""),  # no leading zero
        ("rate(1 week)", ""),
        ("rate(1 minute) ", ""),
        ("cron(0 3 ? * MON)", ""),  # five fields
        ("cron(0 3 ? * MON * *)", ""),  # seven
        ("cron(0 3 ? * MON% *)", ""),
        ("cron()", ""),
        ("", ""),
        (None, ""),
        ("rate(1 hours)", " (1 takes a singular unit, more a plural)"),
        ("rate(2 minute)", " (1 takes a singular unit, more a plural)"),
        ("cron(0 3 ? * ? *)", " (exactly one of the two day fields is ?)"),
        ("cron(0 3 1 * 1 *)", " (exactly one of the two day fields is ?)"),
        ("cron(0 3 * ? * ?)", " (exactly one of the two day fields is ?)"),
    ],
)
def test_a_refused_expression_is_told_the_rule_and_what_it_got(
    expression: Any, detail: str
) -> None:
    assert schedules.expression_refusal(expression) == refused(expression, detail)


def test_the_jobs_a_schedule_sends_are_exactly_these() -> None:
    assert schedules.job_message("digits", "s3://d/datasets/digits/", "never") == {
        "schema": 1,
        "job_id": "schedule-digits-<aws.scheduler.scheduled-time>",
        "type": "train",
        "model": "digits",
        "dataset": "s3://d/datasets/digits/",
        "params": {"origin": "schedule", "promote": "never"},
    }
    assert schedules.monitor_message("digits", "s3://d/input-samples/digits/") == {
        "schema": 1,
        "job_id": "monitor-digits-<aws.scheduler.scheduled-time>",
        "type": "monitor",
        "model": "digits",
        "dataset": "s3://d/input-samples/digits/",
        "params": {"origin": "schedule"},
    }


def test_a_monitor_schedule_fires_a_valid_monitor_job() -> None:
    template = json.dumps(schedules.monitor_message("digits", "s3://data/input-samples/digits/"))
    job = parse_job(schedules.fire(template, now=at("2026-11-30 12:00")), data_bucket="data")
    assert (job.job_id, job.type, job.params) == (
        "monitor-digits-2026-11-30T12:00:00Z", "monitor", {"origin": "schedule"},
    )  # fmt: skip


def test_fire_replaces_every_context_attribute_the_way_the_scheduler_does() -> None:
    template = " ".join(
        [schedules.EXECUTION_ID, schedules.SCHEDULED_TIME, schedules.SCHEDULE_ARN,
         schedules.ATTEMPT]
    )  # fmt: skip
    assert (
        schedules.fire(template, execution_id="e1", arn="arn:s", now=at("2026-11-30 12:01"))
        == "e1 2026-11-30T12:01:00Z arn:s 1"
    )
    # without an arn it is empty; without an execution id a random one, 8 bytes as hex
    execution, stamp, *rest = schedules.fire(template, now=at("2026-11-30 12:01")).split(" ")
    assert (stamp, rest) == ("2026-11-30T12:01:00Z", ["", "1"])
    assert len(execution) == 16 and int(execution, 16) >= 0
    assert schedules.fire(template, scheduled="manual-1").split(" ")[1:] == ["manual-1", "", "1"]


def test_fire_without_a_time_stamps_the_clocks() -> None:
    before = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    stamp = schedules.fire(schedules.SCHEDULED_TIME)
    after = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    assert before <= stamp <= after


@pytest.mark.parametrize(
    ("field", "low", "high"),
    [(0, 0, 59), (1, 0, 23), (2, 1, 31), (3, 1, 12), (4, 1, 7), (5, 1970, 2199)],
)
def test_each_cron_field_takes_exactly_its_range_locally(field: int, low: int, high: int) -> None:
    def cron(value: str) -> str:
        fields = ["0", "0", "?", "*", "*", "*"]
        fields[4 if field == 2 else 2] = "?"  # one of the day fields is ?
        fields[field] = value
        return f"cron({' '.join(fields)})"

    assert schedules.local_refusal(cron(str(low))) is None
    assert schedules.local_refusal(cron(str(high))) is None
    assert schedules.local_refusal(cron(f"{low}-{high}")) is None
    over = cron(str(high + 1))
    assert schedules.local_refusal(over) == f"{over}: '{high + 1}' is out of range {low}-{high}"
    if low > 0:
        under = cron(str(low - 1))
        assert (
            schedules.local_refusal(under) == f"{under}: '{low - 1}' is out of range {low}-{high}"
        )


@pytest.mark.parametrize(
    ("expression", "why"),
    [
        ("cron(*/0 3 ? * * *)", "'*/0' is out of range 0-59"),  # a step of 0
        ("cron(0 20-10 ? * * *)", "'20-10' is out of range 0-23"),  # backwards
        ("cron(0 3 ? * 0 *)", "'0' is out of range 1-7"),
        ("cron(0 3 ? * FRI-SUN *)", "'FRI-SUN' is out of range 1-7"),  # no wrapping round
        ("cron(0 3 ? * 2-8 *)", "'2-8' is out of range 1-7"),
        ("cron(0 3 ? * MON-FOO *)", "'FOO' (L, W and # are evaluated only by EventBridge "
         "Scheduler)"),
        ("cron(0 1-2-3 ? * * *)", "'2-3' (L, W and # are evaluated only by EventBridge "
         "Scheduler)"),
        ("cron(0 12 ? * 6#3 *)", "'6#3' (L, W and # are evaluated only by EventBridge "
         "Scheduler)"),
        ("cron(0 12 15W * ? *)", "'15W' (L, W and # are evaluated only by EventBridge "
         "Scheduler)"),
        ("cron(0 12 L * ? *)", "'L' (L, W and # are evaluated only by EventBridge Scheduler)"),
    ],
)  # fmt: skip
def test_local_mode_says_exactly_which_part_it_cannot_evaluate(expression: str, why: str) -> None:
    assert schedules.local_refusal(expression) == f"{expression}: {why}"


@pytest.mark.parametrize("expression", ["cron(0 3 ? * *)", "cron(0 3 ? * * * *)"])
def test_local_mode_refuses_a_cron_without_six_fields(expression: str) -> None:
    assert schedules.local_refusal(expression) is not None


def fires(expression: str, start: str, minutes: int) -> list[str]:
    """The minutes (UTC, "%Y-%m-%d %H:%M") a schedule fires in, from ``start`` on."""
    due = schedules.Due(expression, started=at(start))
    return [
        time.strftime("%Y-%m-%d %H:%M", time.gmtime(at(start) + m * 60))
        for m in range(minutes)
        if due.due(at(start) + m * 60)
    ]


@pytest.mark.parametrize(
    ("day", "date"),
    [("1", "2026-11-29"), ("SUN", "2026-11-29"), ("2", "2026-11-30"), ("mon", "2026-11-30"),
     ("3", "2026-12-01"), ("4", "2026-12-02"), ("5", "2026-12-03"), ("6", "2026-12-04"),
     ("7", "2026-12-05"), ("SAT", "2026-12-05")],
)  # fmt: skip
def test_a_day_of_the_week_counts_from_sunday_as_1(day: str, date: str) -> None:
    assert fires(f"cron(0 0 ? * {day} *)", "2026-11-29 00:00", 7 * 24 * 60) == [f"{date} 00:00"]


@pytest.mark.parametrize(
    ("expression", "start", "minutes", "fired"),
    [
        # lists, steps from a value, ranges with a step (both ends included)
        ("cron(0,30 1 ? * * *)", "2026-11-29 00:00", 180, ["2026-11-29 01:00", "2026-11-29 01:30"]),
        ("cron(50/5 1 ? * * *)", "2026-11-29 00:00", 180, ["2026-11-29 01:50", "2026-11-29 01:55"]),
        ("cron(10-20/5 1 ? * * *)", "2026-11-29 00:00", 180,
         ["2026-11-29 01:10", "2026-11-29 01:15", "2026-11-29 01:20"]),
        # week days by name, a range of them
        ("cron(0 9 ? * MON-FRI *)", "2026-11-28 00:00", 7 * 24 * 60,
         ["2026-11-30 09:00", "2026-12-01 09:00", "2026-12-02 09:00", "2026-12-03 09:00",
          "2026-12-04 09:00"]),
        # months by name and the day of the month; the year
        ("cron(0 0 1 nov-dec ? *)", "2026-11-01 00:00", 31 * 24 * 60,
         ["2026-11-01 00:00", "2026-12-01 00:00"]),
        ("cron(0 0 1 * ? 2027)", "2026-12-31 00:00", 2 * 24 * 60, ["2027-01-01 00:00"]),
        ("cron(59 23 31 12 ? *)", "2026-12-31 23:58", 3, ["2026-12-31 23:59"]),
    ],
)  # fmt: skip
def test_a_cron_fires_in_the_minutes_its_fields_match(
    expression: str, start: str, minutes: int, fired: list[str]
) -> None:
    assert fires(expression, start, minutes) == fired


def test_a_cron_remembers_the_minute_it_fired_not_the_second() -> None:
    due = schedules.Due("cron(0 3 ? * MON *)", started=0)
    assert due.due(at("2026-11-30 03:00") + 59.5)
    assert due.last == at("2026-11-30 03:00")
    assert not due.due(at("2026-11-30 03:00") + 59.9)


def test_a_cron_is_not_due_in_the_minute_it_last_fired_in() -> None:
    due = schedules.Due("cron(0 3 ? * MON *)", started=0, last=at("2026-11-30 03:00"))
    assert not due.due(at("2026-11-30 03:00") + 1)
    assert due.due(at("2026-12-07 03:00"))


def test_a_time_before_1970_is_floored_to_its_minute_not_rounded_up() -> None:
    # 30 seconds before the epoch is 1969-12-31 23:59, not the first minute of 1970
    due = schedules.Due("cron(0 0 1 1 ? 1970)", started=-120, last=-120)
    assert not due.due(-30)
    assert due.due(0)


@pytest.mark.parametrize(
    ("expression", "period"),
    [("rate(1 minute)", 60), ("rate(3 minutes)", 180), ("rate(1 hour)", 3600),
     ("rate(2 hours)", 7200), ("rate(1 day)", 86_400), ("rate(7 days)", 7 * 86_400)],
)  # fmt: skip
def test_a_rate_is_due_exactly_one_period_after_it_last_fired(expression: str, period: int) -> None:
    due = schedules.Due(expression, started=100.0)
    assert not due.due(100.0 + period - 1)
    assert due.due(100.0 + period)
    assert due.last == 100.0 + period
    late = 100.0 + 2 * period + 30  # a late tick: the next period counts from when it fired
    assert due.due(late)
    assert not due.due(late + period - 1)
    assert due.due(late + period)
